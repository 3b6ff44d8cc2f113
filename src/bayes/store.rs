//! SQL of the Bayesian model (sqlx; tables from `migrations/0003_bayes.sql`).
//!
//! The model lives in the gateway's one SQLite database (`data_dir/queue.db`, through the
//! queue store's pool and migration sequence): one store to back up, one migration sequence,
//! and the same portable SQL can later move to the shared PostgreSQL of several gateways.
//! Writes are rare and short (one transaction per learned message, one per training run), so
//! they do not hold up the queue's group commits for long.

use std::collections::HashMap;

use anyhow::Context;
use filters::bayes::model::{Class, Counts, Model, TokenMap};
use sqlx::sqlite::SqlitePool;

/// Rows per multi-row statement (at most 4 binds each; well under SQLite's bind limit).
const BATCH: usize = 300;

/// Count changes of one learning operation: per token (ham, spam) deltas, per class
/// message deltas, and the digests learned.
#[derive(Debug, Default)]
pub struct Delta {
    pub tokens: TokenMap<(i64, i64)>,
    pub ham_msgs: i64,
    pub spam_msgs: i64,
    /// digest → class now learned as, and how many messages it counts as
    pub learned: Vec<(String, Class, u32)>,
}

impl Delta {
    /// Count `tokens` as `count` more messages of `class` (negative: fewer).
    pub fn add(&mut self, tokens: &[u64], class: Class, count: i64) {
        for t in tokens {
            let d = self.tokens.entry(*t).or_default();
            match class {
                Class::Ham => d.0 += count,
                Class::Spam => d.1 += count,
            }
        }
        match class {
            Class::Ham => self.ham_msgs += count,
            Class::Spam => self.spam_msgs += count,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ham_msgs == 0 && self.spam_msgs == 0 && self.learned.is_empty()
    }
}

#[derive(Clone)]
pub struct BayesStore {
    pool: SqlitePool,
}

impl BayesStore {
    pub fn new(pool: SqlitePool) -> BayesStore {
        BayesStore { pool }
    }

    /// The model as stored.
    pub async fn load(&self) -> anyhow::Result<Model> {
        let (ham_msgs, spam_msgs, _) = self.meta().await?;
        let rows: Vec<(i64, i64, i64)> =
            sqlx::query_as("SELECT token, ham, spam FROM bayes_tokens WHERE ham > 0 OR spam > 0")
                .fetch_all(&self.pool)
                .await
                .context("cannot read the Bayes model")?;
        Ok(Model::from_counts(
            rows.into_iter().map(|(t, h, s)| {
                (
                    t as u64,
                    Counts {
                        ham: h.clamp(0, u32::MAX as i64) as u32,
                        spam: s.clamp(0, u32::MAX as i64) as u32,
                    },
                )
            }),
            ham_msgs.max(0) as u64,
            spam_msgs.max(0) as u64,
        ))
    }

    /// (ham messages, spam messages, version).
    pub async fn meta(&self) -> anyhow::Result<(i64, i64, i64)> {
        sqlx::query_as("SELECT ham_msgs, spam_msgs, version FROM bayes_meta WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .context("cannot read the Bayes model counts")
    }

    pub async fn version(&self) -> anyhow::Result<i64> {
        Ok(self.meta().await?.2)
    }

    /// Which class each known digest was learned as, and its weight.
    pub async fn learned(&self) -> anyhow::Result<HashMap<String, (Class, u32)>> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT digest, class, weight FROM bayes_learned")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(d, c, w)| (d, (class_of(&c), weight_of(w))))
            .collect())
    }

    pub async fn learned_as(&self, digest: &str) -> anyhow::Result<Option<(Class, u32)>> {
        let row: Option<(String, i64)> =
            sqlx::query_as("SELECT class, weight FROM bayes_learned WHERE digest = ?")
                .bind(digest)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|(c, w)| (class_of(&c), weight_of(w))))
    }

    /// Apply a delta in one transaction and bump the version.
    pub async fn apply(&self, delta: &Delta) -> anyhow::Result<()> {
        if delta.is_empty() {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let mut tx = self.pool.begin_with(crate::store::BEGIN_WRITE).await?;
        let rows: Vec<(&u64, &(i64, i64))> = delta
            .tokens
            .iter()
            .filter(|(_, d)| d.0 != 0 || d.1 != 0)
            .collect();
        for chunk in rows.chunks(BATCH) {
            let mut sql = String::from("INSERT INTO bayes_tokens (token, ham, spam) VALUES ");
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 { "(?, ?, ?)" } else { ", (?, ?, ?)" });
            }
            sql.push_str(
                " ON CONFLICT(token) DO UPDATE SET ham = MAX(0, ham + excluded.ham), \
                 spam = MAX(0, spam + excluded.spam)",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (t, (h, s)) in chunk {
                q = q.bind(**t as i64).bind(*h).bind(*s);
            }
            q.execute(&mut *tx).await?;
        }
        if delta.tokens.values().any(|d| d.0 < 0 || d.1 < 0) {
            sqlx::query("DELETE FROM bayes_tokens WHERE ham <= 0 AND spam <= 0")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE bayes_meta SET ham_msgs = MAX(0, ham_msgs + ?), \
             spam_msgs = MAX(0, spam_msgs + ?), version = version + 1 WHERE id = 1",
        )
        .bind(delta.ham_msgs)
        .bind(delta.spam_msgs)
        .execute(&mut *tx)
        .await?;
        for chunk in delta.learned.chunks(BATCH) {
            let mut sql = String::from(
                "INSERT INTO bayes_learned (digest, class, learned_at, weight) VALUES ",
            );
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 {
                    "(?, ?, ?, ?)"
                } else {
                    ", (?, ?, ?, ?)"
                });
            }
            sql.push_str(
                " ON CONFLICT(digest) DO UPDATE SET class = excluded.class, \
                 learned_at = excluded.learned_at, weight = excluded.weight",
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (d, c, w) in chunk {
                q = q
                    .bind(d.as_str())
                    .bind(c.as_str())
                    .bind(now)
                    .bind(i64::from(*w));
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await.context("cannot store the Bayes model")?;
        Ok(())
    }
}

fn class_of(stored: &str) -> Class {
    if stored == "spam" {
        Class::Spam
    } else {
        Class::Ham
    }
}

/// A stored weight; a row from before weights existed, or a damaged one, counts once.
fn weight_of(stored: i64) -> u32 {
    u32::try_from(stored).unwrap_or(1).max(1)
}
