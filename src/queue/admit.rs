//! What is stored for a verdict that lets a message in: one queued message per copy the
//! pipeline made — or, for a copy the verdict holds, one quarantined message with an entry
//! per recipient — each with our trace header fields above it, all in one commit before the
//! one `250`. Decided here, once; the SMTP session runs the pipeline, calls [`admit`] and
//! writes the reply.

use std::net::IpAddr;
use std::sync::Arc;

use filters::{Direction, Envelope, TlsFacts};

use super::trace::received_header;
use super::{Queue, QueuedMessage, Recipient, new_queue_id, unix_now};

/// One message to queue for (some of) the envelope recipients.
#[derive(Debug, Clone, Default)]
pub struct MessageCopy {
    /// Recipients of this copy; `None`: every envelope recipient.
    pub recipients: Option<Vec<String>>,
    /// The message to store; `None`: the message as received.
    pub body: Option<Vec<u8>>,
    /// Header fields of this copy only (its DKIM-Signature, its S/MIME result), after the
    /// common ones.
    pub headers: Vec<String>,
    /// `Some(reason)`: this copy is held for an operator (quarantine), never delivered;
    /// the reason says what held it (a rule, a threshold).
    pub hold: Option<String>,
}

/// The verdict as the queue needs it.
pub struct Verdict<'a> {
    /// For `X-Portcullis-Score` (inbound) and the queue row.
    pub score: f64,
    /// `accept`, `tag` or `quarantine`, for `X-Portcullis-Score`.
    pub action: &'a str,
    /// Tagged as spam: `X-Spam-Flag: YES` (inbound; held copies always).
    pub tagged: bool,
    /// The symbols with points, for the queue row.
    pub symbols: String,
    /// The same, one by one, for the quarantine.
    pub points: Vec<quarantine::SymbolPoints>,
    /// Header fields of the stages, for every copy (Authentication-Results, ...).
    pub fields: &'a [String],
    /// What to store: at least one copy.
    pub copies: &'a [MessageCopy],
}

/// What a held copy needs besides the verdict (`[quarantine]`).
#[derive(Debug, Clone, Copy)]
pub struct HoldSettings {
    pub retention_secs: i64,
    pub field_max_chars: usize,
}

impl HoldSettings {
    pub fn from_config(q: &crate::config::QuarantineConfig) -> HoldSettings {
        HoldSettings {
            retention_secs: q.retention_secs(),
            field_max_chars: q.field_max_chars,
        }
    }
}

/// Where the message came from, for our `Received:` line.
pub struct Arrival<'a> {
    pub envelope: &'a Envelope,
    pub client_ip: IpAddr,
    /// Our host name.
    pub hostname: &'a str,
    /// `ESMTPS`, `UTF8SMTP`, ... (RFC 3848).
    pub protocol: &'a str,
    pub tls: Option<&'a TlsFacts>,
    /// The message as received.
    pub received: &'a [u8],
}

/// Store every copy (one commit) and return their ids (queue ids, and the quarantine ids of
/// held copies), first the message's own.
pub async fn admit(
    queue: &Queue,
    arrival: &Arrival<'_>,
    verdict: &Verdict<'_>,
) -> anyhow::Result<Vec<String>> {
    let envelope = arrival.envelope;
    let inbound = envelope.direction == Direction::Inbound;
    let mut stored = Vec::with_capacity(verdict.copies.len());
    let mut held = Vec::new();
    let mut ids = Vec::with_capacity(verdict.copies.len());
    for copy in verdict.copies {
        let id = new_queue_id();
        let recipients = copy.recipients.as_ref().unwrap_or(&envelope.rcpt_to);
        let body = copy.body.as_deref().unwrap_or(arrival.received);
        // Inbound: verdict fields from outside (X-Portcullis-*, X-Spam-*, an
        // Authentication-Results claiming our authserv-id) are forgeries; ours follow.
        let cleaned = inbound
            .then(|| filters::result_fields::strip_forged_verdicts(body, arrival.hostname))
            .flatten();
        let body = cleaned.as_deref().unwrap_or(body);
        let head = trace_fields(arrival, verdict, recipients, &id, copy);
        let mut full = Vec::with_capacity(head.len() + body.len());
        full.extend_from_slice(head.as_bytes());
        full.extend_from_slice(body);
        let now = unix_now();
        ids.push(id.clone());
        if let Some(reason) = &copy.hold {
            let hold = queue.hold;
            let copy = quarantine::NewHeld {
                id,
                direction: envelope.direction,
                mail_from: envelope.mail_from.clone(),
                recipients: recipients.clone(),
                client_ip: arrival.client_ip.to_string(),
                helo: envelope.helo.clone(),
                tls: arrival.tls.map(|t| format!("{} {}", t.version, t.cipher)),
                score: verdict.score,
                symbols: verdict.points.clone(),
                reason: reason.clone(),
                received_at: now,
                expires_at: now + hold.retention_secs,
                size: full.len() as u64,
                display: quarantine::display::display_fields(body, hold.field_max_chars),
            };
            held.push((copy, Arc::new(full)));
            continue;
        }
        let message = QueuedMessage {
            id,
            direction: envelope.direction,
            mail_from: envelope.mail_from.clone(),
            recipients: recipients.iter().map(Recipient::pending).collect(),
            received_at: now,
            size: full.len() as u64,
            attempts: 0,
            next_attempt: 0,
            last_error: None,
            client_ip: arrival.client_ip.to_string(),
            helo: envelope.helo.clone(),
            score: verdict.score,
            symbols: verdict.symbols.clone(),
        };
        stored.push((message, Arc::new(full)));
    }
    queue.store_many(stored, held).await?;
    Ok(ids)
}

/// Our `Received:` line, the stages' fields, on inbound mail the verdict fields, then the
/// copy's own fields.
fn trace_fields(
    arrival: &Arrival<'_>,
    verdict: &Verdict<'_>,
    recipients: &[String],
    id: &str,
    copy: &MessageCopy,
) -> String {
    let single = (recipients.len() == 1).then(|| recipients[0].as_str());
    let mut h = received_header(
        &arrival.envelope.helo,
        arrival.client_ip,
        arrival.hostname,
        arrival.protocol,
        arrival.tls,
        id,
        single,
    );
    for field in verdict.fields {
        h.push_str(field);
        h.push_str("\r\n");
    }
    if arrival.envelope.direction == Direction::Inbound {
        h.push_str(&format!(
            "X-Portcullis-Score: {:.2} ({})\r\n",
            verdict.score, verdict.action
        ));
        // A held copy is flagged too: what an operator releases is stripped of the flag.
        if verdict.tagged || copy.hold.is_some() {
            h.push_str("X-Spam-Flag: YES\r\n");
        }
    }
    for field in &copy.headers {
        h.push_str(field);
        h.push_str("\r\n");
    }
    h
}
