//! Level of trust (inbound): trust the gateway *earned* from its own users' mail.
//!
//! Three kinds of memory, kept in a [`TrustBook`] the gateway loads from its store and
//! updates after each verdict (this crate does no SQL):
//! - **relationships**: every (local sender, external recipient) pair and every recipient
//!   domain our users write to, weighted by the number of messages and decaying with time
//!   (half-life, default 90 days);
//! - **sending servers**: which networks (IPv4 /24, IPv6 /64) delivered *authenticated* mail
//!   for a domain;
//! - **pins**: an operator's fixed level for a partner domain (`portcullis trust set`).
//!
//! The [`TrustStage`] gives a bonus (negative points) only when the sender's domain is
//! authenticated ([`Facts::authenticated_domain`], set by the auth stage): a forged From
//! of a partner earns nothing, it is only noted (`TRUST_UNAUTHENTICATED`, no points).
//!
//! The book also keeps each sending domain's TLS history (used by the TLS reputation
//! stage): the last verified client certificate and how many sessions showed one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::RwLock;

pub use crate::unix_now;
use crate::{Direction, Facts, MessageContext, Stage, StageFuture, Symbol, domain_of};

/// Default half-life of a relationship's weight.
pub const DEFAULT_HALF_LIFE_DAYS: f64 = 90.0;

/// A count that halves every half-life: `value` as of `at` (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Weight {
    pub value: f64,
    pub at: i64,
}

impl Weight {
    /// The weight as of `now`.
    pub fn at_time(&self, now: i64, half_life_secs: f64) -> f64 {
        let age = (now - self.at).max(0) as f64;
        self.value * 0.5f64.powf(age / half_life_secs)
    }

    /// One more message at `now`.
    pub fn bump(&mut self, now: i64, half_life_secs: f64) {
        self.value = self.at_time(now, half_life_secs) + 1.0;
        self.at = now;
    }
}

/// An operator's pinned trust for a domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pin {
    High,
    Medium,
    Low,
    /// No trust, whatever was learned.
    None,
}

impl Pin {
    pub fn as_str(self) -> &'static str {
        match self {
            Pin::High => "high",
            Pin::Medium => "medium",
            Pin::Low => "low",
            Pin::None => "none",
        }
    }

    /// Share of `TRUST_PINNED`'s points this level earns.
    pub fn factor(self) -> f64 {
        match self {
            Pin::High => 1.0,
            Pin::Medium => 0.5,
            Pin::Low => 0.25,
            Pin::None => 0.0,
        }
    }
}

impl std::str::FromStr for Pin {
    type Err = String;
    fn from_str(s: &str) -> Result<Pin, String> {
        match s.to_ascii_lowercase().as_str() {
            "high" => Ok(Pin::High),
            "medium" => Ok(Pin::Medium),
            "low" => Ok(Pin::Low),
            "none" => Ok(Pin::None),
            other => Err(format!(
                "unknown trust level {other:?}: use high, medium, low or none (or auto to unpin)"
            )),
        }
    }
}

/// A sending server network's record for one domain.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ServerSeen {
    pub messages: u64,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// A sending domain's TLS history (authenticated mail only).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TlsHistory {
    /// SHA-256 of the last verified client certificate.
    pub fingerprint: Option<String>,
    /// Sessions with a verified client certificate.
    pub verified: u64,
    /// Sessions without one (plaintext, no certificate, unverified chain).
    pub unverified: u64,
    pub last_seen: i64,
}

impl TlsHistory {
    /// The domain has always shown a verified certificate, often enough to count on it.
    pub fn always_verified(&self) -> bool {
        self.verified >= 2 && self.unverified == 0
    }
}

/// One changed row, for the gateway to persist.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Pair {
        local: String,
        remote: String,
        weight: Weight,
    },
    Domain {
        domain: String,
        weight: Weight,
    },
    Server {
        domain: String,
        network: String,
        seen: ServerSeen,
    },
    Tls {
        domain: String,
        history: TlsHistory,
    },
}

