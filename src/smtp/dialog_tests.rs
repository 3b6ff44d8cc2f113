//! The SMTP session in memory: a script of client lines and the replies expected, against
//! the real session state machine over an in-memory pipe (no sockets), with the real
//! pipeline and queue on a temporary data directory. Whole-gateway behaviour with real peers
//! is in `tests/`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::watch;

use super::session::{ListenerSettings, Load, Session, Shared};
use crate::config::{Config, TlsMode};
use crate::live::{Live, Snapshot};
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, Resources};
use crate::queue::{Queue, QueueStore};
use crate::store::Database;

/// A session on the other end of an in-memory pipe.
struct Dialog {
    reader: BufReader<ReadHalf<DuplexStream>>,
    writer: WriteHalf<DuplexStream>,
    queue: QueueStore,
    _shutdown: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

impl Dialog {
    /// Open a session with the config `extra` (over the embedded defaults), as a client at
    /// `peer`; the greeting is read.
    async fn open(extra: &str, peer: &str) -> Dialog {
        Dialog::open_loaded(extra, peer, None).await
    }

    /// The same on a listener whose slots are as `load` says.
    async fn open_loaded(extra: &str, peer: &str, load: Option<Load>) -> Dialog {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::parse(extra).unwrap();
        config.data_dir = dir.path().join("data");
        let config = Arc::new(config);
        let metrics = Metrics::new();
        let db = Database::open(&config.data_dir).await.unwrap();
        let (queue, jobs) = Queue::open(
            &config.data_dir,
            &db,
            metrics.clone(),
            crate::queue::HoldSettings::from_config(&config.quarantine),
        )
        .await
        .unwrap();
        // Nothing delivers in these tests: the jobs stay queued.
        std::mem::forget(jobs);
        let live = Live::new(Snapshot {
            pipeline: Arc::new(Pipeline::from_config(
                &config,
                &Resources::default(),
                metrics.clone(),
            )),
            recipients: Arc::new(super::verify::RecipientVerifier::new(&config).unwrap()),
            config: config.clone(),
        });
        let shared = Arc::new(Shared {
            live,
            queue,
            metrics,
            incoming: super::body::Incoming::open(&config.data_dir, &config.limits).unwrap(),
        });
        let listener = Arc::new(ListenerSettings {
            tls_mode: TlsMode::None,
            acceptor: None,
        });
        let (client, server) = tokio::io::duplex(1 << 16);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let peer: SocketAddr = peer.parse().unwrap();
        let mut session = Session::new(shared, listener, server, peer, shutdown_rx);
        if let Some(load) = load {
            session = session.with_load(load);
        }
        tokio::spawn(session.run());
        let (reader, writer) = tokio::io::split(client);
        let mut d = Dialog {
            reader: BufReader::new(reader),
            writer,
            queue: QueueStore::new(&db),
            _shutdown: shutdown,
            _dir: dir,
        };
        let greeting = d.reply().await;
        assert!(greeting.starts_with("220 "), "{greeting}");
        d
    }

    /// One whole reply (all lines of a multi-line one), or "" when the session closed.
    async fn reply(&mut self) -> String {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(10), self.reader.read_line(&mut line))
                .await
                .expect("a reply within 10 s")
                .unwrap();
            if n == 0 {
                return text;
            }
            text.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return text;
            }
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.unwrap();
    }

    /// Send each client line and check the reply starts with the expected text.
    async fn script(&mut self, steps: &[(&str, &str)]) {
        for (line, want) in steps {
            self.send(format!("{line}\r\n").as_bytes()).await;
            let got = self.reply().await;
            assert!(
                got.starts_with(want),
                "{line:?}: expected {want:?}, got {got:?}"
            );
        }
    }
}

const OUTSIDE: &str = "192.0.2.7:40000";

#[tokio::test]
async fn a_transaction_is_answered_step_by_step_and_stored() {
    let mut d = Dialog::open("", OUTSIDE).await;
    d.script(&[
        ("EHLO client.test", "250-"),
        ("MAIL FROM:<a@ext.test>", "250 2.1.0"),
        ("RCPT TO:<u@example.test>", "250 2.1.5"),
        ("DATA", "354 "),
        (
            "From: <a@ext.test>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <1@ext.test>\r\n\r\nhi\r\n.",
            "250 2.0.0 Ok: queued as ",
        ),
        ("QUIT", "221 "),
    ])
    .await;
    let stored = d.queue.list().await.unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].recipients[0].address, "u@example.test");
}

