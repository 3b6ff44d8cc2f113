//! Configuration: raw TOML (serde, unknown keys are errors) → validated [`Config`].
//!
//! Every key has a default (see [`defaults`]), so the gateway runs with no file at all.
//! Validation errors name the key and say what is wrong with it.

pub mod defaults;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use ipnet::IpNet;
use serde::Deserialize;

/// TLS on an SMTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain SMTP, STARTTLS not offered.
    None,
    /// STARTTLS offered, plaintext allowed (the internet default, RFC 3207).
    Starttls,
    /// STARTTLS offered and required before MAIL FROM.
    Required,
}

/// What the pipeline does when a stage cannot do its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// 451: the client tries again later; nothing is accepted unchecked.
    #[default]
    Tempfail,
    /// Let the message pass with a `STAGE_FAILED_OPEN` symbol and a log line.
    Open,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// Address and port, e.g. "0.0.0.0:25".
    pub bind: SocketAddr,
    #[serde(default = "default_tls")]
    pub tls: TlsMode,
    /// PEM certificate chain for STARTTLS; when absent a self-signed one is made in data_dir.
    pub cert: Option<PathBuf>,
    /// PEM private key for `cert`.
    pub key: Option<PathBuf>,
    /// Extra CA certificates (PEM) trusted for client certificates, besides the system roots
    /// (e.g. a partner's or a company CA).
    pub client_ca: Option<PathBuf>,
}

/// `[[tls_policy]]`: TLS a partner domain must use with us. Inbound it is about the sender
/// (MAIL FROM) domain's servers, outbound about the recipient domain's servers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsPolicy {
    /// The partner domain; a leading "." also matches its subdomains.
    pub domain: String,
    /// Inbound: MAIL FROM this domain without STARTTLS is refused (530 5.7.0).
    /// Outbound: mail to this domain is only sent over TLS (no plaintext fallback; it is
    /// deferred, and bounced after the queue's max age, with the reason).
    #[serde(default)]
    pub require_tls: bool,
    /// Inbound: ... and with a client certificate whose chain verifies.
    /// Outbound: ... and the server's certificate must verify (system roots plus
    /// `outbound_tls_ca`) and name the host we connected to (the MX or next hop).
    #[serde(default)]
    pub require_verified_cert: bool,
    /// Which way the policy applies: "both" (default), "inbound" or "outbound".
    #[serde(default)]
    pub direction: PolicyDirection,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PolicyDirection {
    #[default]
    Both,
    Inbound,
    Outbound,
}

impl PolicyDirection {
    pub fn covers(self, d: filters::Direction) -> bool {
        match self {
            PolicyDirection::Both => true,
            PolicyDirection::Inbound => d == filters::Direction::Inbound,
            PolicyDirection::Outbound => d == filters::Direction::Outbound,
        }
    }
}

/// `[trust]`: the level of trust learned from our users' mail (`filters::trust`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustConfig {
    /// Learn and give trust (also `[stages.trust] enabled`). Trust is only given to
    /// authenticated senders, so it needs `[auth] enabled` to have an effect inbound.
    pub enabled: bool,
    /// A relationship's weight halves in this many days without new mail.
    pub half_life_days: f64,
    /// Seconds between re-reads of the operators' pins (`portcullis trust set`).
    pub pin_reload_secs: u64,
}

impl Default for TrustConfig {
    fn default() -> Self {
        TrustConfig {
            enabled: true,
            half_life_days: filters::trust::DEFAULT_HALF_LIFE_DAYS,
            pin_reload_secs: defaults::TRUST_PIN_RELOAD_SECS,
        }
    }
}

fn default_tls() -> TlsMode {
    TlsMode::Starttls
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_command_line: usize,
    pub max_bad_commands: u32,
    pub idle_timeout_secs: u64,
    pub session_timeout_secs: u64,
    /// A command line must arrive whole within this, however slowly it drips in.
    pub command_timeout_secs: u64,
    /// Open sessions (percent of `max_connections`) from which timeouts shrink.
    pub stress_threshold_percent: u8,
    /// Under stress: the idle wait and a command line's time.
    pub stress_timeout_secs: u64,
    pub shutdown_grace_secs: u64,
    /// Bare CR or LF in a message body (not part of CRLF): refused, or made CRLF.
    pub bare_line_endings: BareLineEndings,
    /// A body larger than this is written to a file in `data_dir` while it arrives.
    pub spool_threshold_bytes: usize,
    /// Bodies above the spool threshold held in memory for the pipeline at once; the
    /// others wait their turn at the end of DATA.
    pub max_large_messages_in_memory: usize,
    /// IPv6 clients count against `max_connections_per_ip` per network of this prefix
    /// length (one host usually has a whole /64).
    pub ipv6_prefix_len: u8,
    /// MIME entities a message action (disclaimer, attachment signing) walks at most; a
    /// message with more is left as it is, with a symbol saying why.
    pub max_mime_parts: usize,
    /// Nesting of multiparts a message action walks at most (the same: left as it is).
    pub max_mime_depth: usize,
}

/// What the listener does with a bare CR or bare LF in a message body. Either way, only
/// CRLF line endings are forwarded, and only CRLF.CRLF ends DATA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BareLineEndings {
    /// Each bare CR or LF becomes CRLF.
    Normalize,
    /// The message is refused with 554 5.5.2.
    Reject,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: defaults::MAX_CONNECTIONS,
            max_connections_per_ip: defaults::MAX_CONNECTIONS_PER_IP,
            max_command_line: defaults::MAX_COMMAND_LINE,
            max_bad_commands: defaults::MAX_BAD_COMMANDS,
            idle_timeout_secs: defaults::IDLE_TIMEOUT_SECS,
            session_timeout_secs: defaults::SESSION_TIMEOUT_SECS,
            command_timeout_secs: defaults::COMMAND_TIMEOUT_SECS,
            stress_threshold_percent: defaults::STRESS_THRESHOLD_PERCENT,
            stress_timeout_secs: defaults::STRESS_TIMEOUT_SECS,
            shutdown_grace_secs: defaults::SHUTDOWN_GRACE_SECS,
            bare_line_endings: BareLineEndings::Normalize,
            spool_threshold_bytes: defaults::SPOOL_THRESHOLD_BYTES,
            max_large_messages_in_memory: defaults::MAX_LARGE_MESSAGES_IN_MEMORY,
            ipv6_prefix_len: defaults::IPV6_PREFIX_LEN,
            max_mime_parts: defaults::MAX_MIME_PARTS,
            max_mime_depth: defaults::MAX_MIME_DEPTH,
        }
    }
}

/// How recipients of our own domains are checked at RCPT TO.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecipientVerify {
    /// Any local part is accepted (the internal server's refusals become bounces).
    Off,
    /// Only the addresses and `@domain` entries of `list_file`.
    List,
    /// Ask the internal server (`inbound_next_hop`) with MAIL/RCPT/RSET; cached.
    Callout,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecipientsConfig {
    pub verify: RecipientVerify,
    /// One address or `@domain` per line; `#` starts a comment. For `verify = "list"`.
    pub list_file: Option<PathBuf>,
    /// How often a running gateway checks whether `list_file` changed.
    pub reload_secs: u64,
    /// Callout answers are remembered: an existing recipient this long...
    pub callout_positive_ttl_secs: u64,
    /// ...a refused one this long (a temporary failure is not remembered).
    pub callout_negative_ttl_secs: u64,
    /// The whole callout (connect and every reply).
    pub callout_timeout_secs: u64,
    /// Entries in the callout cache; when it is full, expired entries go, then all.
    pub callout_cache_entries: usize,
    /// Callouts running at once; more wait for a turn within `callout_timeout_secs`.
    pub max_concurrent_callouts: usize,
}