#[derive(Debug, Default)]
struct Book {
    pairs: HashMap<(String, String), Weight>,
    domains: HashMap<String, Weight>,
    pins: HashMap<String, Pin>,
    /// domain → network → record: a message asks about one domain's networks.
    servers: HashMap<String, HashMap<String, ServerSeen>>,
    tls: HashMap<String, TlsHistory>,
}

/// The gateway's trust memory, shared by the stages and the learning code.
#[derive(Debug)]
pub struct TrustBook {
    book: RwLock<Book>,
    half_life_secs: f64,
}

/// The network a sending server belongs to: /24 for IPv4, /64 for IPv6 (providers move
/// mail between neighbouring addresses).
pub fn network_of(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.0/24", o[0], o[1], o[2])
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => network_of(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

impl TrustBook {
    pub fn new(half_life_days: f64) -> TrustBook {
        TrustBook {
            book: RwLock::new(Book::default()),
            half_life_secs: half_life_days.max(1.0 / 24.0) * 86_400.0,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Book> {
        self.book.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Book> {
        self.book.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn half_life_secs(&self) -> f64 {
        self.half_life_secs
    }

    // --- loading (from the gateway's store) ---

    pub fn load_pair(&self, local: &str, remote: &str, weight: Weight) {
        self.write().pairs.insert(
            (local.to_ascii_lowercase(), remote.to_ascii_lowercase()),
            weight,
        );
    }

    pub fn load_domain(&self, domain: &str, weight: Weight) {
        self.write()
            .domains
            .insert(domain.to_ascii_lowercase(), weight);
    }

    pub fn load_server(&self, domain: &str, network: &str, seen: ServerSeen) {
        self.write()
            .servers
            .entry(domain.to_ascii_lowercase())
            .or_default()
            .insert(network.to_string(), seen);
    }

    pub fn load_tls(&self, domain: &str, history: TlsHistory) {
        self.write()
            .tls
            .insert(domain.to_ascii_lowercase(), history);
    }

    /// Replace all pins (the operator's table is small and re-read periodically).
    pub fn set_pins(&self, pins: HashMap<String, Pin>) {
        self.write().pins = pins;
    }

    // --- reading ---

    pub fn pair_weight(&self, local: &str, remote: &str, now: i64) -> f64 {
        let key = (local.to_ascii_lowercase(), remote.to_ascii_lowercase());
        self.read()
            .pairs
            .get(&key)
            .map_or(0.0, |w| w.at_time(now, self.half_life_secs))
    }

    pub fn domain_weight(&self, domain: &str, now: i64) -> f64 {
        self.read()
            .domains
            .get(&domain.to_ascii_lowercase())
            .map_or(0.0, |w| w.at_time(now, self.half_life_secs))
    }

    /// The pin of `domain`, else of its nearest pinned parent.
    pub fn pin(&self, domain: &str) -> Option<Pin> {
        let book = self.read();
        let mut d = domain.to_ascii_lowercase();
        loop {
            if let Some(p) = book.pins.get(&d) {
                return Some(*p);
            }
            match d.split_once('.') {
                Some((_, parent)) if parent.contains('.') => d = parent.to_string(),
                _ => return None,
            }
        }
    }

    /// (messages from this network, networks known for the domain).
    pub fn server_knowledge(&self, domain: &str, ip: IpAddr) -> (u64, usize) {
        let book = self.read();
        let Some(networks) = book.servers.get(&domain.to_ascii_lowercase()) else {
            return (0, 0);
        };
        let here = networks.get(&network_of(ip)).map_or(0, |s| s.messages);
        (here, networks.len())
    }

    pub fn tls_history(&self, domain: &str) -> Option<TlsHistory> {
        self.read().tls.get(&domain.to_ascii_lowercase()).cloned()
    }

    // --- learning (the gateway calls these after a message is stored) ---

    /// An outbound message from `sender` was accepted: every external recipient and its
    /// domain earn trust. `is_local` tells our own domains (mail between our users teaches
    /// nothing about the outside).
    pub fn learn_outbound(
        &self,
        sender: &str,
        recipients: &[String],
        is_local: impl Fn(&str) -> bool,
        now: i64,
    ) -> Vec<Change> {
        let sender = sender.to_ascii_lowercase();
        if sender.is_empty() {
            return Vec::new(); // bounces: no person wrote them
        }
        let mut changes = Vec::new();
        let mut book = self.write();
        for rcpt in recipients {
            let remote = rcpt.to_ascii_lowercase();
            let domain = domain_of(&remote);
            if domain.is_empty() || is_local(&domain) {
                continue;
            }
            let w = book
                .pairs
                .entry((sender.clone(), remote.clone()))
                .or_default();
            w.bump(now, self.half_life_secs);
            changes.push(Change::Pair {
                local: sender.clone(),
                remote,
                weight: *w,
            });
            let w = book.domains.entry(domain.clone()).or_default();
            w.bump(now, self.half_life_secs);
            changes.push(Change::Domain { domain, weight: *w });
        }
        changes
    }

    /// An inbound message authenticated for `domain` was accepted from `ip`: remember the
    /// server's network, and the session's TLS proof.
    pub fn learn_inbound(
        &self,
        domain: &str,
        ip: IpAddr,
        verified_cert: Option<&str>,
        now: i64,
    ) -> Vec<Change> {
        let domain = domain.to_ascii_lowercase();
        let network = network_of(ip);
        let mut book = self.write();
        let seen = book
            .servers
            .entry(domain.clone())
            .or_default()
            .entry(network.clone())
            .or_insert(ServerSeen {
                messages: 0,
                first_seen: now,
                last_seen: now,
            });
        seen.messages += 1;
        seen.last_seen = now;
        let seen = *seen;
        let tls = book.tls.entry(domain.clone()).or_default();
        match verified_cert {
            Some(fp) => {
                tls.verified += 1;
                tls.fingerprint = Some(fp.to_string());
            }
            None => tls.unverified += 1,
        }
        tls.last_seen = now;
        let history = tls.clone();
        vec![
            Change::Server {
                domain: domain.clone(),
                network,
                seen,
            },
            Change::Tls { domain, history },
        ]
    }
}

/// Scale for a relationship weight: 1 message → 0.33, 4 → 0.67, 18 → 0.9.
fn strength(weight: f64) -> f64 {
    weight / (weight + 2.0)
}

/// Below this a decayed relationship is forgotten.
const MIN_WEIGHT: f64 = 0.1;

/// The trust stage (inbound only).
pub struct TrustStage {
    pub book: std::sync::Arc<TrustBook>,
    /// Clock (unix seconds); a parameter so tests can age relationships.
    pub now: fn() -> i64,
}

/// The From: address of a message (lowercase), else the envelope sender.
pub fn from_address(ctx: &MessageContext<'_>) -> String {
    ctx.parsed
        .and_then(|m| m.from())
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::to_ascii_lowercase)
        .unwrap_or_else(|| ctx.envelope.mail_from.to_ascii_lowercase())
}

impl TrustStage {
    pub fn assess(&self, ctx: &MessageContext<'_>) -> Vec<Symbol> {
        let env = ctx.envelope;
        if env.direction != Direction::Inbound {
            return Vec::new();
        }
        let now = (self.now)();
        let from = from_address(ctx);
        let from_domain = domain_of(&from);
        let book = &self.book;
        let Some(domain) = authenticated(ctx.facts, &from_domain) else {
            // Say so when a message claims a sender we trust, for the operator's view.
            let claimed = book.domain_weight(&from_domain, now) >= MIN_WEIGHT
                || book.pin(&from_domain).is_some_and(|p| p != Pin::None);
            return claimed
                .then(|| Symbol::new("TRUST_UNAUTHENTICATED", from_domain))
                .into_iter()
                .collect();
        };
        let mut found = Vec::new();
        match book.pin(&domain) {
            Some(Pin::None) => {
                return vec![Symbol::new("TRUST_PINNED", "none").scaled(0.0)];
            }
            Some(pin) => {
                found.push(
                    Symbol::new("TRUST_PINNED", format!("{domain} {}", pin.as_str()))
                        .scaled(pin.factor()),
                );
            }
            None => {}
        }
        let pair = env
            .rcpt_to
            .iter()
            .map(|r| (r, book.pair_weight(r, &from, now)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        match pair {
            Some((local, w)) if w >= MIN_WEIGHT => found.push(
                Symbol::new(
                    "TRUST_CORRESPONDENT",
                    format!("{local} writes to {from} ({w:.1})"),
                )
                .scaled(strength(w)),
            ),
            _ => {
                let w = book.domain_weight(&domain, now);
                if w >= MIN_WEIGHT {
                    found.push(
                        Symbol::new("TRUST_KNOWN_DOMAIN", format!("{domain} ({w:.1})"))
                            .scaled(strength(w)),
                    );
                }
            }
        }
        let (here, known) = book.server_knowledge(&domain, env.client_ip);
        if here > 0 {
            found.push(Symbol::new(
                "TRUST_KNOWN_SERVER",
                format!(
                    "{} for {domain} ({here} messages)",
                    network_of(env.client_ip)
                ),
            ));
        } else if known > 0 {
            found.push(Symbol::new(
                "TRUST_NEW_SERVER",
                format!(
                    "{} is new for {domain} ({known} known)",
                    network_of(env.client_ip)
                ),
            ));
        }
        found
    }
}

/// The sender domain trust may be given to: the authenticated domain, when it is the
/// From domain (or its parent — mail from news.partner.example, authenticated by
/// partner.example's aligned DKIM, belongs to partner.example).
fn authenticated(facts: &Facts, from_domain: &str) -> Option<String> {
    let auth = facts.authenticated_domain.as_deref()?;
    (!from_domain.is_empty() && (from_domain == auth || from_domain.ends_with(&format!(".{auth}"))))
        .then(|| auth.to_string())
}

impl Stage for TrustStage {
    fn name(&self) -> &'static str {
        "trust"
    }

    fn check<'a>(&'a self, ctx: &'a MessageContext<'a>) -> StageFuture<'a> {
        Box::pin(async move { Ok(self.assess(ctx)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Envelope;
    use std::sync::Arc;

    const DAY: i64 = 86_400;

    fn env(ip: &str, from: &str, rcpt: &str) -> Envelope {
        Envelope {
            direction: Direction::Inbound,
            client_ip: ip.parse().unwrap(),
            helo: "mx.partner.test".into(),
            mail_from: from.into(),
            rcpt_to: vec![rcpt.into()],
            smtputf8: false,
            body_8bit: false,
            tls: None,
        }
    }

    fn run(book: &Arc<TrustBook>, e: &Envelope, auth: Option<&str>) -> Vec<Symbol> {
        let facts = Facts {
            authenticated_domain: auth.map(String::from),
            ..Facts::default()
        };
        let ctx = MessageContext {
            envelope: e,
            raw: b"",
            wire: b"",
            parsed: None,
            facts: &facts,
        };
        TrustStage {
            book: book.clone(),
            now: || 1_000 * DAY,
        }
        .assess(&ctx)
    }

    fn names(s: &[Symbol]) -> Vec<&'static str> {
        s.iter().map(|s| s.name).collect()
    }

    #[test]
    fn weights_decay_with_the_half_life() {
        let mut w = Weight::default();
        w.bump(0, 10.0 * DAY as f64);
        w.bump(0, 10.0 * DAY as f64);
        assert_eq!(w.at_time(0, 10.0 * DAY as f64), 2.0);
        assert!((w.at_time(10 * DAY, 10.0 * DAY as f64) - 1.0).abs() < 1e-9);
        w.bump(10 * DAY, 10.0 * DAY as f64);
        assert!((w.value - 2.0).abs() < 1e-9);
    }

    #[test]
    fn a_correspondent_earns_trust_only_when_authenticated() {
        let book = Arc::new(TrustBook::new(90.0));
        let now = 1_000 * DAY;
        let ch = book.learn_outbound(
            "Alice@Example.test",
            &["bob@partner.test".into(), "carol@example.test".into()],
            |d| d == "example.test",
            now,
        );
        assert_eq!(ch.len(), 2, "local recipients teach nothing: {ch:?}");
        let e = env("198.51.100.7", "bob@partner.test", "alice@example.test");
        let s = run(&book, &e, Some("partner.test"));
        assert_eq!(names(&s), ["TRUST_CORRESPONDENT"]);
        assert!(s[0].points < 0.0);
        // the same From, not authenticated: nothing but a note
        let s = run(&book, &e, None);
        assert_eq!(names(&s), ["TRUST_UNAUTHENTICATED"]);
        assert_eq!(s[0].points, 0.0);
        // authenticated for another domain: no trust for partner.test
        let s = run(&book, &e, Some("evil.test"));
        assert_eq!(names(&s), ["TRUST_UNAUTHENTICATED"]);
        // another person of the partner domain: the domain relationship
        let e2 = env("198.51.100.7", "dave@partner.test", "alice@example.test");
        assert_eq!(
            names(&run(&book, &e2, Some("partner.test"))),
            ["TRUST_KNOWN_DOMAIN"]
        );
    }

    #[test]
    fn more_messages_more_trust_and_it_fades() {
        let book = Arc::new(TrustBook::new(90.0));
        let e = env("198.51.100.7", "bob@partner.test", "alice@example.test");
        book.learn_outbound(
            "alice@example.test",
            &["bob@partner.test".into()],
            |_| false,
            1_000 * DAY,
        );
        let one = run(&book, &e, Some("partner.test"))[0].points;
        for _ in 0..9 {
            book.learn_outbound(
                "alice@example.test",
                &["bob@partner.test".into()],
                |_| false,
                1_000 * DAY,
            );
        }
        let ten = run(&book, &e, Some("partner.test"))[0].points;
        assert!(ten < one, "{ten} vs {one}");
        // two years of silence: forgotten
        let old = Arc::new(TrustBook::new(90.0));
        old.learn_outbound(
            "alice@example.test",
            &["bob@partner.test".into()],
            |_| false,
            270 * DAY,
        );
        assert!(run(&old, &e, Some("partner.test")).is_empty());
    }

    #[test]
    fn known_servers_add_trust_new_ones_do_not() {
        let book = Arc::new(TrustBook::new(90.0));
        book.learn_inbound("partner.test", "198.51.100.7".parse().unwrap(), None, 0);
        let same_net = env("198.51.100.200", "x@partner.test", "a@example.test");
        assert_eq!(
            names(&run(&book, &same_net, Some("partner.test"))),
            ["TRUST_KNOWN_SERVER"]
        );
        let other = env("203.0.113.9", "x@partner.test", "a@example.test");
        let s = run(&book, &other, Some("partner.test"));
        assert_eq!(names(&s), ["TRUST_NEW_SERVER"]);
        assert_eq!(s[0].points, 0.0);
        assert_eq!(
            network_of("2001:db8:1:2:3::9".parse().unwrap()),
            "2001:db8:1:2::/64"
        );
        assert_eq!(
            network_of("::ffff:192.0.2.9".parse().unwrap()),
            "192.0.2.0/24"
        );
    }

    #[test]
    fn pins_override_learning_and_cover_subdomains() {
        let book = Arc::new(TrustBook::new(90.0));
        book.set_pins(HashMap::from([("partner.test".to_string(), Pin::High)]));
        let e = env("203.0.113.9", "x@news.partner.test", "a@example.test");
        let s = run(&book, &e, Some("news.partner.test"));
        assert_eq!(names(&s), ["TRUST_PINNED"]);
        assert_eq!(s[0].points, crate::symbols::default_points("TRUST_PINNED"));
        // pinned "none" silences learned trust
        book.learn_outbound(
            "a@example.test",
            &["x@news.partner.test".into()],
            |_| false,
            1_000 * DAY,
        );
        book.set_pins(HashMap::from([("partner.test".to_string(), Pin::None)]));
        let s = run(&book, &e, Some("news.partner.test"));
        assert_eq!(s.iter().map(|s| s.points).sum::<f64>(), 0.0);
        assert!("sometimes".parse::<Pin>().is_err());
    }
}
