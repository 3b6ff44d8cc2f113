//! Faults from outside, with real parts: the data directory's disk fills up, the DNS server
//! goes away and comes back, the database is damaged or held locked at start. The gateway
//! answers 4xx for what it cannot store or check, never 250; it says what is wrong; it
//! loses nothing it acknowledged and recovers when the fault is gone.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::dns::{Dns, txt};
use crate::harness::{
    Client, Gateway, Sink, config_text, free_port, message, run_expecting_exit, wait_until,
};

const QUICK_RETRY: &str =
    "[queue]\nretry_initial_secs = 1\nretry_max_secs = 2\nscan_interval_secs = 1\n";

/// A tmpfs of `size` mounted on `path` for the test's life (lazily unmounted when dropped,
/// so a process still holding files in it does not keep it busy).
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .output()
            .expect("mount(8) is needed (util-linux)");
        assert!(
            out.status.success(),
            "the disk-full test mounts a small tmpfs and needs root with CAP_SYS_ADMIN: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(path.to_path_buf())
    }

    fn resize(&self, size: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A message of about `size` bytes of text.
fn sized(id: &str, size: usize) -> String {
    let line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    message(
        "a@ext.test",
        "u@example.test",
        id,
        &line.repeat(size / line.len() + 1),
    )
}

#[tokio::test]
async fn a_full_disk_gets_4xx_never_250_and_the_gateway_recovers_when_space_returns() {
    let hop = Sink::dead_addr();
    let mut disk = None;
    let gw = Gateway::start_custom(|dir, smtp, metrics| {
        disk = Some(SmallDisk::mount(&dir.join("data"), "6m"));
        config_text(dir, smtp, metrics, hop, QUICK_RETRY)
    });
    let disk = disk.unwrap();

    // The next hop is down: every accepted message stays on the small disk until it fills.
    let mut accepted = BTreeSet::new();
    let mut refused = Vec::new();
    for i in 0..40 {
        // Small ones (in the database) and large ones (spool files) in turn.
        let size = if i % 2 == 0 { 400_000 } else { 1_500_000 };
        let id = format!("full{i}@ext.test");
        let mut c = Client::connect(gw.smtp).await;
        let r = c
            .send_message("a@ext.test", &["u@example.test"], &sized(&id, size))
            .await;
        match r.code {
            250 => {
                accepted.insert(id);
            }
            code => refused.push((code, r.text.trim_end().to_string())),
        }
        if refused.len() >= 4 {
            break;
        }
    }
    assert!(
        refused.len() >= 4,
        "the 6 MB disk never filled: {} accepted",
        accepted.len()
    );
    for (code, text) in &refused {
        assert!(
            (450..460).contains(code),
            "a message that could not be stored must get a temporary error, got {text}"
        );
    }
    // Still serving: a new session is greeted.
    let mut c = Client::connect(gw.smtp).await;
    c.expect(220).await;
    c.cmd("QUIT", 221).await;

    // Space returns: mail is taken again, and everything acknowledged is delivered once the
    // next hop is back; nothing refused turns up.
    disk.resize("64m");
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message(
            "a@ext.test",
            &["u@example.test"],
            &sized("after@ext.test", 10_000),
        )
        .await;
    assert_eq!(r.code, 250, "{}; log:\n{}", r.text, gw.log());
    accepted.insert("after@ext.test".into());
    let sink = Sink::start_on(hop).await;
    assert!(
        wait_until(60, || sink.count() >= accepted.len()).await,
        "{} of {} acknowledged messages delivered; log:\n{}",
        sink.count(),
        accepted.len(),
        gw.log()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let delivered: BTreeSet<String> = sink
        .all()
        .iter()
        .map(|m| m.message_id().unwrap_or_default())
        .collect();
    assert_eq!(delivered, accepted, "exactly the acknowledged messages");
    assert_eq!(sink.count(), accepted.len(), "each once");
}

/// SPF for three domains: one for each phase (a cached answer would hide the outage).
fn spf_world(port: u16) -> Dns {
    Dns::start_on(
        port,
        &[
            "--local-ttl=300".to_string(),
            txt("before.test", "v=spf1 ip4:127.0.0.1 -all"),
            txt("during.test", "v=spf1 ip4:127.0.0.1 -all"),
            txt("after.test", "v=spf1 ip4:127.0.0.1 -all"),
        ],
    )
}

#[tokio::test]
async fn dns_gone_mid_run_tempfails_authentication_and_recovers_when_it_returns() {
    let port = free_port();
    let dns = spf_world(port);
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        &format!(
            "dns_servers = [\"127.0.0.1:{port}\"]\n[auth]\nenabled = true\ndns_timeout_ms = 300\n"
        ),
    );
    let send = |domain: &'static str| {
        let gw = &gw;
        async move {
            let from = format!("a@{domain}");
            let msg = message(&from, "u@example.test", &format!("m@{domain}"), "x");
            Client::connect(gw.smtp)
                .await
                .send_message(&from, &["u@example.test"], &msg)
                .await
        }
    };
    let delivered_with_spf_pass = |domain: &str| {
        sink.all().iter().any(|m| {
            m.message_id().as_deref() == Some(&format!("m@{domain}")) && m.data.contains("spf=pass")
        })
    };
    assert_eq!(send("before.test").await.code, 250);
    assert!(wait_until(10, || delivered_with_spf_pass("before.test")).await);

    // The server goes away: authentication cannot be done, and the answer says try later.
    drop(dns);
    let r = send("during.test").await;
    assert_eq!(r.code, 451, "never a pass without DNS: {}", r.text);

    // It comes back on the same address: the next message passes again.
    let _dns = spf_world(port);
    let r = send("after.test").await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        wait_until(10, || delivered_with_spf_pass("after.test")).await,
        "{}",
        gw.log()
    );
    assert!(
        !sink
            .all()
            .iter()
            .any(|m| m.message_id().as_deref() == Some("m@during.test")),
        "the tempfailed message was not delivered"
    );
}

