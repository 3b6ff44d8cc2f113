//! The level of trust's memory on disk (tables of `migrations/0004_trust.sql`), and the
//! learning after each verdict.
//!
//! The stages read a [`TrustBook`] in memory (`filters::trust`); this module loads it at
//! start, applies what each stored message teaches ([`Learner`]), and writes the changed
//! rows back in batches from one background task, so no SMTP session waits for SQLite.
//! Operators' pins are re-read periodically (the CLI writes them while the gateway runs).
//! At most a second of learning can be lost in a crash; trust is a bonus, not a record.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use filters::trust::{Change, Pin, ServerSeen, TlsHistory, TrustBook, Weight};
use sqlx::sqlite::SqlitePool;
use tokio::sync::mpsc;

/// Below this (decayed) weight a relationship is not loaded: forgotten.
const FORGET_BELOW: f64 = 0.05;
/// Changed rows are written at least this often.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub struct TrustStore {
    pool: SqlitePool,
}

/// One domain's trust, for `portcullis trust list|show`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DomainReport {
    pub domain: String,
    /// Decayed weight of our users' mail to the domain (messages, roughly).
    pub weight: f64,
    pub pinned: Option<String>,
    pub correspondents: i64,
    pub servers: i64,
    pub tls_verified: i64,
    pub tls_unverified: i64,
    pub last_activity: i64,
}

impl TrustStore {
    pub fn new(pool: SqlitePool) -> TrustStore {
        TrustStore { pool }
    }

    /// Everything stored, into a new book (forgotten relationships left out).
    pub async fn load(&self, half_life_days: f64, now: i64) -> anyhow::Result<TrustBook> {
        let book = TrustBook::new(half_life_days);
        let hl = book.half_life_secs();
        let pairs: Vec<(String, String, f64, i64)> =
            sqlx::query_as("SELECT local_addr, remote_addr, weight, updated_at FROM trust_pairs")
                .fetch_all(&self.pool)
                .await
                .context("cannot read trust_pairs")?;
        for (l, r, value, at) in pairs {
            let w = Weight { value, at };
            if w.at_time(now, hl) >= FORGET_BELOW {
                book.load_pair(&l, &r, w);
            }
        }
        let domains: Vec<(String, f64, i64)> =
            sqlx::query_as("SELECT domain, weight, updated_at FROM trust_domains")
                .fetch_all(&self.pool)
                .await
                .context("cannot read trust_domains")?;
        for (d, value, at) in domains {
            let w = Weight { value, at };
            if w.at_time(now, hl) >= FORGET_BELOW {
                book.load_domain(&d, w);
            }
        }
        let servers: Vec<(String, String, i64, i64, i64)> = sqlx::query_as(
            "SELECT domain, network, messages, first_seen, last_seen FROM trust_servers",
        )
        .fetch_all(&self.pool)
        .await
        .context("cannot read trust_servers")?;
        for (d, n, messages, first_seen, last_seen) in servers {
            book.load_server(
                &d,
                &n,
                ServerSeen {
                    messages: messages.max(0) as u64,
                    first_seen,
                    last_seen,
                },
            );
        }
        let tls: Vec<(String, Option<String>, i64, i64, i64)> = sqlx::query_as(
            "SELECT domain, fingerprint, verified, unverified, last_seen FROM trust_tls",
        )
        .fetch_all(&self.pool)
        .await
        .context("cannot read trust_tls")?;
        for (d, fingerprint, verified, unverified, last_seen) in tls {
            book.load_tls(
                &d,
                TlsHistory {
                    fingerprint,
                    verified: verified.max(0) as u64,
                    unverified: unverified.max(0) as u64,
                    last_seen,
                },
            );
        }
        book.set_pins(self.pins().await?);
        Ok(book)
    }

    pub async fn pins(&self) -> anyhow::Result<HashMap<String, Pin>> {
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT domain, level FROM trust_pins")
            .fetch_all(&self.pool)
            .await
            .context("cannot read trust_pins")?;
        Ok(rows
            .into_iter()
            .filter_map(|(d, l)| Some((d, l.parse().ok()?)))
            .collect())
    }

