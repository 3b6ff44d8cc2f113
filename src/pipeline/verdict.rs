//! Score card → action. The only place that decides.

use filters::{Action, ScoreCard};

use crate::config::VerdictConfig;
use crate::smtp::received::printable;
use crate::smtp::reply::{self, Reply};

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

/// The DATA reply for a refusing action; `None` means the message is stored (250).
/// A virus is named (the sender's admin needs to know); other reasons stay generic.
pub fn refusal_reply(action: Action, card: &ScoreCard) -> Option<(Reply, String)> {
    match action {
        Action::Reject => Some(
            match card
                .symbols
                .iter()
                .find(|s| s.name == "CLAM_VIRUS" && s.forced_action == Some(Action::Reject))
            {
                Some(virus) => (
                    reply::VIRUS,
                    format!("{} ({})", reply::VIRUS.text, printable(&virus.detail)),
                ),
                None => {
                    let forced_by = |name: &str| {
                        card.symbols
                            .iter()
                            .any(|s| s.name == name && s.forced_action == Some(Action::Reject))
                    };
                    let r = if forced_by("SMIME_USER_PROTECTED") {
                        reply::SMIME_USER_PROTECTED
                    } else if forced_by("SMIME_NO_SIGNING_KEY") {
                        reply::SMIME_NO_SIGNING_KEY
                    } else {
                        reply::REJECTED
                    };
                    (r, r.text.to_string())
                }
            },
        ),
        Action::Tempfail => Some((reply::TEMPFAIL, reply::TEMPFAIL.text.to_string())),
        Action::Accept | Action::Tag | Action::Quarantine => None,
    }
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
        assert_eq!(refusal_reply(a, &c).unwrap().0.code, 550);
        assert_eq!(refusal_reply(Action::Tempfail, &c).unwrap().0.code, 451);
        assert!(refusal_reply(Action::Quarantine, &c).is_none());
        c.add(Symbol::new("CLAM_VIRUS", "Eicar-Test-Signature").forcing(Action::Reject));
        let (r, text) = refusal_reply(Action::Reject, &c).unwrap();
        assert_eq!((r.code, r.enhanced), (554, "5.7.1"));
        assert!(text.ends_with("(Eicar-Test-Signature)"), "{text}");
    }
}
