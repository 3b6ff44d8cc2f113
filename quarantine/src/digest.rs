//! SQL of the quarantine reports (`migrations/0009_digest.sql` in the gateway): recipients'
//! own frequencies, what each recipient's last report covered, action links already used,
//! and release requests. Frequencies are the gateway's words (`off`, `hourly`, …); this
//! module stores them as given.

use sqlx::Row;
use sqlx::sqlite::SqlitePool;

use crate::store::{ENTRY_COLUMNS, entry_of};
use crate::{Actor, Entry};

/// Writes take the write lock when they begin (see `store`).
const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

/// A recipient with held inbound entries its last report did not cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub recipient: String,
    /// The newest such entry: what the next report will have covered.
    pub newest_entry: i64,
    /// Entries the last report covered up to (0: never reported).
    pub last_entry: i64,
    /// When the last report went out (unix seconds; 0: never).
    pub last_sent_at: i64,
    /// When the oldest new entry was held.
    pub oldest_new_at: i64,
}

/// Recipients with new held inbound entries, by address.
pub async fn pending(pool: &SqlitePool) -> sqlx::Result<Vec<Pending>> {
    let rows = sqlx::query(
        "SELECT e.recipient, MAX(e.id), COALESCE(d.last_entry, 0), COALESCE(d.sent_at, 0), \
         MIN(e.received_at) \
         FROM quarantine_entries e LEFT JOIN digest_sent d ON d.recipient = e.recipient \
         WHERE e.state = 'held' AND e.direction = 'inbound' \
         AND e.id > COALESCE(d.last_entry, 0) GROUP BY e.recipient ORDER BY e.recipient",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .iter()
        .map(|r| Pending {
            recipient: r.get(0),
            newest_entry: r.get(1),
            last_entry: r.get(2),
            last_sent_at: r.get(3),
            oldest_new_at: r.get(4),
        })
        .collect())
}

/// Held inbound entries of `recipient` after entry `after`, newest first, at most `limit`;
/// and how many there are in all.
pub async fn new_entries(
    pool: &SqlitePool,
    recipient: &str,
    after: i64,
    limit: u32,
) -> sqlx::Result<(Vec<Entry>, usize)> {
    // Only the constant column list is formatted in.
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ENTRY_COLUMNS} FROM quarantine_entries e \
         JOIN quarantine_messages m ON m.id = e.message \
         WHERE e.recipient = ? AND e.state = 'held' AND e.direction = 'inbound' AND e.id > ? \
         ORDER BY e.id DESC LIMIT ?"
    )))
    .bind(recipient)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM quarantine_entries \
         WHERE recipient = ? AND state = 'held' AND direction = 'inbound' AND id > ?",
    )
    .bind(recipient)
    .bind(after)
    .fetch_one(pool)
    .await?;
    Ok((rows.iter().map(entry_of).collect(), total as usize))
}

/// Held inbound entries of `recipient` now.
pub async fn held_count(pool: &SqlitePool, recipient: &str) -> sqlx::Result<usize> {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM quarantine_entries \
         WHERE recipient = ? AND state = 'held' AND direction = 'inbound'",
    )
    .bind(recipient)
    .fetch_one(pool)
    .await?;
    Ok(n as usize)
}

/// One entry by id, in any state.
pub async fn entry(pool: &SqlitePool, id: i64) -> sqlx::Result<Option<Entry>> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {ENTRY_COLUMNS} FROM quarantine_entries e \
         JOIN quarantine_messages m ON m.id = e.message WHERE e.id = ?"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(entry_of))
}

/// Record that `recipient`'s report covered entries up to `last_entry`.
pub async fn mark_sent(
    conn: &mut sqlx::SqliteConnection,
    recipient: &str,
    last_entry: i64,
    now: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO digest_sent (recipient, last_entry, sent_at) VALUES (?, ?, ?) \
         ON CONFLICT (recipient) DO UPDATE SET last_entry = MAX(last_entry, excluded.last_entry), \
         sent_at = excluded.sent_at",
    )
    .bind(recipient)
    .bind(last_entry)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A recipient's own frequency, if set.
pub async fn frequency(pool: &SqlitePool, recipient: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT frequency FROM digest_recipients WHERE recipient = ?")
        .bind(recipient)
        .fetch_optional(pool)
        .await
}

/// Every recipient's own frequency.
pub async fn frequencies(pool: &SqlitePool) -> sqlx::Result<Vec<(String, String)>> {
    sqlx::query_as("SELECT recipient, frequency FROM digest_recipients ORDER BY recipient")
        .fetch_all(pool)
        .await
}

/// Set (`Some`) or remove (`None`: the default schedule applies) a recipient's frequency.
pub async fn set_frequency(
    pool: &SqlitePool,
    recipient: &str,
    frequency: Option<&str>,
    now: i64,
) -> sqlx::Result<()> {
    let mut tx = pool.begin_with(BEGIN_WRITE).await?;
    match frequency {
        Some(f) => {
            sqlx::query(
                "INSERT INTO digest_recipients (recipient, frequency, changed_at) VALUES (?, ?, ?) \
                 ON CONFLICT (recipient) DO UPDATE SET frequency = excluded.frequency, \
                 changed_at = excluded.changed_at",
            )
            .bind(recipient)
            .bind(f)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM digest_recipients WHERE recipient = ?")
                .bind(recipient)
                .execute(&mut *tx)
                .await?;
        }
    }
    tx.commit().await
}

/// Spend an action link: true the first time for `token_hash`, false after. Spent links
/// past their expiry are forgotten here too.
pub async fn spend(
    pool: &SqlitePool,
    token_hash: &[u8],
    now: i64,
    expires_at: i64,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin_with(BEGIN_WRITE).await?;
    sqlx::query("DELETE FROM digest_spent WHERE expires_at < ?")
        .bind(now)
        .execute(&mut *tx)
        .await?;
    let done = sqlx::query(
        "INSERT OR IGNORE INTO digest_spent (token_hash, spent_at, expires_at) VALUES (?, ?, ?)",
    )
    .bind(token_hash)
    .bind(now)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Whether a link was spent already (a page says so instead of offering its button).
pub async fn is_spent(pool: &SqlitePool, token_hash: &[u8]) -> sqlx::Result<bool> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM digest_spent WHERE token_hash = ?")
        .bind(token_hash)
        .fetch_one(pool)
        .await?;
    Ok(n > 0)
}

/// Mark a held entry as asked for by its recipient, with an audit row; false when it is no
/// longer held or was asked for already.
pub async fn request_release(
    pool: &SqlitePool,
    entry: i64,
    actor: &Actor,
    now: i64,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin_with(BEGIN_WRITE).await?;
    let row = sqlx::query(
        "UPDATE quarantine_entries SET release_requested_at = ? \
         WHERE id = ? AND state = 'held' AND release_requested_at IS NULL \
         RETURNING message, recipient",
    )
    .bind(now)
    .bind(entry)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(false);
    };
    sqlx::query(
        "INSERT INTO quarantine_audit (entry, message, recipient, action, from_state, \
         to_state, uid, user_name, at, detail) \
         VALUES (?, ?, ?, 'request', 'held', 'held', ?, ?, ?, 'release requested')",
    )
    .bind(entry)
    .bind(row.get::<String, _>(0))
    .bind(row.get::<String, _>(1))
    .bind(actor.uid)
    .bind(&actor.name)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}
