//! The SMTP dialog: capabilities, sequence errors, pipelining, BDAT.

use crate::harness::{Client, Gateway, Sink, message, wait_until};

#[tokio::test]
async fn ehlo_announces_the_extensions() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let mut c = Client::greeted(gw.smtp).await;
    let r = c.cmd("EHLO client.test", 250).await;
    for ext in [
        "PIPELINING",
        "SIZE 26214400",
        "8BITMIME",
        "SMTPUTF8",
        "ENHANCEDSTATUSCODES",
        "CHUNKING",
        "STARTTLS",
    ] {
        assert!(r.text.contains(ext), "EHLO lacks {ext}: {}", r.text);
    }
    assert!(
        r.text.starts_with("250-gw.portcullis.test\r\n"),
        "{}",
        r.text
    );
    let r = c.cmd("HELO client.test", 250).await;
    assert!(!r.text.contains("PIPELINING"));
}

#[tokio::test]
async fn commands_out_of_sequence_are_refused() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let mut c = Client::greeted(gw.smtp).await;
    c.cmd("MAIL FROM:<a@ext.test>", 503).await;
    c.cmd("RCPT TO:<u@example.test>", 503).await;
    c.cmd("DATA", 503).await;
    c.cmd("EHLO client.test", 250).await;
    c.cmd("RCPT TO:<u@example.test>", 503).await;
    c.cmd("MAIL FROM:<a@ext.test>", 250).await;
    c.cmd("MAIL FROM:<a@ext.test>", 503).await;
    c.cmd("DATA", 554).await;
    c.cmd("RSET", 250).await;
    c.cmd("RCPT TO:<u@example.test>", 503).await;
    c.cmd("NOOP", 250).await;
    let r = c.cmd("VRFY u@example.test", 502).await;
    assert!(r.text.contains("5.5.1"));
    c.cmd("EXPN staff", 502).await;
    c.cmd("XYZZY", 500).await;
    c.cmd("AUTH PLAIN AGFhAGI=", 502).await;
    c.cmd("QUIT", 221).await;
    assert!(c.closed().await);
}

#[tokio::test]
async fn accepted_message_reaches_the_next_hop_unchanged_but_for_trace_headers() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let mut c = Client::connect(gw.smtp).await;
    let body = "Hello.\r\n.leading dot line\r\nbye\r\n";
    let msg = message("a@ext.test", "u@example.test", "m1@ext.test", body);
    let r = c
        .send_message("a@ext.test", &["U@Example.Test"], &msg)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(r.text.contains("2.0.0 Ok: queued as "), "{}", r.text);
    let id = r.text.trim().rsplit(' ').next().unwrap().to_string();
    assert!(
        wait_until(10, || sink.count() == 1).await,
        "not delivered; log:\n{}",
        gw.log()
    );
    let got = &sink.all()[0];
    assert_eq!(got.mail_from, "a@ext.test");
    assert_eq!(got.rcpts, vec!["U@example.test".to_string()]);
    assert!(got.data.starts_with("Received: from client.test ([127.0.0.1])\r\n\tby gw.portcullis.test (Portcullis) with ESMTP\r\n"), "{}", got.data);
    assert!(got.data.contains(&format!("id {id}")));
    assert!(got.data.contains("X-Portcullis-Score: 0.00 (accept)"));
    assert!(got.data.ends_with(&msg), "body altered:\n{}", got.data);
    // delivered messages leave the queue
    assert!(wait_until(10, || gw.queue_json().is_empty()).await);
}

#[tokio::test]
async fn pipelined_transaction_is_answered_in_order() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let mut c = Client::greeted(gw.smtp).await;
    c.cmd("EHLO client.test", 250).await;
    let msg = message("a@ext.test", "u@example.test", "pipe@ext.test", "pipelined");
    let batch = format!(
        "MAIL FROM:<a@ext.test>\r\nRCPT TO:<u@example.test>\r\nRCPT TO:<nobody@elsewhere.test>\r\nRCPT TO:<v@example.test>\r\nDATA\r\n{msg}.\r\nNOOP\r\nQUIT\r\n"
    );
    c.send_raw(batch.as_bytes()).await;
    for code in [250, 250, 550, 250, 354, 250, 250, 221] {
        c.expect(code).await;
    }
    assert!(wait_until(10, || sink.count() == 1).await);
    assert_eq!(
        sink.all()[0].rcpts,
        vec!["u@example.test", "v@example.test"]
    );
}

