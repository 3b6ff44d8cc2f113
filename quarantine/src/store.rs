//! SQL of the quarantine (sqlx, SQLite; `?` placeholders, row values for the keyset).
//!
//! Tables (`migrations/0007_quarantine.sql` in the gateway): `quarantine_messages` (one row
//! per held message), `quarantine_bodies` (small bodies), `quarantine_entries` (one row per
//! held recipient, with copies of the columns a search filters on), `quarantine_terms` (the
//! symbols and subject words of each entry, for searches by them), `quarantine_audit`.
//! Large bodies are files `<dir>/<id>.eml`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use filters::Direction;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqlitePool};

use crate::{
    Actor, AuditRow, Cursor, DisplayFields, Entry, Filter, NewHeld, Page, PageRequest, State,
    SymbolPoints, Totals, display, domain_of, rule_of,
};

/// Writes take the database's write lock when they begin, so a concurrent writer makes
/// them wait (busy timeout) rather than fail with "database is locked".
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// Store a held message with one entry per recipient, inside the caller's transaction (the
/// gateway's commit group, so it is durable before the `250`). `inline_body`: the body when
/// it is stored in the database; `None` when the caller wrote and fsync'd
/// `<dir>/<id>.eml` before the commit.
pub async fn insert(
    conn: &mut SqliteConnection,
    held: &NewHeld,
    inline_body: Option<&[u8]>,
) -> Result<(), sqlx::Error> {
    let symbols_json = serde_json::to_string(&held.symbols).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "INSERT INTO quarantine_messages (id, direction, mail_from, hdr_from, hdr_to, subject, \
         hdr_date, message_id, size, client_ip, helo, tls, score, symbols, reason, received_at, \
         expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&held.id)
    .bind(held.direction.as_str())
    .bind(&held.mail_from)
    .bind(&held.display.from)
    .bind(&held.display.to)
    .bind(&held.display.subject)
    .bind(&held.display.date)
    .bind(&held.display.message_id)
    .bind(held.size as i64)
    .bind(&held.client_ip)
    .bind(&held.helo)
    .bind(held.tls.as_deref().unwrap_or(""))
    .bind(held.score)
    .bind(symbols_json)
    .bind(&held.reason)
    .bind(held.received_at)
    .bind(held.expires_at)
    .execute(&mut *conn)
    .await?;
    if let Some(body) = inline_body {
        sqlx::query("INSERT INTO quarantine_bodies (id, data) VALUES (?, ?)")
            .bind(&held.id)
            .bind(body)
            .execute(&mut *conn)
            .await?;
    }
    let terms = terms(&held.symbols, &held.display.subject);
    let mut seen = std::collections::HashSet::new();
    for recipient in &held.recipients {
        let recipient = recipient.to_ascii_lowercase();
        if !seen.insert(recipient.clone()) {
            continue;
        }
        let entry = insert_entry(&mut *conn, held, &recipient).await?;
        insert_terms(&mut *conn, &terms, held.received_at, entry).await?;
    }
    Ok(())
}

/// The search terms of an entry: `s:` + each symbol, `w:` + each subject word.
fn terms(symbols: &[SymbolPoints], subject: &str) -> Vec<String> {
    let mut terms: Vec<String> = symbols.iter().map(|s| format!("s:{}", s.name)).collect();
    terms.extend(words(subject).into_iter().map(|w| format!("w:{w}")));
    terms.sort();
    terms.dedup();
    terms
}

/// Longest word indexed, most words per subject: a subject is display text, already cut to
/// the display bound, and these keep one entry's terms small.
const MAX_WORD_CHARS: usize = 40;
const MAX_WORDS: usize = 32;

/// The words of a subject as searched: lowercase runs of letters and digits, two characters
/// or more.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(|w| w.to_lowercase().chars().take(MAX_WORD_CHARS).collect())
        .take(MAX_WORDS)
        .collect()
}

