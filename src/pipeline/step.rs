//! The kinds of step a direction's order is made of, and the rule their order follows.

use std::sync::Arc;

use super::ConfiguredStage;
use super::dkim_sign::OutboundSigner;
use crate::actions::MessageActions;
use crate::config::FailMode;
use crate::rules::RuleSet;
use crate::smime::inbound::SmimeInbound;
use crate::smime::outbound::SmimeOutbound;

/// One step of the inbound or outbound order (`inbound.rs`, `outbound.rs`).
pub enum Step {
    /// S/MIME decrypt and verify, so the checks judge the plaintext (inbound).
    Unwrap {
        smime: Arc<SmimeInbound>,
        fail_mode: FailMode,
    },
    /// Refuse what S/MIME policy forbids before judging it (outbound).
    Precheck {
        smime: Arc<SmimeOutbound>,
        fail_mode: FailMode,
    },
    /// A check: facts in, symbols out (the `filters` stages).
    Check(ConfiguredStage),
    /// The ordered rules (`[[rules]]`), on the score card and the parsed message: after
    /// every check, before the verdict, which takes their decision.
    Rules(Arc<RuleSet>),
    /// The score card (and the rules' decision) becomes the action.
    Verdict,
    /// Keep the certificates of valid signers, from mail the verdict lets through.
    Harvest(Arc<SmimeInbound>),
    /// The message actions the rules chose (disclaimer, attachment signatures, archive),
    /// on what will be stored: before S/MIME protection and DKIM signing, which must cover
    /// the changed message.
    Act(Arc<MessageActions>),
    /// Sign and encrypt what will be stored, by policy, copy by copy.
    Protect(Arc<SmimeOutbound>),
    /// DKIM-sign every copy as it will leave: the last step before the queue.
    DkimSign(Arc<OutboundSigner>),
}

/// The three phases of an order, in this sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Phase {
    /// Change what the checks judge.
    Prepare,
    /// The checks and the verdict.
    Judge,
    /// Act on what will be stored.
    Store,
}

impl Step {
    pub(super) fn phase(&self) -> Phase {
        match self {
            Step::Unwrap { .. } | Step::Precheck { .. } => Phase::Prepare,
            Step::Check(_) | Step::Rules(_) | Step::Verdict => Phase::Judge,
            Step::Harvest(_) | Step::Act(_) | Step::Protect(_) | Step::DkimSign(_) => Phase::Store,
        }
    }

    /// For messages about the order.
    pub fn name(&self) -> &'static str {
        match self {
            Step::Unwrap { .. } => "smime unwrap",
            Step::Precheck { .. } => "smime precheck",
            Step::Check(s) => s.stage.name(),
            Step::Rules(_) => "rules",
            Step::Verdict => "verdict",
            Step::Harvest(_) => "smime harvest",
            Step::Act(_) => "message actions",
            Step::Protect(_) => "smime protect",
            Step::DkimSign(_) => "dkim sign",
        }
    }
}

/// An order is valid when its phases come in sequence and exactly one verdict ends the
/// checks (nothing that changes the message may run after a check judged it, and nothing
/// is stored before the verdict); the rules, at most once, come after every check and
/// right before the verdict (they read what the checks found; the verdict takes their
/// decision).
pub(super) fn check_order(steps: &[Step]) -> Result<(), String> {
    let mut last = Phase::Prepare;
    for pair in steps.windows(2) {
        if matches!(pair[0], Step::Verdict) && matches!(pair[1], Step::Check(_)) {
            return Err(format!("{} comes after the verdict", pair[1].name()));
        }
    }
    for (i, step) in steps.iter().enumerate() {
        if matches!(step, Step::Rules(_)) && !matches!(steps.get(i + 1), Some(Step::Verdict)) {
            let next = steps.get(i + 1).map_or("the end", |s| s.name());
            return Err(format!(
                "rules must come right before the verdict, not before {next}"
            ));
        }
    }
    // What changes the message comes before what signs or encrypts it.
    if let Some(act) = steps.iter().position(|s| matches!(s, Step::Act(_)))
        && let Some(sealed) = steps[..act]
            .iter()
            .find(|s| matches!(s, Step::Protect(_) | Step::DkimSign(_)))
    {
        return Err(format!(
            "message actions must come before {}, which must cover the changed message",
            sealed.name()
        ));
    }
    if steps.iter().filter(|s| matches!(s, Step::Rules(_))).count() > 1 {
        return Err("more than one rules step".into());
    }
    for step in steps {
        if step.phase() < last {
            return Err(format!("{} comes too late", step.name()));
        }
        last = step.phase();
    }
    match steps.iter().filter(|s| matches!(s, Step::Verdict)).count() {
        1 => Ok(()),
        n => Err(format!("{n} verdict steps (one is needed)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> Step {
        Step::Check(ConfiguredStage {
            stage: Box::new(filters::header_sanity::HeaderSanity),
            fail_mode: FailMode::Tempfail,
        })
    }

    #[test]
    fn checks_come_before_the_one_verdict() {
        assert!(check_order(&[check(), Step::Verdict]).is_ok());
        assert!(check_order(&[check()]).unwrap_err().contains("0 verdict"));
        assert!(
            check_order(&[Step::Verdict, check()])
                .unwrap_err()
                .contains("after the verdict")
        );
        assert!(check_order(&[Step::Verdict, Step::Verdict]).is_err());
    }

    #[test]
    fn rules_come_after_the_checks_right_before_the_verdict() {
        let rules = || Step::Rules(Arc::new(RuleSet::default()));
        assert!(check_order(&[check(), rules(), Step::Verdict]).is_ok());
        assert!(
            check_order(&[rules(), check(), Step::Verdict])
                .unwrap_err()
                .contains("right before the verdict")
        );
        assert!(check_order(&[check(), Step::Verdict, rules()]).is_err());
        assert!(check_order(&[check(), rules(), rules(), Step::Verdict]).is_err());
    }

    #[test]
    fn message_actions_come_before_protection() {
        let act = || {
            Step::Act(Arc::new(MessageActions::new(
                None,
                crate::actions::MimeLimits::default(),
            )))
        };
        let protect = || {
            Step::Protect(Arc::new(SmimeOutbound::new(
                Arc::new(crate::smime::keyring::MemoryKeyring::default()),
                crate::config::SmimeConfig::default(),
            )))
        };
        assert!(check_order(&[check(), Step::Verdict, act(), protect()]).is_ok());
        let e = check_order(&[check(), Step::Verdict, protect(), act()]).unwrap_err();
        assert!(e.contains("before smime protect"), "{e}");
        assert!(check_order(&[act(), check(), Step::Verdict]).is_err());
    }
}
