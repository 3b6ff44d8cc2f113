//! Operators' allow and block lists: which senders a recipient (or everyone) always wants,
//! or never.
//!
//! An entry names a sender — an address (`bob@partner.example`), a domain
//! (`@partner.example`) or a client network (`192.0.2.0/24`) — and whom it is for: every
//! recipient, the recipients of one domain, or one recipient address.
//!
//! - A **block** entry needs no proof: the envelope sender, the From address or the client's
//!   address matching it is enough (a forger gains nothing by claiming to be blocked). It
//!   forces a reject (`LIST_BLOCK`) when it covers any recipient of the message.
//! - An **allow** entry for an address or domain applies only when the sender is
//!   *authenticated* for it (DMARC-aligned SPF or DKIM pass: [`Facts::authenticated_domain`]),
//!   so a forged From of an allowed partner gets nothing. A network entry needs no more than
//!   the TCP connection. It reports `LIST_ALLOW` (strongly negative points) and tells the
//!   pipeline to skip the spam filters (Bayes) — never virus scanning or authentication — and
//!   applies only when it covers every recipient (one recipient's partner is not everyone's).
//!
//! The stage reads the lists from memory; the gateway's list store loads them and replaces
//! them at once when an operator changes them.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use ipnet::IpNet;

use crate::{
    Facts, Findings, FindingsFuture, MessageContext, Stage, StageFuture, Symbol, domain_of,
};

/// Which list an entry is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ListKind {
    Allow,
    Block,
}

impl ListKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ListKind::Allow => "allow",
            ListKind::Block => "block",
        }
    }

    pub fn parse(s: &str) -> Result<ListKind, String> {
        match s.to_ascii_lowercase().as_str() {
            "allow" => Ok(ListKind::Allow),
            "block" => Ok(ListKind::Block),
            _ => Err(format!("{s:?} is not a list (allow or block)")),
        }
    }
}

/// Whom an entry is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sender {
    /// One address, lowercase.
    Address(String),
    /// Every address of one domain (the domain itself, not its subdomains), lowercase.
    Domain(String),
    /// Every client in a network.
    Network(IpNet),
}

/// Longest address or domain an entry may name (RFC 5321's path limit).
pub const MAX_NAME_LEN: usize = 256;

fn check_domain(d: &str, what: &str) -> Result<String, String> {
    let d = d.trim().trim_end_matches('.').to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= MAX_NAME_LEN
        && d.contains('.')
        && !d.starts_with('.')
        && !d.contains("..")
        && d.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_');
    if ok {
        Ok(d)
    } else {
        Err(format!(
            "{what:?} is not a domain name (e.g. partner.example)"
        ))
    }
}

fn check_address(a: &str) -> Result<String, String> {
    let a = a.trim().to_ascii_lowercase();
    let Some((local, domain)) = a.rsplit_once('@') else {
        return Err(format!(
            "{a:?} is not an address (e.g. bob@partner.example)"
        ));
    };
    if local.is_empty()
        || a.len() > MAX_NAME_LEN
        || local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
    {
        return Err(format!(
            "{a:?} is not an address (e.g. bob@partner.example)"
        ));
    }
    let domain = check_domain(domain, &a)?;
    Ok(format!("{local}@{domain}"))
}

impl Sender {
    /// `bob@partner.example`, `@partner.example` or a network (`192.0.2.0/24`, or one
    /// address).
    pub fn parse(s: &str) -> Result<Sender, String> {
        let s = s.trim();
        if let Some(domain) = s.strip_prefix('@') {
            return Ok(Sender::Domain(check_domain(domain, s)?));
        }
        if s.contains('@') {
            return Ok(Sender::Address(check_address(s)?));
        }
        if let Ok(net) = s.parse::<IpNet>() {
            return Ok(Sender::Network(net.trunc()));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Ok(Sender::Network(IpNet::from(ip)));
        }
        Err(format!(
            "{s:?} is not a sender: give an address (bob@partner.example), a domain \
             (@partner.example) or a network (192.0.2.0/24)"
        ))
    }