async fn insert_terms(
    conn: &mut SqliteConnection,
    terms: &[String],
    received_at: i64,
    entry: i64,
) -> Result<(), sqlx::Error> {
    // One statement per entry: a held message's commit stays short.
    for chunk in terms.chunks(100) {
        let rows = vec!["(?, ?, ?)"; chunk.len()].join(", ");
        let sql = format!(
            "INSERT OR IGNORE INTO quarantine_terms (term, received_at, entry) VALUES {rows}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for term in chunk {
            q = q.bind(term).bind(received_at).bind(entry);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

async fn insert_entry(
    conn: &mut SqliteConnection,
    held: &NewHeld,
    recipient: &str,
) -> Result<i64, sqlx::Error> {
    let id = sqlx::query(
        "INSERT INTO quarantine_entries (message, recipient, rcpt_domain, state, changed_at, \
         received_at, direction, sender, sender_domain, message_id, rule, score) \
         VALUES (?, ?, ?, 'held', ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&held.id)
    .bind(recipient)
    .bind(domain_of(recipient))
    .bind(held.received_at)
    .bind(held.received_at)
    .bind(held.direction.as_str())
    .bind(held.mail_from.to_ascii_lowercase())
    .bind(domain_of(&held.mail_from))
    .bind(&held.display.message_id)
    .bind(rule_of(&held.reason))
    .bind(held.score)
    .execute(conn)
    .await?
    .last_insert_rowid();
    Ok(id)
}

/// Change entries from `held` to `to` and write an audit row for each one that changed,
/// inside the caller's transaction. An entry no longer held (another operator was quicker)
/// is left alone. Returns the entries changed.
pub async fn transition(
    conn: &mut SqliteConnection,
    entries: &[i64],
    to: State,
    actor: &Actor,
    now: i64,
    detail: &str,
) -> Result<Vec<i64>, sqlx::Error> {
    let action = match to {
        State::Released => "release",
        State::Deleted => "delete",
        State::Expired => "expire",
        State::Held => "hold",
    };
    let mut changed = Vec::new();
    for &entry in entries {
        let row = sqlx::query(
            "UPDATE quarantine_entries SET state = ?, changed_at = ? \
             WHERE id = ? AND state = 'held' RETURNING message, recipient",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(entry)
        .fetch_optional(&mut *conn)
        .await?;
        let Some(row) = row else { continue };
        let message: String = row.get(0);
        let recipient: String = row.get(1);
        sqlx::query(
            "INSERT INTO quarantine_audit (entry, message, recipient, action, from_state, \
             to_state, uid, user_name, at, detail) VALUES (?, ?, ?, ?, 'held', ?, ?, ?, ?, ?)",
        )
        .bind(entry)
        .bind(message)
        .bind(recipient)
        .bind(action)
        .bind(to.as_str())
        .bind(actor.uid)
        .bind(&actor.name)
        .bind(now)
        .bind(detail)
        .execute(&mut *conn)
        .await?;
        changed.push(entry);
    }
    Ok(changed)
}

/// A bound value of a search.
enum Value {
    Text(String),
    Int(i64),
    Real(f64),
}

/// A search as SQL: the entries `filter` selects, in page order, as `(id, received_at)`.
/// A filter by symbol or subject words walks the first of `terms` newest first (the caller
/// puts the rarest first); the other terms are checked per entry. Otherwise the entries table is read through the index of the most selective
/// filter (SQLite's planner, with the statistics `PRAGMA optimize` keeps).
struct Search {
    sql: String,
    values: Vec<Value>,
}

/// The terms a filter searches by: subject words (`w:`), then the symbol (`s:`).
fn filter_terms(filter: &Filter) -> Vec<String> {
    let mut terms: Vec<String> = Vec::new();
    if let Some(subject) = &filter.subject {
        let mut ws = words(subject);
        ws.sort();
        ws.dedup();
        terms.extend(ws.into_iter().map(|w| format!("w:{w}")));
        if terms.is_empty() {
            // Nothing searchable (one letter, punctuation): nothing matches.
            terms.push("w:".to_string());
        }
    }
    if let Some(symbol) = &filter.symbol {
        terms.push(format!("s:{}", symbol.trim()));
    }
    terms
}

/// Entries counted per term to find the rarest one to walk; more than this is "common".
const TERM_COUNT_CAP: i64 = 2000;

fn search(filter: &Filter, terms: &[String], page: Option<PageRequest>) -> Search {
    let driven = !terms.is_empty();
    let (e, time, id) = if driven {
        ("e.", "t.received_at", "t.entry")
    } else {
        ("", "received_at", "id")
    };
    let mut sql = Vec::new();
    let mut values = Vec::new();
    if driven {
        sql.push("t.term = ?".to_string());
        values.push(Value::Text(terms[0].clone()));
        for term in &terms[1..] {
            sql.push(
                "EXISTS (SELECT 1 FROM quarantine_terms t2 WHERE t2.term = ? \
                 AND t2.received_at = t.received_at AND t2.entry = t.entry)"
                    .to_string(),
            );
            values.push(Value::Text(term.clone()));
        }
    }
    if !filter.all_states {
        sql.push(format!("{e}state = ?"));
        values.push(Value::Text(
            filter.state.unwrap_or(State::Held).as_str().to_string(),
        ));
    }
    let mut address = |value: &Option<String>, column: &str, domain_column: &str| {
        if let Some(v) = value {
            let v = v.trim().to_ascii_lowercase();
            if let Some(domain) = v.strip_prefix('@') {
                sql.push(format!("{e}{domain_column} = ?"));
                values.push(Value::Text(domain.to_string()));
            } else {
                sql.push(format!("{e}{column} = ?"));
                values.push(Value::Text(v));
            }
        }
    };
    address(&filter.recipient, "recipient", "rcpt_domain");
    address(&filter.sender, "sender", "sender_domain");
    if let Some(mid) = &filter.message_id {
        sql.push(format!("{e}message_id = ?"));
        values.push(Value::Text(
            mid.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .into(),
        ));
    }
    if let Some(reason) = &filter.reason {
        sql.push(format!("{e}rule = ?"));
        values.push(Value::Text(rule_of(reason.trim())));
    }
    if let Some(v) = filter.min_score {
        sql.push(format!("{e}score >= ?"));
        values.push(Value::Real(v));
    }
    if let Some(v) = filter.max_score {
        sql.push(format!("{e}score <= ?"));
        values.push(Value::Real(v));
    }
    if let Some(v) = filter.since {
        sql.push(format!("{time} >= ?"));
        values.push(Value::Int(v));
    }
    if let Some(v) = filter.until {
        sql.push(format!("{time} < ?"));
        values.push(Value::Int(v));
    }
    if let Some(d) = filter.direction {
        sql.push(format!("{e}direction = ?"));
        values.push(Value::Text(d.as_str().to_string()));
    }
    if let Some(m) = &filter.message {
        sql.push(format!("{e}message = ?"));
        values.push(Value::Text(m.clone()));
    }
    if filter.release_requested {
        sql.push(format!("{e}release_requested_at IS NOT NULL"));
    }
    let oldest_first = page.is_some_and(|p| p.oldest_first);
    let (cmp, dir) = if oldest_first {
        (">", "ASC")
    } else {
        ("<", "DESC")
    };
    if let Some(c) = page.and_then(|p| p.after) {
        sql.push(format!("({time}, {id}) {cmp} (?, ?)"));
        values.push(Value::Int(c.received_at));
        values.push(Value::Int(c.id));
    }
    let where_sql = if sql.is_empty() {
        "1 = 1".to_string()
    } else {
        sql.join(" AND ")
    };
    // CROSS JOIN: the terms drive (SQLite keeps the written order of a CROSS JOIN).
    let from = if driven {
        "quarantine_terms t CROSS JOIN quarantine_entries e ON e.id = t.entry"
    } else {
        "quarantine_entries"
    };
    let mut text = format!(
        "SELECT {id} AS id, {time} AS received_at FROM {from} WHERE {where_sql} \
         ORDER BY {time} {dir}, {id} {dir}"
    );
    if let Some(p) = page {
        text.push_str(" LIMIT ?");
        values.push(Value::Int(p.limit.max(1) as i64 + 1));
    }
    Search { sql: text, values }
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    values: &'q [Value],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    for v in values {
        q = match v {
            Value::Text(s) => q.bind(s.as_str()),
            Value::Int(i) => q.bind(*i),
            Value::Real(r) => q.bind(*r),
        };
    }
    q
}

pub(crate) const ENTRY_COLUMNS: &str = "e.id, e.message, e.recipient, e.state, e.changed_at, m.direction, \
     m.mail_from, m.hdr_from, m.hdr_to, m.subject, m.hdr_date, m.message_id, m.size, \
     m.client_ip, m.helo, m.tls, m.score, m.symbols, m.reason, m.received_at, m.expires_at, \
     e.release_requested_at";

pub(crate) fn entry_of(row: &sqlx::sqlite::SqliteRow) -> Entry {
    let tls: String = row.get(15);
    let symbols: String = row.get(17);
    Entry {
        entry: row.get(0),
        message: row.get(1),
        recipient: row.get(2),
        state: State::parse(row.get::<&str, _>(3)).unwrap_or(State::Held),
        changed_at: row.get(4),
        direction: direction_of(row.get::<&str, _>(5)),
        mail_from: row.get(6),
        from: row.get(7),
        to: row.get(8),
        subject: row.get(9),
        date: row.get(10),
        message_id: row.get(11),
        size: row.get::<i64, _>(12) as u64,
        client_ip: row.get(13),
        helo: row.get(14),
        tls: (!tls.is_empty()).then_some(tls),
        score: row.get(16),
        symbols: serde_json::from_str(&symbols).unwrap_or_default(),
        reason: row.get(18),
        received_at: row.get(19),
        expires_at: row.get(20),
        release_requested_at: row.get(21),
    }
}

fn direction_of(s: &str) -> Direction {
    if s == "outbound" {
        Direction::Outbound
    } else {
        Direction::Inbound
    }
}

/// The quarantine's tables in the gateway's database, and its directory of large bodies.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
    dir: PathBuf,
}

impl Store {
    /// `dir`: where large bodies are (`data_dir/quarantine`), created by the caller.
    pub fn new(pool: SqlitePool, dir: PathBuf) -> Store {
        Store { pool, dir }
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of a large body.
    pub fn body_path(&self, id: &str) -> PathBuf {
        body_path(&self.dir, id)
    }

    /// One page of the entries `filter` selects, newest first unless asked otherwise, after
    /// `page.after` (keyset paging: as fast on page 1000 as on page 1).
    /// `filter`'s terms, the rarest first: each counted up to [`TERM_COUNT_CAP`] (an index
    /// range read), so that a search for a rare word beside a common one walks the rare one.
    async fn ordered_terms(&self, filter: &Filter) -> anyhow::Result<Vec<String>> {
        let mut terms = filter_terms(filter);
        if terms.len() > 1 {
            let mut counted = Vec::with_capacity(terms.len());
            for term in terms {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM (SELECT 1 FROM quarantine_terms WHERE term = ? LIMIT ?)",
                )
                .bind(&term)
                .bind(TERM_COUNT_CAP)
                .fetch_one(&self.pool)
                .await?;
                counted.push((n, term));
            }
            counted.sort();
            terms = counted.into_iter().map(|(_, t)| t).collect();
        }
        Ok(terms)
    }

    pub async fn list(&self, filter: &Filter, page: PageRequest) -> anyhow::Result<Page> {
        let terms = self.ordered_terms(filter).await?;
        let search = search(filter, &terms, Some(page));
        let found = bind_all(sqlx::query(sqlx::AssertSqlSafe(search.sql)), &search.values)
            .fetch_all(&self.pool)
            .await
            .context("cannot search the quarantine")?;
        let limit = page.limit.max(1) as usize;
        let ids: Vec<i64> = found.iter().take(limit).map(|r| r.get(0)).collect();
        let mut entries = Vec::with_capacity(ids.len());
        if !ids.is_empty() {
            let placeholders = vec!["?"; ids.len()].join(", ");
            let sql = format!(
                "SELECT {ENTRY_COLUMNS} FROM quarantine_entries e \
                 JOIN quarantine_messages m ON m.id = e.message WHERE e.id IN ({placeholders})"
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in &ids {
                q = q.bind(id);
            }
            let mut by_id: std::collections::HashMap<i64, Entry> = q
                .fetch_all(&self.pool)
                .await?
                .iter()
                .map(|r| {
                    let e = entry_of(r);
                    (e.entry, e)
                })
                .collect();
            entries.extend(ids.iter().filter_map(|id| by_id.remove(id)));
        }
        let next = (found.len() > limit)
            .then(|| {
                entries.last().map(|e| {
                    Cursor {
                        received_at: e.received_at,
                        id: e.entry,
                    }
                    .encode()
                })
            })
            .flatten();
        Ok(Page { entries, next })
    }

    /// Every entry `filter` selects (bulk actions): ids and messages, newest first.
    pub async fn select(&self, filter: &Filter) -> anyhow::Result<Vec<(i64, String, String)>> {
        let terms = self.ordered_terms(filter).await?;
        let search = search(filter, &terms, None);
        let sql = format!(
            "SELECT s.id, x.message, x.recipient FROM ({}) AS s \
             JOIN quarantine_entries x ON x.id = s.id ORDER BY s.received_at DESC, s.id DESC",
            search.sql
        );
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &search.values)
            .fetch_all(&self.pool)
            .await
            .context("cannot search the quarantine")?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// Every entry of a message, whatever its state.
    pub async fn entries_of(&self, message: &str) -> anyhow::Result<Vec<Entry>> {
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM quarantine_entries e \
             JOIN quarantine_messages m ON m.id = e.message WHERE e.message = ? ORDER BY e.id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(message)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(entry_of).collect())
    }

    /// The stored message (inline or its file); `None` when the message is unknown or its
    /// body is gone (no entry held any more).
    pub async fn body(&self, id: &str) -> anyhow::Result<Option<Vec<u8>>> {
        if let Some(data) = sqlx::query_scalar("SELECT data FROM quarantine_bodies WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        {
            return Ok(Some(data));
        }
        match tokio::fs::read(self.body_path(id)).await {
            Ok(data) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read the quarantined body of {id}")),
        }
    }

    /// Remove the body of `message` when none of its entries is held any more.
    pub async fn drop_body_if_done(&self, message: &str) -> anyhow::Result<bool> {
        let held: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM quarantine_entries WHERE message = ? AND state = 'held'",
        )
        .bind(message)
        .fetch_one(&self.pool)
        .await?;
        if held > 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM quarantine_bodies WHERE id = ?")
            .bind(message)
            .execute(&self.pool)
            .await?;
        remove_file(&self.body_path(message));
        Ok(true)
    }

    /// Audit rows, oldest first: of one message, or all.
    pub async fn audit(&self, message: Option<&str>) -> anyhow::Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT id, entry, message, recipient, action, from_state, to_state, uid, user_name, \
             at, detail FROM quarantine_audit WHERE (? IS NULL OR message = ?) ORDER BY id",
        )
        .bind(message)
        .bind(message)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| AuditRow {
                id: r.get(0),
                entry: r.get(1),
                message: r.get(2),
                recipient: r.get(3),
                action: r.get(4),
                from_state: State::parse(r.get::<&str, _>(5)).unwrap_or(State::Held),
                to_state: State::parse(r.get::<&str, _>(6)).unwrap_or(State::Held),
                uid: r.get(7),
                user_name: r.get(8),
                at: r.get(9),
                detail: r.get(10),
            })
            .collect())
    }

    /// Entries held now, held messages and their bytes, and what the audit counted.
    pub async fn totals(&self) -> anyhow::Result<Totals> {
        let held_entries: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM quarantine_entries WHERE state = 'held'")
                .fetch_one(&self.pool)
                .await?;
        let (held_messages, held_bytes): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM quarantine_messages WHERE id IN \
             (SELECT message FROM quarantine_entries WHERE state = 'held')",
        )
        .fetch_one(&self.pool)
        .await?;
        let mut totals = Totals {
            held_entries,
            held_messages,
            held_bytes,
            ..Totals::default()
        };
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT action, COUNT(*) FROM quarantine_audit GROUP BY action")
                .fetch_all(&self.pool)
                .await?;
        for (action, n) in rows {
            match action.as_str() {
                "release" => totals.released = n,
                "delete" => totals.deleted = n,
                "expire" => totals.expired = n,
                _ => {}
            }
        }
        Ok(totals)
    }

    /// Retention: every held entry of a message whose expiry has come becomes `expired`
    /// (audited as `actor`), and every message whose expiry has come is removed with its
    /// body, entries and symbols (the audit stays). Then, while the held messages take more
    /// than `max_total_bytes`, the oldest are expired the same way. Returns the entries
    /// expired.
    pub async fn expire(
        &self,
        now: i64,
        max_total_bytes: u64,
        actor: &Actor,
    ) -> anyhow::Result<usize> {
        let mut expired = 0;
        // Over the size cap: the oldest held messages expire now.
        let mut conn = self.pool.acquire().await?;
        let held_bytes: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(size), 0) FROM quarantine_messages WHERE expires_at > ? AND id \
             IN (SELECT message FROM quarantine_entries WHERE state = 'held')",
        )
        .bind(now)
        .fetch_one(&mut *conn)
        .await?;
        if held_bytes as u64 > max_total_bytes {
            let mut over = held_bytes as u64 - max_total_bytes;
            let oldest: Vec<(String, i64)> = sqlx::query_as(
                "SELECT id, size FROM quarantine_messages WHERE expires_at > ? AND id IN \
                 (SELECT message FROM quarantine_entries WHERE state = 'held') \
                 ORDER BY received_at, id",
            )
            .bind(now)
            .fetch_all(&mut *conn)
            .await?;
            let mut tx = sqlx::Connection::begin_with(&mut *conn, BEGIN_WRITE).await?;
            for (id, size) in oldest {
                if over == 0 {
                    break;
                }
                sqlx::query("UPDATE quarantine_messages SET expires_at = ? WHERE id = ?")
                    .bind(now)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                over = over.saturating_sub(size as u64);
            }
            tx.commit().await?;
        }
        // Expiry, a batch of messages per transaction.
        loop {
            let due: Vec<String> = sqlx::query_scalar(
                "SELECT id FROM quarantine_messages WHERE expires_at <= ? \
                 ORDER BY expires_at LIMIT 200",
            )
            .bind(now)
            .fetch_all(&mut *conn)
            .await?;
            if due.is_empty() {
                break;
            }
            let mut tx = sqlx::Connection::begin_with(&mut *conn, BEGIN_WRITE).await?;
            for id in &due {
                let held: Vec<i64> = sqlx::query_scalar(
                    "SELECT id FROM quarantine_entries WHERE message = ? AND state = 'held'",
                )
                .bind(id)
                .fetch_all(&mut *tx)
                .await?;
                expired += transition(&mut tx, &held, State::Expired, actor, now, "retention")
                    .await?
                    .len();
                for table in [
                    "DELETE FROM quarantine_terms WHERE entry IN \
                     (SELECT id FROM quarantine_entries WHERE message = ?)",
                    "DELETE FROM quarantine_entries WHERE message = ?",
                    "DELETE FROM quarantine_bodies WHERE id = ?",
                    "DELETE FROM quarantine_messages WHERE id = ?",
                ] {
                    sqlx::query(table).bind(id).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
            for id in &due {
                remove_file(&self.body_path(id));
            }
        }
        Ok(expired)
    }

    /// Messages moved here from the queue by the migration: read their display fields and
    /// symbols from the body and take their spool file over from `queue_spool`. Idempotent:
    /// a crash half-way is finished at the next start.
    pub async fn adopt_migrated(
        &self,
        queue_spool: &Path,
        field_max_chars: usize,
    ) -> anyhow::Result<usize> {
        let pending: Vec<(String, String)> =
            sqlx::query_as("SELECT id, symbols FROM quarantine_messages WHERE adopted = 0")
                .fetch_all(&self.pool)
                .await?;
        for (id, summary) in &pending {
            let queued_file = queue_spool.join(format!("{id}.eml"));
            if queued_file.exists() {
                std::fs::rename(&queued_file, self.body_path(id)).with_context(|| {
                    format!(
                        "cannot move {} into {}",
                        queued_file.display(),
                        self.dir.display()
                    )
                })?;
            }
            let fields = match self.body(id).await? {
                Some(body) => display::display_fields(&body, field_max_chars),
                None => DisplayFields::default(),
            };
            let symbols = parse_summary(summary);
            let mut tx = self.pool.begin_with(BEGIN_WRITE).await?;
            sqlx::query(
                "UPDATE quarantine_messages SET hdr_from = ?, hdr_to = ?, subject = ?, \
                 hdr_date = ?, message_id = ?, symbols = ?, adopted = 1 WHERE id = ?",
            )
            .bind(&fields.from)
            .bind(&fields.to)
            .bind(&fields.subject)
            .bind(&fields.date)
            .bind(&fields.message_id)
            .bind(serde_json::to_string(&symbols).unwrap_or_else(|_| "[]".into()))
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE quarantine_entries SET message_id = ? WHERE message = ?")
                .bind(&fields.message_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let entries: Vec<(i64, i64)> =
                sqlx::query_as("SELECT id, received_at FROM quarantine_entries WHERE message = ?")
                    .bind(id)
                    .fetch_all(&mut *tx)
                    .await?;
            let terms = terms(&symbols, &fields.subject);
            for (entry, received_at) in entries {
                insert_terms(&mut tx, &terms, received_at, entry).await?;
            }
            tx.commit().await?;
        }
        Ok(pending.len())
    }

    /// Let SQLite refresh its statistics when they are stale, so that a search uses the index
    /// of its most selective filter.
    pub async fn optimize(&self) -> anyhow::Result<()> {
        sqlx::query("PRAGMA optimize").execute(&self.pool).await?;
        Ok(())
    }
}

/// The file of a large body in `dir`.
pub fn body_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.eml"))
}

fn remove_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove a quarantined body");
    }
}

/// The queue's symbol summary, `NAME(1.00), OTHER(-0.50)`, as symbols with points.
pub fn parse_summary(summary: &str) -> Vec<SymbolPoints> {
    summary
        .split(", ")
        .filter_map(|item| {
            let (name, rest) = item.trim().split_once('(')?;
            let points = rest.strip_suffix(')')?.parse().ok()?;
            Some(SymbolPoints {
                name: name.to_string(),
                points,
            })
        })
        .collect()
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