impl Default for RecipientsConfig {
    fn default() -> Self {
        RecipientsConfig {
            verify: RecipientVerify::Off,
            list_file: None,
            reload_secs: defaults::RECIPIENT_LIST_RELOAD_SECS,
            callout_positive_ttl_secs: defaults::CALLOUT_POSITIVE_TTL_SECS,
            callout_negative_ttl_secs: defaults::CALLOUT_NEGATIVE_TTL_SECS,
            callout_timeout_secs: defaults::CALLOUT_TIMEOUT_SECS,
            callout_cache_entries: defaults::CALLOUT_CACHE_ENTRIES,
            max_concurrent_callouts: defaults::MAX_CONCURRENT_CALLOUTS,
        }
    }
}

impl RecipientsConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if self.verify == RecipientVerify::List && self.list_file.is_none() {
            bail!(
                "key `recipients.list_file`: needed with verify = \"list\" (one address or @domain per line)"
            );
        }
        if self.verify != RecipientVerify::List && self.list_file.is_some() {
            bail!(
                "key `recipients.list_file`: set, but verify is not \"list\"; set verify = \"list\" or remove the key"
            );
        }
        for (key, v) in [
            ("recipients.reload_secs", self.reload_secs),
            ("recipients.callout_timeout_secs", self.callout_timeout_secs),
            (
                "recipients.callout_cache_entries",
                self.callout_cache_entries as u64,
            ),
            (
                "recipients.max_concurrent_callouts",
                self.max_concurrent_callouts as u64,
            ),
        ] {
            if v == 0 {
                bail!("key `{key}`: must be greater than 0");
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    pub delivery_concurrency: usize,
    pub retry_initial_secs: u64,
    pub retry_max_secs: u64,
    pub max_age_secs: u64,
    pub scan_interval_secs: u64,
    pub connect_timeout_secs: u64,
    pub reply_timeout_secs: u64,
    pub idle_connection_secs: u64,
    pub mx_port: u16,
    /// At most this much of the returned message's header goes into a bounce.
    pub dsn_max_returned_bytes: usize,
    /// Bytes of bodies kept in memory for delivery jobs (messages just stored are sent
    /// without reading them back); beyond, delivery reads them from disk, so a slow next
    /// hop does not make memory grow with the backlog.
    pub dispatch_memory_bytes: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            delivery_concurrency: defaults::DELIVERY_CONCURRENCY,
            dispatch_memory_bytes: defaults::DISPATCH_MEMORY_BYTES,
            retry_initial_secs: defaults::RETRY_INITIAL_SECS,
            retry_max_secs: defaults::RETRY_MAX_SECS,
            max_age_secs: defaults::MAX_QUEUE_AGE_SECS,
            scan_interval_secs: defaults::QUEUE_SCAN_SECS,
            connect_timeout_secs: defaults::CONNECT_TIMEOUT_SECS,
            reply_timeout_secs: defaults::SMTP_REPLY_TIMEOUT_SECS,
            idle_connection_secs: defaults::DELIVERY_IDLE_SECS,
            mx_port: defaults::MX_PORT,
            dsn_max_returned_bytes: defaults::DSN_MAX_RETURNED_BYTES,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerdictConfig {
    pub tag_score: f64,
    pub quarantine_score: f64,
    pub reject_score: f64,
}

impl Default for VerdictConfig {
    fn default() -> Self {
        VerdictConfig {
            tag_score: defaults::TAG_SCORE,
            quarantine_score: defaults::QUARANTINE_SCORE,
            reject_score: defaults::REJECT_SCORE,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StageConfig {
    pub enabled: bool,
    pub fail_mode: FailMode,
}

impl Default for StageConfig {
    fn default() -> Self {
        StageConfig {
            enabled: true,
            fail_mode: FailMode::Tempfail,
        }
    }
}

/// What to do with an infected message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VirusAction {
    /// 554 5.7.1 in the dialog.
    Reject,
    /// Keep it held for an operator (250 to the client).
    Quarantine,
}

/// What to do with a message larger than clamd's stream limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OversizeAction {
    Tempfail,
    Accept,
    Reject,
}

/// `[clamav]`: virus scanning with a real clamd (INSTREAM).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClamavConfig {
    /// Off in the embedded defaults (no clamd there); a production gateway turns it on.
    pub enabled: bool,
    /// clamd's TCP address ("host:port"); used when `socket` is not set.
    pub address: String,
    /// clamd's Unix socket; preferred when set.
    pub socket: Option<PathBuf>,
    pub connect_timeout_ms: u64,
    pub scan_timeout_secs: u64,
    /// Concurrent scans, each on its own clamd connection; the connections are kept open
    /// (IDSESSION) and reused. clamd's MaxThreads is the real limit.
    pub max_connections: usize,
    /// clamd's StreamMaxLength; larger messages get `oversize_action`.
    pub max_stream_size: usize,
    pub virus_action: VirusAction,
    pub oversize_action: OversizeAction,
    /// Seconds between health probes (version, signature date, latency) for the metrics.
    pub health_interval_secs: u64,
}

impl Default for ClamavConfig {
    fn default() -> Self {
        ClamavConfig {
            enabled: false,
            address: defaults::CLAMD_ADDRESS.into(),
            socket: None,
            connect_timeout_ms: defaults::CLAMD_CONNECT_TIMEOUT_MS,
            scan_timeout_secs: defaults::CLAMD_SCAN_TIMEOUT_SECS,
            max_connections: defaults::CLAMD_MAX_CONNECTIONS,
            max_stream_size: defaults::CLAMD_MAX_STREAM_SIZE,
            virus_action: VirusAction::Reject,
            oversize_action: OversizeAction::Tempfail,
            health_interval_secs: defaults::CLAMD_HEALTH_SECS,
        }
    }
}

/// `[auth]`: SPF, DKIM, DMARC and ARC on inbound mail (`filters::auth`), with the DNS
/// servers of `dns_servers` (else the system's).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Off in the embedded defaults (it needs working DNS); a production gateway turns it on.
    pub enabled: bool,
    /// A DMARC failure under the domain's `p=reject`.
    pub dmarc_reject_action: PolicyAction,
    /// A DMARC failure under the domain's `p=quarantine`.
    pub dmarc_quarantine_action: PolicyAction,
    /// One DNS query attempt.
    pub dns_timeout_ms: u64,
    /// All lookups of one message; past it the stage fails (its fail mode applies).
    pub timeout_secs: u64,
    /// Entries per DNS record cache; 0 turns the cache off.
    pub dns_cache_entries: usize,
    /// A message with more header fields gets no DKIM or ARC verdict (permerror): checking
    /// signatures costs fields × signed names of CPU.
    pub max_header_fields: usize,
    /// More `DKIM-Signature` fields than this: DKIM permerror, no signature checked.
    pub max_dkim_signatures: usize,
    /// More ARC sets (`ARC-Seal` fields) than this: the ARC chain fails unchecked.
    pub max_arc_sets: usize,
    /// A DKIM or ARC message signature whose `h=` names more fields: not checked (permerror).
    pub max_signed_headers: usize,
}

impl AuthConfig {
    /// The caps on DKIM and ARC work, for the auth stage.
    pub fn limits(&self) -> filters::auth::AuthLimits {
        filters::auth::AuthLimits {
            max_header_fields: self.max_header_fields,
            max_dkim_signatures: self.max_dkim_signatures,
            max_arc_sets: self.max_arc_sets,
            max_signed_headers: self.max_signed_headers,
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        let caps = filters::auth::AuthLimits::default();
        AuthConfig {
            enabled: false,
            dmarc_reject_action: PolicyAction::Reject,
            dmarc_quarantine_action: PolicyAction::Quarantine,
            dns_timeout_ms: defaults::AUTH_DNS_TIMEOUT_MS,
            timeout_secs: defaults::AUTH_TIMEOUT_SECS,
            dns_cache_entries: defaults::AUTH_DNS_CACHE_ENTRIES,
            max_header_fields: caps.max_header_fields,
            max_dkim_signatures: caps.max_dkim_signatures,
            max_arc_sets: caps.max_arc_sets,
            max_signed_headers: caps.max_signed_headers,
        }
    }
}

/// `[[dkim_signing]]`: one outbound DKIM key for a sender (From:) domain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DkimSigningConfig {
    pub domain: String,
    /// The key is published at `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// PEM private key: RSA (at least 2048 bits) or Ed25519, PKCS#8 or PKCS#1.
    pub key: PathBuf,
}

/// What a domain's policy (e.g. DMARC `p=reject`) makes us do with a failing message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyAction {
    /// 550 5.7.1 in the dialog.
    Reject,
    /// Keep it held for an operator (250 to the client).
    Quarantine,
    /// Nothing forced: only the symbol's points count. (No "tag": a forced action wins
    /// over the score, so a forced tag could lower a verdict the score made harder.)
    None,
}

