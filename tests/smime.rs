//! S/MIME through the running gateway, with `openssl cms` and `gpgsm` as the independent
//! peers: what they produce (RSA v1.5/OAEP, AES-CBC/GCM, 3DES, detached/opaque, nested)
//! is decrypted, verified and harvested; what the gateway signs and encrypts verifies and
//! decrypts with both. Plus policy refusals, an encrypted virus, and broken input.

use crate::harness::clamd::{Clamd, eicar};
use crate::harness::smime::{
    Gpgsm, Holder, TestPki, base64_body, crlf, find, openssl, signed_parts,
};
use crate::harness::{Gateway, Sink, wait_until};

const TEXT: &str = "The figures for Q3, in confidence: 42.";

/// `[certs]` for the tests: only the test CA trusted, changes seen within a second.
const CERTS: &str = "[certs]\nsystem_roots = false\nreload_secs = 1\n";

fn entity(text: &str) -> Vec<u8> {
    format!("Content-Type: text/plain; charset=us-ascii\r\n\r\n{text}\r\n").into_bytes()
}

fn write(pki: &TestPki, name: &str, data: &[u8]) -> String {
    let p = pki.path(name);
    std::fs::write(&p, data).unwrap();
    p.to_str().unwrap().to_string()
}

/// `openssl cms -sign` (detached multipart/signed unless `-nodetach` is given).
fn cli_sign(pki: &TestPki, by: &Holder, opts: &[&str], content: &[u8]) -> Vec<u8> {
    let input = write(pki, "sign.in", content);
    let mut args = vec![
        "cms",
        "-sign",
        "-binary",
        "-in",
        &input,
        "-signer",
        by.cert.to_str().unwrap(),
        "-inkey",
        by.key.to_str().unwrap(),
    ];
    args.extend_from_slice(opts);
    crlf(&openssl(&args, b""))
}

/// `openssl cms -encrypt` to `to`, with cipher and key-transport options.
fn cli_encrypt(pki: &TestPki, to: &Holder, opts: &[&str], content: &[u8]) -> Vec<u8> {
    let input = write(pki, "enc.in", content);
    let mut args = vec!["cms", "-encrypt", "-binary", "-in", &input];
    args.extend_from_slice(opts);
    args.extend_from_slice(&["-recip", to.cert.to_str().unwrap()]);
    crlf(&openssl(&args, b""))
}

fn oaep_encrypt(pki: &TestPki, to: &Holder, content: &[u8]) -> Vec<u8> {
    let input = write(pki, "enc.in", content);
    crlf(&openssl(
        &[
            "cms",
            "-encrypt",
            "-binary",
            "-aes-256-cbc",
            "-in",
            &input,
            "-recip",
            to.cert.to_str().unwrap(),
            "-keyopt",
            "rsa_padding_mode:oaep",
        ],
        b"",
    ))
}

/// A whole message: envelope-level header fields around an S/MIME entity.
fn mail(from: &str, to: &str, id: &str, smime: &[u8]) -> String {
    format!(
        "From: <{from}>\r\nTo: <{to}>\r\nSubject: figures {id}\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{id}>\r\n{}",
        String::from_utf8_lossy(smime)
    )
}

async fn send(gw: &Gateway, from: &str, to: &str, message: &str) -> crate::harness::client::Reply {
    gw.client().await.send_message(from, &[to], message).await
}

/// `certs ARGS` must succeed.
fn certs(gw: &Gateway, args: &[&str]) -> String {
    let mut all = vec!["certs"];
    all.extend_from_slice(args);
    let (code, out, err) = gw.cli(&all);
    assert_eq!(code, 0, "certs {args:?}: {err}");
    out
}

/// `certs import` of a holder's PKCS#12 (certificate and private key).
fn import_identity(gw: &Gateway, holder: &Holder) {
    certs(
        gw,
        &[
            "import",
            holder.p12.to_str().unwrap(),
            "--password-file",
            holder.password_file.to_str().unwrap(),
        ],
    );
}

/// Give the running gateway time to see what the CLI changed (reload_secs = 1).
async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
}

fn delivered_for(sink: &Sink, id: &str) -> String {
    sink.all()
        .into_iter()
        .find(|m| m.message_id().as_deref() == Some(id))
        .unwrap_or_else(|| panic!("{id} was not delivered"))
        .data
}

