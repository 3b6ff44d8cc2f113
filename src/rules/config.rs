//! `[[rules]]` as written (serde; unknown keys are errors), and their compilation into a
//! [`RuleSet`]: every pattern parsed once, every mistake reported with the rule's name.

use std::collections::HashSet;
use std::path::PathBuf;

use filters::{Action, Direction};
use ipnet::IpNet;
use serde::Deserialize;

use super::pattern::{AddressPattern, Glob};
use super::sniff::{Kind, Kinds};
use super::{
    ArchiveTarget, AttachmentSelector, Bounds, Conditions, MessageAction, Rule, RuleSet,
    RuleVerdict, SmimeOverride, SmimeState, TlsState, TrustLevel,
};
use crate::config::SmimeRule;

/// Longest operator text of a `reject` (one SMTP reply line, with room for the code).
pub const MAX_REJECT_TEXT: usize = 200;

/// Stages a rule may skip: the checks. S/MIME is policy (its own action), not a filter.
pub const SKIPPABLE_STAGES: &[&str] = &[
    "auth",
    "lists",
    "trust",
    "tls_reputation",
    "header_sanity",
    "content",
    "bayes",
    "clamav",
];

/// One `[[rules]]` entry.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Unique; logs, `portcullis explain` and hold reasons name the rule by it.
    pub name: String,
    /// Conditions, all of which must hold; none = every message.
    #[serde(default)]
    pub when: WhenConfig,
    #[serde(default)]
    pub actions: ActionsConfig,
    /// true: after this rule matched, later rules are still looked at (it may only add
    /// actions, not decide the verdict... unless no later rule does).
    #[serde(default, rename = "continue")]
    pub continue_: bool,
}

