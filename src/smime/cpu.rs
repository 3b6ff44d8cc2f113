//! Where the S/MIME cryptography runs: on the blocking pool (an RSA private-key operation
//! takes about half a millisecond, too long for the reactor), at most one job per CPU
//! core at a time. More would not finish sooner, and OpenSSL 3's shared locks (algorithm
//! fetches, provider store) get slower the more threads wait on them.

use std::sync::OnceLock;

use tokio::sync::Semaphore;

fn slots() -> &'static Semaphore {
    static SLOTS: OnceLock<Semaphore> = OnceLock::new();
    SLOTS.get_or_init(|| {
        Semaphore::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
    })
}

/// Run `job` on the blocking pool once a CPU slot is free.
pub async fn run<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let _slot = slots()
        .acquire()
        .await
        .map_err(|_| anyhow::anyhow!("S/MIME worker slots closed"))?;
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| anyhow::anyhow!("S/MIME task failed: {e}"))
}
