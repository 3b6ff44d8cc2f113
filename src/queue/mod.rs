//! The durable queue: every accepted message is one row in SQLite plus its body (inline in
//! the database or a file in `spool/`), and it is only acknowledged (250) once both are on
//! disk.
//!
//! Where a body lives depends on its size ([`INLINE_LIMIT`]): small messages (nearly all
//! mail) are stored *inline* in the `bodies` table, in the same transaction as their row;
//! larger ones are files in `spool/`. The rule is a function of the stored size, so every
//! reader finds a body without a flag.
//!
//! Durability order for a new message (see [`Queue::store`]):
//! 1. a large body is written to `spool/<id>.eml` and fsync'd by its session (in the
//!    blocking pool, so sessions fsync in parallel);
//! 2. the [`committer`] task groups the rows (and inline bodies) of all sessions waiting at
//!    that moment, fsyncs the spool directory if a file was added, and commits them in one
//!    SQLite transaction (`synchronous=FULL`): one WAL fsync for the whole group;
//! 3. only then the sessions get their ack and reply 250.
//!
//! Held copies (quarantine verdict) are not queue rows: the committer stores them in the
//! quarantine's tables (the `quarantine` crate) in the same transaction, large bodies as
//! files in `quarantine/`, so a held message too is durable before the `250`.
//!
//! Delivery outcomes go through the same committer, so one task writes to the database.
//! A crash between delivery and the outcome's commit redelivers the message on restart
//! (at-least-once); nothing acknowledged is ever lost.

pub mod admit;
pub mod committer;
pub mod store;
pub mod trace;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use filters::Direction;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;
use crate::store::{Database, create_private_dir};
pub use admit::{Arrival, HoldSettings, MessageCopy, Verdict, admit};
pub use committer::{HeldStored, Op, Stored};
pub use store::QueueStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RcptStatus {
    Pending,
    Delivered,
    Failed,
}

/// One envelope recipient and how far its delivery got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    pub address: String,
    pub status: RcptStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Recipient {
    pub fn pending(address: impl Into<String>) -> Self {
        Recipient {
            address: address.into(),
            status: RcptStatus::Pending,
            error: None,
        }
    }
}

/// A queue row.
#[derive(Debug, Clone, Serialize)]
pub struct QueuedMessage {
    pub id: String,
    pub direction: Direction,
    pub mail_from: String,
    pub recipients: Vec<Recipient>,
    pub received_at: i64,
    pub size: u64,
    pub attempts: u32,
    pub next_attempt: i64,
    pub last_error: Option<String>,
    pub client_ip: String,
    pub helo: String,
    pub score: f64,
    pub symbols: String,
}

impl QueuedMessage {
    /// A message the gateway makes itself (a bounce, a quarantine report): from the null
    /// sender to `recipient`, received now, nothing scored.
    pub fn made_here(id: String, direction: Direction, recipient: String, size: u64) -> Self {
        QueuedMessage {
            id,
            direction,
            mail_from: String::new(),
            recipients: vec![Recipient::pending(recipient)],
            received_at: unix_now(),
            size,
            attempts: 0,
            next_attempt: 0,
            last_error: None,
            client_ip: String::new(),
            helo: String::new(),
            score: 0.0,
            symbols: String::new(),
        }
    }

    pub fn pending_recipients(&self) -> impl Iterator<Item = &Recipient> {
        self.recipients
            .iter()
            .filter(|r| r.status == RcptStatus::Pending)
    }
}

/// A message handed to the delivery workers. The body is attached when it is still in
/// memory (fresh messages, within the budget); otherwise the worker reads it back.
#[derive(Debug, Clone)]
pub struct DeliveryJob {
    pub message: QueuedMessage,
    /// The body, when it rides along (a message just stored, within the budget); `None`:
    /// delivery reads it from the queue.
    pub body: Option<Arc<Vec<u8>>>,
    /// What the riding body holds of the budget, given back when the job is dropped.
    pub charge: Option<Arc<BodyCharge>>,
}

/// Bytes of bodies riding along with delivery jobs that wait or are being sent: when the
/// next hop is slower than mail arrives, jobs beyond `queue.dispatch_memory_bytes` go without
/// their body (delivery reads it back from disk), so memory does not grow with the backlog.
#[derive(Debug, Default)]
pub struct BodyBudget {
    used: AtomicU64,
    limit: AtomicU64,
}

/// A share of the budget, returned on drop.
#[derive(Debug)]
pub struct BodyCharge {
    budget: Arc<BodyBudget>,
    bytes: u64,
}