impl PolicyAction {
    /// The forced action of the symbol; `None` = points only.
    pub fn forced(self) -> Option<filters::Action> {
        match self {
            PolicyAction::Reject => Some(filters::Action::Reject),
            PolicyAction::Quarantine => Some(filters::Action::Quarantine),
            PolicyAction::None => None,
        }
    }
}

/// `[bayes]`: the Bayesian spam filter (model in the data directory's SQLite database).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BayesConfig {
    /// Load the model and run the stage (also `[stages.bayes] enabled`).
    pub enabled: bool,
    /// No opinion until the model has learned this many ham and spam messages.
    pub min_ham: u64,
    pub min_spam: u64,
    /// Spam probability at or above which BAYES_SPAM is reported (and `bayes eval` counts
    /// a message as spam).
    pub spam_threshold: f64,
    /// Spam probability at or below which BAYES_HAM is reported.
    pub ham_threshold: f64,
    /// "chi-square", "multinomial" or "combined".
    pub scoring: String,
    /// How many messages an operator's correction counts as (release or delete with
    /// learning in the quarantine, `portcullis bayes learn`): it is mail the filter got
    /// wrong, so it should move the model more than one more training message. 1 to 100.
    pub feedback_weight: u32,
    /// Seconds between checks for a changed model (learned by the CLI or another gateway).
    pub reload_secs: u64,
    /// Cautious autolearn: only very confident verdicts on authenticated senders, never
    /// viruses. Needs sender authentication (`[auth]`); off by default.
    pub autolearn: bool,
    pub autolearn_spam_above: f64,
    pub autolearn_ham_below: f64,
}

impl Default for BayesConfig {
    fn default() -> Self {
        let a = filters::bayes::AutolearnPolicy::default();
        BayesConfig {
            enabled: true,
            min_ham: filters::bayes::DEFAULT_MIN_HAM,
            min_spam: filters::bayes::DEFAULT_MIN_SPAM,
            spam_threshold: filters::bayes::DEFAULT_SPAM_THRESHOLD,
            ham_threshold: filters::bayes::DEFAULT_HAM_THRESHOLD,
            scoring: filters::bayes::Params::default().scoring.as_str().into(),
            feedback_weight: 3,
            reload_secs: defaults::BAYES_RELOAD_SECS,
            autolearn: false,
            autolearn_spam_above: a.spam_above,
            autolearn_ham_below: a.ham_below,
        }
    }
}

impl BayesConfig {
    /// The stage's settings (validated config: the scoring name parses).
    pub fn settings(&self) -> filters::bayes::Settings {
        filters::bayes::Settings {
            min_ham: self.min_ham,
            min_spam: self.min_spam,
            spam_threshold: self.spam_threshold,
            ham_threshold: self.ham_threshold,
            params: filters::bayes::Params {
                scoring: self.scoring.parse().unwrap_or_default(),
                ..filters::bayes::Params::default()
            },
        }
    }

    pub fn autolearn_policy(&self) -> filters::bayes::AutolearnPolicy {
        filters::bayes::AutolearnPolicy {
            enabled: self.autolearn,
            spam_above: self.autolearn_spam_above,
            ham_below: self.autolearn_ham_below,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.scoring
            .parse::<filters::bayes::Scoring>()
            .map_err(|e| anyhow::anyhow!("key `bayes.scoring`: {e}"))?;
        for (key, v) in [
            ("bayes.spam_threshold", self.spam_threshold),
            ("bayes.ham_threshold", self.ham_threshold),
            ("bayes.autolearn_spam_above", self.autolearn_spam_above),
            ("bayes.autolearn_ham_below", self.autolearn_ham_below),
        ] {
            if !(0.0..=1.0).contains(&v) {
                bail!("key `{key}`: a probability between 0 and 1, got {v}");
            }
        }
        // The points follow the log-odds on either side of ½ (filters::bayes::symbol_for).
        if self.spam_threshold <= 0.5 || self.spam_threshold >= 1.0 {
            bail!(
                "key `bayes.spam_threshold`: must lie above 0.5 and below 1, got {}",
                self.spam_threshold
            );
        }
        if self.ham_threshold <= 0.0 || self.ham_threshold >= 0.5 {
            bail!(
                "key `bayes.ham_threshold`: must lie above 0 and below 0.5, got {}",
                self.ham_threshold
            );
        }
        if self.reload_secs == 0 {
            bail!("key `bayes.reload_secs`: must be greater than 0");
        }
        if !(1..=100).contains(&self.feedback_weight) {
            bail!(
                "key `bayes.feedback_weight`: between 1 and 100, got {}",
                self.feedback_weight
            );
        }
        Ok(())
    }
}

/// `[quarantine]`: how long held messages are kept, how much space they may take, and the
/// bounds of what an operator's request may cost.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuarantineConfig {
    /// A held message expires this many days after it arrived.
    pub retention_days: u64,
    /// When held messages take more, the oldest expire first ("2 GiB" or bytes).
    pub max_total_size: bytesize::ByteSize,
    /// How often expiry runs (and the quarantine gauges are refreshed).
    pub expiry_interval_secs: u64,
    /// A preview reads at most this much of a message and shows at most this much text.
    pub preview_max_bytes: bytesize::ByteSize,
    /// Display fields (From, To, Subject, Date, Message-ID) are cut at this many characters.
    pub field_max_chars: usize,
    /// Most entries one page of a listing may ask for.
    pub max_page: u32,
}

impl Default for QuarantineConfig {
    fn default() -> Self {
        QuarantineConfig {
            retention_days: defaults::QUARANTINE_RETENTION_DAYS,
            max_total_size: bytesize::ByteSize(defaults::QUARANTINE_MAX_TOTAL_SIZE),
            expiry_interval_secs: defaults::QUARANTINE_EXPIRY_INTERVAL_SECS,
            preview_max_bytes: bytesize::ByteSize(defaults::QUARANTINE_PREVIEW_MAX_BYTES),
            field_max_chars: defaults::QUARANTINE_FIELD_MAX_CHARS,
            max_page: defaults::QUARANTINE_MAX_PAGE,
        }
    }
}

impl QuarantineConfig {
    fn validate(&self) -> anyhow::Result<()> {
        for (key, v) in [
            ("quarantine.retention_days", self.retention_days),
            ("quarantine.max_total_size", self.max_total_size.as_u64()),
            ("quarantine.expiry_interval_secs", self.expiry_interval_secs),
            (
                "quarantine.preview_max_bytes",
                self.preview_max_bytes.as_u64(),
            ),
            ("quarantine.field_max_chars", self.field_max_chars as u64),
            ("quarantine.max_page", self.max_page as u64),
        ] {
            if v == 0 {
                bail!("key `{key}`: must be greater than 0");
            }
        }
        if self.retention_days > 3650 {
            bail!(
                "key `quarantine.retention_days`: at most 3650 days, got {}",
                self.retention_days
            );
        }
        Ok(())
    }

    /// Seconds a held message is kept.
    pub fn retention_secs(&self) -> i64 {
        self.retention_days as i64 * 86400
    }
}

/// `[smime] undecryptable_action`: what happens to S/MIME mail we cannot open or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UndecryptableAction {
    /// Deliver it as received (the recipient's own client may have the key).
    Deliver,
    /// Hold it for an operator.
    Quarantine,
    /// 550 5.7.1 in the dialog.
    Reject,
}

