//! The message actions in the pipeline: applied in the store phase, before S/MIME protection
//! (which signs and encrypts the changed message) and DKIM; the journal copy taken before
//! encryption.

use std::sync::Arc;

use filters::{Action, Direction, Envelope};

use super::{Pipeline, Resources};
use crate::actions::test_support::{mixed_with_pdf, python_parts};
use crate::certs::test_pki::on_disk::Pki;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::smime::keyring::MemoryKeyring;

fn envelope() -> Envelope {
    Envelope {
        direction: Direction::Outbound,
        client_ip: "10.0.0.5".parse().unwrap(),
        helo: "pc.example.test".into(),
        mail_from: "accounting@example.test".into(),
        rcpt_to: vec!["bob@partner.test".into(), "carol@other.test".into()],
        smtputf8: false,
        body_8bit: false,
        tls: None,
    }
}

const RULES: &str = r#"
[[smime.policy]]
domain = "example.test"
sign = "allow"
encrypt = "allow"

[[rules]]
name = "outbound"
when = { direction = "outbound", sender = "accounting@example.test" }
actions = { disclaimer = { text = "ACME Ltd. This message is confidential." }, sign_attachments = { types = ["pdf"], identity = "accounting@example.test" }, archive = { to = "journal@example.test" } }
"#;

fn has(haystack: &[u8], needle: &str) -> bool {
    memchr::memmem::find(haystack, needle.as_bytes()).is_some()
}

#[tokio::test]
async fn actions_change_the_message_before_it_is_signed_encrypted_and_journaled() {
    let pki = Pki::new("Actions CA");
    let accounting = pki.user("accounting@example.test");
    let bob = pki.user("bob@partner.test");
    let mut k = MemoryKeyring::default();
    k.identities.insert(
        "accounting@example.test".into(),
        vec![(accounting.cert.clone(), accounting.key.clone())],
    );
    k.encryption
        .insert("@partner.test".into(), (bob.cert.clone(), true));
    k.trusted.push(pki.ca.clone());
    let resources = Resources {
        keyring: Some(Arc::new(k)),
        ..Resources::default()
    };
    let c = Config::parse(RULES).unwrap();
    let p = Pipeline::from_config(&c, &resources, Metrics::new());
    let mut message =
        b"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <inv@example.test>\r\n".to_vec();
    message.extend_from_slice(&mixed_with_pdf(
        "Content-Type: text/plain; charset=us-ascii\r\n\r\nThe invoice.",
    ));
    let message = String::from_utf8(message)
        .unwrap()
        .replace("From: a@example.test", "From: accounting@example.test");
    let out = p.run(&envelope(), message.as_bytes()).await;
    assert_eq!(out.action, Action::Accept, "{out:?}");
    let summary = out.card.summary();
    for symbol in ["DISCLAIMER_ADDED", "ATTACHMENT_SIGNED", "ARCHIVED"] {
        assert!(summary.contains(symbol), "{symbol} in {summary}");
    }
    // bob: encrypted; carol: signed in clear; the journal: neither, but with the changes
    assert_eq!(out.copies.len(), 3, "{out:?}");
    let encrypted = out.copies[0].body.as_deref().unwrap();
    assert!(has(encrypted, "application/pkcs7-mime"));
    assert!(!has(encrypted, "confidential"));
    let signed = out.copies[1].body.as_deref().unwrap();
    assert!(
        has(signed, "multipart/signed"),
        "{}",
        String::from_utf8_lossy(signed)
    );
    assert!(has(signed, "ACME Ltd. This message is confidential."));
    assert!(has(signed, "invoice.pdf.p7s"));
    // the S/MIME signature covers the changed message
    let unwrapped =
        crate::smime::engine::unwrap(signed, &[], &pki.store()).expect("a signed message");
    let unwrapped = unwrapped.expect("S/MIME at the top");
    assert_eq!(
        unwrapped.signatures[0].status,
        crate::smime::engine::SignatureStatus::Valid
    );
    let journal = &out.copies[2];
    assert_eq!(
        journal.recipients.as_deref(),
        Some(&["journal@example.test".to_string()][..])
    );
    let body = journal.body.as_deref().unwrap();
    assert!(!has(body, "application/pkcs7-mime") && !has(body, "multipart/signed"));
    let parts = python_parts(body);
    assert!(parts[0].text.as_deref().unwrap().contains("confidential"));
    assert!(
        parts
            .iter()
            .any(|p| p.filename.as_deref() == Some("invoice.pdf.p7s"))
    );

    // No signing identity for the From address: carol's copy stays clear, and is the
    // message as the actions left it, not as received.
    let unsigned = message.replace("From: accounting@example.test", "From: a@example.test");
    let out = p.run(&envelope(), unsigned.as_bytes()).await;
    let clear = out.copies[1].body.as_deref().expect("the changed message");
    assert!(has(clear, "confidential") && has(clear, "invoice.pdf.p7s"));
    assert!(!has(clear, "multipart/signed"));
}

#[tokio::test]
async fn a_dir_archive_is_a_journal_file_and_held_mail_gets_none() {
    let dir = tempfile::tempdir().unwrap();
    let c = Config::parse(&format!(
        "[[rules]]\nname = \"journal\"\nactions = {{ archive = {{ dir = \"{}\" }} }}\n",
        dir.path().display()
    ))
    .unwrap();
    let p = Pipeline::from_config(&c, &Resources::default(), Metrics::new());
    let message = b"From: a@example.test\r\nDate: x\r\nMessage-ID: <1@x>\r\n\r\nhello\r\n";
    let out = p.run(&envelope(), message).await;
    assert_eq!(out.journal.len(), 1, "{out:?}");
    assert_eq!(out.journal[0].dir, dir.path());
    assert_eq!(out.journal[0].body, message);
    assert_eq!(out.copies.len(), 1);

    let c = Config::parse(&format!(
        "[[rules]]\nname = \"hold\"\nactions = {{ quarantine = true, archive = {{ dir = \"{}\" }} }}\n",
        dir.path().display()
    ))
    .unwrap();
    let p = Pipeline::from_config(&c, &Resources::default(), Metrics::new());
    let out = p.run(&envelope(), message).await;
    assert_eq!(out.action, Action::Quarantine);
    assert!(out.journal.is_empty(), "{out:?}");
    // and a directory that is not there is a config error naming the key
    let e = format!(
        "{:#}",
        Config::parse(
            "[[rules]]\nname = \"j\"\nactions = { archive = { dir = \"/nonexistent/journal\" } }\n"
        )
        .unwrap_err()
    );
    assert!(
        e.contains("actions.archive.dir") && e.contains("create the directory"),
        "{e}"
    );
}
