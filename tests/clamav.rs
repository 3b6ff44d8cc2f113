//! ClamAV in the dialog, with a real clamd: viruses are refused before the 250, clamd
//! trouble gives 451, nothing infected or unscanned is queued.

use crate::harness::clamd::{Clamd, eicar};
use crate::harness::{Client, Gateway, Sink, message, wait_until};

fn b64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out.as_bytes()
        .chunks(76)
        .map(|l| format!("{}\r\n", String::from_utf8_lossy(l)))
        .collect()
}

/// A message with one base64 attachment.
fn with_attachment(id: &str, content_type: &str, name: &str, data: &[u8]) -> String {
    format!(
        "From: <a@ext.test>\r\nTo: <u@example.test>\r\nSubject: attachment\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <{id}>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain\r\n\r\nSee attachment.\r\n\
         --b1\r\nContent-Type: {content_type}; name=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n{}--b1--\r\n",
        b64(data)
    )
}

/// A zip archive holding `eicar.com`, made by Python's zipfile (an independent zip writer).
fn eicar_zip() -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e.zip");
    let script = "import sys,zipfile\nz=zipfile.ZipFile(sys.argv[1],'w',zipfile.ZIP_DEFLATED)\nz.writestr('eicar.com', sys.stdin.read())\nz.close()";
    crate::harness::python(
        script,
        &[path.to_str().unwrap()],
        eicar().as_bytes(),
        "building the zip fixture",
    );
    std::fs::read(path).unwrap()
}

fn infected_variants() -> Vec<(&'static str, String)> {
    let attached = with_attachment(
        "v1@ext.test",
        "application/octet-stream",
        "eicar.com",
        eicar().as_bytes(),
    );
    let zipped = with_attachment(
        "v2@ext.test",
        "application/zip",
        "invoice.zip",
        &eicar_zip(),
    );
    let inner = with_attachment(
        "inner@ext.test",
        "application/octet-stream",
        "eicar.com",
        eicar().as_bytes(),
    );
    let nested = format!(
        "From: <a@ext.test>\r\nTo: <u@example.test>\r\nSubject: fwd\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\n\
         Message-ID: <v3@ext.test>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
         --outer\r\nContent-Type: text/plain\r\n\r\nForwarded.\r\n\
         --outer\r\nContent-Type: message/rfc822\r\n\r\n{inner}\r\n--outer--\r\n"
    );
    vec![
        ("base64 attachment", attached),
        ("inside a zip", zipped),
        ("nested message/rfc822", nested),
    ]
}

#[tokio::test]
async fn eicar_is_refused_in_the_dialog_in_every_wrapping() {
    let clamd = Clamd::start();
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, &clamd.config(false));
    for (what, msg) in infected_variants() {
        let mut c = Client::connect(gw.smtp).await;
        let r = c
            .send_message("a@ext.test", &["u@example.test"], &msg)
            .await;
        assert_eq!(r.code, 554, "{what}: {}", r.text);
        assert!(
            r.text.contains("5.7.1") && r.text.contains("Eicar"),
            "{what}: {}",
            r.text
        );
        c.cmd("NOOP", 250).await;
    }
    // and over the Unix socket too, from an internal client (outbound is scanned as well)
    let gw2 = Gateway::start(sink.addr, &clamd.config(true));
    let mut c = gw2.internal_client().await;
    let r = c
        .send_message(
            "me@example.test",
            &["x@remote.test"],
            &infected_variants()[0].1,
        )
        .await;
    assert_eq!(r.code, 554, "outbound: {}", r.text);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(
        gw.stored_json().is_empty() && gw2.stored_json().is_empty(),
        "nothing infected is queued"
    );
    assert_eq!(sink.count(), 0);
    assert!(
        gw.log().contains("CLAM_VIRUS"),
        "the log line names the symbol"
    );
}

#[tokio::test]
async fn clean_mail_passes_and_clamd_health_is_reported() {
    let clamd = Clamd::start();
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, &clamd.config(false));
    let mut c = Client::connect(gw.smtp).await;
    let clean = with_attachment(
        "clean@ext.test",
        "application/pdf",
        "report.pdf",
        b"%PDF-1.4 just a report",
    );
    let r = c
        .send_message("a@ext.test", &["u@example.test"], &clean)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 1).await);
    assert!(
        wait_until(5, || gw.metrics_text().contains("portcullis_clamd_up 1")).await,
        "{}",
        gw.metrics_text()
    );
    let m = gw.metrics_text();
    assert!(m.contains("portcullis_clamd_info{version=\"ClamAV "), "{m}");
    assert!(
        m.contains("portcullis_stage_duration_seconds_count{stage=\"clamav\"} 1"),
        "{m}"
    );
    let (code, out, err) = gw.cli(&["clamav-status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["version"].as_str().unwrap().starts_with("ClamAV "),
        "{out}"
    );
    assert!(v["latency_ms"].as_f64().unwrap() >= 0.0);
}