#[tokio::test]
async fn what_openssl_and_gpgsm_produce_is_decrypted_verified_and_harvested() {
    let pki = TestPki::new("Interop CA");
    let bob = pki.holder("bob@example.test");
    let alice = pki.holder("alice@partner.test");
    let dora = pki.holder("dora@gpgsm.test");
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        &format!("{CERTS}[smime]\nkeep_signature = false\n"),
    );
    import_identity(&gw, &bob);
    certs(&gw, &["trust-ca", pki.ca().to_str().unwrap()]);
    settle().await;

    let plain = entity(TEXT);
    let detached = cli_sign(&pki, &alice, &[], &plain);
    let opaque_sha1 = cli_sign(&pki, &alice, &["-nodetach", "-md", "sha1"], &plain);
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("signed only (detached, SHA-256)", detached.clone(), false),
        ("signed only (opaque, SHA-1)", opaque_sha1.clone(), false),
        (
            "detached + RSA v1.5 + AES-128-CBC",
            cli_encrypt(&pki, &bob, &["-aes-128-cbc"], &detached),
            true,
        ),
        (
            "opaque SHA-1 + RSA-OAEP + AES-256-CBC",
            oaep_encrypt(&pki, &bob, &opaque_sha1),
            true,
        ),
        (
            "detached + AES-256-GCM (authEnveloped)",
            cli_encrypt(&pki, &bob, &["-aes-256-gcm"], &detached),
            true,
        ),
        (
            "3DES, unsigned (old mail)",
            cli_encrypt(&pki, &bob, &["-des3"], &plain),
            true,
        ),
    ];
    for (i, (what, smime, encrypted)) in cases.iter().enumerate() {
        let id = format!("in{i}@partner.test");
        let r = send(
            &gw,
            "alice@partner.test",
            "bob@example.test",
            &mail("alice@partner.test", "bob@example.test", &id, smime),
        )
        .await;
        assert_eq!(r.code, 250, "{what}: {}", r.text);
        assert!(
            wait_until(10, || sink.count() > i).await,
            "{what}: not delivered"
        );
        let got = delivered_for(&sink, &id);
        assert!(got.contains(TEXT), "{what}: plaintext delivered:\n{got}");
        assert!(
            !got.contains("pkcs7"),
            "{what}: S/MIME stripped (keep_signature = false)"
        );
        let expect = if *encrypted {
            "X-Portcullis-SMIME: decrypted; signed by <alice@partner.test>, chain trusted"
        } else {
            "X-Portcullis-SMIME: signed by <alice@partner.test>, chain trusted"
        };
        if what.contains("unsigned") {
            assert!(
                got.contains("X-Portcullis-SMIME: decrypted\r\n"),
                "{what}:\n{got}"
            );
        } else {
            assert!(got.contains(expect), "{what}:\n{got}");
        }
        assert!(
            got.contains("Subject: figures"),
            "{what}: outer headers kept"
        );
    }

    // gpgsm as the sender: a detached signature by dora, then encrypted to bob.
    let g = Gpgsm::new(&pki.ca());
    g.import_p12(&dora);
    g.ok(&["--import", bob.cert.to_str().unwrap()], b"");
    let inner = entity("signed by gpgsm");
    // (the passphrase comes on stdin, so the data is a file)
    let content_file = write(&pki, "gpgsm-content", &inner);
    let sig = g.ok(
        &[
            "--passphrase-fd",
            "0",
            "--detach-sign",
            "--local-user",
            "dora@gpgsm.test",
            &content_file,
        ],
        format!("{}\n", crate::harness::smime::PASSWORD).as_bytes(),
    );
    let signed_entity = format!(
        "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"gpgsmb\"\r\n\r\n\
         --gpgsmb\r\n{}\r\n--gpgsmb\r\nContent-Type: application/pkcs7-signature; name=smime.p7s\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n--gpgsmb--\r\n",
        String::from_utf8_lossy(&inner),
        openssl(&["base64", "-e"], &sig)
            .split(|&c| c == b'\n')
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect::<Vec<_>>()
            .join("\r\n")
            .trim_end()
    );
    let entity_file = write(&pki, "gpgsm-signed", signed_entity.as_bytes());
    let enc = g.ok(
        &["--encrypt", "--recipient", "bob@example.test", &entity_file],
        b"",
    );
    let p7m = format!(
        "MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{}\r\n",
        String::from_utf8_lossy(&openssl(&["base64", "-e"], &enc))
            .replace('\n', "\r\n")
            .trim_end()
    );
    let r = send(
        &gw,
        "dora@gpgsm.test",
        "bob@example.test",
        &mail(
            "dora@gpgsm.test",
            "bob@example.test",
            "gpgsm@gpgsm.test",
            p7m.as_bytes(),
        ),
    )
    .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() > cases.len()).await);
    let got = delivered_for(&sink, "gpgsm@gpgsm.test");
    assert!(got.contains("signed by gpgsm"), "{got}");
    assert!(
        got.contains("X-Portcullis-SMIME: decrypted; signed by <dora@gpgsm.test>, chain trusted"),
        "{got}"
    );

    // Both signers were harvested from the accepted mail.
    let listing = certs(&gw, &["list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&listing).unwrap();
    for who in ["alice@partner.test", "dora@gpgsm.test"] {
        let domain = who.split('@').nth(1).unwrap();
        let d = v["domains"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["domain"] == domain)
            .unwrap_or_else(|| panic!("{who} not harvested: {listing}"));
        let c = &d["certs"][0];
        assert_eq!(c["source"], "harvested", "{c}");
        assert!(
            c["message_id"].as_str().is_some_and(|m| !m.is_empty()),
            "{c}"
        );
        assert_eq!(c["usable_for_encryption"], true, "{c}");
    }
}

#[tokio::test]
async fn what_the_gateway_signs_and_encrypts_verifies_and_decrypts_with_openssl_and_gpgsm() {
    let pki = TestPki::new("Interop CA");
    let alice = pki.holder("alice@example.test");
    let bob = pki.holder("bob@partner.test");
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        &format!(
            "outbound_smarthost = \"{}\"\n{CERTS}\
             [[smime.policy]]\ndomain = \"example.test\"\nsign = \"allow\"\nencrypt = \"allow\"\n",
            sink.addr
        ),
    );
    import_identity(&gw, &alice);
    certs(&gw, &["import", bob.cert.to_str().unwrap()]);
    certs(&gw, &["trust-ca", pki.ca().to_str().unwrap()]);
    settle().await;

    let message = format!(
        "From: Alice <alice@example.test>\r\nTo: <bob@partner.test>, <carol@elsewhere.test>\r\n\
         Subject: offer\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <out1@example.test>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{TEXT}\r\n"
    );
    let mut c = gw.internal_client().await;
    let r = c
        .send_message(
            "alice@example.test",
            &["bob@partner.test", "carol@elsewhere.test"],
            &message,
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        wait_until(10, || sink.count() >= 2).await,
        "two copies delivered"
    );
    let all = sink.all();
    let for_bob = all
        .iter()
        .find(|m| m.rcpts == ["bob@partner.test"])
        .expect("a copy for bob alone");
    let for_carol = all
        .iter()
        .find(|m| m.rcpts == ["carol@elsewhere.test"])
        .expect("a copy for carol alone");
    let bob_msg = for_bob.data.as_bytes();
    assert!(!for_bob.data.contains(TEXT), "encrypted for bob");
    assert!(for_bob.data.contains("Subject: offer"));
    // No capabilities known for bob: AES-256-CBC, which every client reads.
    assert!(
        for_bob.data.contains("smime-type=enveloped-data"),
        "{}",
        for_bob.data
    );

    // openssl: decrypt (S/MIME parsing of the whole message), then verify the signature.
    let signed = openssl(
        &[
            "cms",
            "-decrypt",
            "-recip",
            bob.cert.to_str().unwrap(),
            "-inkey",
            bob.key.to_str().unwrap(),
        ],
        bob_msg,
    );
    let verified = openssl(
        &["cms", "-verify", "-CAfile", pki.ca().to_str().unwrap()],
        &signed,
    );
    assert!(String::from_utf8_lossy(&verified).contains(TEXT));

    // gpgsm: decrypt the p7m body, verify the detached signature inside.
    let g = Gpgsm::new(&pki.ca());
    g.import_p12(&bob);
    let signed = crlf(&g.decrypt(&base64_body(bob_msg)));
    let (content, sig) = signed_parts(&signed);
    assert!(find(&content, TEXT.as_bytes()).is_some());
    let (ok, status) = g.verify_detached(&sig, &content);
    assert!(ok && status.contains("Good signature"), "{status}");
    assert!(status.contains("alice@example.test"), "{status}");

    // carol has no certificate and policy allows clear: signed only, verifies with both.
    let carol_msg = for_carol.data.as_bytes();
    assert!(for_carol.data.contains("multipart/signed"));
    let verified = openssl(
        &["cms", "-verify", "-CAfile", pki.ca().to_str().unwrap()],
        carol_msg,
    );
    assert!(String::from_utf8_lossy(&verified).contains(TEXT));
    let (content, sig) = signed_parts(carol_msg);
    let (ok, status) = g.verify_detached(&sig, &content);
    assert!(ok && status.contains("Good signature"), "{status}");
    // a changed byte: both peers refuse
    let mut tampered = content.clone();
    let i = find(&tampered, b"42").unwrap();
    tampered[i] = b'7';
    assert!(!g.verify_detached(&sig, &tampered).0);
}

