//! # Portcullis filters: facts in, symbols out
//!
//! Every content stage of the gateway lives here. A stage looks at one message and the
//! facts of its SMTP session ([`MessageContext`]) and reports *findings* as [`Symbol`]s
//! (name, points, detail). It never decides what happens to the message: weights come from
//! the [`symbols`] registry (overridable in config) and the verdict is taken by the gateway's
//! `pipeline::verdict` from the summed [`ScoreCard`].
//!
//! Stages do no SMTP and no SQL. What a stage needs from the outside (DNS, clamd, a
//! model store) it gets through a narrow client handed to it when it is built.
//!
//! ## Adding a filter
//! 1. Register its symbols with default points and a description in [`symbols`].
//! 2. Implement [`Stage`] in a module of its own (see [`header_sanity`] for a small one).
//! 3. Add one line to the inbound and/or outbound order in the gateway's
//!    `src/pipeline/inbound.rs` / `outbound.rs`.
//!
//! A stage that cannot do its job (a dependency is down) returns `Err(StageError)`; the
//! pipeline applies the stage's configured fail mode (tempfail by default), never a silent pass.

pub mod auth;
pub mod bayes;
pub mod clamav;
pub mod content;
pub mod dns;
pub mod header_sanity;
pub mod lists;
pub mod result_fields;
pub mod sniff;
pub mod symbols;
pub mod tls;
pub mod trust;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

pub use mail_parser;

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary: how
/// much of an attacker's text a stage looks at.
pub fn clip_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Seconds since the epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The lowercase domain of an address, without a final dot ("" when there is none).
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default()
}

/// The last two labels (three when the second-level label is short, as in `co.uk`).
pub fn registered_domain(host: &str) -> &str {
    let labels: Vec<&str> = host.rsplitn(4, '.').collect();
    if labels.len() < 3 {
        return host;
    }
    let keep = if labels[1].len() <= 3 && labels[0].len() == 2 {
        3
    } else {
        2
    };
    let cut: usize = labels[..keep].iter().map(|l| l.len() + 1).sum::<usize>() - 1;
    &host[host.len() - cut..]
}

/// Which way a message travels through the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the internet to one of our local domains.
    Inbound,
    /// From one of our internal networks to anywhere.
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// TLS facts of the SMTP session a message arrived on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFacts {
    /// e.g. "TLSv1.3"
    pub version: String,
    /// e.g. "TLS_AES_256_GCM_SHA384"
    pub cipher: String,
    /// SHA-256 fingerprint of the client certificate, if one was presented.
    pub peer_cert_sha256: Option<String>,
    /// The client certificate's chain verified against the trust store (system roots plus
    /// the listener's `client_ca`).
    pub peer_cert_verified: bool,
    /// DNS names of the client certificate (subjectAltName dNSName, else CN), lowercase.
    pub peer_cert_names: Vec<String>,
}

/// The SMTP envelope and session facts of one message.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub direction: Direction,
    pub client_ip: IpAddr,
    pub helo: String,
    /// Reverse-path; empty for the null sender (DSNs).
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// Client asked for SMTPUTF8 on MAIL FROM.
    pub smtputf8: bool,
    /// Client declared BODY=8BITMIME.
    pub body_8bit: bool,
    pub tls: Option<TlsFacts>,
}

/// Everything a stage may look at. Read-only: stages never change the message.
pub struct MessageContext<'a> {
    pub envelope: &'a Envelope,
    /// The message the content stages judge: as received (CRLF line ends, dot-unstuffed),
    /// or its plaintext when the gateway decrypted S/MIME.
    pub raw: &'a [u8],
    /// The message exactly as it came over the wire, before any S/MIME unwrapping. DKIM and
    /// ARC signatures cover these bytes (a sender signs the encrypted form), so the auth
    /// stage verifies them; everything else looks at `raw`.
    pub wire: &'a [u8],
    /// The message parsed once for every stage; `None` when it is not parseable as MIME.
    pub parsed: Option<&'a mail_parser::Message<'a>>,
    /// What earlier stages established (e.g. the authenticated sender domain).
    pub facts: &'a Facts,
}

/// Facts a stage establishes for the stages after it and for the gateway's learning after
/// the verdict. Unlike symbols they carry no points: they say what is *known*.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    /// The From: domain (lowercase), when SPF or DKIM passed *aligned* with it (DMARC's
    /// notion of an authenticated sender). Set by the auth stage; trust is only given to
    /// senders whose domain is authenticated, so a forged From earns nothing.
    pub authenticated_domain: Option<String>,
    /// The Bayes spam probability, when the model gave one.
    pub spam_probability: Option<f64>,
    /// An operator's allow list covers this message (`lists`): the spam filters
    /// ([`Stage::is_spam_filter`]) are skipped; authentication and virus scanning are not.
    pub allow_listed: bool,
}

impl Facts {
    /// Take every fact `other` establishes (later stages win).
    pub fn merge(&mut self, other: Facts) {
        if other.authenticated_domain.is_some() {
            self.authenticated_domain = other.authenticated_domain;
        }
        if other.spam_probability.is_some() {
            self.spam_probability = other.spam_probability;
        }
        self.allow_listed |= other.allow_listed;
    }
}

