//! Score card → action. The only place that decides.

use filters::{Action, ScoreCard};

use crate::config::VerdictConfig;

/// The action for a score card: a forced action wins, else the score against thresholds.
pub fn decide(card: &ScoreCard, t: &VerdictConfig) -> (Action, String) {
    if let Some(forced) = card.forced_action() {
        let by = card
            .symbols
            .iter()
            .find(|s| s.forced_action == Some(forced))
            .map(|s| s.name)
            .unwrap_or("");
        return (forced, format!("forced by {by}"));
    }
    let score = card.score();
    let action = if score >= t.reject_score {
        Action::Reject
    } else if score >= t.quarantine_score {
        Action::Quarantine
    } else if score >= t.tag_score {
        Action::Tag
    } else {
        Action::Accept
    };
    (action, format!("score {score:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use filters::Symbol;

    fn card(points: f64) -> ScoreCard {
        let mut c = ScoreCard::default();
        let mut s = Symbol::new("HDR_MISSING_DATE", "");
        s.points = points;
        c.add(s);
        c
    }

    #[test]
    fn thresholds_map_scores_to_actions() {
        let t = VerdictConfig::default();
        assert_eq!(decide(&card(0.0), &t).0, Action::Accept);
        assert_eq!(decide(&card(5.0), &t).0, Action::Tag);
        assert_eq!(decide(&card(8.0), &t).0, Action::Quarantine);
        assert_eq!(decide(&card(12.0), &t).0, Action::Reject);
        assert_eq!(decide(&card(-3.0), &t).0, Action::Accept);
    }

    #[test]
    fn forced_action_wins_over_a_low_score() {
        let mut c = card(-10.0);
        c.add(Symbol::new("HDR_UNPARSEABLE", "").forcing(Action::Reject));
        let (a, why) = decide(&c, &VerdictConfig::default());
        assert_eq!(a, Action::Reject);
        assert!(why.contains("HDR_UNPARSEABLE"));
    }
}