    /// As `parse` reads it.
    pub fn text(&self) -> String {
        match self {
            Sender::Address(a) => a.clone(),
            Sender::Domain(d) => format!("@{d}"),
            Sender::Network(n) => n.to_string(),
        }
    }
}

/// Whom an entry is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every recipient.
    Global,
    /// The recipients of one domain.
    Domain(String),
    /// One recipient.
    Address(String),
}

impl Scope {
    /// `None` or "" → every recipient; `example.test` or `@example.test` → a domain's
    /// recipients; `user@example.test` → one recipient.
    pub fn parse(s: Option<&str>) -> Result<Scope, String> {
        let s = s.map(str::trim).unwrap_or("");
        if s.is_empty() || s.eq_ignore_ascii_case("global") {
            Ok(Scope::Global)
        } else if let Some(d) = s.strip_prefix('@') {
            Ok(Scope::Domain(check_domain(d, s)?))
        } else if s.contains('@') {
            Ok(Scope::Address(check_address(s)?))
        } else {
            Ok(Scope::Domain(check_domain(s, s)?))
        }
    }

    /// "" for every recipient, else the domain or address (as stored).
    pub fn text(&self) -> String {
        match self {
            Scope::Global => String::new(),
            Scope::Domain(d) => d.clone(),
            Scope::Address(a) => a.clone(),
        }
    }

    /// Whether the entry is for this recipient (lowercase address).
    pub fn covers(&self, rcpt: &str) -> bool {
        match self {
            Scope::Global => true,
            Scope::Domain(d) => domain_of(rcpt) == *d,
            Scope::Address(a) => rcpt.eq_ignore_ascii_case(a),
        }
    }
}

/// One entry of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The store's id, for the symbol's detail and for removing it.
    pub id: i64,
    pub kind: ListKind,
    pub sender: Sender,
    pub scope: Scope,
    /// Unix seconds after which the entry no longer applies.
    pub expires_at: Option<i64>,
}

impl Entry {
    fn live(&self, now: i64) -> bool {
        self.expires_at.is_none_or(|t| now < t)
    }

    /// `#12 bob@partner.example for everyone`: the entry as logs and symbols name it.
    pub fn describe(&self) -> String {
        let scope = match &self.scope {
            Scope::Global => "everyone".to_string(),
            s => s.text(),
        };
        format!("#{} {} for {scope}", self.id, self.sender.text())
    }
}

/// What the lists say about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'a> {
    /// No entry applies.
    None,
    Allow(&'a Entry),
    Block(&'a Entry),
}

/// Who sent a message, as far as the lists look.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    /// Envelope sender (MAIL FROM), empty for the null sender.
    pub mail_from: &'a str,
    /// The From: address, when there is one.
    pub header_from: Option<&'a str>,
    pub client_ip: IpAddr,
    /// The From domain authenticated by DMARC-aligned SPF or DKIM.
    pub authenticated_domain: Option<&'a str>,
}

/// An IPv4-mapped IPv6 address as the IPv4 address it carries (network entries are written
/// in IPv4).
fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Every entry, indexed for lookups per message.
#[derive(Debug, Default)]
pub struct ListSet {
    by_address: HashMap<String, Vec<Entry>>,
    by_domain: HashMap<String, Vec<Entry>>,
    networks: Vec<Entry>,
    len: usize,
}

