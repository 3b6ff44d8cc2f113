//! SQL of the queue (sqlx, SQLite). Queries stay portable: plain SQL, `?` placeholders.

use anyhow::Context;
use filters::Direction;
use sqlx::sqlite::SqlitePool;

use super::{QueuedMessage, Recipient};

/// The columns of a queue row as read. (`state` is always `queued`: held messages are in the
/// quarantine's tables.)
const COLUMNS: &str = "id, direction, mail_from, recipients, received_at, size, attempts, \
                       next_attempt, last_error, client_ip, helo, score, symbols";

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    direction: String,
    mail_from: String,
    recipients: String,
    received_at: i64,
    size: i64,
    attempts: i64,
    next_attempt: i64,
    last_error: Option<String>,
    client_ip: String,
    helo: String,
    score: f64,
    symbols: String,
}

impl Row {
    fn into_message(self) -> anyhow::Result<QueuedMessage> {
        let recipients: Vec<Recipient> = serde_json::from_str(&self.recipients)
            .with_context(|| format!("queue row {}: bad recipients JSON", self.id))?;
        Ok(QueuedMessage {
            direction: if self.direction == "outbound" {
                Direction::Outbound
            } else {
                Direction::Inbound
            },
            id: self.id,
            mail_from: self.mail_from,
            recipients,
            received_at: self.received_at,
            size: self.size as u64,
            attempts: self.attempts as u32,
            next_attempt: self.next_attempt,
            last_error: self.last_error,
            client_ip: self.client_ip,
            helo: self.helo,
            score: self.score,
            symbols: self.symbols,
        })
    }
}

/// Read access and operator actions on the queue's tables.
#[derive(Clone)]
pub struct QueueStore {
    pool: SqlitePool,
}

impl QueueStore {
    /// The queue's tables in `db`.
    pub fn new(db: &crate::store::Database) -> QueueStore {
        QueueStore {
            pool: db.pool().clone(),
        }
    }

    pub async fn due(&self, now: i64, limit: u32) -> anyhow::Result<Vec<QueuedMessage>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM queue WHERE state = 'queued' AND next_attempt <= ? \
             ORDER BY next_attempt LIMIT ?"
        );
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(Row::into_message).collect()
    }

    pub async fn list(&self) -> anyhow::Result<Vec<QueuedMessage>> {
        let sql = format!("SELECT {COLUMNS} FROM queue ORDER BY id");
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter().map(Row::into_message).collect()
    }

    pub async fn get(&self, id: &str) -> anyhow::Result<Option<QueuedMessage>> {
        let sql = format!("SELECT {COLUMNS} FROM queue WHERE id = ?");
        let row: Option<Row> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(Row::into_message).transpose()
    }

    /// Count of messages waiting for delivery (the queue-depth gauge).
    pub async fn depth(&self) -> anyhow::Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM queue WHERE state = 'queued'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Messages waiting for delivery, and the arrival (unix seconds) of the oldest, read
    /// together.
    pub async fn waiting(&self) -> anyhow::Result<(i64, Option<i64>)> {
        Ok(
            sqlx::query_as("SELECT COUNT(*), MIN(received_at) FROM queue WHERE state = 'queued'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Make a queued message due now. Returns false when there is no such queued message.
    pub async fn retry_now(&self, id: &str) -> anyhow::Result<bool> {
        let r = sqlx::query("UPDATE queue SET next_attempt = 0 WHERE id = ? AND state = 'queued'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    /// Remove a message's row and inline body. The caller removes a spool file afterwards.
    pub async fn delete(&self, id: &str) -> anyhow::Result<bool> {
        let mut tx = self.pool.begin_with(crate::store::BEGIN_WRITE).await?;
        let r = sqlx::query("DELETE FROM queue WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM bodies WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(r.rows_affected() > 0)
    }

    pub async fn inline_body(&self, id: &str) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(sqlx::query_scalar("SELECT data FROM bodies WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?)
    }
}

pub(crate) async fn insert(
    conn: &mut sqlx::SqliteConnection,
    m: &QueuedMessage,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "INSERT INTO queue (state, {COLUMNS}) \
         VALUES ('queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    );
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(&m.id)
        .bind(m.direction.as_str())
        .bind(&m.mail_from)
        .bind(recipients_json(&m.recipients))
        .bind(m.received_at)
        .bind(m.size as i64)
        .bind(m.attempts as i64)
        .bind(m.next_attempt)
        .bind(&m.last_error)
        .bind(&m.client_ip)
        .bind(&m.helo)
        .bind(m.score)
        .bind(&m.symbols)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn insert_body(
    conn: &mut sqlx::SqliteConnection,
    id: &str,
    body: &[u8],
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO bodies (id, data) VALUES (?, ?)")
        .bind(id)
        .bind(body)
        .execute(conn)
        .await?;
    Ok(())
}

pub(crate) async fn update_progress(
    conn: &mut sqlx::SqliteConnection,
    m: &QueuedMessage,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE queue SET recipients = ?, attempts = ?, next_attempt = ?, last_error = ? WHERE id = ?",
    )
    .bind(recipients_json(&m.recipients))
    .bind(m.attempts as i64)
    .bind(m.next_attempt)
    .bind(&m.last_error)
    .bind(&m.id)
    .execute(conn)
    .await?;
    Ok(())
}

pub(crate) async fn delete_many(
    conn: &mut sqlx::SqliteConnection,
    ids: &[String],
) -> Result<(), sqlx::Error> {
    for chunk in ids.chunks(200) {
        let placeholders = vec!["?"; chunk.len()].join(",");
        for table in ["queue", "bodies"] {
            let sql = format!("DELETE FROM {table} WHERE id IN ({placeholders})");
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id);
            }
            q.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

fn recipients_json(r: &[Recipient]) -> String {
    serde_json::to_string(r).unwrap_or_else(|_| "[]".into())
}