#[tokio::test]
async fn bdat_chunks_make_one_message() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let mut c = Client::greeted(gw.smtp).await;
    c.envelope("a@ext.test", &["u@example.test"]).await;
    let msg = message(
        "a@ext.test",
        "u@example.test",
        "bdat@ext.test",
        "in two chunks\r\n.not stuffed",
    );
    let (a, b) = msg.split_at(40);
    c.send_raw(format!("BDAT {}\r\n{a}", a.len()).as_bytes())
        .await;
    c.expect(250).await;
    c.send_raw(format!("BDAT {} LAST\r\n{b}", b.len()).as_bytes())
        .await;
    let r = c.expect(250).await;
    assert!(r.text.contains("queued as"), "{}", r.text);
    // DATA after BDAT in the same transaction is refused; BDAT without MAIL is read and refused
    c.send_raw(b"BDAT 5 LAST\r\nhello").await;
    c.expect(503).await;
    c.cmd("NOOP", 250).await;
    assert!(wait_until(10, || sink.count() == 1).await);
    assert!(sink.all()[0].data.ends_with(&msg));
}

#[tokio::test]
async fn client_vanishing_mid_data_stores_and_sends_nothing() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    {
        let mut c = Client::greeted(gw.smtp).await;
        c.envelope("a@ext.test", &["u@example.test"]).await;
        c.cmd("DATA", 354).await;
        c.send_raw(b"Subject: half\r\n\r\nthe first half of a message")
            .await;
    } // dropped: connection reset mid-DATA
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert!(gw.queue_json().is_empty());
    let spool: Vec<_> = std::fs::read_dir(gw.data_dir().join("spool"))
        .unwrap()
        .collect();
    assert!(spool.is_empty(), "spool has {spool:?}");
    assert_eq!(sink.count(), 0);
}

#[tokio::test]
async fn sigterm_finishes_the_message_in_transfer_then_says_421() {
    let sink = Sink::start().await;
    let quick = "[queue]\nretry_initial_secs = 1\nscan_interval_secs = 1\n";
    let mut gw = Gateway::start(crate::harness::Sink::dead_addr(), quick);
    let mut idle = Client::greeted(gw.smtp).await;
    idle.cmd("EHLO idle.test", 250).await;
    let mut busy = Client::greeted(gw.smtp).await;
    busy.envelope("a@ext.test", &["u@example.test"]).await;
    busy.cmd("DATA", 354).await;
    busy.send_raw(b"From: <a@ext.test>\r\nSubject: half\r\n")
        .await;
    gw.send_sigterm();
    // the idle session is told at once
    let r = idle.read_reply().await.expect("421 before close");
    assert_eq!(r.code, 421, "{}", r.text);
    assert!(r.text.contains("4.3.2"));
    // the message in transfer is still accepted, then the session is closed with 421
    busy.send_raw(b"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <term@ext.test>\r\n\r\nrest\r\n.\r\n").await;
    assert_eq!(busy.expect(250).await.code, 250);
    busy.send_raw(b"NOOP\r\n").await;
    assert_eq!(busy.expect(421).await.code, 421);
    let status = gw.terminate_and_wait(10);
    assert!(status.success(), "clean exit: {status}");
    // the accepted message survives the restart and is delivered to the (now reachable) hop
    let text = std::fs::read_to_string(&gw.config_path).unwrap();
    let old_hop = text
        .lines()
        .find(|l| l.starts_with("inbound_next_hop"))
        .unwrap()
        .to_string();
    std::fs::write(
        &gw.config_path,
        text.replace(&old_hop, &format!("inbound_next_hop = \"{}\"", sink.addr)),
    )
    .unwrap();
    gw.spawn();
    assert!(
        wait_until(10, || sink.count() == 1).await,
        "log:\n{}",
        gw.log()
    );
    assert_eq!(sink.all()[0].message_id().as_deref(), Some("term@ext.test"));
}

/// End-of-data look-alikes that some servers accept, each followed by a second
/// transaction: if any of them ended DATA here, the commands after it would be taken as a
/// second message (SMTP smuggling), and a bare CR or LF forwarded could do the same at
/// the next hop.
const SMUGGLING_ENDS: &[&[u8]] = &[
    b"\r\n.\r\r\n",
    b"\n.\n",
    b"\r.\r",
    b"\r\n.\n",
    b"\n.\r\n",
    b"\r\n.\r",
    b"\r\r\n.\r\r\n",
];

fn smuggling_attempt(end: &[u8]) -> Vec<u8> {
    let mut m = message(
        "a@ext.test",
        "u@example.test",
        "carrier@ext.test",
        "first part",
    )
    .into_bytes();
    m.truncate(m.len() - 2);
    m.extend_from_slice(end);
    m.extend_from_slice(
        b"MAIL FROM:<smuggled@ext.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nsmuggled body\r\n\r\n.\r\n",
    );
    m
}