impl ListSet {
    pub fn new(entries: impl IntoIterator<Item = Entry>) -> ListSet {
        let mut set = ListSet::default();
        for e in entries {
            set.len += 1;
            match &e.sender {
                Sender::Address(a) => set.by_address.entry(a.clone()).or_default().push(e),
                Sender::Domain(d) => set.by_domain.entry(d.clone()).or_default().push(e),
                Sender::Network(_) => set.networks.push(e),
            }
        }
        set
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A block entry on the envelope alone — the envelope sender's address or domain, or the
    /// client's network — that covers this recipient: the session refuses that recipient at
    /// RCPT TO, before any data, while the message's other recipients go on. (An entry that
    /// matches only the From: header is decided with the message, by [`ListSet::decide`].)
    pub fn block_at_rcpt(
        &self,
        mail_from: &str,
        client_ip: IpAddr,
        rcpt: &str,
        now: i64,
    ) -> Option<&Entry> {
        let mail_from = mail_from.to_ascii_lowercase();
        let claimed: Vec<&str> = if mail_from.is_empty() {
            Vec::new()
        } else {
            vec![mail_from.as_str()]
        };
        let rcpt = rcpt.to_ascii_lowercase();
        self.entries_claimed_or_connected(&claimed, client_ip)
            .find(|e| e.kind == ListKind::Block && e.live(now) && e.scope.covers(&rcpt))
    }

    /// Entries naming one of the claimed addresses or their domains, and network entries
    /// containing the client's address.
    fn entries_claimed_or_connected<'s>(
        &'s self,
        claimed: &[&str],
        client_ip: IpAddr,
    ) -> impl Iterator<Item = &'s Entry> + 's {
        let ip = unmapped(client_ip);
        let by_address: Vec<&'s Entry> = claimed
            .iter()
            .filter_map(|a| self.by_address.get(*a))
            .flatten()
            .collect();
        let by_domain: Vec<&'s Entry> = claimed
            .iter()
            .filter_map(|a| self.by_domain.get(&domain_of(a)))
            .flatten()
            .collect();
        by_address.into_iter().chain(by_domain).chain(
            self.networks
                .iter()
                .filter(move |e| e.sender_matches_ip(ip)),
        )
    }

    /// Block entries first (any recipient covered), then allow entries (every recipient
    /// covered, the sender authenticated for an address or domain entry).
    pub fn decide(&self, origin: &Origin<'_>, rcpts: &[String], now: i64) -> Decision<'_> {
        let mail_from = origin.mail_from.to_ascii_lowercase();
        let header_from = origin.header_from.map(str::to_ascii_lowercase);
        let mut claimed: Vec<&str> = Vec::new();
        if !mail_from.is_empty() {
            claimed.push(&mail_from);
        }
        if let Some(h) = &header_from {
            claimed.push(h);
        }
        let live = |e: &&Entry| e.live(now);
        if let Some(e) = self
            .entries_claimed_or_connected(&claimed, origin.client_ip)
            .filter(live)
            .find(|e| e.kind == ListKind::Block && rcpts.iter().any(|r| e.scope.covers(r)))
        {
            return Decision::Block(e);
        }
        let ip = unmapped(origin.client_ip);
        let nets = self.networks.iter().filter(|e| e.sender_matches_ip(ip));
        // Allowed: a network (the connection itself), or a name the sender is
        // authenticated for.
        let auth = origin.authenticated_domain.map(str::to_ascii_lowercase);
        let authenticated_entries = auth.iter().flat_map(|d| {
            let address_entries = header_from
                .iter()
                .filter(|h| domain_of(h) == *d)
                .filter_map(|h| self.by_address.get(h.as_str()))
                .flatten();
            address_entries.chain(self.by_domain.get(d).into_iter().flatten())
        });
        let covers_all = |e: &&Entry| !rcpts.is_empty() && rcpts.iter().all(|r| e.scope.covers(r));
        match nets
            .chain(authenticated_entries)
            .filter(live)
            .filter(|e| e.kind == ListKind::Allow)
            .find(covers_all)
        {
            Some(e) => Decision::Allow(e),
            None => Decision::None,
        }
    }
}

impl Entry {
    fn sender_matches_ip(&self, ip: IpAddr) -> bool {
        matches!(&self.sender, Sender::Network(n) if n.contains(&ip))
    }
}

/// The lists in memory, replaced whole when an operator changes them.
#[derive(Clone, Default)]
pub struct LiveLists(Arc<RwLock<Arc<ListSet>>>);

impl LiveLists {
    pub fn new(set: ListSet) -> LiveLists {
        LiveLists(Arc::new(RwLock::new(Arc::new(set))))
    }

    pub fn current(&self) -> Arc<ListSet> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn replace(&self, set: ListSet) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(set);
    }
}

/// The `lists` stage. Runs after authentication (an allow entry needs the authenticated
/// domain) and before the spam filters it may skip.
pub struct ListsStage {
    pub lists: LiveLists,
    pub now: fn() -> i64,
}

