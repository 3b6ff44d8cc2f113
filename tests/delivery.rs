//! Delivery to the next hop: retries while it is down, DSNs, held, tagged and rejected
//! verdicts, outbound through a smarthost.

use crate::harness::{Client, Gateway, Sink, SinkMode, message, wait_until};

const QUICK_RETRY: &str =
    "[queue]\nretry_initial_secs = 1\nretry_max_secs = 2\nscan_interval_secs = 1\n";

#[tokio::test]
async fn next_hop_down_for_a_while_then_delivered() {
    let hop = Sink::dead_addr();
    let gw = Gateway::start(hop, QUICK_RETRY);
    let mut c = Client::connect(gw.smtp).await;
    let msg = message("a@ext.test", "u@example.test", "wait@ext.test", "patience");
    assert_eq!(
        c.send_message("a@ext.test", &["u@example.test"], &msg)
            .await
            .code,
        250
    );
    // It waits in the queue with an error and at least one attempt.
    assert!(
        wait_until(10, || gw
            .queue_json()
            .first()
            .is_some_and(|m| m["attempts"].as_u64() >= Some(2)))
        .await,
        "no retries seen; log:\n{}",
        gw.log()
    );
    let q = gw.queue_json();
    assert_eq!(q.len(), 1);
    assert!(
        q[0]["last_error"].as_str().unwrap().contains("4.4.1"),
        "{:?}",
        q[0]
    );
    // The internal server comes back: the next retry delivers, and the queue empties.
    let sink = Sink::start_on(hop).await;
    assert!(
        wait_until(15, || sink.count() == 1).await,
        "not delivered after the hop came back; log:\n{}",
        gw.log()
    );
    assert_eq!(sink.all()[0].message_id().as_deref(), Some("wait@ext.test"));
    assert!(wait_until(5, || gw.queue_json().is_empty()).await);
}

#[tokio::test]
async fn permanent_failure_bounces_to_the_sender_once() {
    let sink = Sink::start().await;
    sink.set_mode(SinkMode::RejectBad);
    let gw = Gateway::start(sink.addr, QUICK_RETRY);
    let mut c = Client::connect(gw.smtp).await;
    let msg = message(
        "s@example.test",
        "good@example.test",
        "bounce@ext.test",
        "x",
    );
    let r = c
        .send_message(
            "s@example.test",
            &["good@example.test", "bad@example.test"],
            &msg,
        )
        .await;
    assert_eq!(r.code, 250);
    // the good recipient's copy and the DSN for the bad one (to the local sender)
    assert!(
        wait_until(10, || sink.count() == 2).await,
        "log:\n{}",
        gw.log()
    );
    let all = sink.all();
    let delivered = all
        .iter()
        .find(|m| m.mail_from == "s@example.test")
        .expect("original delivered");
    assert_eq!(delivered.rcpts, vec!["good@example.test"]);
    let dsn = all
        .iter()
        .find(|m| m.mail_from.is_empty())
        .expect("a DSN from the null sender");
    assert_eq!(dsn.rcpts, vec!["s@example.test"]);
    assert!(dsn.data.contains("report-type=delivery-status"));
    assert!(
        dsn.data
            .contains("Final-Recipient: rfc822; bad@example.test"),
        "{}",
        dsn.data
    );
    assert!(dsn.data.contains("Status: 5.1.1"));
    assert!(
        dsn.data.contains("Message-ID: <bounce@ext.test>"),
        "original headers returned"
    );
    assert!(wait_until(5, || gw.queue_json().is_empty()).await);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(sink.count(), 2, "nothing sent twice");
}

#[tokio::test]
async fn null_sender_failures_never_bounce() {
    let sink = Sink::start().await;
    sink.set_mode(SinkMode::RejectBad);
    let gw = Gateway::start(sink.addr, QUICK_RETRY);
    let mut c = Client::connect(gw.smtp).await;
    let msg = message(
        "",
        "bad@example.test",
        "dsn@ext.test",
        "a bounce that bounces",
    );
    assert_eq!(
        c.send_message("", &["bad@example.test"], &msg).await.code,
        250
    );
    assert!(
        wait_until(10, || gw.queue_json().is_empty()).await,
        "log:\n{}",
        gw.log()
    );
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(sink.count(), 0);
    assert!(gw.queue_json().is_empty());
}

