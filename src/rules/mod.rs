//! Ordered rules (`[[rules]]`): conditions on a message and what to do with it.
//!
//! A [`RuleSet`] is compiled once when the config is loaded ([`RuleSet::compile`]);
//! [`RuleSet::evaluate`] is the one evaluation, used at RCPT TO (envelope facts only), by
//! the pipeline's rules step (after the checks) and by `portcullis explain`, so what is
//! explained is what the gateway does.
//!
//! Evaluation, for one recipient: the rules in their written order; a matching rule with
//! `continue = true` adds its actions and evaluation goes on; the first matching rule
//! without it adds its actions and ends the evaluation, and its verdict action (if it has
//! one) decides. At RCPT TO only the rules whose conditions need nothing but the envelope
//! and the connection are looked at (the others cannot be known yet and are passed over).

pub mod config;
pub mod pattern;
pub use filters::sniff;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use filters::{Action, Direction, Envelope, ScoreCard};
use ipnet::IpNet;

pub use config::{RuleConfig, RulesFile, default_rules};
use pattern::{Address, AddressPattern, Glob};
use sniff::Kinds;

use crate::config::SmimeRule;

/// The compiled rules, in their order.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Some rule looks at attachments: only then are they sniffed.
    needs_attachments: bool,
    /// Which rules can match a recipient or sender at all (see [`Index`]).
    index: Index,
}

/// Rules by the addresses and domains their `recipient` (else `sender`) condition names,
/// when every entry of that condition has one (exact addresses, `@domain`, `.parent`,
/// globs ending in `@domain` or `.parent` after an `@`): a few hash lookups find the rules
/// a message can match, so a thousand partner rules cost little more than ten. Rules
/// without such a condition are always looked at.
#[derive(Debug, Default)]
struct Index {
    /// [sender, recipient] × [exact address, domain, `.parent` suffix] → rule numbers.
    keys: [[HashMap<Box<str>, Vec<u32>>; 3]; 2],
    /// Rules with no indexed condition: [those decided at RCPT TO, all].
    always: [Vec<u32>; 2],
}

const SENDER: usize = 0;
const RECIPIENT: usize = 1;

impl Index {
    fn build(rules: &[Rule]) -> Index {
        let mut index = Index::default();
        for (n, rule) in rules.iter().enumerate() {
            let n = n as u32;
            let hashable = |ps: &[AddressPattern]| {
                !ps.is_empty() && ps.iter().all(|p| p.index_key().is_some())
            };
            let (field, patterns) = if hashable(&rule.when.recipient) {
                (RECIPIENT, &rule.when.recipient)
            } else if hashable(&rule.when.sender) {
                (SENDER, &rule.when.sender)
            } else {
                if rule.envelope_only {
                    index.always[0].push(n);
                }
                index.always[1].push(n);
                continue;
            };
            for p in patterns {
                let (kind, key) = p.index_key().expect("hashable patterns only");
                let list = index.keys[field][kind].entry(key.into()).or_default();
                if list.last() != Some(&n) {
                    list.push(n);
                }
            }
        }
        index
    }