impl BodyBudget {
    pub fn new(limit: u64) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            used: AtomicU64::new(0),
            limit: AtomicU64::new(limit),
        })
    }

    pub fn set_limit(&self, limit: u64) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Bytes riding along now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The body with its charge when it fits in the budget, else nothing: the job goes
    /// without it.
    pub fn ride(
        self: &Arc<BodyBudget>,
        body: Arc<Vec<u8>>,
    ) -> (Option<Arc<Vec<u8>>>, Option<Arc<BodyCharge>>) {
        let bytes = body.len() as u64;
        let limit = self.limit.load(Ordering::Relaxed);
        let fits = self
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used + bytes <= limit).then_some(used + bytes)
            })
            .is_ok();
        if !fits {
            return (None, None);
        }
        let charge = BodyCharge {
            budget: self.clone(),
            bytes,
        };
        (Some(body), Some(Arc::new(charge)))
    }
}

impl Drop for BodyCharge {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Bodies up to this size are stored in SQLite with their row; larger ones as spool files
/// (a file per message costs an inode, a fsync and an unlink: measured ~40% of the gateway's
/// CPU at 10 KB; a 25 MB blob in the group transaction would stall every other session).
pub const INLINE_LIMIT: u64 = 256 * 1024;

/// Whether a message of `size` bytes has its body in the `bodies` table.
pub fn is_inline(size: u64) -> bool {
    size <= INLINE_LIMIT
}

pub use crate::clock::unix_now;

/// Queue ids: microseconds since the epoch and a per-process counter, in hex. Sortable
/// by arrival, unique across restarts (time moves on), safe as a file name.
pub fn new_queue_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff;
    format!("{micros:013X}{n:04X}")
}

/// Ids come from the database or the command line: only hex digits are valid, so an id
/// can never name a path outside the spool.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The gateway's handle on the queue: store new messages, report outcomes.
#[derive(Clone)]
pub struct Queue {
    spool_dir: PathBuf,
    quarantine_dir: PathBuf,
    ops: mpsc::UnboundedSender<Op>,
    /// Ids handed to delivery and not yet settled; the scanner skips them.
    pub in_flight: Arc<Mutex<HashSet<String>>>,
    pub store: QueueStore,
    /// For copies the verdict holds.
    pub hold: HoldSettings,
    /// Bodies riding along with delivery jobs (`queue.dispatch_memory_bytes`).
    pub budget: Arc<BodyBudget>,
}

impl Queue {
    /// Open (or create) the queue in `data_dir` and start the committer. Returns the queue
    /// and the receiving end of the delivery jobs.
    pub async fn open(
        data_dir: &Path,
        db: &Database,
        metrics: Metrics,
        hold: HoldSettings,
    ) -> anyhow::Result<(Queue, mpsc::UnboundedReceiver<DeliveryJob>)> {
        let spool_dir = data_dir.join("spool");
        create_private_dir(&spool_dir)?;
        let quarantine_dir = quarantine_dir(data_dir);
        create_private_dir(&quarantine_dir)?;
        let store = QueueStore::new(db);
        let writer = db.writer().await?;
        let (ops_tx, ops_rx) = mpsc::unbounded_channel();
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let in_flight = Arc::new(Mutex::new(HashSet::new()));
        let budget = BodyBudget::new(crate::config::defaults::DISPATCH_MEMORY_BYTES);
        tokio::spawn(committer::run(
            writer,
            spool_dir.clone(),
            quarantine_dir.clone(),
            ops_rx,
            committer::Dispatch {
                jobs: jobs_tx,
                in_flight: in_flight.clone(),
                budget: budget.clone(),
            },
            metrics,
        ));
        Ok((
            Queue {
                spool_dir,
                quarantine_dir,
                ops: ops_tx,
                in_flight,
                store,
                hold,
                budget,
            },
            jobs_rx,
        ))
    }

    pub fn spool_dir(&self) -> &Path {
        &self.spool_dir
    }

    pub fn body_path(&self, id: &str) -> PathBuf {
        body_path(&self.spool_dir, id)
    }

    /// Store a new message durably. Returns once the body and its row are on disk; only
    /// then may the session say 250. `message.size` must be `body.len()`.
    pub async fn store(&self, message: QueuedMessage, body: Arc<Vec<u8>>) -> anyhow::Result<()> {
        self.store_many(vec![(message, body)], Vec::new()).await
    }