#[tokio::test]
async fn required_encryption_refuses_the_recipient_at_rcpt_and_user_protected_mail_is_blocked() {
    let pki = TestPki::new("Interop CA");
    let alice = pki.holder("alice@example.test");
    let bob = pki.holder("bob@partner.test");
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        &format!(
            "outbound_smarthost = \"{}\"\n{CERTS}[smime]\nblock_user_protected = true\n\
             [[smime.policy]]\nuser = \"boss@example.test\"\nencrypt = \"require\"\n",
            sink.addr
        ),
    );
    certs(&gw, &["import", bob.cert.to_str().unwrap()]);
    certs(&gw, &["trust-ca", pki.ca().to_str().unwrap()]);
    settle().await;
    let mut c = gw.internal_client().await;
    c.expect(220).await;
    c.cmd("EHLO pc.example.test", 250).await;
    c.cmd("MAIL FROM:<boss@example.test>", 250).await;
    c.cmd("RCPT TO:<bob@partner.test>", 250).await;
    let r = c.cmd("RCPT TO:<carol@elsewhere.test>", 550).await;
    assert!(
        r.text.contains("5.7.1") && r.text.contains("certificate"),
        "{}",
        r.text
    );
    let r = c
        .data("From: <boss@example.test>\r\nTo: <bob@partner.test>\r\nSubject: s\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <boss1@example.test>\r\n\r\nsecret plans\r\n")
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 1).await);
    let got = &sink.all()[0];
    assert_eq!(got.rcpts, ["bob@partner.test"]);
    assert!(!got.data.contains("secret plans"), "encrypted, never clear");
    // someone without the policy may still write to carol
    c.cmd("MAIL FROM:<ann@example.test>", 250).await;
    c.cmd("RCPT TO:<carol@elsewhere.test>", 250).await;
    c.cmd("RSET", 250).await;

    // mail the user signed already: refused with the reason
    let signed = cli_sign(&pki, &alice, &[], &entity("mine"));
    let r = gw
        .internal_client()
        .await
        .send_message(
            "alice@example.test",
            &["bob@partner.test"],
            &mail(
                "alice@example.test",
                "bob@partner.test",
                "own@example.test",
                &signed,
            ),
        )
        .await;
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(r.text.contains("already encrypted or signed"), "{}", r.text);
}

