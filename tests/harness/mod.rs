//! Test harness: the real gateway binary on 127.0.0.1 with a temp data dir, a real SMTP
//! sink that records what it receives, and a small SMTP client DSL.

#![allow(dead_code)]

pub mod browser;
pub mod clamd;
pub mod client;
pub mod dns;
pub mod process;
pub mod sink;
pub mod smime;
pub mod tls;

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub use client::Client;
#[allow(unused_imports)]
pub use sink::{Sink, SinkMode};

/// A free TCP port on 127.0.0.1 for a server a test starts.
///
/// Taken from below the kernel's ephemeral range (32768-60999 by default), so no client
/// socket of a parallel test can take it between this check and the server's bind, and
/// handed out by a counter, so two tests of one run never get the same port. The start
/// depends on the process id: two test runs at once mostly stay apart, and a port still
/// in use is skipped.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        (std::process::id() * 97) % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN) as u16;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!(
        "no free TCP port on 127.0.0.1 between {FIRST} and {}",
        FIRST + SPAN
    );
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_portcullis"))
}

/// A running gateway process.
pub struct Gateway {
    pub dir: tempfile::TempDir,
    pub smtp: SocketAddr,
    pub metrics: SocketAddr,
    pub config_path: PathBuf,
    child: Option<Child>,
}

/// The base config of the tests: `example.test` is local, 127.0.0.2 is the internal
/// network (so 127.0.0.1 is "the internet"), quick retries; run as root (the tests' files
/// are root's; `tests/service.rs` checks the change of user). `extra` is appended (TOML).
pub fn config_text(
    dir: &Path,
    smtp_port: u16,
    metrics_port: u16,
    next_hop: SocketAddr,
    extra: &str,
) -> String {
    format!(
        r#"hostname = "gw.portcullis.test"
data_dir = "{data}"
local_domains = ["example.test"]
internal_networks = ["127.0.0.2/32"]
inbound_next_hop = "{next_hop}"
metrics_bind = "127.0.0.1:{metrics_port}"
{extra_top}
[[listeners]]
bind = "127.0.0.1:{smtp_port}"
tls = "starttls"
[service]
allow_root = true
{extra_rest}
"#,
        data = dir.join("data").display(),
        extra_top = split_extra(extra).0,
        extra_rest = split_extra(extra).1,
    )
}

/// Top-level keys must come before the first table; the rest after.
fn split_extra(extra: &str) -> (String, String) {
    let mut top = String::new();
    let mut rest = String::new();
    let mut in_table = false;
    for line in extra.lines() {
        if line.trim_start().starts_with('[') {
            in_table = true;
        }
        if in_table { &mut rest } else { &mut top }.push_str(&format!("{line}\n"));
    }
    (top, rest)
}

impl Gateway {
    /// Send `msg` from outside (127.0.0.1) and wait for the verdict's JSON log line
    /// (`log_format = "json"`): (the reply, that line).
    pub async fn send_and_verdict(
        &self,
        from: &str,
        rcpts: &[&str],
        msg: &str,
    ) -> (client::Reply, serde_json::Value) {
        let count = |gw: &Gateway| gw.log().matches("portcullis::message").count();
        let before = count(self);
        let mut c = Client::connect(self.smtp).await;
        let reply = c.send_message(from, rcpts, msg).await;
        assert!(
            wait_until(10, || count(self) > before).await,
            "{}",
            self.log()
        );
        let line = self
            .log()
            .lines()
            .rev()
            .filter(|l| l.contains("portcullis::message"))
            .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .expect("a JSON message line");
        (reply, line)
    }

    /// Start with the base config plus `extra`, delivering to `next_hop`.
    pub fn start(next_hop: SocketAddr, extra: &str) -> Gateway {
        Gateway::start_custom(|dir, smtp, metrics| config_text(dir, smtp, metrics, next_hop, extra))
    }

