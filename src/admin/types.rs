//! Every request and response body of the admin API (`/v1`), with serde and OpenAPI
//! schemas. The server ([`super::server`]), the operations ([`super::ops`]) and the client
//! ([`super::client`]) all speak these types; a console or script in Rust uses them too.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use crate::lists::{ListEntry, ListName, NewListEntry};

/// Every error: `{ "error": { "code", "message", "field" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// `bad_request`, `not_found`, `forbidden`, `payload_too_large`, `unsupported`,
    /// `unavailable`, `internal`.
    pub code: String,
    /// What went wrong and what to do, for people.
    pub message: String,
    /// The request field at fault (a JSON path such as `recipient` or `data`), for
    /// `bad_request`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// "ok".
    pub status: String,
    pub version: String,
    pub hostname: String,
    pub pid: u32,
    pub uptime_secs: u64,
}

/// `POST /v1/config/reload`: what the reload put in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReloadResult {
    /// The file that was read.
    pub path: String,
    /// Keys whose value changed and that are in force now (dotted paths).
    pub applied: Vec<String>,
    /// Keys with a new value that needs a restart: the running value stays.
    pub needs_restart: Vec<String>,
}

/// One (direction, verdict) counter since the gateway started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct VerdictCount {
    /// `inbound` or `outbound`.
    pub direction: String,
    /// `accept`, `tag`, `quarantine`, `reject` or `tempfail`.
    pub verdict: String,
    pub count: u64,
}

/// The queue at a glance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueSummary {
    /// Messages waiting for delivery.
    pub queued: i64,
    /// Messages with at least one recipient held in the quarantine.
    pub held: i64,
    /// Unix seconds the oldest waiting message arrived.
    pub oldest_received_at: Option<i64>,
    /// Its age in seconds.
    pub oldest_age_secs: Option<i64>,
}

/// clamd as the last health probe saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClamdStatus {
    pub up: bool,
    pub version: Option<String>,
    pub signatures: Option<String>,
    pub signature_date: Option<String>,
    pub latency_ms: Option<f64>,
}

/// The resolver as the last DNS health probe saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DnsStatus {
    pub up: bool,
    pub latency_ms: Option<f64>,
    /// Why the probe failed, when it did.
    pub error: Option<String>,
    /// Seconds since the probe.
    pub age_secs: i64,
}

/// SMTP connections since start and how many of them were upgraded with STARTTLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TlsShare {
    pub connections: u64,
    pub tls: u64,
}

/// How often a symbol was reported since midnight UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SymbolCount {
    pub name: String,
    pub count: u64,
}

/// `GET /v1/counters`: what a console's dashboard shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Counters {
    /// Messages by direction and verdict since start (as the metrics count them).
    pub messages: Vec<VerdictCount>,
    pub queue: QueueSummary,
    /// `None`: ClamAV is not enabled, or no probe answered yet.
    pub clamd: Option<ClamdStatus>,
    /// `None`: the probe is off (`dns_health_interval_secs = 0`) or has not run yet.
    pub dns: Option<DnsStatus>,
    pub tls: TlsShare,
    /// The most frequent symbols since midnight UTC, most frequent first (at most 10).
    pub symbols: Vec<SymbolCount>,
    pub uptime_secs: u64,
}

/// `GET /v1/whoami`: the caller as the API sees it, and what its role allows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WhoAmI {
    pub uid: u32,
    pub gid: u32,
    /// The user name, when the system knows the uid.
    pub user: Option<String>,
    /// `operator` (every endpoint) or `auditor` (reads only).
    pub role: String,
    /// Whether changes are allowed (false for an auditor).
    pub may_change: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RecipientStatus {
    Pending,
    Delivered,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueRecipient {
    pub address: String,
    pub status: RecipientStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A message in the queue.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QueueMessage {
    /// Hex digits.
    pub id: String,
    pub direction: Direction,
    /// Envelope sender; "" for the null sender.
    pub mail_from: String,
    pub recipients: Vec<QueueRecipient>,
    /// Unix seconds.
    pub received_at: i64,
    pub size: u64,
    pub attempts: u32,
    /// Unix seconds of the next delivery attempt.
    pub next_attempt: i64,
    pub last_error: Option<String>,
    pub client_ip: String,
    pub helo: String,
    pub score: f64,
    /// `NAME(points), ...`
    pub symbols: String,
    /// The spool file holding a large body; `None`: the body is inline in the database.
    #[serde(default)]
    pub body_file: Option<String>,
}

/// What an action on one queued message did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QueueActionResult {
    pub id: String,
    /// `due now` or `deleted`.
    pub result: String,
}

/// A certificate file for `POST /v1/certs` (import) and the other uploads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CertUpload {
    /// The file's bytes, base64: PEM, DER, PKCS#7 or PKCS#12 (for CRLs: PEM or DER).
    pub data: String,
    /// The file's name, for messages.
    #[serde(default)]
    pub name: Option<String>,
    /// The PKCS#12 file's (or encrypted PEM key's) password.
    #[serde(default)]
    pub password: Option<String>,
    /// Make the end-entity certificate(s) this domain's gateway certificate (with a key:
    /// its gateway identity). Import only.
    #[serde(default)]
    pub domain: Option<String>,
}

