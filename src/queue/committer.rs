//! The one task that writes the queue database: groups the work of all sessions and
//! delivery workers waiting at a moment into one transaction (group commit).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::{DeliveryJob, QueuedMessage, body_path, is_inline, store};
use crate::metrics::Metrics;

/// Largest group committed at once (bounds transaction time, keeps latency fair).
const MAX_GROUP: usize = 512;

/// How long delivery outcomes may wait to share a commit with what comes next. Outcomes
/// are not urgent (nobody waits for them), and one commit per outcome costs more than the
/// delivery itself at low rates.
const SETTLE_LINGER: std::time::Duration = std::time::Duration::from_millis(5);

/// A message and its body. A large body is already fsync'd in the spool; a small one is
/// written inline by the commit.
pub type Stored = (QueuedMessage, Arc<Vec<u8>>);

/// A copy the verdict holds, and its body (a large one already fsync'd in `quarantine/`).
pub type HeldStored = (quarantine::NewHeld, Arc<Vec<u8>>);

// Ops are moved once through the channel; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum Op {
    /// New messages (one, or the copies of one SMTP transaction): committed in the same
    /// transaction, so all or none. `ack` hears the commit.
    Insert {
        messages: Vec<Stored>,
        held: Vec<HeldStored>,
        ack: oneshot::Sender<Result<(), String>>,
    },
    /// A delivery attempt ended; `message` carries the new recipient states, attempts and
    /// next attempt time. Fully settled messages (no pending recipient) are removed.
    Settle {
        message: QueuedMessage,
        /// Bounce (DSN) to insert in the same transaction.
        dsn: Option<Stored>,
    },
    /// Hand a stored message to delivery (used by the due-message scanner).
    Dispatch(DeliveryJob),
}

/// Where committed messages go: the delivery workers' channel, the ids they hold, and the
/// budget for bodies riding along.
pub struct Dispatch {
    pub jobs: mpsc::UnboundedSender<DeliveryJob>,
    pub in_flight: Arc<Mutex<HashSet<String>>>,
    pub budget: Arc<super::BodyBudget>,
}

pub async fn run(
    writer: SqlitePool,
    spool_dir: PathBuf,
    quarantine_dir: PathBuf,
    mut ops: mpsc::UnboundedReceiver<Op>,
    to_delivery: Dispatch,
    metrics: Metrics,
) {
    let Dispatch {
        jobs,
        in_flight,
        budget,
    } = to_delivery;
    let mut group = Vec::with_capacity(MAX_GROUP);
    let mut synchronous_full = true; // what the writer connection is set to now
    while ops.recv_many(&mut group, MAX_GROUP).await > 0 {
        if group
            .iter()
            .all(|op| matches!(op, Op::Settle { dsn: None, .. }))
        {
            let room = MAX_GROUP - group.len();
            let _ = tokio::time::timeout(SETTLE_LINGER, ops.recv_many(&mut group, room)).await;
        }
        let mut dispatch = Vec::new();
        let mut inserts = Vec::new();
        let mut holds = Vec::new();
        let mut acks = Vec::new();
        let mut settles = Vec::new();
        for op in group.drain(..) {
            match op {
                Op::Dispatch(job) => dispatch.push(job),
                Op::Insert {
                    messages,
                    held,
                    ack,
                } => {
                    inserts.extend(messages);
                    holds.extend(held);
                    acks.push(ack);
                }
                Op::Settle { message, dsn } => settles.push((message, dsn)),
            }
        }
        let result = commit(
            &writer,
            [&spool_dir, &quarantine_dir],
            &inserts,
            &holds,
            &settles,
            &mut synchronous_full,
        )
        .await;
        if let Err(e) = &result {
            tracing::error!(error = %format!("{e:#}"), "queue commit failed");
        }
        let committed = result.is_ok();

        // Acks: 250 for committed messages, 451 (via the error) for the others.
        for ack in acks {
            let _ = ack.send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
        }
        let mut unlink = Vec::new();
        for (message, body) in inserts {
            if committed {
                in_flight.lock().unwrap().insert(message.id.clone());
                let (body, charge) = budget.ride(body);
                dispatch.push(DeliveryJob {
                    message,
                    body,
                    charge,
                });
            } else if !committed && !is_inline(message.size) {
                unlink.push(body_path(&spool_dir, &message.id));
            }
        }

        for (held, _) in holds {
            if !committed && !is_inline(held.size) {
                unlink.push(quarantine::store::body_path(&quarantine_dir, &held.id));
            }
        }

        let mut removed = 0;
        for (message, dsn) in settles {
            if committed {
                if message.pending_recipients().next().is_none() {
                    removed += 1;
                    if !is_inline(message.size) {
                        unlink.push(body_path(&spool_dir, &message.id));
                    }
                }
                if let Some((dsn, body)) = dsn {
                    in_flight.lock().unwrap().insert(dsn.id.clone());
                    let (body, charge) = budget.ride(body);
                    dispatch.push(DeliveryJob {
                        message: dsn,
                        body,
                        charge,
                    });
                }
            }
            // Committed or not, the message leaves delivery: the scanner finds it again
            // in the database when it is due (after a failed commit: the old state).
            in_flight.lock().unwrap().remove(&message.id);
        }
        if !unlink.is_empty() {
            tokio::task::spawn_blocking(move || {
                for p in unlink {
                    let _ = std::fs::remove_file(p);
                }
            });
        }
        metrics.queue_removed(removed);

        for job in dispatch {
            if jobs.send(job).is_err() {
                return;
            }
        }
    }
}