impl UndecryptableAction {
    pub fn forced(self) -> Option<filters::Action> {
        match self {
            UndecryptableAction::Deliver => None,
            UndecryptableAction::Quarantine => Some(filters::Action::Quarantine),
            UndecryptableAction::Reject => Some(filters::Action::Reject),
        }
    }
}

/// One S/MIME rule for outbound mail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmimeRule {
    /// Never (the default: mail leaves as the user wrote it).
    #[default]
    Forbid,
    /// When a key or certificate is there.
    Allow,
    /// Always; without a key/certificate the mail (or recipient) is refused.
    Require,
}

/// `[[smime.policy]]`: outbound signing and encryption for a sender domain or one user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmimePolicy {
    /// Sender domain; a leading "." also matches its subdomains.
    pub domain: Option<String>,
    /// One sender address (wins over its domain's entry).
    pub user: Option<String>,
    pub sign: Option<SmimeRule>,
    pub encrypt: Option<SmimeRule>,
}

/// `[smime]`: S/MIME on both directions (keys and certificates live in the store, `[certs]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmimeConfig {
    /// Inbound unwrapping (decrypt, verify, harvest) and the outbound policies.
    pub enabled: bool,
    /// Malformed or undecryptable inbound S/MIME.
    pub undecryptable_action: UndecryptableAction,
    /// Deliver verified mail with its signature (true) or as plain MIME (false).
    pub keep_signature: bool,
    /// Refuse outbound mail the user already encrypted or signed (550 5.7.1), so archive,
    /// antivirus and compliance can see the content.
    pub block_user_protected: bool,
    /// Signer infos one signature may carry; more make the message malformed (each costs
    /// a public-key operation).
    pub max_signers: usize,
    /// Nested S/MIME layers (signed, encrypted, compressed) one inbound message may carry;
    /// deeper nesting makes the message malformed (`undecryptable_action`).
    pub max_layers: usize,
    /// Seconds one message's S/MIME work (decrypting, verifying) may take, waiting for a
    /// worker thread included; past it the step fails (`[stages.smime] fail_mode`).
    pub job_timeout_secs: u64,
    pub policy: Vec<SmimePolicy>,
}

impl Default for SmimeConfig {
    fn default() -> Self {
        SmimeConfig {
            enabled: true,
            undecryptable_action: UndecryptableAction::Deliver,
            keep_signature: true,
            block_user_protected: false,
            max_signers: crate::smime::engine::DEFAULT_MAX_SIGNERS,
            max_layers: crate::smime::engine::DEFAULT_MAX_LAYERS,
            job_timeout_secs: 30,
            policy: Vec::new(),
        }
    }
}

/// `[certs]`: the S/MIME certificate and key store (`crate::certs::store`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CertsConfig {
    /// The master key file that seals stored private keys; relative paths are inside
    /// `data_dir`. Made with mode 0600 on first use; refused when group/world readable.
    pub key_file: PathBuf,
    /// Extra trusted CA certificate files (PEM, DER or PKCS#7), e.g. a company CA or a
    /// DFN-style sub-CA (trusted as an anchor without its root).
    pub extra_ca: Vec<PathBuf>,
    /// Trust the system's root CAs (OpenSSL's default certificate paths).
    pub system_roots: bool,
    /// Seconds between checks for changes made by the CLI or another gateway.
    pub reload_secs: u64,
    /// Certificates kept from one signed message (the signer, the intermediate CAs of its
    /// verified chain, the signer's other certificates), at most.
    pub max_harvest_per_message: usize,
    /// Harvested CA certificates in the store, at most; past it no more are harvested (a
    /// warning is logged; import needed ones with `certs import`).
    pub max_harvested_intermediates: usize,
    /// Revocation checking of signers' chains (see [`RevocationMode`]).
    pub revocation: RevocationMode,
    /// Fetch CRLs from a certificate's CRL distribution point (http:// only).
    pub crl_fetch: bool,
    /// Seconds to connect to a CRL distribution point.
    pub crl_connect_timeout_secs: u64,
    /// Seconds for the whole CRL download once connected.
    pub crl_read_timeout_secs: u64,
    /// Largest CRL fetched (bytes); a larger one is refused (revocation unknown).
    pub crl_max_bytes: usize,
    /// Seconds before a distribution point that failed is tried again.
    pub crl_retry_secs: u64,
}

/// `[certs] revocation`: what a signer's revocation status does to the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RevocationMode {
    /// Not checked; held CRLs are ignored.
    Off,
    /// A revoked certificate makes the chain untrusted; when no current CRL can be had the
    /// chain stays trusted and the result says "revocation unknown".
    #[default]
    Soft,
    /// As soft, but without a current CRL the chain is not trusted.
    Hard,
}

impl Default for CertsConfig {
    fn default() -> Self {
        CertsConfig {
            key_file: defaults::CERTS_KEY_FILE.into(),
            extra_ca: Vec::new(),
            system_roots: true,
            reload_secs: defaults::CERTS_RELOAD_SECS,
            max_harvest_per_message: defaults::CERTS_MAX_HARVEST_PER_MESSAGE,
            max_harvested_intermediates: defaults::CERTS_MAX_HARVESTED_INTERMEDIATES,
            revocation: RevocationMode::Soft,
            crl_fetch: true,
            crl_connect_timeout_secs: defaults::CERTS_CRL_CONNECT_TIMEOUT_SECS,
            crl_read_timeout_secs: defaults::CERTS_CRL_READ_TIMEOUT_SECS,
            crl_max_bytes: defaults::CERTS_CRL_MAX_BYTES,
            crl_retry_secs: defaults::CERTS_CRL_RETRY_SECS,
        }
    }
}

impl SmimeConfig {
    fn validate(&self) -> anyhow::Result<()> {
        if self.max_signers == 0 {
            bail!("key `smime.max_signers`: must be at least 1");
        }
        if self.max_layers == 0 {
            bail!("key `smime.max_layers`: must be at least 1 (a signed message is one layer)");
        }
        if self.job_timeout_secs == 0 {
            bail!("key `smime.job_timeout_secs`: must be greater than 0");
        }
        for (i, p) in self.policy.iter().enumerate() {
            match (&p.domain, &p.user) {
                (Some(d), None) => {
                    let d = d.trim_start_matches('.');
                    if d.is_empty() || d.contains(['@', ' ', '[', ']']) {
                        bail!("key `smime.policy[{i}].domain`: {d:?} is not a domain name");
                    }
                }
                (None, Some(u)) => {
                    if !u.contains('@') || u.contains(' ') {
                        bail!("key `smime.policy[{i}].user`: {u:?} is not an e-mail address");
                    }
                }
                _ => bail!("key `smime.policy[{i}]`: give exactly one of `domain` or `user`"),
            }
        }
        Ok(())
    }
}

impl CertsConfig {
    /// The key file's path: `key_file`, inside `data_dir` when relative.
    pub fn key_path(&self, data_dir: &Path) -> PathBuf {
        data_dir.join(&self.key_file)
    }
}

/// `[service]`: whom the gateway runs as (`crate::service`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// Started as root, the gateway binds its ports and opens its files, then runs as this
    /// user (and its groups). The user must exist.
    pub user: String,
    /// Keep running as root when started as root (no change of user). Not recommended: a
    /// hole in any parser would then be root's.
    pub allow_root: bool,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            user: defaults::SERVICE_USER.into(),
            allow_root: false,
        }
    }
}

