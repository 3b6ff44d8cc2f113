//! The rules' message actions through the real gateway: a disclaimer in every MIME shape
//! (read back with Python's `email` package), an attachment signature the openssl CLI
//! verifies, a journal copy to an archive address, a journal file on disk before the 250.

use std::os::unix::fs::PermissionsExt;

use crate::harness::smime::{Holder, TestPki, openssl};
use crate::harness::{Gateway, Sink, python, wait_until};

const DISCLAIMER: &str = "ACME Ltd, 1 Main Street. This message is confidential.";

/// Every leaf part as Python's `email` package (policy `default`) reads it: content type,
/// file name, the decoded payload (base64) and, for text, the decoded text; and the
/// defects it found.
const READER: &str = r#"
import sys, json, base64, email, email.policy
msg = email.message_from_bytes(sys.stdin.buffer.read(), policy=email.policy.default)
parts, defects = [], []
for part in msg.walk():
    defects += [type(d).__name__ for d in part.defects]
    if part.is_multipart():
        continue
    payload = part.get_payload(decode=True) or b""
    text = part.get_content() if part.get_content_maintype() == "text" else None
    parts.append({"type": part.get_content_type(), "filename": part.get_filename(),
                  "disposition": part.get_content_disposition(),
                  "bytes": base64.b64encode(payload).decode(), "text": text})
json.dump({"parts": parts, "defects": defects, "marker": msg.get("X-Portcullis-Disclaimer")}, sys.stdout)
"#;

fn python_read(message: &[u8]) -> serde_json::Value {
    let out = python(
        READER,
        &[],
        message,
        "read the delivered message with email",
    );
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert!(
        v["defects"].as_array().unwrap().is_empty(),
        "Python's email package found defects {} in:\n{}",
        v["defects"],
        String::from_utf8_lossy(message)
    );
    v
}

fn b64(s: &serde_json::Value) -> Vec<u8> {
    base64_simd::STANDARD
        .decode_to_vec(s.as_str().unwrap())
        .unwrap()
}

/// A small PDF-looking file (the bytes a sniffer and `file` take for a PDF).
fn pdf() -> Vec<u8> {
    let mut pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n".to_vec();
    pdf.extend((0..3000u32).map(|i| (i * 13 % 256) as u8));
    pdf.extend_from_slice(b"\n%%EOF\n");
    pdf
}

fn base64_lines(data: &[u8]) -> String {
    let text = base64_simd::STANDARD.encode_to_string(data);
    text.as_bytes()
        .chunks(76)
        .map(|l| format!("{}\r\n", std::str::from_utf8(l).unwrap()))
        .collect()
}

fn head(from: &str, id: &str) -> String {
    format!(
        "From: <{from}>\r\nTo: <bob@partner.test>\r\nSubject: {id}\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{id}>\r\nMIME-Version: 1.0\r\n"
    )
}

fn pdf_part(boundary: &str) -> String {
    format!(
        "--{boundary}\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n\r\n{}",
        base64_lines(&pdf())
    )
}

/// One message per MIME shape: (Message-ID, message).
fn shapes(from: &str) -> Vec<(&'static str, String)> {
    let html_b64 = base64_lines("<html><body><p>Gr\u{fc}\u{df}e</p></body></html>\r\n".as_bytes());
    vec![
        (
            "plain-qp-latin1@example.test",
            format!(
                "{}Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
                 Gr=FC=DFe aus K=F6ln.\r\n",
                head(from, "plain-qp-latin1@example.test")
            ),
        ),
        (
            "html-base64@example.test",
            format!(
                "{}Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n{html_b64}",
                head(from, "html-base64@example.test")
            ),
        ),
        (
            "alternative@example.test",
            format!(
                "{}Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
                 --alt\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nHello.\r\n\
                 --alt\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<html><body><p>Hello.</p></body></html>\r\n\
                 --alt--\r\n",
                head(from, "alternative@example.test")
            ),
        ),
        (
            "mixed-pdf@example.test",
            format!(
                "{}Content-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n\
                 --mix\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nThe invoice is attached.\r\n\
                 {}--mix--\r\n",
                head(from, "mixed-pdf@example.test"),
                pdf_part("mix")
            ),
        ),
        (
            "nested@example.test",
            format!(
                "{}Content-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
                 --m\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n\
                 --a\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nHello.\r\n\
                 --a\r\nContent-Type: multipart/related; boundary=\"r\"\r\n\r\n\
                 --r\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<body><img src=\"cid:logo\"></body>\r\n\
                 --r\r\nContent-Type: image/png\r\nContent-ID: <logo>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n\
                 --r--\r\n--a--\r\n{}--m--\r\n",
                head(from, "nested@example.test"),
                pdf_part("m")
            ),
        ),
    ]
}