    /// Store several messages (the copies of one transaction, e.g. one per S/MIME
    /// recipient) in one commit: all are on disk, or none is (the session then says 451
    /// and no copy goes out twice on the client's retry). `held`: copies the verdict
    /// holds, stored in the quarantine in the same commit.
    pub async fn store_many(
        &self,
        messages: Vec<Stored>,
        held: Vec<HeldStored>,
    ) -> anyhow::Result<()> {
        let mut written = Vec::new();
        let files = messages
            .iter()
            .map(|(m, body)| (m.size, self.body_path(&m.id), body))
            .chain(held.iter().map(|(h, body)| {
                (
                    h.size,
                    quarantine::store::body_path(&self.quarantine_dir, &h.id),
                    body,
                )
            }));
        for (size, path, body) in files {
            debug_assert_eq!(size, body.len() as u64);
            if !is_inline(size) {
                if let Err(e) = write_body_file(path.clone(), body.clone()).await {
                    // none of the copies is acknowledged: leave no orphan file behind
                    for p in written {
                        let _ = std::fs::remove_file(p);
                    }
                    return Err(e);
                }
                written.push(path);
            }
        }
        let (ack, done) = oneshot::channel();
        self.ops
            .send(Op::Insert {
                messages,
                held,
                ack,
            })
            .map_err(|_| anyhow::anyhow!("queue committer has stopped"))?;
        done.await
            .map_err(|_| anyhow::anyhow!("queue committer has stopped"))?
            .map_err(|e| anyhow::anyhow!("queue commit failed: {e}"))
    }

    /// Report what happened to a delivery job (the committer settles it).
    pub fn settle(&self, op: Op) {
        // The committer only stops with the process; a lost outcome is redelivered.
        let _ = self.ops.send(op);
    }

    /// Put due messages back into delivery (called periodically and at start-up).
    pub async fn dispatch_due(&self, limit: u32) -> anyhow::Result<usize> {
        let due = self.store.due(unix_now(), limit).await?;
        let mut fresh = Vec::new();
        {
            let mut in_flight = self.in_flight.lock().unwrap();
            for m in due {
                if in_flight.insert(m.id.clone()) {
                    fresh.push(m);
                }
            }
        }
        let n = fresh.len();
        for m in fresh {
            let _ = self.ops.send(Op::Dispatch(DeliveryJob {
                message: m,
                body: None,
                charge: None,
            }));
        }
        Ok(n)
    }

    /// Read a stored body (inline or spool file).
    pub async fn load_body(&self, message: &QueuedMessage) -> anyhow::Result<Vec<u8>> {
        if is_inline(message.size) {
            self.store.inline_body(&message.id).await?.ok_or_else(|| {
                anyhow::anyhow!("body of {} is missing from the queue database", message.id)
            })
        } else {
            tokio::fs::read(self.body_path(&message.id))
                .await
                .with_context(|| format!("cannot read spool file of {}", message.id))
        }
    }
}

/// Where large held bodies are: `data_dir/quarantine`.
pub fn quarantine_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("quarantine")
}

pub fn body_path(spool_dir: &Path, id: &str) -> PathBuf {
    spool_dir.join(format!("{id}.eml"))
}

/// Write a body file and fsync it, in the blocking pool.
pub async fn write_body_file(path: PathBuf, body: Arc<Vec<u8>>) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        f.write_all(&body)?;
        f.sync_data()
    })
    .await
    .context("spool writer task failed")?
    .context("cannot write message to the spool")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_ride_with_jobs_only_within_the_budget_and_give_it_back() {
        let budget = BodyBudget::new(100);
        let body = |n| Arc::new(vec![b'x'; n]);
        let (a, charge_a) = budget.ride(body(60));
        assert!(a.is_some() && charge_a.is_some());
        // 60 + 50 > 100: this one goes without its body.
        let (b, charge_b) = budget.ride(body(50));
        assert!(b.is_none() && charge_b.is_none());
        let (c, charge_c) = budget.ride(body(40));
        assert!(c.is_some());
        assert_eq!(budget.used(), 100);
        // A job (and its clones) dropped gives its share back.
        let job = DeliveryJob {
            message: QueuedMessage::made_here(
                new_queue_id(),
                Direction::Inbound,
                "a@example.test".into(),
                60,
            ),
            body: a,
            charge: charge_a,
        };
        let copy = job.clone();
        drop(job);
        assert_eq!(budget.used(), 100);
        drop(copy);
        assert_eq!(budget.used(), 40);
        drop(charge_c);
        assert_eq!(budget.used(), 0);
        budget.set_limit(10);
        assert!(budget.ride(body(11)).0.is_none());
    }

    #[test]
    fn ids_are_unique_sortable_and_valid() {
        let a = new_queue_id();
        let b = new_queue_id();
        assert_ne!(a, b);
        assert!(is_valid_id(&a));
        assert!(a.len() == 17);
        assert!(!is_valid_id("../etc/passwd"));
        assert!(!is_valid_id(""));
    }
}