/// `[admin]`: the admin API on a Unix socket in `data_dir` (`crate::admin`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve the admin API (`data_dir/admin.sock`); the CLI then acts through it.
    pub enabled: bool,
    /// Group of the socket (mode 0660) and of the data directory's traverse bit; ""
    /// = the gateway's own group.
    pub socket_group: String,
    /// Members may use every endpoint; root and the gateway's own user always may. ""
    /// = nobody else.
    pub operator_group: String,
    /// Members may read (GET) only. "" = nobody.
    pub audit_group: String,
    /// Largest request body (a PKCS#12 file or a CRL, base64 in JSON), bytes.
    pub max_request_bytes: usize,
    /// Requests handled at once; more wait for a turn.
    pub max_concurrent_requests: usize,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Seconds a connection may take to send a request's header, and may stay idle
    /// between requests; then it is closed.
    pub header_timeout_secs: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: true,
            socket_group: String::new(),
            operator_group: String::new(),
            audit_group: String::new(),
            max_request_bytes: defaults::ADMIN_MAX_REQUEST_BYTES,
            max_concurrent_requests: defaults::ADMIN_MAX_CONCURRENT_REQUESTS,
            max_connections: defaults::ADMIN_MAX_CONNECTIONS,
            header_timeout_secs: defaults::ADMIN_HEADER_TIMEOUT_SECS,
        }
    }
}

/// How often a recipient gets a quarantine report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DigestFrequency {
    Off,
    Hourly,
    Daily,
    Weekly,
}

impl DigestFrequency {
    pub fn as_str(self) -> &'static str {
        match self {
            DigestFrequency::Off => "off",
            DigestFrequency::Hourly => "hourly",
            DigestFrequency::Daily => "daily",
            DigestFrequency::Weekly => "weekly",
        }
    }

    pub fn parse(s: &str) -> Option<DigestFrequency> {
        Some(match s {
            "off" => DigestFrequency::Off,
            "hourly" => DigestFrequency::Hourly,
            "daily" => DigestFrequency::Daily,
            "weekly" => DigestFrequency::Weekly,
            _ => return None,
        })
    }
}

/// Why an entry was held, as reports group it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HeldReason {
    /// Over the score threshold.
    Spam,
    /// A virus (ClamAV): users may only ask an operator to release it.
    Virus,
    /// Anything else that forced the hold: a rule, a list, a DMARC policy.
    Policy,
}

impl HeldReason {
    /// The class of an entry's rule (`quarantine::rule_of`).
    pub fn of_rule(rule: &str) -> HeldReason {
        if rule == "score" {
            HeldReason::Spam
        } else if rule.starts_with("CLAM_VIRUS") {
            HeldReason::Virus
        } else {
            HeldReason::Policy
        }
    }
}

/// `[digest]`: quarantine reports mailed to recipients, with action links served by an
/// optional HTTPS endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestConfig {
    /// Send reports on the schedule (`portcullis digest send` works either way).
    pub enabled: bool,
    /// The default frequency of a recipient without an override: hourly, daily, weekly
    /// (`off`: only recipients with an override get reports).
    pub schedule: DigestFrequency,
    /// Time of day (UTC, "HH:MM") of daily and weekly reports.
    pub time: String,
    /// Day of weekly reports: mon … sun.
    pub weekday: String,
    /// The reports' sender; "" = `postmaster@<hostname>`.
    pub from: String,
    /// Which held entries are reported: spam, policy, virus. A virus entry is never
    /// offered for release; its recipient can only ask an operator.
    pub reasons: Vec<HeldReason>,
    /// Entries listed in one report at most (the newest; the total is always given).
    pub max_entries: usize,
    /// The HTTPS endpoint for the action links ("ip:port"); "" = reports without links.
    pub http_bind: String,
    /// The links' start, e.g. "https://gw.example.com:8443"; "" = `https://<hostname>:<port
    /// of http_bind>`.
    pub base_url: String,
    /// Certificate and key of the endpoint; unset = the first listener's, else the
    /// gateway's self-signed one.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Requests one client address may make per minute; more get 429.
    pub rate_per_minute: u32,
    /// Requests one link may get per minute; more get 429.
    pub token_rate_per_minute: u32,
    /// Connections to the endpoint open at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            enabled: false,
            schedule: DigestFrequency::Daily,
            time: "07:00".into(),
            weekday: "mon".into(),
            from: String::new(),
            reasons: vec![HeldReason::Spam, HeldReason::Policy, HeldReason::Virus],
            max_entries: 200,
            http_bind: String::new(),
            base_url: String::new(),
            tls_cert: None,
            tls_key: None,
            rate_per_minute: 60,
            token_rate_per_minute: 10,
            max_connections: 256,
        }
    }
}

pub const WEEKDAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

impl DigestConfig {
    /// (hour, minute) of `time`.
    pub fn time_of_day(&self) -> (u32, u32) {
        parse_hh_mm(&self.time).unwrap_or((7, 0))
    }

    /// 0 = Monday.
    pub fn weekday_index(&self) -> u32 {
        WEEKDAYS
            .iter()
            .position(|d| *d == self.weekday)
            .unwrap_or(0) as u32
    }

    fn validate(&self) -> anyhow::Result<()> {
        if parse_hh_mm(&self.time).is_none() {
            bail!(
                "key `digest.time`: {:?} is not a time of day \"HH:MM\"",
                self.time
            );
        }
        if !WEEKDAYS.contains(&self.weekday.as_str()) {
            bail!(
                "key `digest.weekday`: {:?} is not one of {}",
                self.weekday,
                WEEKDAYS.join(", ")
            );
        }
        if !self.http_bind.is_empty() && self.http_bind.parse::<SocketAddr>().is_err() {
            bail!(
                "key `digest.http_bind`: {:?} is not \"ip:port\"",
                self.http_bind
            );
        }
        if !self.base_url.is_empty() && !self.base_url.starts_with("https://") {
            bail!("key `digest.base_url`: must start with https://");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("keys `digest.tls_cert` and `digest.tls_key`: give both or neither");
        }
        if self.max_entries == 0 || self.max_connections == 0 {
            bail!("keys `digest.max_entries`, `digest.max_connections`: must be greater than 0");
        }
        if self.rate_per_minute == 0 || self.token_rate_per_minute == 0 {
            bail!(
                "keys `digest.rate_per_minute`, `digest.token_rate_per_minute`: must be greater than 0"
            );
        }
        Ok(())
    }
}

fn parse_hh_mm(s: &str) -> Option<(u32, u32)> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.len() == 5).then_some((h, m))
}

impl AdminConfig {
    fn validate(&self) -> anyhow::Result<()> {
        for (key, name) in [
            ("admin.socket_group", &self.socket_group),
            ("admin.operator_group", &self.operator_group),
            ("admin.audit_group", &self.audit_group),
        ] {
            let ok = name.len() <= 64
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !ok {
                bail!("key `{key}`: {name:?} is not a group name");
            }
        }
        if self.max_request_bytes == 0 {
            bail!("key `admin.max_request_bytes`: must be greater than 0");
        }
        if self.max_concurrent_requests == 0 {
            bail!("key `admin.max_concurrent_requests`: must be greater than 0");
        }
        if self.max_connections == 0 {
            bail!("key `admin.max_connections`: must be greater than 0");
        }
        if self.header_timeout_secs == 0 {
            bail!("key `admin.header_timeout_secs`: must be greater than 0");
        }
        Ok(())
    }
}