fn signed_message(from: &str) -> String {
    format!(
        "{}Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"s\"\r\n\r\n\
         --s\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSigned by me.\r\n\
         --s\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHAqCAMIACAQExADCABgkqhkiG9w0BBwEAAKCAMIAAAAAAAAA=\r\n\
         --s--\r\n",
        head(from, "signed@example.test")
    )
}

fn delivered(sink: &Sink, id: &str) -> crate::harness::sink::Received {
    sink.all()
        .into_iter()
        .find(|m| m.message_id().as_deref() == Some(id))
        .unwrap_or_else(|| panic!("{id} was not delivered"))
}

#[tokio::test]
async fn outbound_mail_gets_the_disclaimer_in_every_mime_shape_and_never_in_signed_mail() {
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        &format!(
            "outbound_smarthost = \"{}\"\n\
             [[rules]]\nname = \"legal\"\nwhen = {{ direction = \"outbound\" }}\n\
             actions = {{ disclaimer = {{ text = \"{DISCLAIMER}\" }} }}\n",
            sink.addr
        ),
    );
    let from = "alice@example.test";
    let mut all = shapes(from);
    all.push(("signed@example.test", signed_message(from)));
    for (_, message) in &all {
        let r = gw
            .internal_client()
            .await
            .send_message(from, &["bob@partner.test"], message)
            .await;
        assert_eq!(r.code, 250, "{}", r.text);
    }
    assert!(wait_until(15, || sink.count() == all.len()).await);
    for (id, _) in shapes(from) {
        let got = delivered(&sink, id);
        let v = python_read(&got.raw);
        assert_eq!(v["marker"], "added", "{id}");
        let parts = v["parts"].as_array().unwrap();
        let mut bodies = 0;
        for p in parts {
            if p["type"].as_str().unwrap().starts_with("text/") && p["disposition"].is_null() {
                bodies += 1;
                let text = p["text"].as_str().unwrap();
                assert!(
                    text.split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                        .contains(DISCLAIMER),
                    "{id}: no disclaimer in {text:?}"
                );
            }
        }
        let expected_bodies = match id {
            "alternative@example.test" | "nested@example.test" => 2,
            _ => 1,
        };
        assert_eq!(bodies, expected_bodies, "{id}: {parts:?}");
        if let Some(p) = parts
            .iter()
            .find(|p| p["filename"].as_str() == Some("invoice.pdf"))
        {
            assert_eq!(b64(&p["bytes"]), pdf(), "{id}: the attachment changed");
        }
        if id == "plain-qp-latin1@example.test" {
            assert!(
                parts[0]["text"]
                    .as_str()
                    .unwrap()
                    .starts_with("Gr\u{fc}\u{df}e aus K\u{f6}ln.")
            );
        }
    }
    // The signed message: delivered as sent below our trace fields, no disclaimer.
    let (_, sent) = all.last().unwrap();
    let got = delivered(&sink, "signed@example.test");
    assert!(got.raw.ends_with(sent.as_bytes()), "{}", got.data);
    assert!(!got.data.contains(DISCLAIMER));
    assert!(
        crate::auth::logged_symbols(&gw, from).contains("DISCLAIMER_SKIPPED_PROTECTED"),
        "{}",
        gw.log()
    );
}

const CERTS: &str = "[certs]\nsystem_roots = false\nreload_secs = 1\n";

fn import_identity(gw: &Gateway, pki: &TestPki, holder: &Holder) {
    let run = |args: &[&str]| {
        let (code, _, err) = gw.cli(args);
        assert_eq!(code, 0, "{args:?}: {err}");
    };
    run(&[
        "certs",
        "import",
        holder.p12.to_str().unwrap(),
        "--password-file",
        holder.password_file.to_str().unwrap(),
    ]);
    run(&["certs", "trust-ca", pki.ca().to_str().unwrap()]);
}