/// What the gateway does with a message. Ordered from mildest to hardest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Accept,
    /// Accept, but mark it (`X-Spam-Flag: YES`) for the user's mail client.
    Tag,
    Quarantine,
    Tempfail,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Accept => "accept",
            Action::Tag => "tag",
            Action::Quarantine => "quarantine",
            Action::Tempfail => "tempfail",
            Action::Reject => "reject",
        }
    }
}

/// One finding of a stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Symbol {
    /// UPPER_SNAKE name with a family prefix, registered in [`symbols`].
    pub name: &'static str,
    /// Points added to the score card (negative = more trustworthy).
    pub points: f64,
    /// Short human detail for logs and the quarantine view, e.g. `d=example.org`.
    pub detail: String,
    /// A finding that decides by itself (a virus is rejected whatever the score says).
    pub forced_action: Option<Action>,
    /// Factor applied to the points (1.0 unless [`Symbol::scaled`]); kept so a configured
    /// points override is scaled too.
    pub scale: f64,
}

impl Symbol {
    /// A symbol with its registered default points; config overrides are applied later by
    /// the score card.
    pub fn new(name: &'static str, detail: impl Into<String>) -> Self {
        Symbol {
            name,
            points: symbols::default_points(name),
            detail: detail.into(),
            forced_action: None,
            scale: 1.0,
        }
    }

    /// Scale the points by `factor` (e.g. by a probability); a configured override of the
    /// symbol's points is scaled the same way.
    pub fn scaled(mut self, factor: f64) -> Self {
        self.points *= factor;
        self.scale *= factor;
        self
    }

    pub fn forcing(mut self, action: Action) -> Self {
        self.forced_action = Some(action);
        self
    }
}

/// The sum of all findings for one message.
#[derive(Debug, Clone, Default)]
pub struct ScoreCard {
    pub symbols: Vec<Symbol>,
}

impl ScoreCard {
    pub fn add(&mut self, symbol: Symbol) {
        self.symbols.push(symbol);
    }

    pub fn score(&self) -> f64 {
        // Start from +0.0: an empty f64 sum is -0.0, which prints as "-0.00".
        self.symbols
            .iter()
            .map(|s| s.points)
            .fold(0.0, |a, b| a + b)
    }

    /// The hardest action any finding forces, if any.
    pub fn forced_action(&self) -> Option<Action> {
        self.symbols.iter().filter_map(|s| s.forced_action).max()
    }

    /// `NAME(points)` list for headers and log lines.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (i, s) in self.symbols.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&format!("{}({:.2})", s.name, s.points));
        }
        out
    }
}

/// A stage could not do its job (e.g. its service is unreachable). The pipeline applies
/// the stage's fail mode; the message text goes to the log, never to the SMTP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageError(pub String);

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StageError {}

pub type StageFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Vec<Symbol>, StageError>> + Send + 'a>>;

/// What a stage reports through [`Stage::check_with_headers`]: its symbols, plus header
/// fields it asks the gateway to add to the stored message.
#[derive(Debug, Clone, Default)]
pub struct Findings {
    pub symbols: Vec<Symbol>,
    /// Complete header fields (`Name: value`, folded with CRLF + tab, no final CRLF). The
    /// gateway prepends them to an accepted message right after its own `Received:` line,
    /// in stage order. A stage never edits the message itself.
    pub headers: Vec<String>,
    /// Facts for later stages and for learning after the verdict.
    pub facts: Facts,
}

pub type FindingsFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Findings, StageError>> + Send + 'a>>;

/// One step of the pipeline.
///
/// Called once per message, after the end of DATA and before the reply, in the order
/// written in the gateway's pipeline files. A stage gets the message read-only and returns
/// its findings. Per-message state lives inside the call; a stage keeps no state between
/// messages except through the clients it was built with. CPU-heavy stages must not stall
/// the reactor (use `tokio::task::spawn_blocking` or keep the work small).
pub trait Stage: Send + Sync {
    /// Short name used in config (`[stages.NAME]`), logs and metrics.
    fn name(&self) -> &'static str;

    /// A content opinion (spam or not) that an operator's allow list overrides: the
    /// pipeline skips it for an allow-listed message. Never true for authentication, virus
    /// scanning or anything else that protects the recipient whoever the sender is.
    fn is_spam_filter(&self) -> bool {
        false
    }

    fn check<'a>(&'a self, ctx: &'a MessageContext<'a>) -> StageFuture<'a>;

    /// [`Stage::check`] plus header fields to add (e.g. `Authentication-Results:`). The
    /// pipeline calls this one; the default returns `check`'s symbols and no headers, so
    /// only a stage that contributes a header overrides it (and then implements `check` as
    /// "the symbols of `check_with_headers`").
    fn check_with_headers<'a>(&'a self, ctx: &'a MessageContext<'a>) -> FindingsFuture<'a> {
        Box::pin(async move {
            Ok(Findings {
                symbols: self.check(ctx).await?,
                ..Findings::default()
            })
        })
    }
}