/// The configuration file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub hostname: String,
    pub data_dir: PathBuf,
    pub local_domains: Vec<String>,
    pub internal_networks: Vec<IpNet>,
    pub listeners: Vec<ListenerConfig>,
    pub inbound_next_hop: String,
    pub outbound_smarthost: Option<String>,
    /// DNS servers for MX lookups and authentication ("ip:port"); empty = the system
    /// resolver.
    pub dns_servers: Vec<SocketAddr>,
    /// Seconds between DNS health probes (the dashboard's and `portcullis_dns_up`);
    /// 0 = no probe.
    pub dns_health_interval_secs: u64,
    /// Per partner domain TLS requirements (inbound and outbound).
    pub tls_policy: Vec<TlsPolicy>,
    /// Extra CA certificates (PEM) trusted when verifying the servers we deliver to, besides
    /// the system roots (for `require_verified_cert` outbound).
    pub outbound_tls_ca: Option<PathBuf>,
    pub max_message_size: usize,
    pub max_recipients: usize,
    /// "" disables the metrics endpoint.
    pub metrics_bind: String,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub recipients: RecipientsConfig,
    pub queue: QueueConfig,
    pub verdict: VerdictConfig,
    pub clamav: ClamavConfig,
    pub bayes: BayesConfig,
    pub auth: AuthConfig,
    pub trust: TrustConfig,
    pub certs: CertsConfig,
    /// Outbound DKIM keys; empty = outbound mail is not signed.
    pub dkim_signing: Vec<DkimSigningConfig>,
    pub smime: SmimeConfig,
    pub service: ServiceConfig,
    pub admin: AdminConfig,
    pub quarantine: QuarantineConfig,
    pub digest: DigestConfig,
    /// Points overrides: `SYMBOL_NAME = points`.
    pub symbols: BTreeMap<String, f64>,
    /// Per-stage settings by stage name.
    pub stages: BTreeMap<String, StageConfig>,
    /// Ordered rules (`docs/rules.md`). A file without `[[rules]]` and without
    /// `rules_file` has none: the `[verdict]` thresholds decide, as they always did. The
    /// embedded defaults (no config file) have the built-in set.
    #[serde(default)]
    pub rules: Vec<crate::rules::RuleConfig>,
    /// A TOML file of `[[rules]]` instead of `[[rules]]` here; relative to the config
    /// file's directory.
    pub rules_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            hostname: defaults::HOSTNAME.into(),
            data_dir: defaults::DATA_DIR.into(),
            local_domains: vec![defaults::LOCAL_DOMAIN.into()],
            internal_networks: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
            listeners: vec![ListenerConfig {
                bind: defaults::LISTEN.parse().unwrap(),
                tls: TlsMode::Starttls,
                cert: None,
                key: None,
                client_ca: None,
            }],
            inbound_next_hop: defaults::INBOUND_NEXT_HOP.into(),
            outbound_smarthost: None,
            dns_servers: Vec::new(),
            dns_health_interval_secs: defaults::DNS_HEALTH_SECS,
            tls_policy: Vec::new(),
            outbound_tls_ca: None,
            max_message_size: defaults::MAX_MESSAGE_SIZE,
            max_recipients: defaults::MAX_RECIPIENTS,
            metrics_bind: defaults::METRICS_BIND.into(),
            log_format: LogFormat::Text,
            limits: Limits::default(),
            recipients: RecipientsConfig::default(),
            queue: QueueConfig::default(),
            verdict: VerdictConfig::default(),
            clamav: ClamavConfig::default(),
            bayes: BayesConfig::default(),
            auth: AuthConfig::default(),
            trust: TrustConfig::default(),
            certs: CertsConfig::default(),
            dkim_signing: Vec::new(),
            smime: SmimeConfig::default(),
            service: ServiceConfig::default(),
            admin: AdminConfig::default(),
            quarantine: QuarantineConfig::default(),
            digest: DigestConfig::default(),
            symbols: BTreeMap::new(),
            stages: BTreeMap::new(),
            rules: crate::rules::default_rules(),
            rules_file: None,
        }
    }
}