    /// The numbers of the rules that may match, in rule order: the few found by the
    /// addresses, merged into the (sorted) ones always looked at.
    fn candidates<'a>(
        &'a self,
        sender: &Address,
        rcpt: &Address,
        at_rcpt: bool,
    ) -> impl Iterator<Item = u32> + 'a {
        let mut found = self.found(sender, rcpt).into_iter().peekable();
        let always = &self.always[if at_rcpt { 0 } else { 1 }];
        let mut always = always.iter().copied().peekable();
        std::iter::from_fn(move || match (always.peek(), found.peek()) {
            (Some(a), Some(f)) if a <= f => always.next(),
            (_, Some(_)) => found.next(),
            (Some(_), None) => always.next(),
            (None, None) => None,
        })
    }

    /// The indexed rules the addresses name, sorted.
    fn found(&self, sender: &Address, rcpt: &Address) -> Vec<u32> {
        let mut out = Vec::new();
        for (field, a) in [(SENDER, sender), (RECIPIENT, rcpt)] {
            let [exact, domain, parents] = &self.keys[field];
            let d = a.domain();
            out.extend(exact.get(a.address.as_str()).into_iter().flatten());
            out.extend(domain.get(d).into_iter().flatten());
            if !parents.is_empty() {
                for (i, _) in d.match_indices('.') {
                    out.extend(parents.get(&d[i..]).into_iter().flatten());
                }
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[derive(Debug)]
struct Rule {
    name: String,
    when: Conditions,
    verdict: Option<RuleVerdict>,
    headers: Vec<String>,
    adjust_points: f64,
    skip: Vec<&'static str>,
    smime: Option<SmimeOverride>,
    message_actions: Vec<MessageAction>,
    continue_: bool,
    /// Every condition is known at RCPT TO.
    envelope_only: bool,
    /// The actions, for [`RuleMatch::actions`].
    summary: Vec<String>,
}

/// A rule's verdict: the action, and for `reject` the operator's text.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleVerdict {
    pub action: Action,
    /// `reject = "text"`: the text of the `550 5.7.1` reply.
    pub text: Option<String>,
}

/// `smime = { sign, encrypt }`: overrides the sender's `[[smime.policy]]` for matching
/// outbound mail; a value not given keeps the policy's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmimeOverride {
    pub sign: Option<SmimeRule>,
    pub encrypt: Option<SmimeRule>,
}

/// Which attachments `sign_attachments` is about: by content kind or by file name.
#[derive(Debug, Clone, PartialEq)]
pub struct AttachmentSelector {
    pub kinds: Kinds,
    /// File name globs (case-insensitive).
    pub names: Vec<Glob>,
}

impl AttachmentSelector {
    /// Whether an attachment with these bytes and this file name is chosen.
    pub fn selects(&self, data: &[u8], file_name: Option<&str>) -> bool {
        (self.kinds.0 != 0 && sniff::kinds_of(data).intersects(self.kinds))
            || file_name.is_some_and(|n| {
                let n = n.to_ascii_lowercase();
                self.names.iter().any(|g| g.matches(&n))
            })
    }
}

/// Where `archive` sends a copy.
#[derive(Debug, Clone, PartialEq)]
pub enum ArchiveTarget {
    /// A copy to this address.
    To(String),
    /// A file in this (absolute) directory.
    Dir(PathBuf),
}

/// A change to what is stored, decided by a rule and carried per stored copy
/// ([`crate::queue::MessageCopy::message_actions`]). Applied in the store phase by the
/// message actions (`src/actions/`); the rules only decide and validate them.
#[derive(Debug, Clone, PartialEq)]
pub enum MessageAction {
    /// Append a disclaimer: `text` to text parts, `html` (else `text`, escaped) to HTML
    /// parts.
    Disclaimer {
        rule: String,
        text: String,
        html: Option<String>,
    },
    /// S/MIME-sign the chosen attachments with `identity`'s certificate and key from the
    /// certificate store (lowercase address).
    SignAttachments {
        rule: String,
        select: AttachmentSelector,
        identity: String,
    },
    /// Keep a copy of the message.
    Archive { rule: String, target: ArchiveTarget },
}

impl MessageAction {
    pub fn kind(&self) -> &'static str {
        match self {
            MessageAction::Disclaimer { .. } => "disclaimer",
            MessageAction::SignAttachments { .. } => "sign_attachments",
            MessageAction::Archive { .. } => "archive",
        }
    }

    pub fn rule(&self) -> &str {
        match self {
            MessageAction::Disclaimer { rule, .. }
            | MessageAction::SignAttachments { rule, .. }
            | MessageAction::Archive { rule, .. } => rule,
        }
    }
}

