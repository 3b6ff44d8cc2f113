//! The S/MIME engine's own throughput, without SMTP, queue and delivery around it: the
//! pipeline's S/MIME steps exactly as the gateway runs them (`SmimeOutbound::protect`;
//! `SmimeInbound::unwrap` then `harvest`) on the real certificate store of a data
//! directory, 20 messages in flight, the crypto on the gateway's CPU slots (one per core).
//!
//! Driven by bench/smime.py, which makes the PKI with the openssl CLI, imports it with
//! `portcullis certs` and compares the rates with `openssl speed -multi 2 rsa2048`:
//!
//!   cargo bench --bench smime_engine -- --config FILE --messages N --inbound DIR
//!
//! Outbound: N unique 10 KB messages from alice@example.test to bob@partner.test (the
//! config requires signing and encryption). Inbound: the files in DIR (signed and
//! encrypted by openssl cms to bob@example.test) round-robin, N in all. Every result is
//! checked (encrypted copy made; decrypted and signature valid) — a wrong result is an
//! error, not a rate. 100 untimed messages go first (a running gateway is warm). Prints one
//! JSON object.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use filters::{Direction, Envelope};
use portcullis::certs::CertStore;
use portcullis::config::Config;
use portcullis::smime::inbound::SmimeInbound;
use portcullis::smime::keyring::Keyring;
use portcullis::smime::outbound::SmimeOutbound;

/// Messages in flight, like the SMTP benches' 20 sessions.
/// The gateway binary's allocator (src/main.rs), so the engine runs here as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const IN_FLIGHT: usize = 20;

struct Args {
    config: PathBuf,
    messages: usize,
    inbound: PathBuf,
    /// Run one case only (for profiling): "inbound", "outbound", or "pool-rsa" — a bare
    /// RSA signature per job through the same worker pool, the in-process counterpart of
    /// `openssl speed` (what the pool and threads cost, without the S/MIME work).
    only: Option<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut config = None;
    let mut messages = 2000;
    let mut inbound = None;
    let mut only = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" => config = it.next().map(PathBuf::from),
            "--messages" => messages = it.next().context("--messages N")?.parse()?,
            "--inbound" => inbound = it.next().map(PathBuf::from),
            "--only" => only = it.next(),
            "--bench" => {} // added by `cargo bench`
            other => bail!("unknown argument {other}"),
        }
    }
    Ok(Args {
        config: config.context("--config FILE is required")?,
        messages,
        inbound: inbound.context("--inbound DIR is required")?,
        only,
    })
}

fn envelope(direction: Direction, from: &str, to: &str) -> Envelope {
    Envelope {
        direction,
        client_ip: IpAddr::from([127, 0, 0, 2]),
        helo: "bench.test".into(),
        mail_from: from.into(),
        rcpt_to: vec![to.into()],
        smtputf8: false,
        body_8bit: false,
        tls: None,
    }
}