/// Names of the stages the pipeline knows; `[stages.X]` for any other name is an error.
pub const KNOWN_STAGES: &[&str] = &[
    "smime",
    "auth",
    "lists",
    "trust",
    "header_sanity",
    "content",
    "tls_reputation",
    "bayes",
    "clamav",
];

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse_in(&text, base).with_context(|| format!("config file {}", path.display()))
    }

    /// Parse and validate config text (a `rules_file` is relative to the working
    /// directory).
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        Self::parse_in(text, Path::new("."))
    }

    fn parse_in(text: &str, base: &Path) -> anyhow::Result<Config> {
        let mut config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        config.read_rules_file(base)?;
        config.validate()?;
        Ok(config.normalized())
    }

    /// `rules_file`: its `[[rules]]` become the config's.
    fn read_rules_file(&mut self, base: &Path) -> anyhow::Result<()> {
        let Some(file) = &self.rules_file else {
            return Ok(());
        };
        if !self.rules.is_empty() {
            bail!(
                "key `rules_file`: set, and [[rules]] are in the config too; keep the rules in one place"
            );
        }
        let path = base.join(file);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("key `rules_file`: cannot read {}", path.display()))?;
        let parsed: crate::rules::RulesFile = toml::from_str(&text)
            .map_err(|e| anyhow::anyhow!("rules file {}: {e}", path.display()))?;
        self.rules = parsed.rules;
        self.rules_file = Some(path);
        Ok(())
    }

    fn normalized(mut self) -> Config {
        for d in &mut self.local_domains {
            *d = d.trim_end_matches('.').to_ascii_lowercase();
        }
        self
    }

    /// Check the values serde cannot check; each error names its key.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.hostname.is_empty() || self.hostname.contains(char::is_whitespace) {
            bail!(
                "key `hostname`: must be a host name without spaces, got {:?}",
                self.hostname
            );
        }
        if self.listeners.is_empty() {
            bail!("key `listeners`: at least one [[listeners]] is needed");
        }
        for (i, l) in self.listeners.iter().enumerate() {
            if l.cert.is_some() != l.key.is_some() {
                bail!("key `listeners[{i}]`: `cert` and `key` must be given together");
            }
            if l.tls == TlsMode::None && l.cert.is_some() {
                bail!("key `listeners[{i}].cert`: set, but `tls = \"none\"` would not use it");
            }
        }
        for (i, p) in self.tls_policy.iter().enumerate() {
            let d = p.domain.trim_start_matches('.');
            if d.is_empty() || d.contains(['@', ' ', '[', ']']) {
                bail!(
                    "key `tls_policy[{i}].domain`: {:?} is not a domain name",
                    p.domain
                );
            }
            if p.require_verified_cert && !p.require_tls {
                bail!("key `tls_policy[{i}]`: require_verified_cert needs require_tls = true");
            }
        }
        if self.trust.half_life_days.is_nan() || self.trust.half_life_days <= 0.0 {
            bail!(
                "key `trust.half_life_days`: must be greater than 0, got {}",
                self.trust.half_life_days
            );
        }
        if self.trust.pin_reload_secs == 0 {
            bail!("key `trust.pin_reload_secs`: must be greater than 0");
        }
        for d in &self.local_domains {
            if d.is_empty() || d.contains(['@', ' ', '[', ']']) {
                bail!("key `local_domains`: {d:?} is not a domain name");
            }
        }
        parse_host_port(&self.inbound_next_hop)
            .with_context(|| "key `inbound_next_hop`".to_string())?;
        if let Some(s) = &self.outbound_smarthost {
            parse_host_port(s).with_context(|| "key `outbound_smarthost`".to_string())?;
        }
        if !self.metrics_bind.is_empty() {
            self.metrics_bind.parse::<SocketAddr>().map_err(|e| {
                anyhow::anyhow!(
                    "key `metrics_bind`: {e} (expected e.g. 127.0.0.1:9025, or \"\" to disable)"
                )
            })?;
        }
        if self.max_message_size < 1024 {
            bail!(
                "key `max_message_size`: {} bytes is too small (at least 1024)",
                self.max_message_size
            );
        }
        if self.max_recipients == 0 {
            bail!("key `max_recipients`: must be at least 1");
        }
        let l = &self.limits;
        for (key, v) in [
            ("limits.max_connections", l.max_connections as u64),
            (
                "limits.max_connections_per_ip",
                l.max_connections_per_ip as u64,
            ),
            ("limits.max_bad_commands", l.max_bad_commands as u64),
            ("limits.idle_timeout_secs", l.idle_timeout_secs),
            ("limits.session_timeout_secs", l.session_timeout_secs),
            ("limits.command_timeout_secs", l.command_timeout_secs),
            ("limits.stress_timeout_secs", l.stress_timeout_secs),
            (
                "limits.spool_threshold_bytes",
                l.spool_threshold_bytes as u64,
            ),
            (
                "limits.max_large_messages_in_memory",
                l.max_large_messages_in_memory as u64,
            ),
            ("limits.max_mime_parts", l.max_mime_parts as u64),
            ("limits.max_mime_depth", l.max_mime_depth as u64),
            (
                "queue.delivery_concurrency",
                self.queue.delivery_concurrency as u64,
            ),
            ("queue.retry_initial_secs", self.queue.retry_initial_secs),
            ("queue.scan_interval_secs", self.queue.scan_interval_secs),
            (
                "queue.connect_timeout_secs",
                self.queue.connect_timeout_secs,
            ),
            ("queue.reply_timeout_secs", self.queue.reply_timeout_secs),
        ] {
            if v == 0 {
                bail!("key `{key}`: must be greater than 0");
            }
        }
        if !(1..=128).contains(&l.ipv6_prefix_len) {
            bail!(
                "key `limits.ipv6_prefix_len`: must be 1 to 128, got {}",
                l.ipv6_prefix_len
            );
        }
        self.recipients.validate()?;
        self.bayes.validate()?;
        self.smime.validate()?;
        self.admin.validate()?;
        let user = &self.service.user;
        if user.len() > 32
            || !user
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            bail!("key `service.user`: {user:?} is not a user name");
        }
        self.quarantine.validate()?;
        self.digest.validate()?;
        for (i, d) in self.dkim_signing.iter().enumerate() {
            if d.domain.is_empty() || d.domain.contains(['@', ' ', '[', ']']) {
                bail!(
                    "key `dkim_signing[{i}].domain`: {:?} is not a domain name",
                    d.domain
                );
            }
            if d.selector.is_empty()
                || !d
                    .selector
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
            {
                bail!(
                    "key `dkim_signing[{i}].selector`: {:?} is not a DNS label",
                    d.selector
                );
            }
        }
        for (key, v) in [
            ("auth.dns_timeout_ms", self.auth.dns_timeout_ms),
            ("auth.timeout_secs", self.auth.timeout_secs),
            ("auth.max_header_fields", self.auth.max_header_fields as u64),
            (
                "auth.max_dkim_signatures",
                self.auth.max_dkim_signatures as u64,
            ),
            ("auth.max_arc_sets", self.auth.max_arc_sets as u64),
            (
                "auth.max_signed_headers",
                self.auth.max_signed_headers as u64,
            ),
            ("certs.reload_secs", self.certs.reload_secs),
            (
                "certs.max_harvest_per_message",
                self.certs.max_harvest_per_message as u64,
            ),
            (
                "certs.crl_connect_timeout_secs",
                self.certs.crl_connect_timeout_secs,
            ),
            (
                "certs.crl_read_timeout_secs",
                self.certs.crl_read_timeout_secs,
            ),
            ("certs.crl_max_bytes", self.certs.crl_max_bytes as u64),
        ] {
            if v == 0 {
                bail!("key `{key}`: must be greater than 0");
            }
        }
        let c = &self.clamav;
        if c.enabled {
            if c.socket.is_none() {
                parse_host_port(&c.address).with_context(|| "key `clamav.address`".to_string())?;
            }
            for (key, v) in [
                ("clamav.connect_timeout_ms", c.connect_timeout_ms),
                ("clamav.scan_timeout_secs", c.scan_timeout_secs),
                ("clamav.max_connections", c.max_connections as u64),
                ("clamav.max_stream_size", c.max_stream_size as u64),
                ("clamav.health_interval_secs", c.health_interval_secs),
            ] {
                if v == 0 {
                    bail!("key `{key}`: must be greater than 0");
                }
            }
        }
        if !(1..=100).contains(&l.stress_threshold_percent) {
            bail!(
                "key `limits.stress_threshold_percent`: must be 1 to 100, got {}",
                l.stress_threshold_percent
            );
        }
        if l.max_command_line < 512 {
            bail!(
                "key `limits.max_command_line`: RFC 5321 needs at least 512, got {}",
                l.max_command_line
            );
        }
        let v = &self.verdict;
        if !(v.tag_score <= v.quarantine_score && v.quarantine_score <= v.reject_score) {
            bail!(
                "key `verdict`: thresholds must satisfy tag_score <= quarantine_score <= reject_score (got {}, {}, {})",
                v.tag_score,
                v.quarantine_score,
                v.reject_score
            );
        }
        for name in self.symbols.keys() {
            if !filters::symbols::is_registered(name) {
                bail!("key `symbols.{name}`: no such symbol (see `portcullis symbols`)");
            }
        }
        if let Err(e) = crate::rules::RuleSet::compile(&self.rules) {
            match &self.rules_file {
                Some(f) => bail!("rules file {}: {e}", f.display()),
                None => bail!("[[rules]]: {e}"),
            }
        }
        // Journal files must be writable before the first message needs one.
        for rule in &self.rules {
            if let Some(dir) = rule.actions.archive.as_ref().and_then(|a| a.dir.as_ref())
                && let Err(e) = crate::actions::archive::check_dir(dir)
            {
                bail!("rule `{}`: key `actions.archive.dir`: {e}", rule.name);
            }
        }
        for name in self.stages.keys() {
            if !KNOWN_STAGES.contains(&name.as_str()) {
                bail!(
                    "key `stages.{name}`: no such stage (known: {})",
                    KNOWN_STAGES.join(", ")
                );
            }
        }
        Ok(())
    }

    /// The TLS policy for a partner domain in one direction: an exact entry, else the
    /// nearest ".parent" entry.
    pub fn tls_policy_for(
        &self,
        domain: &str,
        direction: filters::Direction,
    ) -> Option<&TlsPolicy> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let policies = || {
            self.tls_policy
                .iter()
                .filter(|p| p.direction.covers(direction))
        };
        policies()
            .find(|p| p.domain.eq_ignore_ascii_case(&domain))
            .or_else(|| {
                policies().filter(|p| p.domain.starts_with('.')).find(|p| {
                    domain.len() > p.domain.len()
                        && domain
                            .to_ascii_lowercase()
                            .ends_with(&p.domain.to_ascii_lowercase())
                })
            })
    }

    pub fn stage(&self, name: &str) -> StageConfig {
        self.stages.get(name).cloned().unwrap_or_default()
    }

    pub fn is_internal(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        self.internal_networks.iter().any(|n| n.contains(&ip))
    }

    /// Whether mail for `domain` (lowercase, no trailing dot) is ours.
    /// An entry starting with "." matches every subdomain.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.local_domains.iter().any(|d| {
            if let Some(suffix) = d.strip_prefix('.') {
                domain.len() > suffix.len() + 1
                    && domain.ends_with(suffix)
                    && domain.as_bytes()[domain.len() - suffix.len() - 1] == b'.'
            } else {
                d == domain
            }
        })
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.idle_timeout_secs)
    }

    pub fn session_timeout(&self) -> Duration {
        Duration::from_secs(self.limits.session_timeout_secs)
    }

    /// The idle wait and a command line's time: (normal, under stress).
    pub fn command_waits(&self, stressed: bool) -> (Duration, Duration) {
        let l = &self.limits;
        if stressed {
            let s = Duration::from_secs(l.stress_timeout_secs);
            (
                s.min(self.idle_timeout()),
                s.min(Duration::from_secs(l.command_timeout_secs)),
            )
        } else {
            (
                self.idle_timeout(),
                Duration::from_secs(l.command_timeout_secs),
            )
        }
    }
}

