//! SIGHUP under load: a good new config is put in force without dropping a session or
//! losing a message; a bad one is refused with an error naming it, and the old one stays.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::{Client, Gateway, Sink, config_text, message, wait_until};

const BASE: &str = "[limits]\nmax_connections_per_ip = 100\n";

/// A message without Date: `HDR_MISSING_DATE` (1 point) — accepted on the defaults,
/// refused once `[symbols]` gives it 20 points.
fn no_date(id: &str) -> String {
    format!(
        "From: <a@ext.test>\r\nTo: <u@example.test>\r\nSubject: probe\r\nMessage-ID: <{id}>\r\n\r\nno date\r\n"
    )
}

/// Keep one connection and send well-formed messages on it until `stop`; reconnect after
/// every 20. Each message that got 250 is recorded; anything else is a failure.
async fn load(
    addr: SocketAddr,
    name: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    failures: Arc<Mutex<Vec<String>>>,
) {
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let mut c = Client::greeted(addr).await;
        c.cmd("EHLO load.test", 250).await;
        for _ in 0..20 {
            let id = format!("load-{name}-{n}@ext.test");
            n += 1;
            c.cmd("MAIL FROM:<a@ext.test>", 250).await;
            c.cmd("RCPT TO:<u@example.test>", 250).await;
            let r = c
                .data(&message("a@ext.test", "u@example.test", &id, "load"))
                .await;
            if r.code == 250 {
                acked.lock().unwrap().push(id);
            } else {
                failures.lock().unwrap().push(format!("{id}: {}", r.text));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        c.cmd("QUIT", 221).await;
    }
}

async fn probe(gw: &Gateway, id: &str) -> u16 {
    let mut c = Client::connect(gw.smtp).await;
    c.send_message("a@ext.test", &["u@example.test"], &no_date(id))
        .await
        .code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_under_load_applies_a_good_config_and_refuses_a_bad_one() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, BASE);
    let rewrite = |extra: &str| {
        let text = config_text(
            gw.dir.path(),
            gw.smtp.port(),
            gw.metrics.port(),
            sink.addr,
            &format!("{BASE}{extra}"),
        );
        std::fs::write(&gw.config_path, text).unwrap();
    };
    assert_eq!(probe(&gw, "before@ext.test").await, 250);

    // A real client too: smtp-source, 3 sessions kept open across messages (-d), one
    // message a second each (-w 1), stopping at the first reply it did not expect.
    let file = gw.dir.path().join("load.eml");
    std::fs::write(
        &file,
        message(
            "src@ext.test",
            "u@example.test",
            "src@ext.test",
            "smtp-source",
        ),
    )
    .unwrap();
    const SOURCE_MESSAGES: usize = 36;
    let mut source = Command::new("smtp-source")
        .args(["-d", "-s", "3", "-m", &SOURCE_MESSAGES.to_string()])
        .args([
            "-f",
            "src@ext.test",
            "-t",
            "u@example.test",
            "-w",
            "1",
            "-F",
        ])
        .arg(&file)
        .arg(gw.smtp.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("smtp-source (Debian package postfix): run `bash .ci/install-deps`");

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..4 {
        tasks.push(tokio::spawn(load(
            gw.smtp,
            i,
            stop.clone(),
            acked.clone(),
            failures.clone(),
        )));
    }
    assert!(wait_until(30, || acked.lock().unwrap().len() >= 40).await);
    // A session that starts before the reload keeps the config it started with.
    let mut old_session = Client::greeted(gw.smtp).await;
    old_session.cmd("EHLO old.test", 250).await;

    // 1. A good config: HDR_MISSING_DATE now rejects; max_connections needs a restart.
    rewrite("[symbols]\nHDR_MISSING_DATE = 20.0\n[verdict]\nreject_score = 15.0\n");
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    std::fs::write(
        &gw.config_path,
        text.replace(
            "max_connections_per_ip = 100",
            "max_connections_per_ip = 100\nmax_connections = 500",
        ),
    )
    .unwrap();
    let at_reload = acked.lock().unwrap().len();
    assert!(
        source.try_wait().unwrap().is_none(),
        "smtp-source is still sending when the config is reloaded"
    );
    gw.send_sighup();
    assert!(
        wait_until(10, || gw.log().contains("configuration reloaded")).await,
        "no reload in the log:\n{}",
        gw.log()
    );
    let log = gw.log();
    assert!(
        log.contains("`limits.max_connections` changed, but it only takes effect after a restart"),
        "{log}"
    );
    let reloaded = log
        .lines()
        .find(|l| l.contains("configuration reloaded"))
        .unwrap();
    assert!(
        reloaded.contains("symbols.HDR_MISSING_DATE") && reloaded.contains("verdict.reject_score"),
        "{reloaded}"
    );
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message(
            "a@ext.test",
            &["u@example.test"],
            &no_date("after@ext.test"),
        )
        .await;
    assert_eq!(
        r.code, 550,
        "the new points apply to new sessions: {}",
        r.text
    );
    assert!(r.text.contains("5.7.1"), "{}", r.text);
    // ... and not to the session that was open before.
    old_session.cmd("MAIL FROM:<a@ext.test>", 250).await;
    old_session.cmd("RCPT TO:<u@example.test>", 250).await;
    let r = old_session.data(&no_date("old-session@ext.test")).await;
    assert_eq!(r.code, 250, "the open session keeps its config: {}", r.text);
    assert!(wait_until(30, || acked.lock().unwrap().len() >= at_reload + 40).await);

    // 2. A bad config: refused, named in the log, the config in force stays.
    rewrite(
        "[symbols]\nHDR_MISSING_DATE = 20.0\n[verdict]\ntag_score = 9.0\nquarantine_score = 3.0\n",
    );
    gw.send_sighup();
    assert!(
        wait_until(10, || gw.log().contains("configuration reload refused")).await,
        "no refusal in the log:\n{}",
        gw.log()
    );
    let log = gw.log();
    let refused = log
        .lines()
        .find(|l| l.contains("configuration reload refused"))
        .unwrap();
    assert!(
        refused.contains("ERROR") && refused.contains("tag_score <= quarantine_score"),
        "{refused}"
    );
    assert_eq!(
        probe(&gw, "after-bad@ext.test").await,
        550,
        "the good config stays in force"
    );
    let at_bad = acked.lock().unwrap().len();
    assert!(wait_until(30, || acked.lock().unwrap().len() >= at_bad + 40).await);

    // 3. The load ends: no failure, no session dropped, every acknowledged message arrives.
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(60), t)
            .await
            .expect("load clients finish")
            .expect("no load client failed (a dropped session panics it)");
    }
    let out = tokio::task::spawn_blocking(move || source.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "smtp-source: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let failures = failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "refused load messages: {failures:?}");
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let delivered = || -> HashSet<String> {
        sink.all()
            .iter()
            .filter(|m| m.mail_from == "a@ext.test")
            .filter_map(|m| m.message_id())
            .collect()
    };
    assert!(
        wait_until(60, || acked.is_subset(&delivered())).await,
        "{} acknowledged messages never arrived; log:\n{}",
        acked.difference(&delivered()).count(),
        gw.log()
    );
    let from_source = AtomicUsize::new(0);
    assert!(
        wait_until(60, || {
            let n = sink
                .all()
                .iter()
                .filter(|m| m.mail_from == "src@ext.test")
                .count();
            from_source.store(n, Ordering::Relaxed);
            n == SOURCE_MESSAGES
        })
        .await,
        "smtp-source got 250 for {SOURCE_MESSAGES}, the sink has {}",
        from_source.load(Ordering::Relaxed)
    );
    eprintln!(
        "reloaded twice under load: {} + {SOURCE_MESSAGES} messages, all delivered",
        acked.len()
    );
}

#[tokio::test]
async fn a_gateway_started_without_a_file_refuses_to_reload_and_keeps_running() {
    // The harness always passes --config; a file removed under the gateway is the case an
    // operator meets: the reload is refused, naming the file.
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    std::fs::rename(&gw.config_path, gw.dir.path().join("moved.toml")).unwrap();
    gw.send_sighup();
    assert!(
        wait_until(10, || gw.log().contains("configuration reload refused")).await,
        "{}",
        gw.log()
    );
    assert!(gw.log().contains("cannot read config file"), "{}", gw.log());
    assert_eq!(probe(&gw, "still@ext.test").await, 250);
}