#[tokio::test]
async fn an_encrypted_virus_is_rejected_in_the_dialog() {
    let pki = TestPki::new("Interop CA");
    let bob = pki.holder("bob@example.test");
    let clamd = Clamd::start();
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, &format!("{CERTS}{}", clamd.config(false)));
    import_identity(&gw, &bob);
    settle().await;
    let infected = format!(
        "Content-Type: multipart/mixed; boundary=\"v\"\r\n\r\n--v\r\nContent-Type: text/plain\r\n\r\nSee attachment.\r\n\
         --v\r\nContent-Type: application/octet-stream; name=\"eicar.com\"\r\nContent-Disposition: attachment; filename=\"eicar.com\"\r\n\r\n{}\r\n--v--\r\n",
        eicar()
    );
    let enc = cli_encrypt(&pki, &bob, &["-aes-256-cbc"], infected.as_bytes());
    // the ciphertext alone is clean to clamd: only decryption reveals the virus
    assert!(find(&enc, b"EICAR").is_none());
    let r = send(
        &gw,
        "mallory@evil.test",
        "bob@example.test",
        &mail(
            "mallory@evil.test",
            "bob@example.test",
            "virus@evil.test",
            &enc,
        ),
    )
    .await;
    assert_eq!(r.code, 554, "{}", r.text);
    assert!(r.text.contains("virus"), "{}", r.text);
    // a clean encrypted message on the same gateway goes through
    let enc = cli_encrypt(&pki, &bob, &["-aes-256-cbc"], &entity("clean"));
    let r = send(
        &gw,
        "alice@partner.test",
        "bob@example.test",
        &mail(
            "alice@partner.test",
            "bob@example.test",
            "clean@partner.test",
            &enc,
        ),
    )
    .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 1).await);
    assert!(sink.all()[0].data.contains("clean"));
}

#[tokio::test]
async fn an_encrypted_spam_is_judged_on_its_plaintext_by_bayes() {
    use crate::bayes::{generated, train_generated};
    let pki = TestPki::new("Interop CA");
    let bob = pki.holder("bob@example.test");
    // the next hop is down: accepted mail stays in the queue, where its verdict shows
    let gw = Gateway::start(
        Sink::dead_addr(),
        &format!("{CERTS}[bayes]\nmin_ham = 5\nmin_spam = 5\nreload_secs = 1\n"),
    );
    import_identity(&gw, &bob);
    train_generated(&gw, 6, 6);
    assert!(
        wait_until(10, || gw.log().contains("spam=6")).await,
        "no reload:\n{}",
        gw.log()
    );
    settle().await;
    // the body of a spam like the trained ones, as the encrypted entity
    let spam = generated(300, true);
    let body = spam.split_once("\r\n\r\n").unwrap().1;
    let inner = format!("Content-Type: text/plain; charset=utf-8\r\n\r\n{body}");
    let enc = cli_encrypt(&pki, &bob, &["-aes-256-cbc"], inner.as_bytes());
    assert!(find(&enc, b"cheap").is_none() && find(&enc, b"casino").is_none());
    let r = send(
        &gw,
        "promo@deals.test",
        "bob@example.test",
        &mail(
            "promo@deals.test",
            "bob@example.test",
            "spam@deals.test",
            &enc,
        ),
    )
    .await;
    // quarantined (250, held) or rejected: either way judged on the plaintext
    if r.code == 250 {
        let q = gw.stored_json();
        assert_eq!(q.len(), 1, "{q:?}");
        let syms = q[0]["symbols"].as_str().unwrap();
        assert!(
            syms.contains("SMIME_DECRYPTED") && syms.contains("BAYES_SPAM"),
            "{syms}"
        );
        assert_eq!(q[0]["state"], "held", "{q:?}");
    } else {
        assert_eq!(r.code, 550, "{}", r.text);
        assert!(gw.log().contains("BAYES_SPAM"), "{}", gw.log());
    }
}

