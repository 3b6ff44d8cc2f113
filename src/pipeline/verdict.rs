//! Score card (and the rules' decision) → action. The only place that decides.

use filters::{Action, ScoreCard};

use crate::config::VerdictConfig;
use crate::rules::Evaluation;

/// The verdict for one recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct RecipientVerdict {
    pub action: Action,
    /// For the log and hold reasons: `forced by CLAM_VIRUS`, `rule NAME`, `score 9.00`.
    pub reason: String,
    /// The deciding rule's `reject` text.
    pub text: Option<String>,
    /// The deciding rule, when a rule decided.
    pub rule: Option<String>,
    /// The score with the rules' `adjust_points`.
    pub score: f64,
}

/// The action for one recipient: a forced action wins (as over the thresholds), then the
/// verdict of the rule that ended the evaluation, else the score (with the rules'
/// `adjust_points`) against the thresholds.
pub fn decide_for(
    card: &ScoreCard,
    t: &VerdictConfig,
    rules: Option<&Evaluation>,
) -> RecipientVerdict {
    let points = rules.map_or(0.0, |e| e.points);
    let score = card.score() + points;
    if card.forced_action().is_none()
        && let Some((v, name)) = rules.and_then(|e| e.verdict.as_ref())
    {
        return RecipientVerdict {
            action: v.action,
            reason: format!("rule {name}"),
            text: v.text.clone(),
            rule: Some(name.clone()),
            score,
        };
    }
    let (action, reason) = decide_adjusted(card, t, points);
    RecipientVerdict {
        action,
        reason,
        text: None,
        rule: None,
        score,
    }
}

/// The action for a score card: a forced action wins, else the score against thresholds.
pub fn decide(card: &ScoreCard, t: &VerdictConfig) -> (Action, String) {
    decide_adjusted(card, t, 0.0)
}

/// [`decide`], with `points` added to the score.
fn decide_adjusted(card: &ScoreCard, t: &VerdictConfig, points: f64) -> (Action, String) {
    if let Some(forced) = card.forced_action() {
        let by = card
            .symbols
            .iter()
            .find(|s| s.forced_action == Some(forced))
            .map(|s| s.name)
            .unwrap_or("");
        return (forced, format!("forced by {by}"));
    }
    let score = card.score() + points;
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