#[tokio::test]
async fn accountings_pdf_gets_a_signature_the_openssl_cli_verifies() {
    let pki = TestPki::new("Accounting CA");
    let accounting = pki.holder("accounting@example.test");
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        &format!(
            "outbound_smarthost = \"{}\"\n{CERTS}\
             [[rules]]\nname = \"sign-invoices\"\nwhen = {{ sender = \"accounting@example.test\" }}\n\
             actions = {{ sign_attachments = {{ types = [\"pdf\"], names = [\"*.pdf\"], identity = \"accounting@example.test\" }} }}\n",
            sink.addr
        ),
    );
    import_identity(&gw, &pki, &accounting);
    // the running gateway sees the store's change within reload_secs
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;

    let (_, message) = shapes("accounting@example.test")
        .into_iter()
        .find(|(id, _)| *id == "mixed-pdf@example.test")
        .unwrap();
    let r = gw
        .internal_client()
        .await
        .send_message("accounting@example.test", &["bob@partner.test"], &message)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 1).await);
    let got = delivered(&sink, "mixed-pdf@example.test");
    let v = python_read(&got.raw);
    let parts = v["parts"].as_array().unwrap();
    let file = |name: &str| {
        parts
            .iter()
            .find(|p| p["filename"].as_str() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {parts:?}"))
    };
    let invoice = b64(&file("invoice.pdf")["bytes"]);
    assert_eq!(invoice, pdf());
    let signature = file("invoice.pdf.p7s");
    assert_eq!(signature["type"], "application/pkcs7-signature");
    let dir = tempfile::tempdir().unwrap();
    let (content, p7s) = (
        dir.path().join("invoice.pdf"),
        dir.path().join("invoice.pdf.p7s"),
    );
    std::fs::write(&content, &invoice).unwrap();
    std::fs::write(&p7s, b64(&signature["bytes"])).unwrap();
    // exactly what a recipient runs
    openssl(
        &[
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-content",
            content.to_str().unwrap(),
            "-in",
            p7s.to_str().unwrap(),
            "-CAfile",
            pki.ca().to_str().unwrap(),
            "-out",
            dir.path().join("verified").to_str().unwrap(),
        ],
        b"",
    );
    let printed = String::from_utf8(openssl(
        &[
            "cms",
            "-cmsout",
            "-print",
            "-inform",
            "DER",
            "-in",
            p7s.to_str().unwrap(),
        ],
        b"",
    ))
    .unwrap();
    assert!(
        printed.contains("object: id-smime-aa-signingCertificateV2"),
        "{printed}"
    );
    assert!(
        crate::auth::logged_symbols(&gw, "accounting@example.test").contains("ATTACHMENT_SIGNED"),
        "{}",
        gw.log()
    );
}

#[tokio::test]
async fn archive_to_an_address_delivers_a_journal_copy() {
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        &format!(
            "outbound_smarthost = \"{}\"\n\
             [[rules]]\nname = \"journal\"\nwhen = {{ direction = \"outbound\" }}\n\
             actions = {{ archive = {{ to = \"journal@archive.test\" }} }}\n",
            sink.addr
        ),
    );
    let message = crate::harness::message(
        "alice@example.test",
        "bob@partner.test",
        "journaled@example.test",
        "for the record",
    );
    let r = gw
        .internal_client()
        .await
        .send_message("alice@example.test", &["bob@partner.test"], &message)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 2).await, "{}", gw.log());
    let mut rcpts: Vec<Vec<String>> = sink.all().into_iter().map(|m| m.rcpts).collect();
    rcpts.sort();
    assert_eq!(rcpts, [["bob@partner.test"], ["journal@archive.test"]]);
    for m in sink.all() {
        assert_eq!(m.message_id().as_deref(), Some("journaled@example.test"));
        assert!(m.data.contains("for the record"));
    }
}

#[tokio::test]
async fn archive_to_a_directory_writes_the_file_before_the_250() {
    let sink = Sink::start().await;
    let archive = tempfile::tempdir().unwrap();
    let gw = Gateway::start(
        sink.addr,
        &format!(
            "[[rules]]\nname = \"journal\"\nactions = {{ archive = {{ dir = \"{}\" }} }}\n",
            archive.path().display()
        ),
    );
    let message = crate::harness::message(
        "a@ext.test",
        "user@example.test",
        "on-disk@ext.test",
        "kept on disk",
    );
    let r = gw
        .client()
        .await
        .send_message("a@ext.test", &["user@example.test"], &message)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    let id = r
        .text
        .split("queued as ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    // at the 250 the file is there, whole, private
    let path = archive.path().join(format!("{id}.eml"));
    let kept = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(kept.contains("Message-ID: <on-disk@ext.test>") && kept.contains("kept on disk"));
    assert!(kept.starts_with("Received: "), "{kept}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // check-config refuses a directory that is not there, naming the key
    let bad = archive.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[rules]]\nname = \"journal\"\nactions = { archive = { dir = \"/nonexistent/archive\" } }\n",
    )
    .unwrap();
    let out = std::process::Command::new(crate::harness::binary())
        .args(["check-config", "--config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("actions.archive.dir"), "{err}");
}
