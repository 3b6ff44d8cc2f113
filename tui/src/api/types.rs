//! The JSON the console reads from and sends to the admin API — exactly the fields it uses.
//! The gateway's types are the contract: every field the console reads is defaulted when
//! absent (a newer or older gateway still loads), unknown fields are ignored, and every
//! string that can come from mail or from a certificate is a [`Safe`] (sanitized as read).

use serde::{Deserialize, Serialize};

use crate::sanitize::{Safe, SafeText};

/// Every error body: `{"error": {"code", "message", "field"}}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ErrorDetail {
    pub code: String,
    pub message: Safe,
    pub field: Option<String>,
}

/// `GET /v1/health`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Health {
    pub status: Safe,
    pub version: Safe,
    pub hostname: Safe,
    pub uptime_secs: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct VerdictCount {
    pub direction: String,
    pub verdict: String,
    pub count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct QueueSummary {
    pub queued: i64,
    pub held: i64,
    pub oldest_age_secs: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ClamdStatus {
    pub up: bool,
    pub version: Safe,
    pub signature_date: Safe,
    pub latency_ms: Option<f64>,
}

/// The resolver as the gateway's last DNS probe saw it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DnsStatus {
    pub up: bool,
    pub latency_ms: Option<f64>,
    pub error: Option<Safe>,
    pub age_secs: i64,
}

/// SMTP connections since start and how many were upgraded with STARTTLS.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TlsShare {
    pub connections: u64,
    pub tls: u64,
}

/// `GET /v1/whoami`: what the caller's role allows.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct WhoAmI {
    pub uid: u32,
    pub user: Option<Safe>,
    pub role: Safe,
    pub may_change: bool,
}

/// A symbol's count since midnight UTC, when the gateway reports it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SymbolCount {
    pub name: Safe,
    pub count: u64,
}

/// `GET /v1/counters`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Counters {
    pub messages: Vec<VerdictCount>,
    pub queue: QueueSummary,
    pub clamd: Option<ClamdStatus>,
    /// `None`: the gateway's DNS probe is off or has not run yet.
    pub dns: Option<DnsStatus>,
    pub tls: TlsShare,
    pub uptime_secs: u64,
    /// The most frequent symbols today; empty when the gateway reports none.
    pub symbols: Vec<SymbolCount>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct QueueRecipient {
    pub address: Safe,
    pub status: String,
    pub error: Option<Safe>,
}

/// A message of the delivery queue (`GET /v1/queue`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct QueueMessage {
    pub id: Safe,
    pub direction: String,
    pub state: String,
    pub mail_from: Safe,
    pub recipients: Vec<QueueRecipient>,
    pub received_at: i64,
    pub size: u64,
    pub attempts: u32,
    pub next_attempt: i64,
    pub last_error: Option<Safe>,
    pub client_ip: Safe,
    pub score: f64,
    pub symbols: Safe,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct QueueActionResult {
    pub id: Safe,
    pub result: Safe,
}

/// A symbol with its points.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct SymbolPoints {
    pub name: Safe,
    pub points: f64,
}

/// One held recipient of a message, with the message's fields.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct HeldEntry {
    /// The entry's id (one per recipient).
    pub entry: i64,
    /// The held message's id.
    pub message: Safe,
    pub recipient: Safe,
    pub state: String,
    pub direction: String,
    pub mail_from: Safe,
    pub from: Safe,
    pub to: Safe,
    pub subject: Safe,
    pub date: Safe,
    pub message_id: Safe,
    pub size: u64,
    pub client_ip: Safe,
    pub helo: Safe,
    pub tls: Option<Safe>,
    pub score: f64,
    pub symbols: Vec<SymbolPoints>,
    pub reason: Safe,
    pub received_at: i64,
    pub expires_at: i64,
    /// When the recipient asked for a release from a quarantine report.
    pub release_requested_at: Option<i64>,
}

/// A page of a quarantine search and the cursor of the next one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct HeldPage {
    pub entries: Vec<HeldEntry>,
    pub next: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct AuditRow {
    pub recipient: Safe,
    pub action: Safe,
    pub user_name: Safe,
    pub at: i64,
    pub detail: Safe,
}

/// A held message: its entries in every state and their audit.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct HeldMessage {
    pub entries: Vec<HeldEntry>,
    pub audit: Vec<AuditRow>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct HeaderField {
    pub name: Safe,
    pub value: Safe,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Attachment {
    pub name: Safe,
    pub content_type: Safe,
    pub size: u64,
}

/// The gateway's safe plain-text rendering of a held message.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Preview {
    pub headers: Vec<HeaderField>,
    pub text: SafeText,
    pub from_html: bool,
    pub attachments: Vec<Attachment>,
    pub truncated: bool,
}

/// What a release or delete did.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ActionReport {
    pub touched: usize,
    pub messages: usize,
    pub queued: Vec<String>,
    pub learned: usize,
}

/// The search fields of the quarantine (each narrows; empty does not filter).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HeldQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_score: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_score: Option<f64>,
}