    /// Pin `domain` to `level`, or unpin it (`None`).
    pub async fn set_pin(&self, domain: &str, level: Option<Pin>, now: i64) -> anyhow::Result<()> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        match level {
            Some(p) => {
                sqlx::query(
                    "INSERT INTO trust_pins (domain, level, set_at) VALUES (?, ?, ?) \
                     ON CONFLICT (domain) DO UPDATE SET level = excluded.level, set_at = excluded.set_at",
                )
                .bind(&domain)
                .bind(p.as_str())
                .bind(now)
                .execute(&self.pool)
                .await?
            }
            None => {
                sqlx::query("DELETE FROM trust_pins WHERE domain = ?")
                    .bind(&domain)
                    .execute(&self.pool)
                    .await?
            }
        };
        Ok(())
    }

    /// Write changed rows in one transaction.
    pub async fn apply(&self, changes: &[Change]) -> anyhow::Result<()> {
        let mut tx = self.pool.begin_with(crate::store::BEGIN_WRITE).await?;
        for c in changes {
            match c {
                Change::Pair {
                    local,
                    remote,
                    weight,
                } => sqlx::query(
                    "INSERT INTO trust_pairs (local_addr, remote_addr, weight, updated_at) \
                     VALUES (?, ?, ?, ?) ON CONFLICT (local_addr, remote_addr) DO UPDATE SET \
                     weight = excluded.weight, updated_at = excluded.updated_at",
                )
                .bind(local)
                .bind(remote)
                .bind(weight.value)
                .bind(weight.at),
                Change::Domain { domain, weight } => sqlx::query(
                    "INSERT INTO trust_domains (domain, weight, updated_at) VALUES (?, ?, ?) \
                     ON CONFLICT (domain) DO UPDATE SET weight = excluded.weight, \
                     updated_at = excluded.updated_at",
                )
                .bind(domain)
                .bind(weight.value)
                .bind(weight.at),
                Change::Server {
                    domain,
                    network,
                    seen,
                } => sqlx::query(
                    "INSERT INTO trust_servers (domain, network, messages, first_seen, last_seen) \
                     VALUES (?, ?, ?, ?, ?) ON CONFLICT (domain, network) DO UPDATE SET \
                     messages = excluded.messages, last_seen = excluded.last_seen",
                )
                .bind(domain)
                .bind(network)
                .bind(seen.messages as i64)
                .bind(seen.first_seen)
                .bind(seen.last_seen),
                Change::Tls { domain, history } => sqlx::query(
                    "INSERT INTO trust_tls (domain, fingerprint, verified, unverified, last_seen) \
                     VALUES (?, ?, ?, ?, ?) ON CONFLICT (domain) DO UPDATE SET \
                     fingerprint = excluded.fingerprint, verified = excluded.verified, \
                     unverified = excluded.unverified, last_seen = excluded.last_seen",
                )
                .bind(domain)
                .bind(history.fingerprint.as_deref())
                .bind(history.verified as i64)
                .bind(history.unverified as i64)
                .bind(history.last_seen),
            }
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every domain the gateway knows something about, decayed to `now`.
    pub async fn report(
        &self,
        half_life_days: f64,
        now: i64,
        only: Option<&str>,
    ) -> anyhow::Result<Vec<DomainReport>> {
        let hl = half_life_days * 86_400.0;
        let only = only.map(|d| d.trim_end_matches('.').to_ascii_lowercase());
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT domain FROM trust_domains UNION SELECT domain FROM trust_pins \
             UNION SELECT domain FROM trust_servers UNION SELECT domain FROM trust_tls \
             ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::new();
        for (domain,) in rows {
            if only.as_ref().is_some_and(|o| *o != domain) {
                continue;
            }
            let w: Option<(f64, i64)> =
                sqlx::query_as("SELECT weight, updated_at FROM trust_domains WHERE domain = ?")
                    .bind(&domain)
                    .fetch_optional(&self.pool)
                    .await?;
            let pinned: Option<(String,)> =
                sqlx::query_as("SELECT level FROM trust_pins WHERE domain = ?")
                    .bind(&domain)
                    .fetch_optional(&self.pool)
                    .await?;
            let (correspondents,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM trust_pairs WHERE remote_addr LIKE '%@' || ?")
                    .bind(&domain)
                    .fetch_one(&self.pool)
                    .await?;
            let (servers, server_seen): (i64, Option<i64>) = sqlx::query_as(
                "SELECT COUNT(*), MAX(last_seen) FROM trust_servers WHERE domain = ?",
            )
            .bind(&domain)
            .fetch_one(&self.pool)
            .await?;
            let tls: Option<(i64, i64)> =
                sqlx::query_as("SELECT verified, unverified FROM trust_tls WHERE domain = ?")
                    .bind(&domain)
                    .fetch_optional(&self.pool)
                    .await?;
            let weight = w.map_or(0.0, |(value, at)| Weight { value, at }.at_time(now, hl));
            out.push(DomainReport {
                last_activity: w.map_or(0, |w| w.1).max(server_seen.unwrap_or(0)),
                domain,
                weight: (weight * 100.0).round() / 100.0,
                pinned: pinned.map(|p| p.0),
                correspondents,
                servers,
                tls_verified: tls.map_or(0, |t| t.0),
                tls_unverified: tls.map_or(0, |t| t.1),
            });
        }
        Ok(out)
    }

    /// The pairs and servers of one domain, for `trust show`.
    pub async fn details(
        &self,
        domain: &str,
        half_life_days: f64,
        now: i64,
    ) -> anyhow::Result<(Vec<(String, String, f64)>, Vec<(String, i64, i64, i64)>)> {
        let hl = half_life_days * 86_400.0;
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        let pairs: Vec<(String, String, f64, i64)> = sqlx::query_as(
            "SELECT local_addr, remote_addr, weight, updated_at FROM trust_pairs \
             WHERE remote_addr LIKE '%@' || ? ORDER BY remote_addr, local_addr",
        )
        .bind(&domain)
        .fetch_all(&self.pool)
        .await?;
        let servers: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT network, messages, first_seen, last_seen FROM trust_servers \
             WHERE domain = ? ORDER BY messages DESC",
        )
        .bind(&domain)
        .fetch_all(&self.pool)
        .await?;
        Ok((
            pairs
                .into_iter()
                .map(|(l, r, value, at)| (l, r, Weight { value, at }.at_time(now, hl)))
                .collect(),
            servers,
        ))
    }
}

/// The table row a change rewrites.
fn row_key(c: &Change) -> String {
    match c {
        Change::Pair { local, remote, .. } => format!("p {local} {remote}"),
        Change::Domain { domain, .. } => format!("d {domain}"),
        Change::Server {
            domain, network, ..
        } => format!("s {domain} {network}"),
        Change::Tls { domain, .. } => format!("t {domain}"),
    }
}

/// What a stored message teaches, handed to the writer task.
#[derive(Clone)]
pub struct Learner {
    book: Arc<TrustBook>,
    writes: mpsc::UnboundedSender<Vec<Change>>,
}

impl Learner {
    /// Start the writer task and the pin reloader; returns the learner sessions call.
    pub fn spawn(book: Arc<TrustBook>, store: TrustStore, pin_reload: Duration) -> Learner {
        let (writes, mut rx) = mpsc::unbounded_channel::<Vec<Change>>();
        let writer = store.clone();
        tokio::spawn(async move {
            // Rows changed since the last write, by key: each change carries the row's whole
            // new state, so only the last one per row is written (a busy partner's server
            // row changes with every message; it is written once a second).
            let mut pending: HashMap<String, Change> = HashMap::new();
            let add = |pending: &mut HashMap<String, Change>, changes: Vec<Change>| {
                for c in changes {
                    pending.insert(row_key(&c), c);
                }
            };
            loop {
                // Wait for the first change, then collect for up to FLUSH_EVERY.
                match rx.recv().await {
                    Some(c) => add(&mut pending, c),
                    None => break,
                }
                let deadline = tokio::time::Instant::now() + FLUSH_EVERY;
                while let Ok(Some(c)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                    add(&mut pending, c);
                }
                let rows: Vec<Change> = pending.drain().map(|(_, c)| c).collect();
                if let Err(e) = writer.apply(&rows).await {
                    tracing::warn!(error = %format!("{e:#}"), rows = rows.len(), "cannot save trust changes");
                }
            }
        });
        let pins_book = book.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(pin_reload);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store.pins().await {
                    Ok(p) => pins_book.set_pins(p),
                    Err(e) => tracing::warn!(error = %format!("{e:#}"), "cannot reload trust pins"),
                }
            }
        });
        Learner { book, writes }
    }

    /// An outbound message was accepted for delivery.
    pub fn outbound(&self, sender: &str, recipients: &[String], is_local: impl Fn(&str) -> bool) {
        let changes =
            self.book
                .learn_outbound(sender, recipients, is_local, filters::trust::unix_now());
        self.save(changes);
    }

    /// An inbound message authenticated for `domain` was accepted.
    pub fn inbound(&self, domain: &str, ip: IpAddr, verified_cert: Option<&str>) {
        let changes =
            self.book
                .learn_inbound(domain, ip, verified_cert, filters::trust::unix_now());
        self.save(changes);
    }

    fn save(&self, changes: Vec<Change>) {
        if !changes.is_empty() {
            // The writer only stops with the runtime.
            let _ = self.writes.send(changes);
        }
    }
}