#[tokio::test]
async fn broken_or_foreign_smime_gets_its_symbol_and_the_configured_action() {
    let pki = TestPki::new("Interop CA");
    let bob = pki.holder("bob@example.test");
    let eve = pki.holder("eve@example.test");
    let old = pki.expired_holder("old@partner.test");
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        &format!("{CERTS}[smime]\nundecryptable_action = \"quarantine\"\n"),
    );
    import_identity(&gw, &bob);
    certs(&gw, &["trust-ca", pki.ca().to_str().unwrap()]);
    settle().await;
    let good = cli_encrypt(&pki, &bob, &["-aes-256-cbc"], &entity("x"));
    let (head, body) = good.split_at(find(&good, b"\r\n\r\n").unwrap() + 4);
    let truncated = [head, &body[..body.len() / 2]].concat();
    let garbled: Vec<u8> = [
        head,
        &body
            .iter()
            .map(|&c| if c == b'A' { b'z' } else { c })
            .collect::<Vec<u8>>(),
    ]
    .concat();
    let foreign = cli_encrypt(&pki, &eve, &["-aes-256-cbc"], &entity("for eve"));
    for (what, smime, symbol) in [
        ("truncated", truncated.clone(), "SMIME_MALFORMED"),
        ("garbled", garbled, "SMIME_"),
        ("for someone else", foreign, "SMIME_UNDECRYPTABLE"),
    ] {
        let id = format!("{}@partner.test", what.replace(' ', "-"));
        let r = send(
            &gw,
            "alice@partner.test",
            "bob@example.test",
            &mail("alice@partner.test", "bob@example.test", &id, &smime),
        )
        .await;
        assert_eq!(r.code, 250, "{what}: quarantined, not refused: {}", r.text);
        let q = gw.stored_json();
        let held = q
            .iter()
            .find(|m| m["symbols"].as_str().unwrap_or("").contains(symbol) && m["state"] == "held");
        assert!(held.is_some(), "{what}: held with {symbol}: {q:?}");
        let (code, out, err) = gw.cli(&[
            "quarantine",
            "delete",
            held.unwrap()["id"].as_str().unwrap(),
        ]);
        assert_eq!(code, 0, "{out}{err}");
    }
    // an expired signer: delivered, marked, not harvested
    let signed = cli_sign(&pki, &old, &[], &entity("old news"));
    let r = send(
        &gw,
        "old@partner.test",
        "bob@example.test",
        &mail(
            "old@partner.test",
            "bob@example.test",
            "old@partner.test",
            &signed,
        ),
    )
    .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 1).await);
    let got = &sink.all()[0].data;
    assert!(
        got.contains("signed by <old@partner.test>, chain NOT trusted (certificate has expired)"),
        "{got}"
    );
    let listing = certs(&gw, &["list", "--json"]);
    assert!(!listing.contains("old@partner.test"), "{listing}");
    assert!(gw.log().contains("SMIME_SIGNED_UNTRUSTED_CHAIN"));

    // the same broken input with undecryptable_action = "reject": 550 in the dialog
    let gw2 = Gateway::start(
        sink.addr,
        &format!("{CERTS}[smime]\nundecryptable_action = \"reject\"\n"),
    );
    let r = send(
        &gw2,
        "alice@partner.test",
        "bob@example.test",
        &mail(
            "alice@partner.test",
            "bob@example.test",
            "t2@partner.test",
            &truncated,
        ),
    )
    .await;
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(gw2.log().contains("SMIME_MALFORMED"));
}

/// `application/pkcs7-mime` around a DER CMS blob, as a client sends it.
fn pkcs7_mime(smime_type: &str, der: &[u8]) -> Vec<u8> {
    let b64 = openssl(&["base64", "-e"], der);
    crlf(
        &[
            format!(
                "MIME-Version: 1.0\r\nContent-Type: application/pkcs7-mime; smime-type={smime_type}; name=\"smime.p7m\"\r\n\
                 Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7m\"\r\n\r\n"
            )
            .as_bytes(),
            &b64,
        ]
        .concat(),
    )
}

/// The serial number of a certificate file, as `openssl x509 -serial` prints it (hex).
fn serial_of(cert: &std::path::Path) -> String {
    let out = openssl(
        &["x509", "-noout", "-serial", "-in", cert.to_str().unwrap()],
        b"",
    );
    String::from_utf8_lossy(&out)
        .trim()
        .trim_start_matches("serial=")
        .to_string()
}

/// A self-made certificate for `email` whose issuer differs from the real CA's only in
/// letter case and whose serial number is `serial` (hex): what a forger makes to look like
/// a partner's certificate. Returns (certificate, key) paths.
fn look_alike(pki: &TestPki, name: &str, email: &str, serial: &str) -> (String, String) {
    let p = |f: &str| pki.path(f).to_str().unwrap().to_string();
    let (cert, key) = (p(&format!("{name}.pem")), p(&format!("{name}.key")));
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "30",
            "-set_serial",
            &format!("0x{serial}"),
            // the CA's name is "/O=Portcullis Interop/CN=Partner CA"
            "-subj",
            "/O=portcullis interop/CN=partner ca",
            "-addext",
            "basicConstraints=CA:FALSE",
            "-addext",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "-addext",
            "extendedKeyUsage=emailProtection",
            "-addext",
            &format!("subjectAltName=email:{email}"),
        ],
        b"",
    );
    (cert, key)
}

