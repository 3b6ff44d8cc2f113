//! The one task that writes the queue database: groups the work of all sessions and
//! delivery workers waiting at a moment into one transaction (group commit).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use sqlx::SqlitePool;
use tokio::sync::{mpsc, oneshot};

use super::{DeliveryJob, QueueState, QueuedMessage, RcptStatus, body_path, store};
use crate::metrics::Metrics;

/// Largest group committed at once (bounds transaction time, keeps latency fair).
const MAX_GROUP: usize = 512;

/// A new message waiting for the commit, with its body (for delivery) and the session's ack.
type PendingInsert = (
    QueuedMessage,
    Option<Arc<Vec<u8>>>,
    Option<oneshot::Sender<Result<(), String>>>,
);

pub enum Op {
    /// A new message whose body file is already fsync'd. `ack` hears the commit.
    Insert {
        message: QueuedMessage,
        body: Option<Arc<Vec<u8>>>,
        ack: Option<oneshot::Sender<Result<(), String>>>,
    },
    /// A delivery attempt ended; `message` carries the new recipient states, attempts and
    /// next attempt time. Fully settled messages (no pending recipient) are removed.
    Settle {
        message: QueuedMessage,
        /// Bounce (DSN) to insert in the same transaction; its body file is fsync'd.
        dsn: Option<QueuedMessage>,
    },
    /// Hand a stored message to delivery (used by the due-message scanner).
    Dispatch(DeliveryJob),
}

pub async fn run(
    writer: SqlitePool,
    spool_dir: PathBuf,
    mut ops: mpsc::UnboundedReceiver<Op>,
    jobs: mpsc::UnboundedSender<DeliveryJob>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    metrics: Metrics,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while ops.recv_many(&mut group, MAX_GROUP).await > 0 {
        let mut dispatch = Vec::new();
        let mut inserts = Vec::new();
        let mut settles = Vec::new();
        for op in group.drain(..) {
            match op {
                Op::Dispatch(job) => dispatch.push(job),
                Op::Insert { message, body, ack } => inserts.push((message, body, ack)),
                Op::Settle { message, dsn } => settles.push((message, dsn)),
            }
        }
        let new_files = !inserts.is_empty() || settles.iter().any(|(_, d)| d.is_some());
        let result = commit(&writer, &spool_dir, new_files, &inserts, &settles).await;
        if let Err(e) = &result {
            tracing::error!(error = %e, "queue commit failed");
        }
        let committed = result.is_ok();

        // Acks: 250 for committed messages, 451 (via the error) for the others.
        for (message, body, ack) in inserts {
            if let Some(ack) = ack {
                let _ = ack.send(result.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            }
            if committed && message.state == QueueState::Queued {
                in_flight.lock().unwrap().insert(message.id.clone());
                dispatch.push(DeliveryJob { message, body });
            } else if !committed {
                let _ = std::fs::remove_file(body_path(&spool_dir, &message.id));
            }
        }

        let mut removed = Vec::new();
        for (message, dsn) in settles {
            if committed {
                if message.pending_recipients().next().is_none() {
                    removed.push(message.id.clone());
                }
                if let Some(dsn) = dsn {
                    in_flight.lock().unwrap().insert(dsn.id.clone());
                    dispatch.push(DeliveryJob {
                        message: dsn,
                        body: None,
                    });
                }
            }
            // Committed or not, the message leaves delivery: the scanner finds it again
            // in the database when it is due (after a failed commit: the old state).
            in_flight.lock().unwrap().remove(&message.id);
        }
        for id in &removed {
            let _ = std::fs::remove_file(body_path(&spool_dir, id));
        }
        metrics.queue_removed(removed.len());

        for job in dispatch {
            if jobs.send(job).is_err() {
                return;
            }
        }
    }
}

async fn commit(
    writer: &SqlitePool,
    spool_dir: &std::path::Path,
    new_files: bool,
    inserts: &[PendingInsert],
    settles: &[(QueuedMessage, Option<QueuedMessage>)],
) -> anyhow::Result<()> {
    if new_files {
        // One directory fsync makes all new spool file names of this group durable.
        let dir = spool_dir.to_path_buf();
        tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all()).await??;
    }
    let mut tx = writer.begin().await?;
    for (message, _, _) in inserts {
        store::insert(&mut tx, message).await?;
    }
    let mut finished = Vec::new();
    for (message, dsn) in settles {
        if message.pending_recipients().next().is_none() {
            finished.push(message.id.clone());
        } else {
            store::update_progress(&mut tx, message).await?;
        }
        if let Some(dsn) = dsn {
            store::insert(&mut tx, dsn).await?;
        }
    }
    store::delete_many(&mut tx, &finished).await?;
    tx.commit().await?;
    debug_assert!(settles.iter().all(|(m, _)| {
        m.recipients.iter().all(|r| r.status != RcptStatus::Pending) == finished.contains(&m.id)
    }));
    Ok(())
}