#[tokio::test]
async fn too_old_deferred_message_bounces() {
    let sink = Sink::start().await;
    sink.set_mode(SinkMode::Defer);
    let gw = Gateway::start(sink.addr, &format!("{QUICK_RETRY}max_age_secs = 2\n"));
    let mut c = Client::connect(gw.smtp).await;
    let msg = message("s@example.test", "u@example.test", "old@ext.test", "x");
    assert_eq!(
        c.send_message("s@example.test", &["u@example.test"], &msg)
            .await
            .code,
        250
    );
    // The original expires and is replaced by a DSN to its sender (itself deferred here).
    assert!(
        wait_until(15, || {
            let q = gw.queue_json();
            q.len() == 1
                && q[0]["mail_from"] == ""
                && q[0]["recipients"][0]["address"] == "s@example.test"
        })
        .await,
        "queue: {:?}\nlog:\n{}",
        gw.queue_json(),
        gw.log()
    );
    sink.set_mode(SinkMode::Accept);
    assert!(wait_until(10, || sink.count() == 1).await);
    let dsn = &sink.all()[0];
    assert!(dsn.data.contains("gave up after"), "{}", dsn.data);
    assert!(dsn.data.contains("Action: failed"));
}

fn no_date(id: &str) -> String {
    format!(
        "From: <a@ext.test>\r\nTo: <u@example.test>\r\nSubject: no date\r\nMessage-ID: <{id}>\r\n\r\nbody\r\n"
    )
}

#[tokio::test]
async fn verdicts_reject_hold_and_tag_in_the_dialog() {
    let sink = Sink::start().await;
    // A missing Date: header scores whatever the config says.
    for (points, code, state) in [
        (20.0, 550, None),
        (9.0, 250, Some("held")),
        (6.0, 250, None),
    ] {
        let gw = Gateway::start(
            sink.addr,
            &format!("[symbols]\nHDR_MISSING_DATE = {points}\n"),
        );
        let before = sink.count();
        let mut c = Client::connect(gw.smtp).await;
        let r = c
            .send_message(
                "a@ext.test",
                &["u@example.test"],
                &no_date(&format!("v{points}@ext.test")),
            )
            .await;
        assert_eq!(r.code, code, "points {points}: {}", r.text);
        match (code, state) {
            (550, _) => {
                assert!(r.text.contains("5.7.1"));
                assert!(
                    gw.stored_json().is_empty(),
                    "a rejected message is not stored"
                );
            }
            (_, Some(state)) => {
                let q = gw.stored_json();
                assert_eq!(q.len(), 1);
                assert_eq!(q[0]["state"], state);
                assert!(
                    q[0]["symbols"]
                        .as_str()
                        .unwrap()
                        .contains("HDR_MISSING_DATE")
                );
                tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
                assert_eq!(sink.count(), before, "held messages are not delivered");
            }
            _ => {
                assert!(wait_until(10, || sink.count() == before + 1).await);
                let got = sink.all().pop().unwrap();
                assert!(got.data.contains("X-Spam-Flag: YES"), "{}", got.data);
                assert!(got.data.contains("X-Portcullis-Score: 6.00 (tag)"));
            }
        }
    }
}

#[tokio::test]
async fn outbound_goes_through_the_smarthost() {
    let inbound = Sink::start().await;
    let smarthost = Sink::start().await;
    let gw = Gateway::start(
        inbound.addr,
        &format!("outbound_smarthost = \"{}\"\n", smarthost.addr),
    );
    let mut c = gw.internal_client().await;
    let msg = message(
        "me@example.test",
        "partner@remote.test",
        "out@example.test",
        "to a partner",
    );
    let r = c
        .send_message(
            "me@example.test",
            &["partner@remote.test", "colleague@example.test"],
            &msg,
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        wait_until(10, || smarthost.count() == 1 && inbound.count() == 1).await,
        "log:\n{}",
        gw.log()
    );
    assert_eq!(smarthost.all()[0].rcpts, vec!["partner@remote.test"]);
    assert_eq!(inbound.all()[0].rcpts, vec!["colleague@example.test"]);
    // outbound mail carries no inbound score header
    assert!(!smarthost.all()[0].data.contains("X-Portcullis-Score"));
}

