//! The SMTP session, bytes in and replies out, in memory: the real session state machine
//! over an in-memory pipe with the real pipeline (no network stages) and queue on a data
//! directory in /dev/shm. The first input byte picks the client (outside or internal);
//! the rest is what the client sends before it hangs up. Every reply must be a well-formed
//! SMTP reply.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use portcullis::config::{Config, TlsMode};
use portcullis::live::{Live, Snapshot};
use portcullis::metrics::Metrics;
use portcullis::pipeline::{Pipeline, Resources};
use portcullis::queue::{HoldSettings, Queue};
use portcullis::smtp::body::Incoming;
use portcullis::smtp::session::{ListenerSettings, Session, Shared};
use portcullis::smtp::verify::RecipientVerifier;
use portcullis::store::Database;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Inputs run against one data directory before it is replaced, so that stored messages do
/// not fill /dev/shm.
const INPUTS_PER_DIRECTORY: u32 = 5_000;

struct Env {
    runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    listener: Arc<ListenerSettings>,
    used: u32,
    _dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let mut config =
            Config::parse("internal_networks = [\"127.0.0.0/8\"]\nmax_message_size = 65536\n")
                .unwrap();
        config.data_dir = dir.path().join("data");
        let config = Arc::new(config);
        let shared = runtime.block_on(async {
            let metrics = Metrics::new();
            let db = Database::open(&config.data_dir).await.unwrap();
            let (queue, mut jobs) = Queue::open(
                &config.data_dir,
                &db,
                metrics.clone(),
                HoldSettings::from_config(&config.quarantine),
            )
            .await
            .unwrap();
            // Nothing is delivered: stored jobs are dropped.
            tokio::spawn(async move { while jobs.recv().await.is_some() {} });
            let live = Live::new(Snapshot {
                pipeline: Arc::new(Pipeline::from_config(
                    &config,
                    &Resources::default(),
                    metrics.clone(),
                )),
                recipients: Arc::new(RecipientVerifier::new(&config).unwrap()),
                config: config.clone(),
            });
            Arc::new(Shared {
                live,
                queue,
                metrics,
                incoming: Incoming::open(&config.data_dir, &config.limits).unwrap(),
            })
        });
        Env {
            runtime,
            shared,
            listener: Arc::new(ListenerSettings {
                tls_mode: TlsMode::None,
                acceptor: None,
            }),
            used: 0,
            _dir: dir,
        }
    }

    /// What the session answers to `input` from `peer`.
    fn dialog(&mut self, peer: SocketAddr, input: &[u8]) -> Vec<u8> {
        self.used += 1;
        let (shared, listener) = (self.shared.clone(), self.listener.clone());
        self.runtime.block_on(async move {
            let (client, server) = tokio::io::duplex(1 << 16);
            let (_shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
            let session =
                tokio::spawn(Session::new(shared, listener, server, peer, shutdown_rx).run());
            let (mut reader, mut writer) = tokio::io::split(client);
            let replies = tokio::spawn(async move {
                let mut out = Vec::new();
                let _ = reader.read_to_end(&mut out).await;
                out
            });
            let _ = writer.write_all(input).await;
            let _ = writer.shutdown().await;
            drop(writer);
            let out = replies.await.unwrap();
            session.await.unwrap();
            out
        })
    }
}

fn env() -> &'static Mutex<Option<Env>> {
    static ENV: Mutex<Option<Env>> = Mutex::new(None);
    &ENV
}

/// Every line is `ddd` then a space or a dash, with a code from 200 to 599, ending in CRLF.
fn assert_replies_well_formed(out: &[u8]) {
    for line in out.split_inclusive(|&b| b == b'\n') {
        assert!(line.ends_with(b"\r\n"), "reply line without CRLF: {line:?}");
        assert!(line.len() >= 5, "short reply line: {line:?}");
        let code = std::str::from_utf8(&line[..3])
            .ok()
            .and_then(|c| c.parse::<u16>().ok())
            .unwrap_or(0);
        assert!((200..600).contains(&code), "bad reply code: {line:?}");
        assert!(
            matches!(line[3], b' ' | b'-'),
            "bad reply separator: {line:?}"
        );
        assert!(
            !line[..line.len() - 2]
                .iter()
                .any(|&b| b == b'\r' || b == b'\n' || b == 0),
            "control bytes in a reply: {line:?}"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, input)) = data.split_first() else {
        return;
    };
    let peer: SocketAddr = if first & 1 == 0 {
        "192.0.2.7:40000".parse().unwrap()
    } else {
        "127.0.0.1:40000".parse().unwrap()
    };
    let mut guard = env().lock().unwrap();
    if guard
        .as_ref()
        .is_none_or(|e| e.used >= INPUTS_PER_DIRECTORY)
    {
        *guard = None;
        *guard = Some(Env::new());
    }
    let out = guard.as_mut().unwrap().dialog(peer, input);
    assert_replies_well_formed(&out);
});
