//! STARTTLS (RFC 3207): the upgrade with a real TLS client, the state reset after it,
//! plaintext injected ahead of the handshake, a listener that requires TLS, and swaks as an
//! independent client.

use crate::harness::tls::swaks;
use crate::harness::{Client, Gateway, Sink, message, wait_until};

/// The Received: line the gateway put on a delivered message (up to its date).
fn received_line(data: &str) -> &str {
    assert!(data.starts_with("Received: "), "{data}");
    let end = data.find(";\r\n").expect("Received: line ends with ;");
    &data[..end]
}

#[tokio::test]
async fn starttls_upgrade_resets_the_session_and_is_recorded() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let mut c = Client::greeted(gw.smtp).await;
    let r = c.cmd("EHLO client.test", 250).await;
    assert!(r.text.contains("250-STARTTLS\r\n") || r.text.contains("250 STARTTLS\r\n"));
    // A transaction opened in plaintext must not survive the upgrade.
    c.cmd("MAIL FROM:<plain@ext.test>", 250).await;
    let info = c.starttls().await;
    assert!(info.version.starts_with("TLSv1."), "{info:?}");
    assert_eq!(info.peer_cn.as_deref(), Some("gw.portcullis.test"));

    // RFC 3207 §4.2: the server forgets everything; EHLO is needed again.
    let r = c.cmd("MAIL FROM:<a@ext.test>", 503).await;
    assert!(r.text.contains("5.5.1"), "{}", r.text);
    let r = c.cmd("EHLO client.test", 250).await;
    assert!(
        !r.text.contains("STARTTLS"),
        "STARTTLS offered again: {}",
        r.text
    );
    assert!(r.text.contains("PIPELINING"), "{}", r.text);
    c.cmd("RCPT TO:<u@example.test>", 503).await;

    c.cmd("MAIL FROM:<a@ext.test>", 250).await;
    c.cmd("RCPT TO:<u@example.test>", 250).await;
    let msg = message("a@ext.test", "u@example.test", "tls@ext.test", "secret");
    let r = c.data(&msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    c.cmd("QUIT", 221).await;

    assert!(
        wait_until(10, || sink.count() == 1).await,
        "not delivered; log:\n{}",
        gw.log()
    );
    let got = &sink.all()[0];
    assert_eq!(got.mail_from, "a@ext.test");
    let received = received_line(&got.data);
    assert!(received.contains("with ESMTPS"), "{received}");
    assert!(
        received.contains(&format!("version={}", info.version)),
        "{received}"
    );
    assert!(received.contains("version=TLSv1."), "{received}");
    assert!(
        received.contains(&format!("cipher={}", info.cipher)),
        "{received}"
    );
    assert!(got.data.ends_with(&msg));
}

/// Plaintext pipelined behind STARTTLS (the CVE-2011-0411 class) must be thrown away, not
/// executed inside the TLS session.
#[tokio::test]
async fn commands_injected_before_the_handshake_are_discarded() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");

    let mut c = Client::greeted(gw.smtp).await;
    c.cmd("EHLO client.test", 250).await;
    c.send_raw(b"STARTTLS\r\nMAIL FROM:<x@ext.test>\r\n").await;
    c.expect(220).await;
    c.start_tls().await; // also checks nothing but the 220 came in plaintext
    let r = c.cmd("RCPT TO:<u@example.test>", 503).await;
    assert!(r.text.contains("Need MAIL"), "{}", r.text);
    // No reply to the injected command is waiting either.
    c.cmd("NOOP", 250).await;

    // With a whole injected transaction: none of it may count after the handshake.
    let mut c = Client::greeted(gw.smtp).await;
    c.cmd("EHLO client.test", 250).await;
    c.send_raw(
        b"STARTTLS\r\nEHLO evil.test\r\nMAIL FROM:<x@ext.test>\r\nRCPT TO:<u@example.test>\r\n",
    )
    .await;
    c.expect(220).await;
    c.start_tls().await;
    let r = c.cmd("DATA", 503).await;
    assert!(r.text.contains("Need MAIL"), "{}", r.text);
    let r = c.cmd("MAIL FROM:<a@ext.test>", 503).await;
    assert!(r.text.contains("EHLO"), "{}", r.text);
    c.cmd("NOOP", 250).await;
    c.cmd("QUIT", 221).await;

    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(gw.queue_json().is_empty());
    assert_eq!(sink.count(), 0);
}

#[tokio::test]
async fn starttls_inside_tls_is_refused() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let mut c = Client::greeted(gw.smtp).await;
    c.cmd("EHLO client.test", 250).await;
    c.starttls().await;
    let r = c.cmd("STARTTLS", 503).await;
    assert!(r.text.contains("5.5.1"), "{}", r.text);
    c.cmd("EHLO client.test", 250).await;
    let r = c.cmd("STARTTLS", 503).await;
    assert!(r.text.contains("5.5.1"), "{}", r.text);
    // still a working TLS session
    c.envelope("a@ext.test", &["u@example.test"]).await;
    let r = c
        .data(&message("a@ext.test", "u@example.test", "t2@ext.test", "x"))
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 1).await);
    assert!(received_line(&sink.all()[0].data).contains("with ESMTPS"));
}