#[tokio::test]
async fn outbound_by_mx_from_a_real_dns_server() {
    let inbound = Sink::start().await;
    let mx = Sink::start().await;
    let dns = crate::harness::dns::Dns::start(&[
        "--mx-host=remote.test,mx1.remote.test,10".into(),
        "--host-record=mx1.remote.test,127.0.0.1".into(),
    ]);
    let gw = Gateway::start(
        inbound.addr,
        &format!(
            "dns_servers = [\"{}\"]\n[queue]\nmx_port = {}\nretry_initial_secs = 1\nscan_interval_secs = 1\n",
            dns.addr,
            mx.addr.port()
        ),
    );
    let mut c = gw.internal_client().await;
    let msg = message(
        "me@example.test",
        "partner@remote.test",
        "mx@example.test",
        "by MX",
    );
    let r = c
        .send_message(
            "me@example.test",
            &["partner@remote.test", "nobody@missing.test"],
            &msg,
        )
        .await;
    assert_eq!(r.code, 250);
    assert!(
        wait_until(15, || mx.count() == 1).await,
        "not delivered by MX; log:\n{}",
        gw.log()
    );
    assert_eq!(mx.all()[0].rcpts, vec!["partner@remote.test"]);
    // missing.test does not exist (NXDOMAIN): bounced at once to the local sender
    assert!(
        wait_until(15, || inbound.count() == 1).await,
        "no DSN; log:\n{}",
        gw.log()
    );
    let dsn = &inbound.all()[0];
    assert_eq!(dsn.rcpts, vec!["me@example.test"]);
    assert!(
        dsn.data
            .contains("Final-Recipient: rfc822; nobody@missing.test")
    );
    assert!(dsn.data.contains("does not exist"), "{}", dsn.data);
}

#[tokio::test]
async fn large_message_goes_through_a_spool_file_and_the_file_is_removed() {
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        "[queue]\nretry_initial_secs = 1\nscan_interval_secs = 1\n",
    );
    // 400 KB: above the inline limit, so the body is a spool file while queued
    let body: String = (0..8000)
        .map(|i| format!("line {i:06} .{}\r\n", "x".repeat(40)))
        .collect();
    let msg = message(
        "a@ext.test",
        "u@example.test",
        "large@ext.test",
        &format!(".starts with a dot\r\n{body}"),
    );
    sink.set_mode(SinkMode::Defer);
    let mut c = Client::connect(gw.smtp).await;
    assert_eq!(
        c.send_message("a@ext.test", &["u@example.test"], &msg)
            .await
            .code,
        250
    );
    let id = gw.queue_json()[0]["id"].as_str().unwrap().to_string();
    let file = gw.data_dir().join("spool").join(format!("{id}.eml"));
    assert!(file.exists(), "a large body is a spool file");
    sink.set_mode(SinkMode::Accept);
    assert!(
        wait_until(15, || sink.count() == 1).await,
        "log:\n{}",
        gw.log()
    );
    assert!(
        sink.all()[0].data.ends_with(&msg),
        "large body altered in transit"
    );
    assert!(
        wait_until(5, || !file.exists()).await,
        "spool file left behind"
    );
}

