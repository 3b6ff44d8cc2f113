//! Outbound S/MIME policy (`[[smime.policy]]`): which rules — sign, encrypt: forbid, allow,
//! require — apply to a sender.

use crate::config::{SmimeConfig, SmimePolicy, SmimeRule};

/// The (sign, encrypt) rules for one sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SmimeRules {
    pub sign: SmimeRule,
    pub encrypt: SmimeRule,
}

/// Most specific wins, per rule: the user's entry, else the sender domain's (exact,
/// else the nearest ".parent"), else forbid.
pub fn rules_for(config: &SmimeConfig, sender: &str) -> SmimeRules {
    let sender = sender.to_ascii_lowercase();
    let domain = sender.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    let user = config.policy.iter().find(|p| {
        p.user
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case(&sender))
    });
    let exact = config.policy.iter().find(|p| {
        p.domain
            .as_deref()
            .is_some_and(|d| d.eq_ignore_ascii_case(domain))
    });
    let parent = config
        .policy
        .iter()
        .filter_map(|p| Some((p, p.domain.as_deref()?.to_ascii_lowercase())))
        .filter(|(_, d)| d.starts_with('.') && domain.ends_with(d.as_str()))
        .max_by_key(|(_, d)| d.len())
        .map(|(p, _)| p);
    let chain = [user, exact, parent];
    let pick = |f: fn(&SmimePolicy) -> Option<SmimeRule>| {
        chain
            .iter()
            .flatten()
            .find_map(|p| f(p))
            .unwrap_or_default()
    };
    SmimeRules {
        sign: pick(|p| p.sign),
        encrypt: pick(|p| p.encrypt),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn smime_policy_most_specific_wins_per_rule() {
        let c = Config::parse(
            "[[smime.policy]]\ndomain = \".corp.test\"\nsign = \"allow\"\nencrypt = \"allow\"\n\
             [[smime.policy]]\ndomain = \"example.test\"\nsign = \"require\"\n\
             [[smime.policy]]\nuser = \"Boss@example.test\"\nencrypt = \"require\"\n",
        )
        .unwrap();
        let r = |s: &str| rules_for(&c.smime, s);
        assert_eq!(
            (r("boss@example.test").sign, r("boss@example.test").encrypt),
            (SmimeRule::Require, SmimeRule::Require)
        );
        assert_eq!(r("ann@example.test").encrypt, SmimeRule::Forbid);
        assert_eq!(r("ann@example.test").sign, SmimeRule::Require);
        assert_eq!(r("x@mail.corp.test").sign, SmimeRule::Allow);
        assert_eq!(r("x@corp.test").sign, SmimeRule::Forbid);
        assert_eq!(r("x@other.test"), SmimeRules::default());
        let e = format!(
            "{:#}",
            Config::parse("[[smime.policy]]\nsign = \"allow\"").unwrap_err()
        );
        assert!(e.contains("smime.policy[0]"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[smime]\nundecryptable_action = \"drop\"").unwrap_err()
        );
        assert!(e.contains("undecryptable_action"), "{e}");
    }
}