/// Every CR in `b` is followed by LF and every LF follows a CR.
fn crlf_only(b: &[u8]) -> bool {
    b.iter().enumerate().all(|(i, &c)| match c {
        b'\r' => b.get(i + 1) == Some(&b'\n'),
        b'\n' => i > 0 && b[i - 1] == b'\r',
        _ => true,
    })
}

#[tokio::test]
async fn data_ends_only_at_crlf_dot_crlf_and_bare_endings_are_normalized() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    for (i, end) in SMUGGLING_ENDS.iter().enumerate() {
        let mut c = Client::greeted(gw.smtp).await;
        c.envelope("a@ext.test", &["u@example.test"]).await;
        c.cmd("DATA", 354).await;
        c.send_raw(&smuggling_attempt(end)).await;
        let r = c.expect(250).await;
        assert!(r.text.contains("queued as"), "{end:?}: {}", r.text);
        // The next reply is to QUIT, not to a smuggled MAIL FROM.
        c.cmd("QUIT", 221).await;
        assert!(
            wait_until(10, || sink.count() == i + 1).await,
            "{end:?}: log:\n{}",
            gw.log()
        );
    }
    // Give a wrongly split second message time to show up.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let all = sink.all();
    assert_eq!(
        all.len(),
        SMUGGLING_ENDS.len(),
        "a smuggled message arrived"
    );
    for (got, end) in all.iter().zip(SMUGGLING_ENDS) {
        assert_eq!(got.rcpts, vec!["u@example.test"], "{end:?}");
        assert_eq!(got.mail_from, "a@ext.test", "{end:?}");
        assert!(
            crlf_only(&got.raw),
            "{end:?}: a bare CR or LF reached the next hop: {:?}",
            String::from_utf8_lossy(&got.raw)
        );
        assert!(got.data.contains("smuggled body\r\n"), "{end:?}");
    }
}

#[tokio::test]
async fn bare_endings_are_refused_when_configured_and_the_session_stays_in_step() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "[limits]\nbare_line_endings = \"reject\"\n");
    for end in SMUGGLING_ENDS {
        let mut c = Client::greeted(gw.smtp).await;
        c.envelope("a@ext.test", &["u@example.test"]).await;
        c.cmd("DATA", 354).await;
        c.send_raw(&smuggling_attempt(end)).await;
        let r = c.expect(554).await;
        assert!(r.text.contains("5.5.2"), "{end:?}: {}", r.text);
        c.cmd("QUIT", 221).await;
    }
    // BDAT: a CR at the end of one chunk and LF at the start of the next is CRLF; a bare
    // CR split the same way is refused.
    let mut c = Client::greeted(gw.smtp).await;
    c.envelope("a@ext.test", &["u@example.test"]).await;
    c.send_raw(b"BDAT 17\r\nSubject: ok\r\n\r\nx\r").await;
    c.expect(250).await;
    c.send_raw(b"BDAT 1 LAST\r\n\n").await;
    let r = c.expect(250).await;
    assert!(r.text.contains("queued as"), "{}", r.text);
    c.cmd("MAIL FROM:<a@ext.test>", 250).await;
    c.cmd("RCPT TO:<u@example.test>", 250).await;
    c.send_raw(b"BDAT 17\r\nSubject: no\r\n\r\nx\r").await;
    c.expect(250).await;
    c.send_raw(b"BDAT 3 LAST\r\n.\r\n").await;
    c.expect(554).await;
    c.cmd("QUIT", 221).await;
    assert!(wait_until(10, || sink.count() == 1).await);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(sink.count(), 1, "only the clean BDAT message is delivered");
    assert!(sink.all()[0].data.contains("Subject: ok"));
}

#[tokio::test]
async fn bdat_bare_endings_are_normalized_across_chunks() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let mut c = Client::greeted(gw.smtp).await;
    c.envelope("a@ext.test", &["u@example.test"]).await;
    let first = b"Subject: bdat\r\n\r\na\rb\n.\rc\r";
    c.send_raw(format!("BDAT {}\r\n", first.len()).as_bytes())
        .await;
    c.send_raw(first).await;
    c.expect(250).await;
    c.send_raw(b"BDAT 4 LAST\r\nd\n.\n").await;
    let r = c.expect(250).await;
    assert!(r.text.contains("queued as"), "{}", r.text);
    c.cmd("QUIT", 221).await;
    assert!(wait_until(10, || sink.count() == 1).await);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sink.count(), 1);
    let got = &sink.all()[0];
    assert!(
        crlf_only(&got.raw),
        "{:?}",
        String::from_utf8_lossy(&got.raw)
    );
    assert!(
        got.raw.ends_with(b"\r\n\r\na\r\nb\r\n.\r\nc\r\nd\r\n.\r\n"),
        "{:?}",
        String::from_utf8_lossy(&got.raw)
    );
}