#[tokio::test]
async fn clamd_stopped_mid_run_gives_451_and_accepts_nothing() {
    let mut clamd = Clamd::start();
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, &clamd.config(false));
    let mut c = Client::connect(gw.smtp).await;
    let msg = message("a@ext.test", "u@example.test", "before@ext.test", "scanned");
    assert_eq!(
        c.send_message("a@ext.test", &["u@example.test"], &msg)
            .await
            .code,
        250
    );
    clamd.stop();
    let mut c = Client::connect(gw.smtp).await;
    let msg = message(
        "a@ext.test",
        "u@example.test",
        "after@ext.test",
        "unscannable now",
    );
    let r = c
        .send_message("a@ext.test", &["u@example.test"], &msg)
        .await;
    assert_eq!(r.code, 451, "{}", r.text);
    assert!(r.text.contains("4.7.1"));
    assert!(wait_until(10, || sink.count() == 1).await);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(
        sink.count(),
        1,
        "the message sent while clamd was down was not accepted"
    );
    assert_eq!(
        sink.all()[0].message_id().as_deref(),
        Some("before@ext.test")
    );
    assert!(gw.stored_json().is_empty());
    assert!(wait_until(5, || gw.metrics_text().contains("portcullis_clamd_up 0")).await);
}

#[tokio::test]
async fn fail_open_and_quarantine_and_oversize_are_configurable() {
    let clamd = Clamd::start();
    let hop = Sink::dead_addr(); // keep messages in the queue to inspect them
    // virus_action = quarantine: 250, held, never delivered
    let gw = Gateway::start(
        hop,
        &format!("{}virus_action = \"quarantine\"\n", clamd.config(false)),
    );
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message("a@ext.test", &["u@example.test"], &infected_variants()[0].1)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    let q = gw.stored_json();
    assert_eq!(q[0]["state"], "held");
    assert!(q[0]["symbols"].as_str().unwrap().contains("CLAM_VIRUS"));
    // oversize, default tempfail
    let gw = Gateway::start(
        hop,
        &format!("{}max_stream_size = 2048\n", clamd.config(false)),
    );
    let big = message(
        "a@ext.test",
        "u@example.test",
        "big@ext.test",
        &"x".repeat(4000),
    );
    let mut c = Client::connect(gw.smtp).await;
    assert_eq!(
        c.send_message("a@ext.test", &["u@example.test"], &big)
            .await
            .code,
        451
    );
    assert!(gw.stored_json().is_empty());
    // clamd unreachable with fail_mode = open: accepted, marked, logged
    let dead = format!(
        "[clamav]\nenabled = true\naddress = \"{}\"\nconnect_timeout_ms = 300\n[stages.clamav]\nfail_mode = \"open\"\n",
        Sink::dead_addr()
    );
    let gw = Gateway::start(hop, &dead);
    let mut c = Client::connect(gw.smtp).await;
    let msg = message(
        "a@ext.test",
        "u@example.test",
        "open@ext.test",
        "unscanned by choice",
    );
    assert_eq!(
        c.send_message("a@ext.test", &["u@example.test"], &msg)
            .await
            .code,
        250
    );
    let q = gw.queue_json();
    assert!(
        q[0]["symbols"]
            .as_str()
            .unwrap()
            .contains("STAGE_FAILED_OPEN"),
        "{q:?}"
    );
    assert!(gw.log().contains("stage failed, passing"), "{}", gw.log());
}

/// Established TCP connections to `port` (either side) in this network namespace.
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let remote_port = f[2].rsplit(':').next().unwrap();
            u16::from_str_radix(remote_port, 16).unwrap() == port && f[3] == "01"
        })
        .count()
}

#[tokio::test]
async fn one_reused_clamd_session_keeps_every_verdict_apart() {
    use filters::clamav::clamd::{Clamd as Client, Endpoint, Verdict};
    use std::time::Duration;
    let clamd = Clamd::start();
    let client = Client::new(
        Endpoint::Tcp(clamd.address()),
        Duration::from_millis(500),
        Duration::from_secs(5),
        1,
    );
    let clean = message("a@ext.test", "u@example.test", "c@ext.test", "clean");
    let infected = infected_variants()[0].1.clone();
    for round in 0..3 {
        assert_eq!(
            client.scan(clean.as_bytes()).await,
            Ok(Verdict::Clean),
            "round {round}"
        );
        match client.scan(infected.as_bytes()).await {
            Ok(Verdict::Infected(name)) => assert!(name.contains("Eicar"), "{name}"),
            other => panic!("round {round}: infected message gave {other:?}"),
        }
    }
    // six scans, one connection: the session stays open for the next scan
    assert_eq!(established_to(clamd.port), 1);
}