/// The forgery: a signature made with the forger's key (RSA-PSS, or PKCS#1 v1.5), the
/// look-alike certificate listed first and the partner's real one after it, and the signer
/// identifier naming the real certificate byte for byte (the identifier is not signed).
fn forged_signed_data(pki: &TestPki, partner: &Holder, pss: bool) -> Vec<u8> {
    let (cert, key) = look_alike(pki, "forger", &partner.email, &serial_of(&partner.cert));
    let input = write(pki, "forged.in", &entity("Pay the invoice to account 666."));
    let mut args = vec![
        "cms",
        "-sign",
        "-binary",
        "-nodetach",
        "-outform",
        "DER",
        "-in",
        &input,
        "-signer",
        &cert,
        "-inkey",
        &key,
        "-certfile",
        partner.cert.to_str().unwrap(),
    ];
    if pss {
        args.extend_from_slice(&["-keyopt", "rsa_padding_mode:pss"]);
    }
    let mut der = openssl(&args, b"");
    // The look-alike first in the certificate set (OpenSSL writes the set sorted).
    let der_of = |pem: &str| openssl(&["x509", "-outform", "DER", "-in", pem], b"");
    let (forger, real) = (der_of(&cert), der_of(partner.cert.to_str().unwrap()));
    let at = |c: &[u8]| find(&der, c).expect("both certificates in the signed data");
    let start = at(&forger).min(at(&real));
    let both = [forger.as_slice(), real.as_slice()].concat();
    der[start..start + both.len()].copy_from_slice(&both);
    // The signer identifier comes after the certificates: its issuer is the last
    // occurrence of the look-alike names. Same length, so no length changes.
    for (from, to) in [
        (&b"partner ca"[..], &b"Partner CA"[..]),
        (b"portcullis interop", b"Portcullis Interop"),
    ] {
        let at = der
            .windows(from.len())
            .rposition(|w| w == from)
            .expect("the signer identifier names the look-alike issuer");
        der[at..at + from.len()].copy_from_slice(to);
    }
    der
}

/// A signature by a forger's key, naming a partner's real certificate (issued by a CA we
/// trust) through a look-alike certificate listed first, is never reported as the partner's
/// trusted signature: not with RSA-PSS (which once went to a verifier that matched the
/// look-alike by its case-blind name comparison, while the chain and address came from the
/// real certificate), not with PKCS#1 v1.5. Nothing is harvested from it, the From domain is
/// not authenticated by it; a genuine RSA-PSS signature by the partner still verifies.
#[tokio::test]
async fn a_forged_signature_through_a_look_alike_certificate_is_never_the_partners() {
    let pki = TestPki::new("Partner CA");
    let alice = pki.holder("alice@partner.test");
    let bob = pki.holder("bob@example.test");
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        &format!("{CERTS}[smime]\nkeep_signature = false\n"),
    );
    import_identity(&gw, &bob);
    certs(&gw, &["trust-ca", pki.ca().to_str().unwrap()]);
    settle().await;

    let cases = [
        (
            "RSA-PSS forgery",
            pkcs7_mime("signed-data", &forged_signed_data(&pki, &alice, true)),
        ),
        (
            "PKCS#1 v1.5 forgery",
            pkcs7_mime("signed-data", &forged_signed_data(&pki, &alice, false)),
        ),
        (
            "RSA-PSS forgery, encrypted to bob",
            cli_encrypt(
                &pki,
                &bob,
                &["-aes-256-cbc"],
                &pkcs7_mime("signed-data", &forged_signed_data(&pki, &alice, true)),
            ),
        ),
    ];
    for (i, (what, smime)) in cases.iter().enumerate() {
        let id = format!("forged{i}@partner.test");
        let r = send(
            &gw,
            "alice@partner.test",
            "bob@example.test",
            &mail("alice@partner.test", "bob@example.test", &id, smime),
        )
        .await;
        assert_eq!(r.code, 250, "{what}: {}", r.text);
        assert!(
            wait_until(10, || sink.count() > i).await,
            "{what}: not delivered"
        );
        let got = delivered_for(&sink, &id);
        let result = got
            .lines()
            .find(|l| l.starts_with("X-Portcullis-SMIME:"))
            .unwrap_or_else(|| panic!("{what}: no result header:\n{got}"));
        eprintln!("{what}: {result}");
        assert!(!result.contains("chain trusted"), "{what}: {result}");
        assert!(result.contains("signature INVALID"), "{what}: {result}");
    }
    let log = gw.log();
    assert!(!log.contains("SMIME_SIGNED_VALID"), "{log}");
    let listing = certs(&gw, &["list", "--json"]);
    assert!(
        !listing.contains("alice@partner.test"),
        "harvested: {listing}"
    );

    // The partner's own RSA-PSS signature verifies, on the gateway's own path.
    let genuine = cli_sign(
        &pki,
        &alice,
        &["-keyopt", "rsa_padding_mode:pss"],
        &entity(TEXT),
    );
    let id = "genuine-pss@partner.test";
    let r = send(
        &gw,
        "alice@partner.test",
        "bob@example.test",
        &mail("alice@partner.test", "bob@example.test", id, &genuine),
    )
    .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() > cases.len()).await);
    let got = delivered_for(&sink, id);
    assert!(
        got.contains("X-Portcullis-SMIME: signed by <alice@partner.test>, chain trusted"),
        "{got}"
    );
}