async fn commit(
    writer: &SqlitePool,
    [spool_dir, quarantine_dir]: [&Path; 2],
    inserts: &[Stored],
    holds: &[HeldStored],
    settles: &[(QueuedMessage, Option<Stored>)],
    synchronous_full: &mut bool,
) -> anyhow::Result<()> {
    let new_files = inserts.iter().any(|(m, _)| !is_inline(m.size))
        || settles
            .iter()
            .any(|(_, d)| d.as_ref().is_some_and(|(m, _)| !is_inline(m.size)));
    let new_held_files = holds.iter().any(|(h, _)| !is_inline(h.size));
    // One directory fsync makes all new file names of this group durable.
    for (dir, needed) in [(spool_dir, new_files), (quarantine_dir, new_held_files)] {
        if needed {
            let dir = dir.to_path_buf();
            tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all()).await??;
        }
    }
    // A group of outcomes only (no new message, no DSN) needs no fsync of its own: losing
    // it in a crash means a redelivery (at-least-once), and the next FULL commit syncs the
    // WAL it is in anyway.
    let outcomes_only =
        inserts.is_empty() && holds.is_empty() && settles.iter().all(|(_, d)| d.is_none());
    if *synchronous_full == outcomes_only {
        let sync = if outcomes_only {
            "PRAGMA synchronous = NORMAL"
        } else {
            "PRAGMA synchronous = FULL"
        };
        sqlx::query(sync).execute(writer).await?;
        *synchronous_full = !outcomes_only;
    }
    let mut tx = writer.begin_with(crate::store::BEGIN_WRITE).await?;
    let insert = async |tx: &mut sqlx::SqliteConnection,
                        (message, body): &Stored|
           -> Result<(), sqlx::Error> {
        store::insert(tx, message).await?;
        if is_inline(message.size) {
            store::insert_body(tx, &message.id, body).await?;
        }
        Ok(())
    };
    for stored in inserts {
        insert(&mut tx, stored).await?;
    }
    for (held, body) in holds {
        let inline = is_inline(held.size).then_some(body.as_slice());
        quarantine::store::insert(&mut tx, held, inline).await?;
    }
    let mut finished = Vec::new();
    for (message, dsn) in settles {
        if message.pending_recipients().next().is_none() {
            finished.push(message.id.clone());
        } else {
            store::update_progress(&mut tx, message).await?;
        }
        if let Some(dsn) = dsn {
            insert(&mut tx, dsn).await?;
        }
    }
    store::delete_many(&mut tx, &finished).await?;
    tx.commit().await?;
    Ok(())
}