#[tokio::test]
async fn verdict_fields_forged_by_the_sender_are_removed_before_ours_are_added() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let forged = format!(
        "X-Portcullis-SMIME: decrypted; signed by <ceo@example.test>, chain trusted\r\n\
         X-Portcullis-Score: -20.00 (accept)\r\n\
         x-spam-flag: NO\r\n\
         X-Spam-Status: No, score=-9.9\r\n\trequired=5.0\r\n\
         X-Mailer: kept\r\n{}",
        message("a@ext.test", "u@example.test", "forged@ext.test", "hi")
    );
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message("a@ext.test", &["u@example.test"], &forged)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 1).await);
    let got = sink.all().pop().unwrap();
    let head = got
        .data
        .split("\r\n\r\n")
        .next()
        .unwrap()
        .to_ascii_lowercase();
    assert!(!head.contains("x-portcullis-smime"), "{}", got.data);
    assert!(!head.contains("x-spam-"), "{}", got.data);
    assert!(!head.contains("-20.00"), "{}", got.data);
    assert_eq!(
        head.matches("x-portcullis-score:").count(),
        1,
        "{}",
        got.data
    );
    assert!(
        head.contains("x-portcullis-score: 0.00 (accept)"),
        "{}",
        got.data
    );
    assert!(head.contains("x-mailer: kept"), "{}", got.data);
}

/// Every file and directory under `dir` with group or other permission bits.
fn readable_by_others(dir: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode();
        if mode & 0o077 != 0 {
            found.push(format!("{} {:o}", entry.path().display(), mode & 0o777));
        }
        if entry.file_type().unwrap().is_dir() {
            found.extend(readable_by_others(&entry.path()));
        }
    }
    found
}

#[tokio::test]
async fn every_file_in_the_data_directory_is_private() {
    let sink = Sink::start().await;
    sink.set_mode(SinkMode::Defer);
    let gw = Gateway::start(sink.addr, "");
    // A spooled large body and a small inline one, both waiting in the queue.
    let large = message(
        "a@ext.test",
        "u@example.test",
        "big@ext.test",
        &format!("{}\r\n", "y".repeat(76)).repeat(5_000),
    );
    let small = message("a@ext.test", "u@example.test", "small@ext.test", "hi");
    for msg in [&large, &small] {
        let mut c = Client::connect(gw.smtp).await;
        let r = c.send_message("a@ext.test", &["u@example.test"], msg).await;
        assert_eq!(r.code, 250, "{}", r.text);
    }
    // The certificate store's master key and tables, through the CLI.
    let (code, _, err) = gw.cli(&["certs", "list"]);
    assert_eq!(code, 0, "{err}");
    let dir = gw.data_dir();
    for file in ["queue.db", "queue.db-wal", "queue.db-shm"] {
        assert!(dir.join(file).exists(), "{file} missing");
    }
    // The admin socket is its group's by design (mode 0660: connecting is all it allows).
    let socket = dir.join("admin.sock");
    let open: Vec<String> = readable_by_others(&dir)
        .into_iter()
        .filter(|f| *f != format!("{} 660", socket.display()))
        .collect();
    assert!(open.is_empty(), "readable by group or others: {open:?}");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&socket).unwrap().file_type().is_socket());
}

/// A message with bare-LF line ends to a recipient the internal server refuses: the bounce
/// (which may go to a forged sender) returns the header only, never the body, and at most
/// `dsn_max_returned_bytes` of it.
#[tokio::test]
async fn bounce_of_a_bare_lf_message_returns_only_the_capped_header() {
    let sink = Sink::start().await;
    sink.set_mode(SinkMode::RejectBad);
    let gw = Gateway::start(
        sink.addr,
        &format!("{QUICK_RETRY}dsn_max_returned_bytes = 2048\n"),
    );
    let mut filler = String::new();
    for i in 0..100 {
        filler.push_str(&format!("X-Filler-{i:03}: {}\n", "f".repeat(40)));
    }
    let msg = format!(
        "From: <s@example.test>\nTo: <bad@example.test>\nSubject: spam\nMessage-ID: <lf@ext.test>\n{filler}\nBUY CHEAP PILLS\n\nmore spam body\n"
    );
    let mut c = Client::greeted(gw.smtp).await;
    c.envelope("s@example.test", &["bad@example.test"]).await;
    c.cmd("DATA", 354).await;
    c.send_raw(format!("{msg}\r\n.\r\n").as_bytes()).await;
    c.expect(250).await;
    assert!(
        wait_until(10, || sink.count() == 1).await,
        "log:\n{}",
        gw.log()
    );
    let dsn = &sink.all()[0];
    assert!(dsn.mail_from.is_empty(), "a DSN from the null sender");
    assert!(
        dsn.data.contains("Message-ID: <lf@ext.test>"),
        "{}",
        dsn.data
    );
    assert!(
        !dsn.data.contains("PILLS") && !dsn.data.contains("spam body"),
        "the body was returned:\n{}",
        dsn.data
    );
    assert!(
        !dsn.data.contains("X-Filler-099"),
        "the header was not capped"
    );
    let returned = dsn
        .data
        .split("Content-Type: text/rfc822-headers\r\n\r\n")
        .nth(1)
        .expect("a returned header part");
    let returned = returned.split("\r\n--").next().unwrap();
    assert!(returned.len() <= 2048, "{} bytes returned", returned.len());
}