/// What the gateway delivered to `rcpt` of message `id`.
fn delivered_to(sink: &Sink, id: &str, rcpt: &str) -> String {
    sink.all()
        .into_iter()
        .find(|m| m.message_id().as_deref() == Some(id) && m.rcpts.iter().any(|r| r == rcpt))
        .unwrap_or_else(|| panic!("{id} was not delivered to {rcpt}"))
        .data
}

/// Ciphertext for one local user, sent again with another local mailbox as a co-recipient:
/// only the user whose key opens it gets the plaintext; the co-recipient gets the message
/// as it was sent (still encrypted). Mail encrypted to both is plaintext for both.
#[tokio::test]
async fn decrypted_plaintext_goes_only_to_the_recipients_whose_key_opened_it() {
    let pki = TestPki::new("Interop CA");
    let bob = pki.holder("bob@example.test");
    let dave = pki.holder("dave@example.test");
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        &format!("{CERTS}[smime]\nkeep_signature = false\n"),
    );
    import_identity(&gw, &bob);
    import_identity(&gw, &dave);
    settle().await;

    let for_bob = cli_encrypt(&pki, &bob, &["-aes-256-cbc"], &entity(TEXT));
    let r = gw
        .client()
        .await
        .send_message(
            "mallory@elsewhere.test",
            &["bob@example.test", "carol@example.test"],
            &mail(
                "mallory@elsewhere.test",
                "bob@example.test",
                "resent@elsewhere.test",
                &for_bob,
            ),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        wait_until(10, || sink.count() >= 2).await,
        "two copies delivered"
    );
    let to_bob = delivered_to(&sink, "resent@elsewhere.test", "bob@example.test");
    let to_carol = delivered_to(&sink, "resent@elsewhere.test", "carol@example.test");
    assert!(to_bob.contains(TEXT), "bob reads it:\n{to_bob}");
    assert!(to_bob.contains("X-Portcullis-SMIME: decrypted"), "{to_bob}");
    assert!(
        !to_carol.contains(TEXT),
        "carol got the plaintext:\n{to_carol}"
    );
    assert!(to_carol.contains("application/pkcs7-mime"), "{to_carol}");
    assert!(
        !to_carol.contains("X-Portcullis-SMIME: decrypted"),
        "{to_carol}"
    );
    assert!(
        to_carol.contains("encrypted for another recipient"),
        "{to_carol}"
    );

    // encrypted to bob and dave: both read it
    let input = write(&pki, "both.in", &entity(TEXT));
    let both = crlf(&openssl(
        &[
            "cms",
            "-encrypt",
            "-binary",
            "-aes-256-cbc",
            "-in",
            &input,
            "-recip",
            bob.cert.to_str().unwrap(),
            "-recip",
            dave.cert.to_str().unwrap(),
        ],
        b"",
    ));
    let r = gw
        .client()
        .await
        .send_message(
            "alice@partner.test",
            &["bob@example.test", "dave@example.test"],
            &mail(
                "alice@partner.test",
                "bob@example.test",
                "both@partner.test",
                &both,
            ),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() >= 3).await);
    let got = sink
        .all()
        .into_iter()
        .filter(|m| m.message_id().as_deref() == Some("both@partner.test"))
        .collect::<Vec<_>>();
    let rcpts: Vec<&String> = got.iter().flat_map(|m| &m.rcpts).collect();
    assert_eq!(rcpts.len(), 2, "{rcpts:?}");
    for m in &got {
        assert!(m.data.contains(TEXT), "{:?}:\n{}", m.rcpts, m.data);
    }
}