/// A unique 10 KB text message (the gateway benches' shape).
fn plain_message(i: usize) -> Vec<u8> {
    let mut body = String::with_capacity(10_400);
    let mut n = 0u64;
    while body.len() < 10_240 {
        n += 1;
        body.push_str(&format!(
            "invoice meeting report project budget quarter customer order {i:08} {n:04}\r\n"
        ));
    }
    format!(
        "From: <alice@example.test>\r\nTo: <bob@partner.test>\r\nSubject: bench {i}\r\n\
         Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{i}@bench.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{body}"
    )
    .into_bytes()
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

struct Rate {
    msgs_per_sec: f64,
    cpu_ms_per_msg: f64,
}

/// `job(i)` for i in 0..n, IN_FLIGHT at a time.
async fn run_all<F, Fut>(n: usize, job: &Arc<F>) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (job, next) = (job.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(());
                }
                job(i).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Jobs run untimed before the timed ones: the rate is the steady state of a gateway that
/// has been running (certificates parsed, chain verdicts, key contexts and threads warm),
/// not the first milliseconds of a process.
const WARM_UP: usize = 100;

/// Run `job(i)` for i in 0..n with IN_FLIGHT at a time, after [`WARM_UP`] untimed jobs
/// (i in 0..WARM_UP again): messages per second, CPU per message.
async fn timed<F, Fut>(n: usize, job: F) -> anyhow::Result<Rate>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let job = Arc::new(job);
    run_all(WARM_UP.min(n), &job).await?;
    let start = Instant::now();
    let cpu_start = cpu_seconds();
    run_all(n, &job).await?;
    Ok(Rate {
        msgs_per_sec: n as f64 / start.elapsed().as_secs_f64(),
        cpu_ms_per_msg: 1000.0 * (cpu_seconds() - cpu_start) / n as f64,
    })
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(&args.config)?;
    let db = portcullis::store::Database::open(&config.data_dir).await?;
    let store = CertStore::open(db.pool().clone(), &config.data_dir, &config.certs).await?;
    let keyring: Arc<dyn Keyring> = Arc::new(store);
    let outbound = Arc::new(SmimeOutbound::new(keyring.clone(), config.smime.clone()));
    let inbound = Arc::new(SmimeInbound::new(keyring.clone(), config.smime.clone()));

    let mut fixtures = Vec::new();
    for entry in std::fs::read_dir(&args.inbound)? {
        fixtures.push(std::fs::read(entry?.path())?);
    }
    if fixtures.is_empty() {
        bail!("no inbound fixtures in {}", args.inbound.display());
    }
    let fixtures = Arc::new(fixtures);
    // Made before the timing, like the SMTP bench's messages.
    let plain = Arc::new(
        (0..args.messages)
            .filter(|_| args.only.as_deref() != Some("inbound"))
            .map(plain_message)
            .collect::<Vec<_>>(),
    );

    if args.only.as_deref() == Some("pool-rsa") {
        let id = keyring
            .signing_identity("alice@example.test")
            .await?
            .context("no signing key for alice@example.test in the store")?;
        let key = Arc::new(id.key);
        let rate = timed(args.messages, move |_| {
            let key = key.clone();
            async move {
                portcullis::smime::cpu::run(move || -> anyhow::Result<()> {
                    let mut ctx = openssl::pkey_ctx::PkeyCtx::new(&*key)?;
                    ctx.sign_init()?;
                    ctx.set_rsa_padding(openssl::rsa::Padding::PKCS1)?;
                    ctx.set_signature_md(openssl::md::Md::sha256())?;
                    let mut signature = Vec::new();
                    ctx.sign_to_vec(&[7u8; 32], &mut signature)?;
                    Ok(())
                })
                .await?
            }
        })
        .await?;
        println!(
            "{}",
            serde_json::json!({
                "pool_rsa_sign_per_sec": rate.msgs_per_sec,
                "pool_rsa_cpu_ms_per_sign": rate.cpu_ms_per_msg,
                "messages": args.messages,
            })
        );
        return Ok(());
    }
    let run_outbound = args.only.as_deref() != Some("inbound");
    let run_inbound = args.only.as_deref() != Some("outbound");
    let messages = if run_outbound { args.messages } else { 0 };
    let out_rate = timed(messages, move |i| {
        let (outbound, plain) = (outbound.clone(), plain.clone());
        async move {
            let env = envelope(
                Direction::Outbound,
                "alice@example.test",
                "bob@partner.test",
            );
            let protected = outbound
                .protect(&env, &plain[i], None)
                .await?
                .context("outbound: nothing signed or encrypted (check the bench config)")?;
            let encrypted = protected
                .symbols
                .iter()
                .any(|s| s.name == "SMIME_ENCRYPTED_OUT");
            if !encrypted || protected.copies.len() != 1 {
                bail!(
                    "outbound: expected one encrypted copy, got {:?}",
                    protected.symbols
                );
            }
            Ok(())
        }
    })
    .await?;

    let messages = if run_inbound { args.messages } else { 0 };
    let in_rate = timed(messages, move |i| {
        let (inbound, fixtures) = (inbound.clone(), fixtures.clone());
        async move {
            let env = envelope(Direction::Inbound, "carol@partner.test", "bob@example.test");
            let raw = &fixtures[i % fixtures.len()];
            let result = inbound.unwrap(&env, raw).await?;
            let has = |name: &str| result.symbols.iter().any(|s| s.name == name);
            if !has("SMIME_DECRYPTED") || !has("SMIME_SIGNED_VALID") || result.replacement.is_none()
            {
                bail!(
                    "inbound: expected decrypted and valid, got {:?}",
                    result.symbols
                );
            }
            inbound.harvest(&result.harvestable, "bench").await;
            Ok(())
        }
    })
    .await?;

    println!(
        "{}",
        serde_json::json!({
            "engine_outbound_msgs_per_sec": out_rate.msgs_per_sec,
            "engine_outbound_cpu_ms_per_msg": out_rate.cpu_ms_per_msg,
            "engine_inbound_msgs_per_sec": in_rate.msgs_per_sec,
            "engine_inbound_cpu_ms_per_msg": in_rate.cpu_ms_per_msg,
            "messages": args.messages,
        })
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}