/// One rule that matched, for the log line and `portcullis explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleMatch {
    /// The rule's name.
    pub rule: String,
    /// The conditions that held, with the values they held for (e.g.
    /// `recipient "sales@example.test" ~ @example.test; score 9.00 in [8, -)`), or
    /// "no conditions".
    pub condition: String,
    /// Its actions, e.g. `["quarantine", "add_header \"X-Partner: yes\""]`.
    pub actions: Vec<String>,
    /// The recipients it matched for.
    pub recipients: Vec<String>,
    /// Decided at RCPT TO (envelope conditions only).
    pub at_rcpt: bool,
}

/// The TLS of the client's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsState {
    None,
    /// Any TLS (`verified_cert` included).
    Any,
    VerifiedCert,
}

impl TlsState {
    const NAMES: &'static [(&'static str, TlsState)] = &[
        ("none", TlsState::None),
        ("any", TlsState::Any),
        ("verified_cert", TlsState::VerifiedCert),
    ];

    fn of(tls: Option<&filters::TlsFacts>) -> TlsState {
        match tls {
            None => TlsState::None,
            Some(t) if t.peer_cert_verified => TlsState::VerifiedCert,
            Some(_) => TlsState::Any,
        }
    }

    /// Whether a session in state `self` satisfies the condition `wanted`.
    fn satisfies(self, wanted: TlsState) -> bool {
        match wanted {
            TlsState::None => self == TlsState::None,
            TlsState::Any => self != TlsState::None,
            TlsState::VerifiedCert => self == TlsState::VerifiedCert,
        }
    }
}

/// The level of trust, from the trust stage's points on the card (its symbols' points
/// summed: at most -3 high, at most -1.5 medium, below 0 low, else none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustLevel {
    None,
    Low,
    Medium,
    High,
}

impl TrustLevel {
    const NAMES: &'static [(&'static str, TrustLevel)] = &[
        ("none", TrustLevel::None),
        ("low", TrustLevel::Low),
        ("medium", TrustLevel::Medium),
        ("high", TrustLevel::High),
    ];

    pub fn of(card: &ScoreCard) -> TrustLevel {
        let points: f64 = card
            .symbols
            .iter()
            .filter(|s| s.name.starts_with("TRUST_"))
            .map(|s| s.points)
            .sum();
        if points <= -3.0 {
            TrustLevel::High
        } else if points <= -1.5 {
            TrustLevel::Medium
        } else if points < 0.0 {
            TrustLevel::Low
        } else {
            TrustLevel::None
        }
    }
}

/// S/MIME as the unwrap step reported it (its symbols).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmimeState {
    /// Decrypted, or encrypted and undecryptable.
    Encrypted,
    SignedValid,
    /// A signature that does not verify or whose chain is not trusted.
    SignedInvalid,
    Unsigned,
}

impl SmimeState {
    const NAMES: &'static [(&'static str, SmimeState)] = &[
        ("encrypted", SmimeState::Encrypted),
        ("signed_valid", SmimeState::SignedValid),
        ("signed_invalid", SmimeState::SignedInvalid),
        ("unsigned", SmimeState::Unsigned),
    ];

    fn holds(self, card: &ScoreCard) -> bool {
        let has = |names: &[&str]| card.symbols.iter().any(|s| names.contains(&s.name));
        match self {
            SmimeState::Encrypted => has(&["SMIME_DECRYPTED", "SMIME_UNDECRYPTABLE"]),
            SmimeState::SignedValid => has(&["SMIME_SIGNED_VALID"]),
            SmimeState::SignedInvalid => {
                has(&["SMIME_SIGNED_INVALID", "SMIME_SIGNED_UNTRUSTED_CHAIN"])
            }
            SmimeState::Unsigned => !has(&[
                "SMIME_SIGNED_VALID",
                "SMIME_SIGNED_INVALID",
                "SMIME_SIGNED_UNTRUSTED_CHAIN",
            ]),
        }
    }
}

/// A range condition: at least the first (inclusive), below the second (exclusive).
type Bounds<T> = (Option<T>, Option<T>);