/// One message waiting in the queue (the next hop is down), then the gateway killed.
async fn gateway_with_one_queued_message() -> (Gateway, std::net::SocketAddr) {
    let hop = Sink::dead_addr();
    let mut gw = Gateway::start(hop, QUICK_RETRY);
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message(
            "a@ext.test",
            &["u@example.test"],
            &message("a@ext.test", "u@example.test", "kept@ext.test", "x"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    gw.kill9();
    (gw, hop)
}

#[tokio::test]
async fn a_damaged_database_stops_the_start_with_a_clear_error_and_is_left_as_it_was() {
    let (gw, _) = gateway_with_one_queued_message().await;
    // The header of the file and of its write-ahead log overwritten (a killed gateway
    // leaves its last pages in the log, which would otherwise stand in for the file's).
    let damage = |path: PathBuf| {
        let mut bytes = std::fs::read(&path).unwrap_or_default();
        let n = bytes.len().min(100);
        bytes[..n].fill(0x5a);
        std::fs::write(&path, &bytes).unwrap();
        (path, bytes)
    };
    let db = damage(gw.data_dir().join("queue.db"));
    let wal = damage(gw.data_dir().join("queue.db-wal"));

    let (code, err) = run_expecting_exit(&gw.config_path, 30);
    assert_ne!(code, 0);
    assert!(err.contains("queue.db"), "names the file: {err}");
    assert!(
        err.contains("not a database") && err.contains("backup"),
        "says what is wrong and what to do: {err}"
    );
    // The file is left as it was for a restore or a forensic look. (SQLite itself drops a
    // log whose header is unreadable: nothing in it could be used.)
    let _ = wal;
    assert!(
        std::fs::read(&db.0).unwrap() == db.1,
        "the damaged file was changed by the failed start"
    );
}

#[tokio::test]
async fn a_database_locked_by_another_process_stops_the_start_and_loses_nothing() {
    let (mut gw, hop) = gateway_with_one_queued_message().await;
    let db = gw.data_dir().join("queue.db");
    // Another program holds the write lock (as a stuck backup job or a second gateway would).
    let mut holder = Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             time.sleep(120)\n",
        ])
        .arg(&db)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 is needed: bash .ci/install-deps installs it");
    {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(holder.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
    }
    let (code, err) = run_expecting_exit(&gw.config_path, 60);
    let _ = holder.kill();
    let _ = holder.wait();
    assert_ne!(code, 0);
    assert!(
        err.contains("queue.db") && err.contains("locked"),
        "names the file and the lock: {err}"
    );
    assert!(
        err.contains("another process"),
        "says what to look for: {err}"
    );

    // The lock is gone: the gateway starts and delivers what it had acknowledged.
    let sink = Sink::start_on(hop).await;
    gw.spawn();
    assert!(
        wait_until(30, || sink.count() == 1).await,
        "the queued message was not delivered after the restart; log:\n{}",
        gw.log()
    );
    assert_eq!(sink.all()[0].message_id().as_deref(), Some("kept@ext.test"));
}

#[tokio::test]
async fn a_next_hop_down_for_long_gets_retries_spaced_as_configured_and_loses_nothing() {
    use std::sync::{Arc, Mutex};
    use tokio::io::AsyncWriteExt;
    // Hours compressed into seconds: 1 s doubling up to 4 s.
    let hop = Sink::dead_addr();
    let listener = tokio::net::TcpListener::bind(hop).await.unwrap();
    let gw = Gateway::start(
        hop,
        "[queue]\nretry_initial_secs = 1\nretry_max_secs = 4\nscan_interval_secs = 1\n",
    );
    let attempts: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = attempts.clone();
    let busy = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            seen.lock().unwrap().push(Instant::now());
            let _ = s.write_all(b"421 4.3.2 busy, try later\r\n").await;
        }
    });
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message(
            "a@ext.test",
            &["u@example.test"],
            &message("a@ext.test", "u@example.test", "patient@ext.test", "x"),
        )
        .await;
    assert_eq!(r.code, 250);
    assert!(
        wait_until(40, || attempts.lock().unwrap().len() >= 6).await,
        "{} attempts; log:\n{}",
        attempts.lock().unwrap().len(),
        gw.log()
    );
    busy.abort();
    let _ = busy.await;
    let times = attempts.lock().unwrap().clone();
    let gaps: Vec<f64> = times
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    // Each wait is the backoff, counted in whole seconds, plus up to one queue scan.
    for (gap, want) in gaps.iter().zip([1.0, 2.0, 4.0, 4.0, 4.0]) {
        assert!(
            *gap > want - 1.0 && *gap <= want + 1.5,
            "retry gaps {gaps:.2?}, wanted 1, 2, 4, 4, 4 s (whole seconds, + up to 1 s)"
        );
    }
    assert!(
        gw.queue_json()[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("421")
    );

    // Back: delivered once, the queue empties.
    let sink = Sink::start_on(hop).await;
    assert!(wait_until(15, || sink.count() == 1).await, "{}", gw.log());
    assert_eq!(
        sink.all()[0].message_id().as_deref(),
        Some("patient@ext.test")
    );
    assert!(wait_until(5, || gw.queue_json().is_empty()).await);
}