    /// (Re)start the process on the same config and data dir.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("gateway.log"))
            .unwrap();
        let child = Command::new(binary())
            .arg("run")
            .arg("--config")
            .arg(&self.config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start the portcullis binary");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.probe() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("gateway exited with {status}; log:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not listen within 30 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One complete session (greeting, QUIT, close): when it returns true the gateway
    /// serves, and this probe no longer holds a connection slot on its side.
    fn probe(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(self.smtp) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let mut buf = [0u8; 512];
        let greeted = matches!(s.read(&mut buf), Ok(n) if n >= 3 && &buf[..3] == b"220");
        let _ = s.write_all(b"QUIT\r\n");
        // read until the gateway closes: its session has ended
        while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        greeted
    }

    /// kill -9: no chance to flush anything.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Run `portcullis ARGS --config <ours>`; (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = Command::new(binary());
        cmd.args(&args[..1])
            .arg("--config")
            .arg(&self.config_path)
            .args(&args[1..]);
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// The queue as JSON (via the CLI, as an operator's script would read it).
    pub fn queue_json(&self) -> Vec<serde_json::Value> {
        let (code, out, err) = self.cli(&["queue", "list", "--json"]);
        assert_eq!(code, 0, "queue list failed: {err}");
        serde_json::from_str(&out).unwrap()
    }

    /// The held entries (`quarantine list --json`, newest first), as an operator's script
    /// would read them.
    pub fn held_json(&self) -> Vec<serde_json::Value> {
        let (code, out, err) = self.cli(&["quarantine", "list", "--json", "--limit", "500"]);
        assert_eq!(code, 0, "quarantine list failed: {err}");
        let page: serde_json::Value = serde_json::from_str(&out).unwrap();
        page["entries"].as_array().unwrap().clone()
    }

    /// Everything stored for delivery or held: the queue's rows (`"state": "queued"`) and
    /// one row per held message (`"state": "held"`, its quarantine id, score and symbols
    /// written as the queue writes them).
    pub fn stored_json(&self) -> Vec<serde_json::Value> {
        let mut rows: Vec<serde_json::Value> = self
            .queue_json()
            .into_iter()
            .map(|mut m| {
                m["state"] = "queued".into();
                m
            })
            .collect();
        let mut seen = std::collections::HashSet::new();
        for e in self.held_json() {
            let id = e["message"].as_str().unwrap().to_string();
            if !seen.insert(id.clone()) {
                continue;
            }
            let symbols: Vec<String> = e["symbols"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    format!(
                        "{}({:.2})",
                        s["name"].as_str().unwrap(),
                        s["points"].as_f64().unwrap()
                    )
                })
                .collect();
            rows.push(serde_json::json!({
                "id": id,
                "state": "held",
                "score": e["score"],
                "symbols": symbols.join(", "),
                "reason": e["reason"],
            }));
        }
        rows
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.smtp).await
    }

    /// A client from 127.0.0.2, which the test config makes an internal network.
    pub async fn internal_client(&self) -> Client {
        Client::connect_from(self.smtp, "127.0.0.2".parse().unwrap()).await
    }

    pub fn metrics_text(&self) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(self.metrics).unwrap();
        write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Poll `f` until it is true or `secs` pass.
pub async fn wait_until(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    f()
}

/// A small well-formed message.
pub fn message(from: &str, to: &str, message_id: &str, body: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: test {message_id}\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{message_id}>\r\n\r\n{body}\r\n"
    )
}

/// Run `python3 -c SCRIPT ARGS...` with `stdin`; its stdout, after asserting it succeeded
/// (`what` names the step in the failure message).
pub fn python(script: &str, args: &[&str], stdin: &[u8], what: &str) -> Vec<u8> {
    use std::io::Write;
    let mut child = Command::new("python3")
        .args(["-c", script])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run python3 ({e}): run `bash .ci/install-deps`"));
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python3 failed: {what}");
    out.stdout
}

/// Run `portcullis run` on `config` expecting it to stop by itself within `secs`;
/// returns its exit code and stderr.
pub fn run_expecting_exit(config: &Path, secs: u64) -> (i32, String) {
    let mut child = Command::new(binary())
        .arg("run")
        .arg("--config")
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the gateway kept running for {secs} s where it should have stopped");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