/// A rule's conditions, compiled. An empty list is an absent condition.
#[derive(Debug, Default)]
struct Conditions {
    direction: Option<Direction>,
    client: Vec<IpNet>,
    helo: Vec<Glob>,
    tls: Vec<TlsState>,
    authenticated: Option<bool>,
    sender: Vec<AddressPattern>,
    recipient: Vec<AddressPattern>,
    from: Vec<AddressPattern>,
    symbols: Vec<String>,
    score: Option<Bounds<f64>>,
    trust: Vec<TrustLevel>,
    attachment: Option<Kinds>,
    size: Option<Bounds<u64>>,
    smime: Vec<SmimeState>,
}

impl Conditions {
    fn envelope_only(&self) -> bool {
        self.authenticated.is_none()
            && self.from.is_empty()
            && self.symbols.is_empty()
            && self.score.is_none()
            && self.trust.is_empty()
            && self.attachment.is_none()
            && self.size.is_none()
            && self.smime.is_empty()
    }
}

/// What is known at RCPT TO: the envelope and the connection. Prepared once per message
/// (lowercased), so that evaluating a rule allocates nothing.
#[derive(Debug, Clone)]
pub struct EnvelopeFacts {
    pub direction: Direction,
    pub client_ip: IpAddr,
    /// Lowercase.
    pub helo: String,
    pub tls: TlsState,
    pub sender: Address,
}

impl EnvelopeFacts {
    pub fn new(
        direction: Direction,
        client_ip: IpAddr,
        helo: &str,
        tls: Option<&filters::TlsFacts>,
        sender: &str,
    ) -> EnvelopeFacts {
        let client_ip = match client_ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(client_ip),
            v4 => v4,
        };
        EnvelopeFacts {
            direction,
            client_ip,
            helo: helo.to_ascii_lowercase(),
            tls: TlsState::of(tls),
            sender: Address::new(sender),
        }
    }

    pub fn of(envelope: &Envelope) -> EnvelopeFacts {
        EnvelopeFacts::new(
            envelope.direction,
            envelope.client_ip,
            &envelope.helo,
            envelope.tls.as_ref(),
            &envelope.mail_from,
        )
    }
}

/// What is known after the checks ran.
#[derive(Debug, Clone)]
pub struct MessageFacts<'a> {
    /// The header From address.
    pub from: Option<Address>,
    pub authenticated_domain: Option<&'a str>,
    pub card: &'a ScoreCard,
    /// `card.score()`, once.
    pub score: f64,
    pub trust: TrustLevel,
    pub attachments: Kinds,
    /// The message as received, in bytes.
    pub size: u64,
}

impl<'a> MessageFacts<'a> {
    /// The facts of a judged message; attachments are sniffed only when `rules` needs
    /// them.
    pub fn new(
        rules: &RuleSet,
        parsed: Option<&mail_parser::Message<'_>>,
        facts: &'a filters::Facts,
        card: &'a ScoreCard,
        size: usize,
    ) -> MessageFacts<'a> {
        let from = parsed
            .and_then(|m| m.from())
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(Address::new);
        MessageFacts {
            from,
            authenticated_domain: facts.authenticated_domain.as_deref(),
            card,
            score: card.score(),
            trust: TrustLevel::of(card),
            attachments: match parsed {
                Some(m) if rules.needs_attachments => sniff::message_kinds(m),
                _ => Kinds::default(),
            },
            size: size as u64,
        }
    }
}

/// What the rules decided for one recipient.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Evaluation {
    /// The verdict of the rule that ended the evaluation, with its name; `None`: the
    /// thresholds decide.
    pub verdict: Option<(RuleVerdict, String)>,
    /// Stages that do not run (from rules decided at RCPT TO).
    pub skip: Vec<&'static str>,
    /// Header fields to add to this recipient's copy.
    pub headers: Vec<String>,
    /// Points to add to the score before the thresholds.
    pub points: f64,
    pub smime: Option<SmimeOverride>,
    pub message_actions: Vec<MessageAction>,
    pub matches: Vec<RuleMatch>,
}