/// A string or a list of strings ("any of").
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn items(&self) -> &[String] {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct RangeConfig<T> {
    /// At least this (inclusive).
    pub min: Option<T>,
    /// Below this (exclusive).
    pub max: Option<T>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct WhenConfig {
    pub direction: Option<Direction>,
    /// Client address in one of these networks ("192.0.2.0/24", "2001:db8::/32", an
    /// address alone is its host network).
    pub client: Option<OneOrMany>,
    /// HELO/EHLO name globs.
    pub helo: Option<OneOrMany>,
    /// "none", "any" (any TLS), "verified_cert" (a client certificate whose chain verifies).
    pub tls: Option<OneOrMany>,
    /// The auth stage (or a trusted S/MIME signature) authenticated the From domain.
    pub authenticated: Option<bool>,
    pub sender: Option<OneOrMany>,
    pub recipient: Option<OneOrMany>,
    /// The header From address.
    pub from: Option<OneOrMany>,
    /// Any of these symbols was reported.
    pub symbols: Option<OneOrMany>,
    pub score: Option<RangeConfig<f64>>,
    /// "none", "low", "medium", "high".
    pub trust: Option<OneOrMany>,
    /// Attachment kinds by content (see `rules::sniff`).
    pub attachment: Option<OneOrMany>,
    /// Message size in bytes.
    pub size: Option<RangeConfig<u64>>,
    /// "encrypted", "signed_valid", "signed_invalid", "unsigned".
    pub smime: Option<OneOrMany>,
}

/// `reject = true` or `reject = "operator text"`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum RejectConfig {
    Flag(bool),
    Text(String),
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct SmimeActionConfig {
    pub sign: Option<SmimeRule>,
    pub encrypt: Option<SmimeRule>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DisclaimerConfig {
    pub text: String,
    pub html: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SignAttachmentsConfig {
    /// Attachment kinds by content; with `names`, an attachment is chosen by either.
    #[serde(default)]
    pub types: Vec<String>,
    /// File name globs.
    #[serde(default)]
    pub names: Vec<String>,
    /// The address whose certificate and key in the certificate store sign.
    pub identity: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    pub to: Option<String>,
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ActionsConfig {
    pub accept: Option<bool>,
    pub tag: Option<bool>,
    pub quarantine: Option<bool>,
    pub reject: Option<RejectConfig>,
    pub tempfail: Option<bool>,
    /// Whole header fields, "Name: value".
    pub add_header: Option<OneOrMany>,
    pub adjust_points: Option<f64>,
    /// Stage names that do not run for matching mail.
    pub skip: Option<OneOrMany>,
    pub smime: Option<SmimeActionConfig>,
    pub disclaimer: Option<DisclaimerConfig>,
    pub sign_attachments: Option<SignAttachmentsConfig>,
    pub archive: Option<ArchiveConfig>,
}

/// A rules file: `[[rules]]` and nothing else.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

/// The rule set of the embedded defaults (also in `examples/portcullis.toml`).
pub const DEFAULT_RULES: &str = include_str!("default.toml");

pub fn default_rules() -> Vec<RuleConfig> {
    toml::from_str::<RulesFile>(DEFAULT_RULES)
        .expect("the built-in rule set parses")
        .rules
}

impl RuleSet {
    /// Compile and check every rule; the error names the rule and what to fix.
    pub fn compile(configs: &[RuleConfig]) -> Result<RuleSet, String> {
        let mut names = HashSet::new();
        let mut rules: Vec<Rule> = Vec::with_capacity(configs.len());
        for c in configs {
            if c.name.trim().is_empty() {
                return Err(format!(
                    "rule #{}: `name` must not be empty",
                    rules.len() + 1
                ));
            }
            if !names.insert(c.name.as_str()) {
                return Err(format!(
                    "rule `{}`: the name is used twice (names must be unique)",
                    c.name
                ));
            }
            let rule = compile_rule(c).map_err(|e| format!("rule `{}`: {e}", c.name))?;
            if let Some(earlier) = configs[..rules.len()]
                .iter()
                .find(|e| !e.continue_ && shadows(&e.when, &c.when))
            {
                let what = if earlier.when == WhenConfig::default() {
                    "has no conditions".to_string()
                } else {
                    "has conditions this rule also has".to_string()
                };
                return Err(format!(
                    "rule `{}` can never match: rule `{}` before it {what} and ends the evaluation (set `continue = true` on it, or move this rule up)",
                    c.name, earlier.name
                ));
            }
            rules.push(rule);
        }
        Ok(RuleSet::new(rules))
    }
}

/// Whether `earlier` matches whenever `later` does: each of its conditions is also one of
/// `later`'s, written the same (no conditions at all is the catch-all).
fn shadows(earlier: &WhenConfig, later: &WhenConfig) -> bool {
    fn covered<T: PartialEq>(e: &Option<T>, l: &Option<T>) -> bool {
        e.is_none() || e == l
    }
    covered(&earlier.direction, &later.direction)
        && covered(&earlier.client, &later.client)
        && covered(&earlier.helo, &later.helo)
        && covered(&earlier.tls, &later.tls)
        && covered(&earlier.authenticated, &later.authenticated)
        && covered(&earlier.sender, &later.sender)
        && covered(&earlier.recipient, &later.recipient)
        && covered(&earlier.from, &later.from)
        && covered(&earlier.symbols, &later.symbols)
        && covered(&earlier.score, &later.score)
        && covered(&earlier.trust, &later.trust)
        && covered(&earlier.attachment, &later.attachment)
        && covered(&earlier.size, &later.size)
        && covered(&earlier.smime, &later.smime)
}

fn list<'a>(key: &str, v: &'a Option<OneOrMany>) -> Result<&'a [String], String> {
    match v {
        None => Ok(&[]),
        Some(v) if v.items().is_empty() => Err(format!(
            "`when.{key}` is an empty list (it could never hold; remove the key)"
        )),
        Some(v) => Ok(v.items()),
    }
}

fn each<T>(
    key: &str,
    v: &Option<OneOrMany>,
    f: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, String> {
    list(key, v)?
        .iter()
        .map(|s| f(s).map_err(|e| format!("`when.{key}`: {e}")))
        .collect()
}

fn named<T: Copy>(table: &[(&str, T)], what: &str, s: &str) -> Result<T, String> {
    table
        .iter()
        .find(|(n, _)| *n == s)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let known: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
            format!("{s:?} is not a {what} (one of {})", known.join(", "))
        })
}

fn network(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>()
        .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{s:?} is not a network (CIDR like 192.0.2.0/24) or address"))
}

fn kinds(key: &str, names: &[String]) -> Result<Kinds, String> {
    let mut k = Kinds::default();
    for n in names {
        let known: Vec<&str> = Kind::ALL.iter().map(|(n, _)| *n).collect();
        k.insert(Kind::parse(n).ok_or_else(|| {
            format!(
                "`{key}`: {n:?} is not an attachment type (one of {})",
                known.join(", ")
            )
        })?);
    }
    Ok(k)
}

fn range<T: PartialOrd + Copy + std::fmt::Display>(
    key: &str,
    r: &Option<RangeConfig<T>>,
) -> Result<Option<Bounds<T>>, String> {
    match r {
        None => Ok(None),
        Some(RangeConfig {
            min: Some(a),
            max: Some(b),
        }) if a.partial_cmp(b) != Some(std::cmp::Ordering::Less) => {
            Err(format!("`when.{key}`: min ({a}) must be below max ({b})"))
        }
        Some(RangeConfig {
            min: None,
            max: None,
        }) => Err(format!("`when.{key}`: give `min`, `max` or both")),
        Some(r) => Ok(Some((r.min, r.max))),
    }
}

fn address(s: &str) -> bool {
    matches!(s.rsplit_once('@'), Some((l, d)) if !l.is_empty() && !d.is_empty() && !s.contains(char::is_whitespace))
}

fn compile_rule(c: &RuleConfig) -> Result<Rule, String> {
    let w = &c.when;
    let symbols = each("symbols", &w.symbols, |s| {
        if filters::symbols::is_registered(s) {
            Ok(s.to_string())
        } else {
            Err(format!("{s:?} is not a symbol (see `portcullis symbols`)"))
        }
    })?;
    let when = Conditions {
        direction: w.direction,
        client: each("client", &w.client, network)?,
        helo: each("helo", &w.helo, Glob::new)?,
        tls: each("tls", &w.tls, |s| named(TlsState::NAMES, "TLS state", s))?,
        authenticated: w.authenticated,
        sender: each("sender", &w.sender, AddressPattern::parse)?,
        recipient: each("recipient", &w.recipient, AddressPattern::parse)?,
        from: each("from", &w.from, AddressPattern::parse)?,
        symbols,
        score: range("score", &w.score)?,
        trust: each("trust", &w.trust, |s| {
            named(TrustLevel::NAMES, "trust level", s)
        })?,
        attachment: match &w.attachment {
            None => None,
            Some(_) => Some(kinds(
                "when.attachment",
                list("attachment", &w.attachment)?,
            )?),
        },
        size: range("size", &w.size)?,
        smime: each("smime", &w.smime, |s| {
            named(SmimeState::NAMES, "S/MIME state", s)
        })?,
    };
    let a = &c.actions;
    let mut verdicts = Vec::new();
    let mut flag = |on: Option<bool>, action: Action| {
        if on == Some(true) {
            verdicts.push(RuleVerdict { action, text: None });
        }
    };
    flag(a.accept, Action::Accept);
    flag(a.tag, Action::Tag);
    flag(a.quarantine, Action::Quarantine);
    flag(a.tempfail, Action::Tempfail);
    match &a.reject {
        None | Some(RejectConfig::Flag(false)) => {}
        Some(RejectConfig::Flag(true)) => verdicts.push(RuleVerdict {
            action: Action::Reject,
            text: None,
        }),
        Some(RejectConfig::Text(t)) => {
            if t.is_empty()
                || t.len() > MAX_REJECT_TEXT
                || !t.bytes().all(|b| (0x20..0x7F).contains(&b))
            {
                return Err(format!(
                    "`actions.reject`: the text must be 1 to {MAX_REJECT_TEXT} printable ASCII characters"
                ));
            }
            verdicts.push(RuleVerdict {
                action: Action::Reject,
                text: Some(t.clone()),
            });
        }
    }
    if verdicts.len() > 1 {
        let names: Vec<&str> = verdicts.iter().map(|v| v.action.as_str()).collect();
        return Err(format!(
            "conflicting actions {}: a rule has at most one of accept, tag, quarantine, reject, tempfail",
            names.join(" and ")
        ));
    }
    let headers = match &a.add_header {
        None => Vec::new(),
        Some(h) => h
            .items()
            .iter()
            .map(|f| header_field(f).map(|()| f.clone()))
            .collect::<Result<_, _>>()?,
    };
    if let Some(p) = a.adjust_points
        && !p.is_finite()
    {
        return Err("`actions.adjust_points` must be a number".into());
    }
    let skip = match &a.skip {
        None => Vec::new(),
        Some(s) => s
            .items()
            .iter()
            .map(|n| {
                SKIPPABLE_STAGES
                    .iter()
                    .find(|k| **k == n.as_str())
                    .copied()
                    .ok_or_else(|| {
                        format!(
                            "`actions.skip`: {n:?} is not a stage that can be skipped (one of {})",
                            SKIPPABLE_STAGES.join(", ")
                        )
                    })
            })
            .collect::<Result<_, _>>()?,
    };
    let envelope_only = when.envelope_only();
    if !skip.is_empty() && !envelope_only {
        return Err("`actions.skip` needs conditions known at RCPT TO (direction, client, helo, tls, sender, recipient): the stages must be skipped before they run".into());
    }
    let smime = a.smime.as_ref().map(|s| SmimeOverride {
        sign: s.sign,
        encrypt: s.encrypt,
    });
    if smime.is_some_and(|s| s.sign.is_none() && s.encrypt.is_none()) {
        return Err("`actions.smime`: give `sign`, `encrypt` or both".into());
    }
    if smime.is_some() && when.direction == Some(Direction::Inbound) {
        return Err("`actions.smime` applies to outbound mail; this rule is inbound only".into());
    }
    let mut message_actions = Vec::new();
    if let Some(d) = &a.disclaimer {
        if d.text.trim().is_empty() {
            return Err("`actions.disclaimer.text` must not be empty".into());
        }
        message_actions.push(MessageAction::Disclaimer {
            rule: c.name.clone(),
            text: d.text.clone(),
            html: d.html.clone(),
        });
    }
    if let Some(s) = &a.sign_attachments {
        if !address(&s.identity) {
            return Err(format!(
                "`actions.sign_attachments.identity`: {:?} is not an e-mail address",
                s.identity
            ));
        }
        if s.types.is_empty() && s.names.is_empty() {
            return Err("`actions.sign_attachments`: give `types`, `names` or both".into());
        }
        let names = s
            .names
            .iter()
            .map(|n| Glob::new(n).map_err(|e| format!("`actions.sign_attachments.names`: {e}")))
            .collect::<Result<_, _>>()?;
        message_actions.push(MessageAction::SignAttachments {
            rule: c.name.clone(),
            select: AttachmentSelector {
                kinds: kinds("actions.sign_attachments.types", &s.types)?,
                names,
            },
            identity: s.identity.to_ascii_lowercase(),
        });
    }
    if let Some(ar) = &a.archive {
        let target = match (&ar.to, &ar.dir) {
            (Some(to), None) if address(to) => ArchiveTarget::To(to.clone()),
            (Some(to), None) => {
                return Err(format!(
                    "`actions.archive.to`: {to:?} is not an e-mail address"
                ));
            }
            (None, Some(dir)) if dir.is_absolute() => ArchiveTarget::Dir(dir.clone()),
            (None, Some(dir)) => {
                return Err(format!(
                    "`actions.archive.dir`: {} must be an absolute path",
                    dir.display()
                ));
            }
            _ => return Err("`actions.archive`: give exactly one of `to` or `dir`".into()),
        };
        message_actions.push(MessageAction::Archive {
            rule: c.name.clone(),
            target,
        });
    }
    let verdict = verdicts.pop();
    let mut summary = Vec::new();
    if let Some(v) = &verdict {
        summary.push(match &v.text {
            Some(t) => format!("reject {t:?}"),
            None => v.action.as_str().to_string(),
        });
    }
    summary.extend(headers.iter().map(|h| format!("add_header {h:?}")));
    if let Some(p) = a.adjust_points {
        summary.push(format!("adjust_points {p:+}"));
    }
    if !skip.is_empty() {
        summary.push(format!("skip {}", skip.join(",")));
    }
    if let Some(s) = &smime {
        summary.push(format!(
            "smime sign={} encrypt={}",
            s.sign.map_or("policy", smime_rule_name),
            s.encrypt.map_or("policy", smime_rule_name)
        ));
    }
    for m in &message_actions {
        summary.push(m.kind().to_string());
    }
    Ok(Rule {
        name: c.name.clone(),
        when,
        verdict,
        headers,
        adjust_points: a.adjust_points.unwrap_or(0.0),
        skip,
        smime,
        message_actions,
        continue_: c.continue_,
        envelope_only,
        summary,
    })
}

fn smime_rule_name(r: SmimeRule) -> &'static str {
    match r {
        SmimeRule::Forbid => "forbid",
        SmimeRule::Allow => "allow",
        SmimeRule::Require => "require",
    }
}

/// "Name: value" with a valid field name and no line breaks.
fn header_field(f: &str) -> Result<(), String> {
    let ok = match f.split_once(':') {
        Some((name, value)) => {
            !name.is_empty()
                && name.bytes().all(|b| (0x21..0x7F).contains(&b) && b != b':')
                && !value.trim().is_empty()
                && !f.contains(['\r', '\n'])
                && f.len() <= 998
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`actions.add_header`: {f:?} is not a header field \"Name: value\" on one line"
        ))
    }
}