/// Content without a MIME header block (`openssl cms -encrypt` without `-text`) becomes the
/// body of a text/plain entity, never part of the header; a certs-only message (RFC 8551
/// §3.6) is accepted even with `undecryptable_action = "reject"`, delivered unchanged and
/// not harvested; a signed receipt (content that is not a MIME entity) stays as sent
/// instead of being spliced into the mail as binary.
#[tokio::test]
async fn headerless_content_certs_only_and_signed_receipts_are_delivered_as_mail() {
    let pki = TestPki::new("Interop CA");
    let bob = pki.holder("bob@example.test");
    let alice = pki.holder("alice@partner.test");
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        &format!("{CERTS}[smime]\nundecryptable_action = \"reject\"\nkeep_signature = false\n"),
    );
    import_identity(&gw, &bob);
    certs(&gw, &["trust-ca", pki.ca().to_str().unwrap()]);
    settle().await;
    let send_it = |id: &'static str, smime: Vec<u8>| {
        let gw = &gw;
        async move {
            let r = send(
                gw,
                "alice@partner.test",
                "bob@example.test",
                &mail("alice@partner.test", "bob@example.test", id, &smime),
            )
            .await;
            assert_eq!(r.code, 250, "{id}: {}", r.text);
        }
    };

    // 1. header-less plaintext
    let input = write(&pki, "bare.in", b"Hello world!\nSecond line.\n");
    let bare = crlf(&openssl(
        &[
            "cms",
            "-encrypt",
            "-in",
            &input,
            "-recip",
            bob.cert.to_str().unwrap(),
        ],
        b"",
    ));
    send_it("bare@partner.test", bare).await;
    assert!(wait_until(10, || sink.count() == 1).await);
    let got = delivered_for(&sink, "bare@partner.test");
    let (head, body) = got.split_once("\r\n\r\n").expect("a header block");
    assert!(
        !head.contains("Hello world"),
        "content in the header:\n{got}"
    );
    assert!(body.starts_with("Hello world!\r\nSecond line."), "{got}");
    assert!(head.contains("Content-Type: text/plain"), "{got}");
    assert!(head.contains("X-Portcullis-SMIME: decrypted"), "{got}");

    // 2. certs-only
    let der = openssl(
        &[
            "crl2pkcs7",
            "-nocrl",
            "-certfile",
            alice.cert.to_str().unwrap(),
            "-outform",
            "DER",
        ],
        b"",
    );
    let certs_only = pkcs7_mime("certs-only", &der);
    let sent_body =
        String::from_utf8_lossy(crate::harness::smime::split(&certs_only).1).into_owned();
    send_it("certs@partner.test", certs_only).await;
    assert!(wait_until(10, || sink.count() == 2).await);
    let got = delivered_for(&sink, "certs@partner.test");
    assert!(got.contains("smime-type=certs-only"), "{got}");
    assert!(got.ends_with(&sent_body), "delivered unchanged:\n{got}");
    assert!(
        got.contains("X-Portcullis-SMIME: certificates only"),
        "{got}"
    );
    let listing = certs(&gw, &["list", "--json"]);
    assert!(
        !listing.contains("alice@partner.test"),
        "harvested: {listing}"
    );

    // 3. a signed receipt: binary content of type id-ct-receipt
    let receipt_der: &[u8] = &[
        0x30, 0x0b, 0x02, 0x01, 0x01, 0x06, 0x02, 0x2a, 0x03, 0x04, 0x02, 0xff, 0x00,
    ];
    let input = write(&pki, "receipt.der", receipt_der);
    let receipt = crlf(&openssl(
        &[
            "cms",
            "-sign",
            "-binary",
            "-nodetach",
            "-econtent_type",
            "1.2.840.113549.1.9.16.1.1",
            "-in",
            &input,
            "-signer",
            alice.cert.to_str().unwrap(),
            "-inkey",
            alice.key.to_str().unwrap(),
        ],
        b"",
    ));
    send_it("receipt@partner.test", receipt).await;
    assert!(wait_until(10, || sink.count() == 3).await);
    let got = delivered_for(&sink, "receipt@partner.test");
    assert!(
        got.contains("application/pkcs7-mime"),
        "left as sent:\n{got}"
    );
    assert!(got.contains("a signed receipt"), "{got}");
    assert!(
        got.bytes()
            .all(|b| b == b'\r' || b == b'\n' || b == b'\t' || (32..127).contains(&b)),
        "binary in the mail:\n{got:?}"
    );
}

/// A signature with more signer infos than `[smime] max_signers` is malformed (here:
/// refused, as `undecryptable_action = "reject"` says), never valid; within the cap every
/// signer is checked.
#[tokio::test]
async fn more_signers_than_max_signers_is_malformed() {
    let pki = TestPki::new("Interop CA");
    let signers: Vec<Holder> = (0..4)
        .map(|i| pki.holder(&format!("signer{i}@partner.test")))
        .collect();
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        &format!("{CERTS}[smime]\nundecryptable_action = \"reject\"\nmax_signers = 3\n"),
    );
    certs(&gw, &["trust-ca", pki.ca().to_str().unwrap()]);
    settle().await;
    let signed_by_many = |n: usize| {
        let input = write(&pki, "many.in", &entity(TEXT));
        let mut args = vec!["cms", "-sign", "-binary", "-nodetach", "-in", &input];
        for s in &signers[..n] {
            args.extend_from_slice(&[
                "-signer",
                s.cert.to_str().unwrap(),
                "-inkey",
                s.key.to_str().unwrap(),
            ]);
        }
        crlf(&openssl(&args, b""))
    };
    let r = send(
        &gw,
        "alice@partner.test",
        "bob@example.test",
        &mail(
            "alice@partner.test",
            "bob@example.test",
            "many@partner.test",
            &signed_by_many(4),
        ),
    )
    .await;
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(gw.log().contains("SMIME_MALFORMED"), "{}", gw.log());
    let r = send(
        &gw,
        "alice@partner.test",
        "bob@example.test",
        &mail(
            "alice@partner.test",
            "bob@example.test",
            "three@partner.test",
            &signed_by_many(3),
        ),
    )
    .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 1).await);
    let got = delivered_for(&sink, "three@partner.test");
    for s in &signers[..3] {
        let who = format!("signed by <{}>, chain trusted", s.email);
        assert!(got.contains(&who), "{who}:\n{got}");
    }
}