impl RuleSet {
    fn new(rules: Vec<Rule>) -> RuleSet {
        let needs_attachments = rules.iter().any(|r| r.when.attachment.is_some());
        RuleSet {
            index: Index::build(&rules),
            rules,
            needs_attachments,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// THE evaluation for one recipient. `message`: `None` at RCPT TO (only the rules that
    /// need nothing more are looked at), else the facts after the checks.
    pub fn evaluate(
        &self,
        env: &EnvelopeFacts,
        rcpt: &Address,
        message: Option<&MessageFacts<'_>>,
    ) -> Evaluation {
        let mut out = Evaluation::default();
        for n in self.index.candidates(&env.sender, rcpt, message.is_none()) {
            let rule = &self.rules[n as usize];
            if message.is_none() && !rule.envelope_only {
                continue;
            }
            if !rule.matches(env, rcpt, message, out.points) {
                continue;
            }
            out.matches.push(RuleMatch {
                rule: rule.name.clone(),
                condition: rule.describe(env, rcpt, message, out.points),
                actions: rule.summary.clone(),
                recipients: vec![rcpt.address.clone()],
                at_rcpt: message.is_none(),
            });
            out.headers.extend(rule.headers.iter().cloned());
            out.points += rule.adjust_points;
            for s in &rule.skip {
                if !out.skip.contains(s) {
                    out.skip.push(s);
                }
            }
            if let Some(s) = rule.smime {
                let mut merged = out.smime.unwrap_or(SmimeOverride {
                    sign: None,
                    encrypt: None,
                });
                merged.sign = s.sign.or(merged.sign);
                merged.encrypt = s.encrypt.or(merged.encrypt);
                out.smime = Some(merged);
            }
            out.message_actions
                .extend(rule.message_actions.iter().cloned());
            if !rule.continue_ {
                out.verdict = rule.verdict.clone().map(|v| (v, rule.name.clone()));
                break;
            }
        }
        out
    }
}

fn in_range<T: PartialOrd + Copy>(v: T, r: Bounds<T>) -> bool {
    r.0.is_none_or(|min| v >= min) && r.1.is_none_or(|max| v < max)
}

impl Rule {
    /// Cheap conditions first: the envelope's, then the message's.
    fn matches(
        &self,
        env: &EnvelopeFacts,
        rcpt: &Address,
        msg: Option<&MessageFacts<'_>>,
        points: f64,
    ) -> bool {
        let w = &self.when;
        let any_addr = |ps: &[AddressPattern], a: &Address| ps.iter().any(|p| a.matches(p));
        if w.direction.is_some_and(|d| d != env.direction)
            || (!w.client.is_empty() && !w.client.iter().any(|n| n.contains(&env.client_ip)))
            || (!w.tls.is_empty() && !w.tls.iter().any(|t| env.tls.satisfies(*t)))
            || (!w.recipient.is_empty() && !any_addr(&w.recipient, rcpt))
            || (!w.sender.is_empty() && !any_addr(&w.sender, &env.sender))
            || (!w.helo.is_empty() && !w.helo.iter().any(|g| g.matches(&env.helo)))
        {
            return false;
        }
        if self.envelope_only {
            return true;
        }
        let Some(m) = msg else { return false };
        if w.authenticated
            .is_some_and(|a| a != m.authenticated_domain.is_some())
            || w.score.is_some_and(|r| !in_range(m.score + points, r))
            || w.size.is_some_and(|r| !in_range(m.size, r))
            || w.attachment.is_some_and(|k| !m.attachments.intersects(k))
            || (!w.trust.is_empty() && !w.trust.contains(&m.trust))
            || (!w.symbols.is_empty()
                && !m
                    .card
                    .symbols
                    .iter()
                    .any(|s| w.symbols.iter().any(|n| n == s.name)))
            || (!w.smime.is_empty() && !w.smime.iter().any(|s| s.holds(m.card)))
        {
            return false;
        }
        if !w.from.is_empty() {
            match &m.from {
                Some(f) if any_addr(&w.from, f) => {}
                _ => return false,
            }
        }
        true
    }

    /// Why a matching rule matched: each condition with the value that satisfied it.
    fn describe(
        &self,
        env: &EnvelopeFacts,
        rcpt: &Address,
        msg: Option<&MessageFacts<'_>>,
        points: f64,
    ) -> String {
        let w = &self.when;
        let mut parts: Vec<String> = Vec::new();
        let pattern_of = |ps: &[AddressPattern], a: &Address| {
            ps.iter()
                .find(|p| a.matches(p))
                .map(describe_pattern)
                .unwrap_or_default()
        };
        if let Some(d) = w.direction {
            parts.push(format!("direction {}", d.as_str()));
        }
        if let Some(n) = w.client.iter().find(|n| n.contains(&env.client_ip)) {
            parts.push(format!("client {} in {n}", env.client_ip));
        }
        if !w.helo.is_empty() {
            parts.push(format!("helo {:?}", env.helo));
        }
        if !w.tls.is_empty() {
            parts.push(format!("tls {:?}", env.tls));
        }
        if !w.sender.is_empty() {
            parts.push(format!(
                "sender {:?} ~ {}",
                env.sender.address,
                pattern_of(&w.sender, &env.sender)
            ));
        }
        if !w.recipient.is_empty() {
            parts.push(format!(
                "recipient {:?} ~ {}",
                rcpt.address,
                pattern_of(&w.recipient, rcpt)
            ));
        }
        if let Some(m) = msg {
            if let Some(a) = w.authenticated {
                parts.push(format!("authenticated {a}"));
            }
            if let (false, Some(f)) = (w.from.is_empty(), &m.from) {
                parts.push(format!("from {:?} ~ {}", f.address, pattern_of(&w.from, f)));
            }
            if !w.symbols.is_empty() {
                let found: Vec<&str> = m
                    .card
                    .symbols
                    .iter()
                    .filter(|s| w.symbols.iter().any(|n| n == s.name))
                    .map(|s| s.name)
                    .collect();
                parts.push(format!("symbols {}", found.join(",")));
            }
            if let Some((lo, hi)) = w.score {
                parts.push(format!(
                    "score {:.2} in [{}, {})",
                    m.score + points,
                    lo.map_or("-".into(), |v| v.to_string()),
                    hi.map_or("-".into(), |v| v.to_string())
                ));
            }
            if !w.trust.is_empty() {
                parts.push(format!("trust {:?}", m.trust));
            }
            if let Some(k) = w.attachment {
                let found = Kinds(m.attachments.0 & k.0);
                parts.push(format!("attachment {}", found.names().join(",")));
            }
            if w.size.is_some() {
                parts.push(format!("size {}", m.size));
            }
            if !w.smime.is_empty() {
                let held: Vec<String> = w
                    .smime
                    .iter()
                    .filter(|s| s.holds(m.card))
                    .map(|s| format!("{s:?}"))
                    .collect();
                parts.push(format!("smime {}", held.join(",")));
            }
        }
        if parts.is_empty() {
            "no conditions".into()
        } else {
            parts.join("; ")
        }
    }
}

fn describe_pattern(p: &AddressPattern) -> String {
    match p {
        AddressPattern::Exact(a) if a.is_empty() => "<>".into(),
        AddressPattern::Exact(a) => a.clone(),
        AddressPattern::Domain(d) => format!("@{d}"),
        AddressPattern::Subdomains(s) => s.clone(),
        AddressPattern::Glob(_) => "a glob".into(),
        AddressPattern::Regex(r) => format!("~{}", r.as_str()),
    }
}

#[cfg(test)]
mod tests;
