//! SQL of the quarantine (sqlx, SQLite; `?` placeholders, row values for the keyset).
//!
//! Tables (`migrations/0007_quarantine.sql` in the gateway): `quarantine_messages` (one row
//! per held message), `quarantine_bodies` (small bodies), `quarantine_entries` (one row per
//! held recipient, with copies of the columns a search filters on), `quarantine_symbols`,
//! `quarantine_audit`. Large bodies are files `<dir>/<id>.eml`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use filters::Direction;
use sqlx::sqlite::{SqliteConnection, SqlitePool};
use sqlx::{Acquire, Row};

use crate::{
    Actor, AuditRow, Cursor, DisplayFields, Entry, Filter, NewHeld, Page, PageRequest, State,
    SymbolPoints, Totals, display, domain_of, rule_of,
};

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
    let mut seen = std::collections::HashSet::new();
    for recipient in &held.recipients {
        let recipient = recipient.to_ascii_lowercase();
        if !seen.insert(recipient.clone()) {
            continue;
        }
        insert_entry(&mut *conn, held, &recipient).await?;
    }
    for s in &held.symbols {
        sqlx::query(
            "INSERT OR IGNORE INTO quarantine_symbols (name, message, points) VALUES (?, ?, ?)",
        )
        .bind(&s.name)
        .bind(&held.id)
        .bind(s.points)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn insert_entry(
    conn: &mut SqliteConnection,
    held: &NewHeld,
    recipient: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO quarantine_entries (message, recipient, rcpt_domain, state, changed_at, \
         received_at, direction, sender, sender_domain, subject, message_id, rule, score) \
         VALUES (?, ?, ?, 'held', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&held.id)
    .bind(recipient)
    .bind(domain_of(recipient))
    .bind(held.received_at)
    .bind(held.received_at)
    .bind(held.direction.as_str())
    .bind(held.mail_from.to_ascii_lowercase())
    .bind(domain_of(&held.mail_from))
    .bind(held.display.subject.to_lowercase())
    .bind(&held.display.message_id)
    .bind(rule_of(&held.reason))
    .bind(held.score)
    .execute(conn)
    .await?;
    Ok(())
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

/// The WHERE clause of a search and its values.
fn where_clause(filter: &Filter) -> (String, Vec<Value>) {
    let mut sql = Vec::new();
    let mut values = Vec::new();
    if !filter.all_states {
        sql.push("state = ?".to_string());
        values.push(Value::Text(
            filter.state.unwrap_or(State::Held).as_str().to_string(),
        ));
    }
    let mut address = |value: &Option<String>, column: &str, domain_column: &str| {
        if let Some(v) = value {
            let v = v.trim().to_ascii_lowercase();
            if let Some(domain) = v.strip_prefix('@') {
                sql.push(format!("{domain_column} = ?"));
                values.push(Value::Text(domain.to_string()));
            } else {
                sql.push(format!("{column} = ?"));
                values.push(Value::Text(v));
            }
        }
    };
    address(&filter.recipient, "recipient", "rcpt_domain");
    address(&filter.sender, "sender", "sender_domain");
    if let Some(words) = &filter.subject {
        for word in words.split_whitespace().take(16) {
            sql.push("instr(subject, ?) > 0".to_string());
            values.push(Value::Text(word.to_lowercase()));
        }
    }
    if let Some(id) = &filter.message_id {
        sql.push("message_id = ?".to_string());
        values.push(Value::Text(
            id.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .into(),
        ));
    }
    if let Some(symbol) = &filter.symbol {
        sql.push("message IN (SELECT message FROM quarantine_symbols WHERE name = ?)".into());
        values.push(Value::Text(symbol.trim().to_string()));
    }
    if let Some(reason) = &filter.reason {
        sql.push("rule = ?".to_string());
        values.push(Value::Text(rule_of(reason.trim())));
    }
    if let Some(v) = filter.min_score {
        sql.push("score >= ?".to_string());
        values.push(Value::Real(v));
    }
    if let Some(v) = filter.max_score {
        sql.push("score <= ?".to_string());
        values.push(Value::Real(v));
    }
    if let Some(v) = filter.since {
        sql.push("received_at >= ?".to_string());
        values.push(Value::Int(v));
    }
    if let Some(v) = filter.until {
        sql.push("received_at < ?".to_string());
        values.push(Value::Int(v));
    }
    if let Some(d) = filter.direction {
        sql.push("direction = ?".to_string());
        values.push(Value::Text(d.as_str().to_string()));
    }
    if let Some(m) = &filter.message {
        sql.push("message = ?".to_string());
        values.push(Value::Text(m.clone()));
    }
    if sql.is_empty() {
        ("1 = 1".to_string(), values)
    } else {
        (sql.join(" AND "), values)
    }
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

const ENTRY_COLUMNS: &str = "e.id, e.message, e.recipient, e.state, e.changed_at, m.direction, \
     m.mail_from, m.hdr_from, m.hdr_to, m.subject, m.hdr_date, m.message_id, m.size, \
     m.client_ip, m.helo, m.tls, m.score, m.symbols, m.reason, m.received_at, m.expires_at";

fn entry_of(row: &sqlx::sqlite::SqliteRow) -> Entry {
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
    pub async fn list(&self, filter: &Filter, page: PageRequest) -> anyhow::Result<Page> {
        let (mut where_sql, mut values) = where_clause(filter);
        let (cmp, dir) = if page.oldest_first {
            (">", "ASC")
        } else {
            ("<", "DESC")
        };
        if let Some(c) = page.after {
            where_sql.push_str(&format!(" AND (received_at, id) {cmp} (?, ?)"));
            values.push(Value::Int(c.received_at));
            values.push(Value::Int(c.id));
        }
        let limit = page.limit.max(1) as i64;
        values.push(Value::Int(limit + 1));
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM (SELECT id FROM quarantine_entries WHERE {where_sql} \
             ORDER BY received_at {dir}, id {dir} LIMIT ?) AS page \
             JOIN quarantine_entries e ON e.id = page.id \
             JOIN quarantine_messages m ON m.id = e.message \
             ORDER BY e.received_at {dir}, e.id {dir}"
        );
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &values)
            .fetch_all(&self.pool)
            .await
            .context("cannot search the quarantine")?;
        let mut entries: Vec<Entry> = rows.iter().map(entry_of).collect();
        let next = if entries.len() as i64 > limit {
            entries.truncate(limit as usize);
            entries.last().map(|e| {
                Cursor {
                    received_at: e.received_at,
                    id: e.entry,
                }
                .encode()
            })
        } else {
            None
        };
        Ok(Page { entries, next })
    }

    /// Every entry `filter` selects (bulk actions): ids and messages, newest first.
    pub async fn select(&self, filter: &Filter) -> anyhow::Result<Vec<(i64, String, String)>> {
        let (where_sql, values) = where_clause(filter);
        let sql = format!(
            "SELECT id, message, recipient FROM quarantine_entries WHERE {where_sql} \
             ORDER BY received_at DESC, id DESC"
        );
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &values)
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
            let mut tx = conn.begin().await?;
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
            let mut tx = conn.begin().await?;
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
                    "DELETE FROM quarantine_entries WHERE message = ?",
                    "DELETE FROM quarantine_symbols WHERE message = ?",
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
            let mut tx = self.pool.begin().await?;
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
            sqlx::query(
                "UPDATE quarantine_entries SET subject = ?, message_id = ? WHERE message = ?",
            )
            .bind(fields.subject.to_lowercase())
            .bind(&fields.message_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
            for s in &symbols {
                sqlx::query(
                    "INSERT OR IGNORE INTO quarantine_symbols (name, message, points) \
                     VALUES (?, ?, ?)",
                )
                .bind(&s.name)
                .bind(id)
                .bind(s.points)
                .execute(&mut *tx)
                .await?;
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
