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
    /// Messages held (quarantine verdict).
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

/// `GET /v1/counters`: what a console's dashboard shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Counters {
    /// Messages by direction and verdict since start (as the metrics count them).
    pub messages: Vec<VerdictCount>,
    pub queue: QueueSummary,
    /// `None`: ClamAV is not enabled, or no probe answered yet.
    pub clamd: Option<ClamdStatus>,
    pub uptime_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueueState {
    /// Waiting for delivery.
    Queued,
    /// Kept for an operator (quarantine verdict), never delivered by itself.
    Held,
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
    pub state: QueueState,
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