/// `verify = "callout"`: the internal server is asked at RCPT TO; a user it refuses gets
/// 550 5.1.1 at once (no message, no bounce), and while it cannot be asked, 450 4.1.1.
#[tokio::test]
async fn callout_refuses_unknown_recipients_at_rcpt_time() {
    let mut sink = Sink::start().await;
    sink.set_mode(SinkMode::RejectBad);
    let gw = Gateway::start(
        sink.addr,
        &format!("{QUICK_RETRY}[recipients]\nverify = \"callout\"\ncallout_timeout_secs = 5\n"),
    );
    let mut c = Client::greeted(gw.smtp).await;
    c.cmd("EHLO client.test", 250).await;
    c.cmd("MAIL FROM:<spammer@forged.test>", 250).await;
    let r = c.cmd("RCPT TO:<bad.user@example.test>", 550).await;
    assert!(r.text.contains("5.1.1"), "{}", r.text);
    c.cmd("RCPT TO:<good@example.test>", 250).await;
    c.cmd("RCPT TO:<Postmaster@example.test>", 250).await;
    let r = c
        .data(&message(
            "spammer@forged.test",
            "good@example.test",
            "co@forged.test",
            "x",
        ))
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        wait_until(10, || sink.count() == 1).await,
        "log:\n{}",
        gw.log()
    );
    assert_eq!(
        sink.all()[0].rcpts,
        vec!["good@example.test", "Postmaster@example.test"]
    );
    // The internal server goes away: a known answer comes from the cache, a new question
    // gets a temporary failure.
    sink.stop();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    c.cmd("MAIL FROM:<spammer@forged.test>", 250).await;
    c.cmd("RCPT TO:<good@example.test>", 250).await;
    let r = c.cmd("RCPT TO:<bad.user@example.test>", 550).await;
    assert!(r.text.contains("5.1.1"), "cached: {}", r.text);
    let r = c.cmd("RCPT TO:<new@example.test>", 450).await;
    assert!(r.text.contains("4.1.1"), "{}", r.text);
    c.cmd("QUIT", 221).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(sink.count(), 1, "no bounce, no second message");
}

/// `verify = "list"`: only listed addresses and `@domain` entries; the file is re-read
/// when it changes.
#[tokio::test]
async fn recipient_list_refuses_unlisted_users_and_is_reloaded() {
    let sink = Sink::start().await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("recipients");
    std::fs::write(&list, "alice@example.test\n# the whole lists domain\n").unwrap();
    let gw = Gateway::start(
        sink.addr,
        &format!(
            "[recipients]\nverify = \"list\"\nlist_file = \"{}\"\nreload_secs = 1\n",
            list.display()
        ),
    );
    let mut c = Client::greeted(gw.smtp).await;
    c.cmd("EHLO client.test", 250).await;
    c.cmd("MAIL FROM:<a@ext.test>", 250).await;
    c.cmd("RCPT TO:<Alice@example.test>", 250).await;
    let r = c.cmd("RCPT TO:<mallory@example.test>", 550).await;
    assert!(r.text.contains("5.1.1"), "{}", r.text);
    c.cmd("RSET", 250).await;
    std::fs::write(&list, "alice@example.test\nmallory@example.test\n").unwrap();
    let later = std::time::SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&list)
        .unwrap()
        .set_modified(later)
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    c.cmd("MAIL FROM:<a@ext.test>", 250).await;
    c.cmd("RCPT TO:<mallory@example.test>", 250).await;
    c.cmd("QUIT", 221).await;
}