/// What an import did to one certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoredCert {
    pub fingerprint: String,
    pub subject: String,
    pub addresses: Vec<String>,
    pub is_ca: bool,
    /// `new`, `updated` or `unchanged`.
    pub change: String,
    /// What was stored, in words.
    pub details: Vec<String>,
}

/// The result of an import or trust-ca: each certificate, plus warnings for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImportReport {
    pub stored: Vec<StoredCert>,
    pub warnings: Vec<String>,
}

/// What an import of CRLs did to one CRL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StoredCrl {
    pub fingerprint: String,
    pub issuer: String,
    pub this_update: i64,
    pub next_update: Option<i64>,
    pub revoked: usize,
    /// `new`, `unchanged`, or why it was not stored.
    pub change: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ChainLink {
    pub subject: String,
    pub fingerprint: String,
}

/// A certificate's chain against the trust anchors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Chain {
    pub trusted: bool,
    /// The anchor's subject when trusted, else why not.
    pub detail: String,
    /// The certificates above this one, up to the anchor.
    pub chain: Vec<ChainLink>,
}

/// Revocation status: `{ "state": "off" | "good" | "revoked" | "unknown", "detail": ... }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", content = "detail", rename_all = "lowercase")]
pub enum Revocation {
    Off,
    Good,
    Revoked(String),
    Unknown(String),
}

/// Everything about one certificate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Cert {
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub addresses: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// `not_after` as a date.
    pub expires: String,
    /// `None`: the extension is absent (no restriction).
    pub key_usage: Option<Vec<String>>,
    pub ext_key_usage: Option<Vec<String>>,
    pub is_ca: bool,
    pub key_agreement: bool,
    /// Domains of the addresses plus the gateway domains.
    pub domains: Vec<String>,
    /// Domains this is the gateway certificate of.
    pub gateway_domains: Vec<String>,
    /// `imported`, `harvested` or `trusted`.
    pub source: String,
    pub message_id: Option<String>,
    pub added_at: i64,
    pub capabilities: Option<Vec<String>>,
    /// A trust anchor (`trust-ca`).
    pub explicitly_trusted: bool,
    pub has_private_key: bool,
    pub chain: Chain,
    pub revocation: Revocation,
    pub usable_for_encryption: bool,
    pub encryption_problems: Vec<String>,
    pub signing_problems: Vec<String>,
}

/// One domain's certificates in a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DomainCerts {
    pub domain: String,
    pub certificates: usize,
    pub usable_for_encryption: usize,
    /// Fingerprints of the domain's gateway certificates.
    pub gateway: Vec<String>,
    pub certs: Vec<Cert>,
}

/// `GET /v1/certs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CertList {
    pub domains: Vec<DomainCerts>,
    /// CA certificates (empty when the listing is for one domain).
    pub cas: Vec<Cert>,
}

/// A deleted certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertDeleted {
    pub fingerprint: String,
    pub subject: String,
    /// Its private key was deleted too: mail encrypted to it can no longer be decrypted.
    pub had_private_key: bool,
}

/// `GET /v1/certs/{fingerprint}/pem`: the certificate, never the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CertPem {
    pub fingerprint: String,
    pub pem: String,
}