impl Stage for ListsStage {
    fn name(&self) -> &'static str {
        "lists"
    }

    fn check<'a>(&'a self, ctx: &'a MessageContext<'a>) -> StageFuture<'a> {
        Box::pin(async move { Ok(self.check_with_headers(ctx).await?.symbols) })
    }

    fn check_with_headers<'a>(&'a self, ctx: &'a MessageContext<'a>) -> FindingsFuture<'a> {
        Box::pin(async move {
            let set = self.lists.current();
            if set.is_empty() {
                return Ok(Findings::default());
            }
            let header_from = ctx
                .parsed
                .and_then(|m| m.from())
                .and_then(|f| f.first())
                .and_then(|a| a.address());
            let origin = Origin {
                mail_from: &ctx.envelope.mail_from,
                header_from,
                client_ip: ctx.envelope.client_ip,
                authenticated_domain: ctx.facts.authenticated_domain.as_deref(),
            };
            let rcpts: Vec<String> = ctx
                .envelope
                .rcpt_to
                .iter()
                .map(|r| r.to_ascii_lowercase())
                .collect();
            let mut findings = Findings::default();
            match set.decide(&origin, &rcpts, (self.now)()) {
                Decision::None => {}
                Decision::Block(e) => findings
                    .symbols
                    .push(Symbol::new("LIST_BLOCK", e.describe()).forcing(crate::Action::Reject)),
                Decision::Allow(e) => {
                    findings
                        .symbols
                        .push(Symbol::new("LIST_ALLOW", e.describe()));
                    findings.facts = Facts {
                        allow_listed: true,
                        ..Facts::default()
                    };
                }
            }
            Ok(findings)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: i64, kind: ListKind, sender: &str, scope: Option<&str>) -> Entry {
        Entry {
            id,
            kind,
            sender: Sender::parse(sender).unwrap(),
            scope: Scope::parse(scope).unwrap(),
            expires_at: None,
        }
    }

    fn origin<'a>(from: &'a str, auth: Option<&'a str>) -> Origin<'a> {
        Origin {
            mail_from: from,
            header_from: Some(from),
            client_ip: "192.0.2.7".parse().unwrap(),
            authenticated_domain: auth,
        }
    }

    fn rcpts(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parsing_names_what_is_wrong() {
        assert_eq!(
            Sender::parse("Bob@Partner.Example.").unwrap(),
            Sender::Address("bob@partner.example".into())
        );
        assert_eq!(
            Sender::parse("@partner.example").unwrap().text(),
            "@partner.example"
        );
        assert_eq!(
            Sender::parse("192.0.2.9/24").unwrap().text(),
            "192.0.2.0/24"
        );
        assert_eq!(
            Sender::parse("2001:db8::1").unwrap().text(),
            "2001:db8::1/128"
        );
        for bad in ["", "partner", "@", "@nodot", "a b@x.example", "300.1.1.1/8"] {
            assert!(Sender::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Scope::parse(None).unwrap(), Scope::Global);
        assert_eq!(
            Scope::parse(Some("@Example.test")).unwrap(),
            Scope::Domain("example.test".into())
        );
        assert_eq!(
            Scope::parse(Some("u@example.test")).unwrap(),
            Scope::Address("u@example.test".into())
        );
        assert!(Scope::parse(Some("not a domain")).is_err());
        assert!(ListKind::parse("maybe").is_err());
    }

    #[test]
    fn block_needs_no_authentication_and_covers_any_recipient() {
        let set = ListSet::new([
            entry(1, ListKind::Block, "@spam.example", None),
            entry(
                2,
                ListKind::Block,
                "192.0.2.0/24",
                Some("boss@example.test"),
            ),
        ]);
        let d = set.decide(
            &origin("x@spam.example", None),
            &rcpts(&["u@example.test"]),
            0,
        );
        assert!(matches!(d, Decision::Block(e) if e.id == 1));
        // The network entry is only for boss@: mail to u@ alone passes, to both is refused.
        let o = origin("x@other.example", None);
        assert_eq!(
            set.decide(&o, &rcpts(&["u@example.test"]), 0),
            Decision::None
        );
        let both = rcpts(&["u@example.test", "boss@example.test"]);
        assert!(matches!(set.decide(&o, &both, 0), Decision::Block(e) if e.id == 2));
    }

    #[test]
    fn at_rcpt_only_the_envelope_counts_and_only_the_covered_recipient_is_refused() {
        let set = ListSet::new([
            entry(1, ListKind::Block, "@spam.example", None),
            entry(
                2,
                ListKind::Block,
                "bob@x.example",
                Some("boss@example.test"),
            ),
            entry(3, ListKind::Block, "198.51.100.0/24", None),
            entry(4, ListKind::Allow, "@partner.example", None),
        ]);
        let ip = "192.0.2.7".parse().unwrap();
        let id = |e: Option<&Entry>| e.map(|e| e.id);
        assert_eq!(
            id(set.block_at_rcpt("X@Spam.Example", ip, "u@example.test", 0)),
            Some(1)
        );
        assert_eq!(
            id(set.block_at_rcpt("bob@x.example", ip, "u@example.test", 0)),
            None
        );
        assert_eq!(
            id(set.block_at_rcpt("bob@x.example", ip, "Boss@example.test", 0)),
            Some(2)
        );
        let net = "::ffff:198.51.100.9".parse().unwrap();
        assert_eq!(id(set.block_at_rcpt("", net, "u@example.test", 0)), Some(3));
        // Allow entries never refuse, and the null sender matches no name.
        assert_eq!(
            id(set.block_at_rcpt("a@partner.example", ip, "u@example.test", 0)),
            None
        );
        assert_eq!(id(set.block_at_rcpt("", ip, "u@example.test", 0)), None);
    }

    #[test]
    fn allow_needs_authentication_for_names_and_every_recipient_covered() {
        let set = ListSet::new([
            entry(1, ListKind::Allow, "@partner.example", None),
            entry(
                2,
                ListKind::Allow,
                "ceo@friend.example",
                Some("example.test"),
            ),
        ]);
        let r = rcpts(&["u@example.test"]);
        let forged = origin("bob@partner.example", None);
        assert_eq!(set.decide(&forged, &r, 0), Decision::None);
        let other_domain = origin("bob@partner.example", Some("evil.example"));
        assert_eq!(set.decide(&other_domain, &r, 0), Decision::None);
        let real = origin("bob@partner.example", Some("partner.example"));
        assert!(matches!(set.decide(&real, &r, 0), Decision::Allow(e) if e.id == 1));
        let ceo = origin("ceo@friend.example", Some("friend.example"));
        assert!(matches!(set.decide(&ceo, &r, 0), Decision::Allow(e) if e.id == 2));
        // Not every recipient is in example.test: the entry is not theirs.
        let mixed = rcpts(&["u@example.test", "x@elsewhere.example"]);
        assert_eq!(set.decide(&ceo, &mixed, 0), Decision::None);
        // A colleague at friend.example is not the allowed address.
        let colleague = origin("intern@friend.example", Some("friend.example"));
        assert_eq!(set.decide(&colleague, &r, 0), Decision::None);
    }

    #[test]
    fn block_beats_allow_and_expired_entries_are_ignored() {
        let mut blocked = entry(2, ListKind::Block, "bob@partner.example", None);
        blocked.expires_at = Some(100);
        let set = ListSet::new([entry(1, ListKind::Allow, "@partner.example", None), blocked]);
        let o = origin("bob@partner.example", Some("partner.example"));
        let r = rcpts(&["u@example.test"]);
        assert!(matches!(set.decide(&o, &r, 99), Decision::Block(e) if e.id == 2));
        assert!(matches!(set.decide(&o, &r, 100), Decision::Allow(e) if e.id == 1));
    }

    #[test]
    fn a_network_allow_needs_no_authentication_and_mapped_ipv4_matches() {
        let set = ListSet::new([entry(1, ListKind::Allow, "192.0.2.0/24", None)]);
        let mut o = origin("anyone@anywhere.example", None);
        o.client_ip = "::ffff:192.0.2.7".parse().unwrap();
        assert!(matches!(
            set.decide(&o, &rcpts(&["u@example.test"]), 0),
            Decision::Allow(_)
        ));
    }
}
