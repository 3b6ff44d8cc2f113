//! # The quarantine store
//!
//! A message the verdict holds is stored here once — its body inline in the database or,
//! when large, a file in `quarantine/` — with one *entry* per held recipient. An entry is
//! `held` until an operator releases or deletes it, or its message expires; every change is
//! an audit row (who, when, what, from which state).
//!
//! This crate owns the SQL of the quarantine's tables (`migrations/0007_quarantine.sql` in
//! the gateway creates them) and the pure parts: the display fields of a message
//! ([`display`]), its safe preview ([`preview`]), escaping ([`escape`]). What needs the
//! delivery queue — release — is the gateway's; it calls [`store::insert`] inside its own
//! commit group so that a held message is durable before the `250`.

pub mod digest;
pub mod display;
pub mod escape;
pub mod preview;
pub mod store;

use filters::Direction;
use serde::{Deserialize, Serialize};

pub use display::DisplayFields;
pub use store::Store;

/// The state of one entry (one held recipient of a message).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Held,
    Released,
    Deleted,
    Expired,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Held => "held",
            State::Released => "released",
            State::Deleted => "deleted",
            State::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        Some(match s {
            "held" => State::Held,
            "released" => State::Released,
            "deleted" => State::Deleted,
            "expired" => State::Expired,
            _ => return None,
        })
    }
}

/// A symbol a stage reported, with its points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SymbolPoints {
    pub name: String,
    pub points: f64,
}

/// A message to hold, as the gateway hands it to [`store::insert`].
#[derive(Debug, Clone)]
pub struct NewHeld {
    /// Hex id, unique (the gateway's queue id scheme); names the spool file.
    pub id: String,
    pub direction: Direction,
    pub mail_from: String,
    /// The held recipients: one entry each.
    pub recipients: Vec<String>,
    pub client_ip: String,
    pub helo: String,
    /// `"TLSv1.3 TLS_AES_256_GCM_SHA384"`; `None`: plain text.
    pub tls: Option<String>,
    pub score: f64,
    pub symbols: Vec<SymbolPoints>,
    /// What held it: `score 9.00`, `forced by CLAM_VIRUS`.
    pub reason: String,
    pub received_at: i64,
    pub expires_at: i64,
    /// Bytes of the stored message.
    pub size: u64,
    pub display: DisplayFields,
}

/// The rule a reason names, for the `reason` filter: the forcing symbol's name, or `score`
/// for a score over the threshold.
pub fn rule_of(reason: &str) -> String {
    if let Some(symbol) = reason.strip_prefix("forced by ") {
        symbol.trim().to_string()
    } else if reason.starts_with("score") {
        "score".to_string()
    } else {
        reason.to_string()
    }
}

/// The domain of an address (after the last `@`), lowercase; empty without one.
pub fn domain_of(address: &str) -> String {
    address
        .rsplit_once('@')
        .map(|(_, d)| d.to_ascii_lowercase())
        .unwrap_or_default()
}

/// Who acts on the quarantine, as the caller (CLI, admin API) identifies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub uid: i64,
    pub name: String,
}

/// A search over entries. Every field narrows; `None` does not filter.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    /// Default: held entries only.
    pub state: Option<State>,
    /// Entries in every state (`state` is then ignored).
    pub all_states: bool,
    /// An address, or `@domain` for every recipient of a domain.
    pub recipient: Option<String>,
    /// The envelope sender: an address, or `@domain`.
    pub sender: Option<String>,
    /// Words that must all be in the subject (whole words, any case).
    pub subject: Option<String>,
    /// The header Message-ID, with or without `<>`.
    pub message_id: Option<String>,
    /// A symbol the message had.
    pub symbol: Option<String>,
    /// What held it: a symbol name that forced the verdict, or `score`.
    pub reason: Option<String>,
    pub min_score: Option<f64>,
    pub max_score: Option<f64>,
    /// Received at or after (unix seconds).
    pub since: Option<i64>,
    /// Received before (unix seconds).
    pub until: Option<i64>,
    pub direction: Option<Direction>,
    /// Only entries of this message (its id).
    pub message: Option<String>,
    /// Only entries whose recipient asked for a release (from a quarantine report).
    pub release_requested: bool,
}

/// Where a page starts: after the entry with this (received_at, id), in the page's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub received_at: i64,
    pub id: i64,
}

impl Cursor {
    /// `"<received_at>.<id>"`, opaque to callers.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.received_at, self.id)
    }

    pub fn decode(s: &str) -> Option<Cursor> {
        let (t, id) = s.split_once('.')?;
        Some(Cursor {
            received_at: t.parse().ok()?,
            id: id.parse().ok()?,
        })
    }
}

/// Which page of a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Entries per page (the caller bounds it).
    pub limit: u32,
    /// `None`: the first page.
    pub after: Option<Cursor>,
    /// Oldest first instead of newest first.
    pub oldest_first: bool,
}

impl Default for PageRequest {
    fn default() -> Self {
        PageRequest {
            limit: 50,
            after: None,
            oldest_first: false,
        }
    }
}

/// One entry with its message's fields, as a listing shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub entry: i64,
    pub message: String,
    pub recipient: String,
    pub state: State,
    pub changed_at: i64,
    pub direction: Direction,
    pub mail_from: String,
    pub from: String,
    pub to: String,
    pub subject: String,
    pub date: String,
    pub message_id: String,
    pub size: u64,
    pub client_ip: String,
    pub helo: String,
    pub tls: Option<String>,
    pub score: f64,
    pub symbols: Vec<SymbolPoints>,
    pub reason: String,
    pub received_at: i64,
    pub expires_at: i64,
    /// When the recipient asked an operator to release it (from a quarantine report).
    pub release_requested_at: Option<i64>,
}

/// A page of a search, and the cursor of the next one (`None`: this was the last).
#[derive(Debug, Clone, Serialize)]
pub struct Page {
    pub entries: Vec<Entry>,
    pub next: Option<String>,
}

/// An audit row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub entry: i64,
    pub message: String,
    pub recipient: String,
    pub action: String,
    pub from_state: State,
    pub to_state: State,
    pub uid: i64,
    pub user_name: String,
    pub at: i64,
    pub detail: String,
}

/// Totals for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Entries held now.
    pub held_entries: i64,
    /// Messages with at least one held entry, and their bytes.
    pub held_messages: i64,
    pub held_bytes: i64,
    /// Entries ever released, deleted, expired (from the audit).
    pub released: i64,
    pub deleted: i64,
    pub expired: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_and_cursors() {
        assert_eq!(rule_of("forced by CLAM_VIRUS"), "CLAM_VIRUS");
        assert_eq!(rule_of("score 9.00"), "score");
        assert_eq!(domain_of("A@Example.TEST"), "example.test");
        assert_eq!(domain_of(""), "");
        let c = Cursor {
            received_at: 1_700_000_000,
            id: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("x.1"), None);
        assert_eq!(State::parse("released"), Some(State::Released));
    }
}