/// One domain's level of trust.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrustDomain {
    pub domain: String,
    /// Decayed weight of our users' mail to the domain (messages, roughly).
    pub weight: f64,
    /// The operator's pin: `high`, `medium`, `low` or `none`; absent: learned.
    pub pinned: Option<String>,
    pub correspondents: i64,
    pub servers: i64,
    pub tls_verified: i64,
    pub tls_unverified: i64,
    pub last_activity: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Correspondent {
    pub local: String,
    pub remote: String,
    pub weight: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TrustServer {
    pub network: String,
    pub messages: i64,
    pub first_seen: i64,
    pub last_seen: i64,
}

/// `GET /v1/trust/{domain}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrustDetails {
    pub domain: TrustDomain,
    pub correspondents: Vec<Correspondent>,
    pub servers: Vec<TrustServer>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum PinLevel {
    High,
    Medium,
    Low,
    None,
}

/// `PUT /v1/trust/{domain}/pin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PinRequest {
    pub level: PinLevel,
}

/// A domain's pin after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PinResult {
    pub domain: String,
    /// `None`: trust is learned again.
    pub pinned: Option<PinLevel>,
}

/// What adding a list entry did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ListAdded {
    /// `new`, or `updated` (same list, sender and recipient: comment and expiry replaced).
    pub change: String,
    pub entry: ListEntry,
}

/// The state of one held recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HeldState {
    Held,
    Released,
    Deleted,
    Expired,
}

/// A symbol of the verdict with its points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SymbolScore {
    pub name: String,
    pub points: f64,
}

/// One recipient of a held message, with the message's fields (display fields escaped).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuarantineEntry {
    /// The entry's id.
    pub entry: i64,
    /// The message's id (hex), for show, preview, raw, release, delete.
    pub message: String,
    pub recipient: String,
    pub state: HeldState,
    pub changed_at: i64,
    pub direction: Direction,
    pub mail_from: String,
    /// From:, To:, Subject:, Date:, Message-ID: as the message gave them (escaped).
    pub from: String,
    pub to: String,
    pub subject: String,
    pub date: String,
    pub message_id: String,
    pub size: u64,
    pub client_ip: String,
    pub helo: String,
    /// `TLSv1.3 TLS_AES_256_GCM_SHA384`; absent: plain text.
    pub tls: Option<String>,
    pub score: f64,
    pub symbols: Vec<SymbolScore>,
    /// What held it: `score 9.00`, `forced by CLAM_VIRUS`.
    pub reason: String,
    pub received_at: i64,
    pub expires_at: i64,
    /// When the recipient asked for a release from a quarantine report (unix seconds).
    pub release_requested_at: Option<i64>,
}

/// A page of a quarantine search; `next` is the `after` of the following page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuarantinePage {
    pub entries: Vec<QuarantineEntry>,
    pub next: Option<String>,
}

/// One change of a held recipient's state, and who made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuarantineAudit {
    pub id: i64,
    pub entry: i64,
    pub message: String,
    pub recipient: String,
    pub action: String,
    pub from_state: HeldState,
    pub to_state: HeldState,
    pub uid: i64,
    pub user_name: String,
    pub at: i64,
    pub detail: String,
}

/// `GET /v1/quarantine/{id}`: every recipient's entry, the audit, whether the body is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuarantineMessage {
    pub entries: Vec<QuarantineEntry>,
    pub audit: Vec<QuarantineAudit>,
    pub body_kept: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreviewHeader {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PreviewAttachment {
    pub name: String,
    pub content_type: String,
    pub size: u64,
}

/// A safe rendering of a held message: escaped header, text (HTML reduced to text),
/// attachments' names — nothing remote, no markup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuarantinePreview {
    pub headers: Vec<PreviewHeader>,
    pub text: String,
    pub from_html: bool,
    pub attachments: Vec<PreviewAttachment>,
    /// Only the beginning is shown (`quarantine.preview_max_bytes`).
    pub truncated: bool,
}

/// Which held entries: every field narrows; absent fields do not filter.
#[derive(
    Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema, utoipa::IntoParams,
)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QuarantineFilter {
    /// `held` (default), `released`, `deleted`, `expired`, or `all`.
    pub state: Option<String>,
    /// An address, or `@domain`.
    pub recipient: Option<String>,
    /// The envelope sender: an address, or `@domain`.
    pub sender: Option<String>,
    /// Words that must all be in the subject.
    pub subject: Option<String>,
    pub message_id: Option<String>,
    /// A symbol the message had.
    pub symbol: Option<String>,
    /// What held it: the forcing symbol, or `score`.
    pub reason: Option<String>,
    pub min_score: Option<f64>,
    pub max_score: Option<f64>,
    /// Received at or after (unix seconds).
    pub since: Option<i64>,
    /// Received before (unix seconds).
    pub until: Option<i64>,
    pub direction: Option<Direction>,
    /// One message's entries (its id).
    pub message: Option<String>,
    /// Only entries whose recipient asked for a release from a quarantine report.
    pub release_requested: Option<bool>,
}