#[tokio::test]
async fn listener_without_tls_does_not_offer_it() {
    let sink = Sink::start().await;
    let gw = Gateway::start_with_tls_mode(sink.addr, "none", "");
    let mut c = Client::greeted(gw.smtp).await;
    let r = c.cmd("EHLO client.test", 250).await;
    assert!(!r.text.contains("STARTTLS"), "{}", r.text);
    c.cmd("STARTTLS", 502).await;
    // the connection is still plain SMTP
    c.cmd("NOOP", 250).await;
    c.cmd("MAIL FROM:<a@ext.test>", 250).await;
}

#[tokio::test]
async fn listener_requiring_tls_refuses_mail_before_starttls() {
    let sink = Sink::start().await;
    let gw = Gateway::start_with_tls_mode(sink.addr, "required", "");
    let mut c = Client::greeted(gw.smtp).await;
    let r = c.cmd("EHLO client.test", 250).await;
    assert!(r.text.contains("STARTTLS"), "{}", r.text);
    let r = c.cmd("MAIL FROM:<a@ext.test>", 530).await;
    assert!(r.text.contains("5.7.0"), "{}", r.text);
    let r = c.cmd("RCPT TO:<u@example.test>", 530).await;
    assert!(r.text.contains("5.7.0"), "{}", r.text);
    c.cmd("DATA", 503).await;
    c.cmd("NOOP", 250).await;

    c.starttls().await;
    c.envelope("a@ext.test", &["u@example.test"]).await;
    let r = c
        .data(&message(
            "a@ext.test",
            "u@example.test",
            "req@ext.test",
            "x",
        ))
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 1).await);
    let got = &sink.all()[0];
    assert_eq!(got.message_id().as_deref(), Some("req@ext.test"));
    assert!(received_line(&got.data).contains("with ESMTPS"));
}

/// swaks arguments for one message from a@ext.test with `subject`.
fn swaks_args(gw: &Gateway, subject: &str, extra: &[&str]) -> Vec<String> {
    let subject = format!("Subject: {subject}");
    let mut all = vec!["--header", &subject, "--body", "sent by swaks"];
    all.extend(extra);
    crate::harness::tls::swaks_args(gw, "swaks.test", "a@ext.test", &all)
}

#[tokio::test]
async fn swaks_delivers_with_and_without_tls() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");

    let (code, out) = swaks(swaks_args(&gw, "swaks plain", &[])).await;
    assert_eq!(code, 0, "plain swaks failed:\n{out}");
    assert!(!out.contains("TLS started"), "{out}");

    let (code, out) = swaks(swaks_args(&gw, "swaks tls", &["--tls"])).await;
    assert_eq!(code, 0, "swaks --tls failed:\n{out}");
    assert!(out.contains("TLS started"), "{out}");
    assert!(out.contains("<~  250 2.0.0 Ok: queued as"), "{out}");

    // Verifying against the gateway's own self-signed certificate works too (the chain is
    // the certificate itself); without it as the trust anchor verification must fail.
    let cert = gw.self_signed_cert_path();
    let cert = cert.to_str().unwrap();
    let (code, out) = swaks(swaks_args(
        &gw,
        "swaks verified",
        &["--tls", "--tls-verify", "--tls-ca-path", cert],
    ))
    .await;
    assert_eq!(
        code, 0,
        "swaks --tls-verify with the gateway's cert failed:\n{out}"
    );
    let (code, out) = swaks(swaks_args(
        &gw,
        "swaks unverifiable",
        &["--tls", "--tls-verify"],
    ))
    .await;
    assert_ne!(code, 0, "a self-signed certificate verified:\n{out}");

    assert!(
        wait_until(10, || sink.count() == 3).await,
        "sink has {:?}; log:\n{}",
        sink.all()
            .iter()
            .map(|m| m.data.clone())
            .collect::<Vec<_>>(),
        gw.log()
    );
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let all = sink.all();
    assert_eq!(all.len(), 3);
    let by_subject = |s: &str| {
        all.iter()
            .find(|m| m.data.contains(&format!("\r\nSubject: {s}\r\n")))
            .unwrap_or_else(|| panic!("no message with subject {s:?}"))
    };
    let plain = received_line(&by_subject("swaks plain").data);
    assert!(plain.contains("from swaks.test ([127.0.0.1])"), "{plain}");
    assert!(plain.contains("with ESMTP\r\n"), "{plain}");
    assert!(!plain.contains("version="), "{plain}");
    for s in ["swaks tls", "swaks verified"] {
        let m = by_subject(s);
        let tls = received_line(&m.data);
        assert!(tls.contains("with ESMTPS"), "{tls}");
        assert!(tls.contains("version=TLSv1."), "{tls}");
        assert_eq!(m.rcpts, vec!["u@example.test"]);
        assert!(m.data.contains("sent by swaks"));
    }
}