#[tokio::test]
async fn pipelined_commands_are_answered_in_order() {
    let mut d = Dialog::open("", OUTSIDE).await;
    d.script(&[("EHLO client.test", "250-")]).await;
    d.send(b"MAIL FROM:<a@ext.test>\r\nRCPT TO:<u@example.test>\r\nRCPT TO:<x@elsewhere.test>\r\nDATA\r\n")
        .await;
    for want in ["250 2.1.0", "250 2.1.5", "550 5.7.1", "354 "] {
        let got = d.reply().await;
        assert!(got.starts_with(want), "expected {want:?}, got {got:?}");
    }
}

#[tokio::test]
async fn commands_out_of_sequence_and_relaying_are_refused() {
    let mut d = Dialog::open("", OUTSIDE).await;
    d.script(&[
        ("MAIL FROM:<a@ext.test>", "503 "),
        ("EHLO client.test", "250-"),
        ("RCPT TO:<u@example.test>", "503 "),
        ("DATA", "503 "),
        ("MAIL FROM:<a@ext.test>", "250 "),
        ("MAIL FROM:<b@ext.test>", "503 "),
        ("RCPT TO:<someone@elsewhere.test>", "550 5.7.1"),
        ("RCPT TO:<\"a@elsewhere.test\"@example.test>", "550 5.7.1"),
        ("STARTTLS", "502 "),
        ("RSET", "250 "),
        ("RCPT TO:<u@example.test>", "503 "),
    ])
    .await;
}

#[tokio::test]
async fn a_smuggled_end_of_data_does_not_end_the_message() {
    let mut d = Dialog::open("", OUTSIDE).await;
    d.script(&[
        ("EHLO client.test", "250-"),
        ("MAIL FROM:<a@ext.test>", "250 "),
        ("RCPT TO:<u@example.test>", "250 "),
        ("DATA", "354 "),
    ])
    .await;
    // `\r\n.\r\r\n` is not the end: the "commands" after it are body text.
    d.send(b"From: <a@ext.test>\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <2@ext.test>\r\n\r\nx\r\n.\r\r\nMAIL FROM:<evil@ext.test>\r\nRCPT TO:<u@example.test>\r\nDATA\r\n")
        .await;
    d.send(b"smuggled\r\n.\r\n").await;
    let got = d.reply().await;
    assert!(got.starts_with("250 2.0.0"), "{got}");
    d.script(&[("QUIT", "221 ")]).await;
    let stored = d.queue.list().await.unwrap();
    assert_eq!(stored.len(), 1, "one message, nothing smuggled");
}

#[tokio::test]
async fn too_many_bad_commands_close_the_session() {
    let mut d = Dialog::open("[limits]\nmax_bad_commands = 3\n", OUTSIDE).await;
    d.script(&[("NOPE", "500 "), ("NOPE", "500 "), ("NOPE", "500 ")])
        .await;
    d.send(b"NOPE\r\n").await;
    let got = d.reply().await;
    assert!(got.starts_with("421 "), "{got}");
    assert_eq!(d.reply().await, "", "the session is closed");
}

/// A listener with `capacity` slots of which `taken` are in use.
fn load(capacity: usize, taken: usize) -> Load {
    let slots = Arc::new(tokio::sync::Semaphore::new(capacity));
    slots
        .clone()
        .try_acquire_many_owned(taken as u32)
        .unwrap()
        .forget();
    Load { slots, capacity }
}

#[tokio::test]
async fn a_command_line_dripped_byte_by_byte_is_cut_at_the_command_timeout() {
    let mut d = Dialog::open("[limits]\ncommand_timeout_secs = 1\n", OUTSIDE).await;
    let started = std::time::Instant::now();
    // One byte every 300 ms: each read is far within the idle timeout (300 s).
    let mut answer = String::new();
    for b in b"EHLO slow.example\r\n" {
        d.send(&[*b]).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Ok(r) = tokio::time::timeout(Duration::from_millis(1), d.reply()).await {
            answer = r;
            break;
        }
    }
    assert!(answer.starts_with("421 "), "{answer:?}");
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "cut after {took:?}");
}

#[tokio::test]
async fn under_stress_idle_sessions_are_cut_at_the_stress_timeout() {
    let limits = "[limits]\nstress_timeout_secs = 1\nstress_threshold_percent = 80\n";
    // 9 of 10 slots taken: under stress. An idle client is cut after a second.
    let mut d = Dialog::open_loaded(limits, OUTSIDE, Some(load(10, 9))).await;
    d.script(&[("EHLO a.example", "250")]).await;
    let started = std::time::Instant::now();
    let got = d.reply().await;
    assert!(got.starts_with("421 "), "{got}");
    assert!(started.elapsed() < Duration::from_secs(3));
    // 1 of 10: no stress; the same client may think for longer.
    let mut d = Dialog::open_loaded(limits, OUTSIDE, Some(load(10, 1))).await;
    d.script(&[("EHLO a.example", "250")]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    d.script(&[("NOOP", "250")]).await;
}
