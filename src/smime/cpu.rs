//! Where the S/MIME cryptography runs: a small pool of dedicated threads, one per CPU
//! core, fed from one queue (an RSA private-key operation takes about half a millisecond,
//! too long for the reactor). More threads would not finish sooner, and OpenSSL 3's
//! shared locks (algorithm fetches, provider store) get slower the more threads wait on
//! them.
//!
//! Why not `spawn_blocking` behind a semaphore (the first version): between two jobs a slot
//! passed through three thread wake-ups (blocking thread → the awaiting task → the next
//! waiting task → a blocking thread), and the cores sat idle for a third of the time under
//! load (benches/smime_engine.rs). A pool thread takes the next job from the queue itself.

use std::panic::AssertUnwindSafe;
use std::sync::OnceLock;

type Job = Box<dyn FnOnce() + Send + 'static>;

fn pool() -> Result<&'static flume::Sender<Job>, &'static str> {
    static POOL: OnceLock<Result<flume::Sender<Job>, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        let (jobs, queue) = flume::unbounded::<Job>();
        for i in 0..threads {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("smime-cpu-{i}"))
                .spawn(move || {
                    for job in queue.iter() {
                        job();
                    }
                })
                .map_err(|e| format!("cannot start the S/MIME worker threads: {e}"))?;
        }
        Ok(jobs)
    })
    .as_ref()
    .map_err(String::as_str)
}

/// Run `job` on an S/MIME worker thread and wait for its result without blocking the
/// reactor. A panic in `job` is an error here, not a lost worker.
pub async fn run<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let (reply, result) = tokio::sync::oneshot::channel();
    let wrapped: Job = Box::new(move || {
        let _ = reply.send(std::panic::catch_unwind(AssertUnwindSafe(job)));
    });
    pool()
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .send(wrapped)
        .map_err(|_| anyhow::anyhow!("S/MIME worker threads are gone"))?;
    match result.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => {
            anyhow::bail!("S/MIME task panicked (see the log); the message was not changed")
        }
        Err(_) => anyhow::bail!("S/MIME worker threads are gone"),
    }
}

/// [`run`] with a deadline: a job still queued at `deadline` is not started, and the
/// answer is an error once `deadline` passes (the job itself checks its own deadline between
/// steps: CPU work cannot be interrupted from outside).
pub async fn run_until<T: Send + 'static>(
    deadline: std::time::Instant,
    job: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let guarded = move || (std::time::Instant::now() < deadline).then(job);
    match tokio::time::timeout_at(tokio::time::Instant::from_std(deadline), run(guarded)).await {
        Ok(Ok(Some(value))) => Ok(value),
        Ok(Err(e)) => Err(e),
        Ok(Ok(None)) | Err(_) => anyhow::bail!(
            "S/MIME work took longer than its time limit ([smime] job_timeout_secs); the message was not changed"
        ),
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn a_job_past_its_deadline_is_an_error_and_not_started_late() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::{Duration, Instant};
        let soon = Instant::now() + Duration::from_millis(100);
        let e = super::run_until(soon, || std::thread::sleep(Duration::from_millis(400)))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("job_timeout_secs"), "{e}");
        let started = Arc::new(AtomicBool::new(false));
        let s = started.clone();
        let past = Instant::now() - Duration::from_millis(1);
        assert!(
            super::run_until(past, move || s.store(true, Ordering::SeqCst))
                .await
                .is_err()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !started.load(Ordering::SeqCst),
            "started after its deadline"
        );
        let later = Instant::now() + Duration::from_secs(5);
        assert_eq!(super::run_until(later, || 7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn results_come_back_and_a_panic_is_an_error_not_a_lost_worker() {
        assert_eq!(super::run(|| 6 * 7).await.unwrap(), 42);
        let e = super::run(|| -> u32 { panic!("boom") }).await.unwrap_err();
        assert!(e.to_string().contains("panicked"), "{e}");
        // The pool still works after the panic, for more jobs than it has threads.
        let all: Vec<_> = (0..16u32).map(|i| super::run(move || i * 2)).collect();
        let mut sum = 0;
        for r in all {
            sum += r.await.unwrap();
        }
        assert_eq!(sum, (0..16u32).map(|i| i * 2).sum::<u32>());
    }
}
