//! The content heuristics in the live gateway: a disguised program and a phishing link
//! reach the verdict with their registered points, `[symbols]` overrides them, and
//! `[stages.content] enabled = false` turns the stage off.

use crate::harness::{Gateway, Sink, wait_until};

/// A plain-text mail with an HTML link whose text names another domain, and an attachment
/// named like a PDF that is a Windows program by name.
fn disguised_program() -> String {
    "From: Billing <billing@shop.ext.test>\r\nTo: u@example.test\r\nSubject: Your invoice\r\n\
Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <inv-1@shop.ext.test>\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n\
--b2\r\nContent-Type: text/plain\r\n\r\nYour invoice is attached. Log in at https://www.bank.example/ to pay.\r\n\
--b2\r\nContent-Type: text/html\r\n\r\n<p>Your invoice is attached. Log in at \
<a href=\"http://collect.evil.example/x\">https://www.bank.example/</a> to pay.</p>\r\n--b2--\r\n\
--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"invoice.pdf.exe\"\r\n\
Content-Transfer-Encoding: base64\r\n\r\nTVqQAAMAAAAEAAAA\r\n--b1--\r\n"
        .to_string()
}

/// Send the message from outside and return (reply code, the verdict's log line).
async fn send(gw: &Gateway, msg: &str) -> (u16, serde_json::Value) {
    let (r, line) = gw
        .send_and_verdict("billing@shop.ext.test", &["u@example.test"], msg)
        .await;
    (r.code, line)
}

#[tokio::test]
async fn content_shapes_reach_the_verdict_and_their_points_are_the_operators() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "log_format = \"json\"\n");
    let (code, line) = send(&gw, &disguised_program()).await;
    assert_eq!(code, 250, "{line}");
    let symbols = line["symbols"].as_str().unwrap();
    // 3 + 4 points: tagged (5), not held (8).
    assert!(symbols.contains("CONTENT_EXECUTABLE(3.00)"), "{symbols}");
    assert!(
        symbols.contains("CONTENT_DOUBLE_EXTENSION(4.00)"),
        "{symbols}"
    );
    assert!(symbols.contains("CONTENT_LINK_MISMATCH(0.00)"), "{symbols}");
    assert_eq!(line["verdict"], "tag", "{line}");
    assert!(wait_until(10, || sink.count() == 1).await);
    let delivered = &sink.all()[0].data;
    assert!(delivered.contains("X-Spam-Flag: YES"), "{delivered}");
    assert!(
        delivered.contains("X-Portcullis-Score: 7.00 (tag)"),
        "{delivered}"
    );

    // An operator who trusts the phishing shape more: the link alone now rejects.
    let gw = Gateway::start(
        sink.addr,
        "log_format = \"json\"\n[symbols]\nCONTENT_LINK_MISMATCH = 20.0\n",
    );
    let (code, line) = send(&gw, &disguised_program()).await;
    assert_eq!(code, 550, "{line}");
    assert_eq!(line["verdict"], "reject", "{line}");

    // The stage off: no content symbol, the message accepted.
    let gw = Gateway::start(
        sink.addr,
        "log_format = \"json\"\n[stages.content]\nenabled = false\n",
    );
    let (code, line) = send(&gw, &disguised_program()).await;
    assert_eq!(code, 250, "{line}");
    assert!(
        !line["symbols"].as_str().unwrap().contains("CONTENT_"),
        "{line}"
    );
    assert_eq!(line["verdict"], "accept", "{line}");
}