impl HeldQuery {
    /// `name=value` pairs of the fields that are set.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let text = [
            ("recipient", &self.recipient),
            ("sender", &self.sender),
            ("subject", &self.subject),
            ("message_id", &self.message_id),
            ("symbol", &self.symbol),
            ("reason", &self.reason),
        ];
        for (name, value) in text {
            if let Some(v) = value {
                out.push((name, v.clone()));
            }
        }
        if let Some(v) = self.min_score {
            out.push(("min_score", v.to_string()));
        }
        if let Some(v) = self.max_score {
            out.push(("max_score", v.to_string()));
        }
        out
    }
}

/// One held recipient to act on (the whole message when `recipient` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct HeldTarget {
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
}

/// Revocation as a signature check sees it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Revocation {
    pub state: String,
    pub detail: Safe,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Chain {
    pub trusted: bool,
    pub detail: Safe,
}

/// One certificate.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct Cert {
    pub fingerprint: String,
    pub subject: Safe,
    pub issuer: Safe,
    pub serial: Safe,
    pub addresses: Vec<Safe>,
    pub not_before: i64,
    pub not_after: i64,
    pub is_ca: bool,
    pub source: Safe,
    /// The Message-ID of the mail a harvested certificate came with.
    pub message_id: Option<Safe>,
    pub explicitly_trusted: bool,
    pub has_private_key: bool,
    pub chain: Chain,
    pub revocation: Revocation,
    pub usable_for_encryption: bool,
    pub encryption_problems: Vec<Safe>,
    pub signing_problems: Vec<Safe>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DomainCerts {
    pub domain: Safe,
    pub certificates: usize,
    pub usable_for_encryption: usize,
    pub certs: Vec<Cert>,
}

/// `GET /v1/certs`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct CertList {
    pub domains: Vec<DomainCerts>,
    pub cas: Vec<Cert>,
}

/// A certificate file for an import or `trust-ca`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertUpload {
    /// The file's bytes, base64.
    pub data: String,
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct StoredCert {
    pub fingerprint: String,
    pub subject: Safe,
    pub change: Safe,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ImportReport {
    pub stored: Vec<StoredCert>,
    pub warnings: Vec<Safe>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct CertDeleted {
    pub fingerprint: String,
    pub subject: Safe,
    pub had_private_key: bool,
}

/// One domain's level of trust.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TrustDomain {
    pub domain: Safe,
    pub weight: f64,
    /// The operator's pin; `None`: learned.
    pub pinned: Option<String>,
    pub correspondents: i64,
    pub servers: i64,
    pub tls_verified: i64,
    pub tls_unverified: i64,
    pub last_activity: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PinLevel {
    High,
    Medium,
    Low,
    None,
}

impl PinLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            PinLevel::High => "high",
            PinLevel::Medium => "medium",
            PinLevel::Low => "low",
            PinLevel::None => "none",
        }
    }
}

/// A recipient's quarantine report frequency.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DigestRecipient {
    pub recipient: Safe,
    pub frequency: String,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct PinResult {
    pub domain: Safe,
    pub pinned: Option<String>,
}

/// An allow or block list entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ListEntry {
    pub id: i64,
    /// `allow` or `block`.
    pub list: String,
    pub sender: Safe,
    pub recipient: Option<Safe>,
    pub comment: Option<Safe>,
    pub expires_at: Option<i64>,
    pub expired: bool,
    pub added_at: i64,
    pub added_by: Safe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListName {
    Allow,
    Block,
}

/// A new list entry (`POST /v1/lists`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NewListEntry {
    pub list: ListName,
    pub sender: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ListAdded {
    pub change: Safe,
    pub entry: ListEntry,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_default_and_unknown_fields_are_ignored() {
        let c: Counters = serde_json::from_str(
            r#"{"messages":[{"direction":"inbound","verdict":"accept","count":3,"extra":1}],
                "queue":{"queued":2,"held":1},"clamd":null,"uptime_secs":5,"new_field":[]}"#,
        )
        .unwrap();
        assert_eq!(c.messages[0].count, 3);
        assert_eq!(c.queue.oldest_age_secs, None);
        assert!(c.symbols.is_empty());
    }

    #[test]
    fn mail_text_is_sanitized_as_read() {
        let e: HeldEntry = serde_json::from_str(
            r#"{"entry":1,"message":"AB","subject":"hi \u001b[2J\u202e","from":null}"#,
        )
        .unwrap();
        assert_eq!(e.subject.as_str(), "hi \\u{1b}[2J\\u{202e}");
        assert!(e.from.is_empty());
    }

    #[test]
    fn a_query_lists_only_the_fields_set() {
        let q = HeldQuery {
            sender: Some("@x.example".into()),
            min_score: Some(5.0),
            ..HeldQuery::default()
        };
        assert_eq!(
            q.pairs(),
            vec![("sender", "@x.example".into()), ("min_score", "5".into())]
        );
    }
}