/// `GET /v1/quarantine`: a filter and a page.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::IntoParams)]
#[serde(default, deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct QuarantineSearch {
    pub state: Option<String>,
    pub recipient: Option<String>,
    pub sender: Option<String>,
    pub subject: Option<String>,
    pub message_id: Option<String>,
    pub symbol: Option<String>,
    pub reason: Option<String>,
    pub min_score: Option<f64>,
    pub max_score: Option<f64>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub direction: Option<Direction>,
    pub message: Option<String>,
    /// Only entries whose recipient asked for a release from a quarantine report.
    pub release_requested: Option<bool>,
    /// Entries per page (at most `quarantine.max_page`; default 50).
    pub limit: Option<u32>,
    /// The `next` of the previous page.
    pub after: Option<String>,
    /// Oldest first instead of newest first.
    pub oldest_first: Option<bool>,
}

impl QuarantineSearch {
    /// The filter part.
    pub fn filter(&self) -> QuarantineFilter {
        QuarantineFilter {
            state: self.state.clone(),
            recipient: self.recipient.clone(),
            sender: self.sender.clone(),
            subject: self.subject.clone(),
            message_id: self.message_id.clone(),
            symbol: self.symbol.clone(),
            reason: self.reason.clone(),
            min_score: self.min_score,
            max_score: self.max_score,
            since: self.since,
            until: self.until,
            direction: self.direction,
            message: self.message.clone(),
            release_requested: self.release_requested,
        }
    }
}

/// Release or delete one held message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct HeldAction {
    /// Only this recipient; absent: every held recipient.
    pub recipient: Option<String>,
    /// Teach Bayes: a release is ham, a delete spam.
    pub learn: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    Release,
    Delete,
}

/// `POST /v1/quarantine/bulk`: act on every held entry a filter selects (a filter that
/// selects everything is refused).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    pub action: BulkAction,
    pub filter: QuarantineFilter,
    #[serde(default)]
    pub learn: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum LearnAs {
    Spam,
    Ham,
}

/// `POST /v1/quarantine/{id}/learn`: teach Bayes without releasing or deleting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LearnRequest {
    #[serde(rename = "as")]
    pub learn_as: LearnAs,
}

/// What a quarantine action did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeldActionResult {
    /// Entries that left the held state.
    pub touched: usize,
    /// Messages those entries belong to.
    pub messages: usize,
    /// Queue ids of the released copies.
    pub queued: Vec<String>,
    /// Messages the Bayes model learned.
    pub learned: usize,
}

/// `POST /v1/quarantine/{id}/list`: an allow or block entry for a held message's sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ListFromHeld {
    pub list: ListName,
    /// The sender's whole domain (`@domain`) rather than its address.
    #[serde(default)]
    pub domain: bool,
    /// Whom the entry is for: absent: everyone; a domain or one address.
    #[serde(default)]
    pub recipient: Option<String>,
    #[serde(default)]
    pub comment: Option<String>,
    #[serde(default)]
    pub expires_at: Option<i64>,
}

/// `POST /v1/digest/send`: send quarantine reports now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DigestSendRequest {
    /// Only this recipient (sent even when its frequency is off); absent: every recipient
    /// with new held entries whose frequency is not off.
    pub recipient: Option<String>,
    /// Compose and show the reports; send nothing, remember nothing.
    pub dry_run: bool,
}

/// What one report did (or would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DigestReport {
    pub recipient: String,
    /// New held entries since the recipient's last report.
    pub new: usize,
    /// How many of them the report lists (reasons not reported are left out).
    pub listed: usize,
    /// The queued report; absent in a dry run or when none was due.
    pub queue_id: Option<String>,
    /// The report itself, in a dry run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A recipient's own report frequency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DigestRecipient {
    pub recipient: String,
    pub frequency: crate::config::DigestFrequency,
}

/// `PUT /v1/digest/recipients/{recipient}`: set its frequency, or (absent) return it to
/// `[digest] schedule`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct DigestFrequencyChange {
    pub frequency: Option<crate::config::DigestFrequency>,
}