/// "host:port" → (host, port), with the port required.
pub fn parse_host_port(s: &str) -> anyhow::Result<(String, u16)> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("{s:?} must be host:port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow::anyhow!("{s:?}: port {port:?} is not a number 1-65535"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        bail!("{s:?} must be host:port");
    }
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_embedded_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.hostname, defaults::HOSTNAME);
        assert_eq!(c.listeners.len(), 1);
        assert!(c.is_internal("127.0.0.1".parse().unwrap()));
        assert!(!c.is_internal("192.0.2.1".parse().unwrap()));
    }

    #[test]
    fn example_config_parses_and_matches_defaults() {
        let text = include_str!("../../examples/portcullis.toml");
        let c = Config::parse(text).unwrap();
        let d = Config::default();
        assert_eq!(c.max_message_size, d.max_message_size);
        let (q, dq) = (&c.quarantine, &d.quarantine);
        assert_eq!(q.retention_days, dq.retention_days);
        assert_eq!(q.max_total_size, dq.max_total_size);
        assert_eq!(q.expiry_interval_secs, dq.expiry_interval_secs);
        assert_eq!(q.preview_max_bytes, dq.preview_max_bytes);
        assert_eq!(q.field_max_chars, dq.field_max_chars);
        assert_eq!(q.max_page, dq.max_page);
        assert_eq!(c.limits.max_bad_commands, d.limits.max_bad_commands);
        assert_eq!(c.queue.retry_initial_secs, d.queue.retry_initial_secs);
        assert_eq!(c.certs.key_file, d.certs.key_file);
        assert_eq!(c.certs.system_roots, d.certs.system_roots);
        assert_eq!(c.certs.reload_secs, d.certs.reload_secs);
        assert_eq!(c.limits.bare_line_endings, d.limits.bare_line_endings);
        assert_eq!(
            c.limits.spool_threshold_bytes,
            d.limits.spool_threshold_bytes
        );
        assert_eq!(
            c.limits.max_large_messages_in_memory,
            d.limits.max_large_messages_in_memory
        );
        assert_eq!(c.limits.ipv6_prefix_len, d.limits.ipv6_prefix_len);
        assert_eq!(c.recipients.verify, d.recipients.verify);
        assert_eq!(c.recipients.reload_secs, d.recipients.reload_secs);
        assert_eq!(
            c.recipients.callout_positive_ttl_secs,
            d.recipients.callout_positive_ttl_secs
        );
        assert_eq!(
            c.recipients.callout_negative_ttl_secs,
            d.recipients.callout_negative_ttl_secs
        );
        assert_eq!(
            c.recipients.callout_timeout_secs,
            d.recipients.callout_timeout_secs
        );
        assert_eq!(
            c.recipients.callout_cache_entries,
            d.recipients.callout_cache_entries
        );
        assert_eq!(
            c.queue.dsn_max_returned_bytes,
            d.queue.dsn_max_returned_bytes
        );
        // The example ships the embedded defaults' rule set.
        assert_eq!(c.rules, d.rules);
        assert_eq!(c.rules, crate::rules::default_rules());
        // And every other key: the whole configuration, as its debug form shows it. The
        // example spells out each stage's settings, the defaults leave them implicit.
        let mut c = c;
        for name in c.stages.keys() {
            let (e, d) = (
                format!("{:?}", c.stage(name)),
                format!("{:?}", d.stage(name)),
            );
            assert_eq!(
                e, d,
                "[stages.{name}] in the example differs from the default"
            );
        }
        c.stages.clear();
        let (example, embedded) = (format!("{c:#?}"), format!("{d:#?}"));
        let differing: Vec<_> = example
            .lines()
            .zip(embedded.lines())
            .filter(|(a, b)| a != b)
            .take(5)
            .collect();
        assert!(
            differing.is_empty() && example.lines().count() == embedded.lines().count(),
            "examples/portcullis.toml and the embedded defaults differ (example, default): {differing:#?}"
        );
    }

    #[test]
    fn rules_only_where_written_and_errors_name_the_rule() {
        // A file without rules has none: the thresholds decide, as before rules existed.
        assert!(Config::parse("").unwrap().rules.is_empty());
        assert_eq!(Config::default().rules.len(), 4);
        let e = format!(
            "{:#}",
            Config::parse("[[rules]]\nname = \"x\"\nactions = { skip = \"nope\" }").unwrap_err()
        );
        assert!(e.contains("rule `x`") && e.contains("\"nope\""), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("rules_file = \"/nonexistent/rules.toml\"").unwrap_err()
        );
        assert!(e.contains("rules_file"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("r.toml"),
            "[[rules]]\nname = \"from-file\"\nactions = { tag = true }\n",
        )
        .unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "rules_file = \"r.toml\"\n").unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.rules[0].name, "from-file");
        std::fs::write(
            &path,
            "rules_file = \"r.toml\"\n[[rules]]\nname = \"here\"\n",
        )
        .unwrap();
        let e = format!("{:#}", Config::load(&path).unwrap_err());
        assert!(e.contains("rules_file") && e.contains("one place"), "{e}");
    }

    #[test]
    fn recipient_verification_and_body_limits_are_checked() {
        let e = format!(
            "{:#}",
            Config::parse("[recipients]\nverify = \"list\"").unwrap_err()
        );
        assert!(e.contains("recipients.list_file"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[recipients]\nlist_file = \"/x\"").unwrap_err()
        );
        assert!(e.contains("recipients.list_file"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[limits]\nipv6_prefix_len = 0").unwrap_err()
        );
        assert!(e.contains("limits.ipv6_prefix_len"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[limits]\nbare_line_endings = \"keep\"").unwrap_err()
        );
        assert!(
            e.contains("bare_line_endings") || e.contains("normalize"),
            "{e}"
        );
        let e = format!(
            "{:#}",
            Config::parse("[limits]\nspool_threshold_bytes = 0").unwrap_err()
        );
        assert!(e.contains("limits.spool_threshold_bytes"), "{e}");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let e = Config::parse("hostnme = \"x\"").unwrap_err().to_string();
        assert!(e.contains("hostnme"), "{e}");
        let e = Config::parse("[limits]\nmax_conections = 3")
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_conections"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = format!(
            "{:#}",
            Config::parse("inbound_next_hop = \"nohost\"").unwrap_err()
        );
        assert!(e.contains("inbound_next_hop"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("[verdict]\ntag_score = 20.0").unwrap_err()
        );
        assert!(e.contains("verdict"), "{e}");
        let e = format!(
            "{:#}",
            Config::parse("internal_networks = [\"10.0.0.0/33\"]").unwrap_err()
        );
        assert!(e.contains("internal_networks"), "{e}");
        let e = format!("{:#}", Config::parse("[symbols]\nNOPE = 1.0").unwrap_err());
        assert!(e.contains("symbols.NOPE"), "{e}");
    }

    #[test]
    fn local_domains_exact_and_subdomain() {
        let c = Config::parse("local_domains = [\"Example.COM.\", \".corp.test\"]").unwrap();
        assert!(c.is_local_domain("example.com"));
        assert!(!c.is_local_domain("evil-example.com"));
        assert!(c.is_local_domain("mail.corp.test"));
        assert!(!c.is_local_domain("corp.test"));
        assert!(!c.is_local_domain("xcorp.test"));
    }

    #[test]
    fn quarantine_sizes_parse_and_bad_values_name_their_key() {
        let c = Config::parse("[quarantine]\nmax_total_size = \"500 MiB\"\nretention_days = 7\n")
            .unwrap();
        assert_eq!(c.quarantine.max_total_size.as_u64(), 500 * 1024 * 1024);
        assert_eq!(c.quarantine.retention_secs(), 7 * 86400);
        let c = Config::parse("[quarantine]\nmax_total_size = 1048576\n").unwrap();
        assert_eq!(c.quarantine.max_total_size.as_u64(), 1 << 20);
        for (text, key) in [
            (
                "[quarantine]\nretention_days = 0\n",
                "quarantine.retention_days",
            ),
            (
                "[quarantine]\nmax_total_size = 0\n",
                "quarantine.max_total_size",
            ),
            ("[quarantine]\nmax_page = 0\n", "quarantine.max_page"),
            (
                "[quarantine]\nmax_total_size = \"lots\"\n",
                "max_total_size",
            ),
            ("[quarantine]\nkeep = 1\n", "keep"),
        ] {
            let e = format!("{:#}", Config::parse(text).unwrap_err());
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
