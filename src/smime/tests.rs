//! The engine against the `openssl cms` command line tool, in both directions.

use super::engine::{self, ContentCipher, KeyPair, Layer, SignatureStatus, SmimeError, Unwrapped};
use super::test_pki::{Pki, User, openssl, openssl_ok};

const ENTITY: &[u8] = b"Content-Type: text/plain; charset=us-ascii\r\n\r\nThe quarterly figures, in confidence.\r\nLine two.\r\n";

fn outer(smime: &[u8]) -> Vec<u8> {
    // The CLI writes a MIME entity; put message header fields around it, as a client would.
    let mut m = b"From: <alice@partner.test>\r\nTo: <bob@example.test>\r\nSubject: figures\r\nMessage-ID: <1@partner.test>\r\n".to_vec();
    m.extend_from_slice(&super::mime::to_crlf(smime));
    m
}

fn keys(u: &User) -> KeyPair<'_> {
    KeyPair {
        cert: &u.cert,
        key: &u.key,
    }
}

fn unwrap_ok(msg: &[u8], u: &[&User], pki: &Pki) -> Unwrapped {
    let k: Vec<KeyPair> = u.iter().map(|u| keys(u)).collect();
    engine::unwrap(msg, &k, &pki.store())
        .unwrap_or_else(|e| panic!("unwrap failed: {e}"))
        .expect("recognised as S/MIME")
}

/// `openssl cms -encrypt` with extra options (cipher, output form, and `-keyopt`s, which
/// apply to the `-recip` before them: the options come after it).
fn cli_encrypt(pki: &Pki, to: &User, opts: &[&str], content: &[u8]) -> Vec<u8> {
    let input = pki.path("in.txt");
    std::fs::write(&input, content).unwrap();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"cms",
        &"-encrypt",
        &"-binary",
        &"-in",
        &input,
        &"-recip",
        &to.cert_path,
    ];
    for o in opts {
        args.push(o);
    }
    openssl(&args, b"")
}

#[test]
fn decrypts_what_openssl_cms_encrypts_with_every_supported_algorithm() {
    let pki = Pki::new("Test CA");
    let bob = pki.user("bob@example.test");
    let other = pki.user("other@example.test");
    for (what, opts) in [
        ("RSA v1.5, AES-128-CBC", vec!["-aes-128-cbc"]),
        ("RSA v1.5, AES-256-CBC", vec!["-aes-256-cbc"]),
        ("RSA v1.5, AES-256-GCM", vec!["-aes-256-gcm"]),
        ("RSA v1.5, AES-128-GCM", vec!["-aes-128-gcm"]),
        ("RSA v1.5, 3DES (old mail)", vec!["-des3"]),
    ] {
        let msg = outer(&cli_encrypt(&pki, &bob, &opts, ENTITY));
        // the first key does not fit: the engine must go on to the next
        let u = unwrap_ok(&msg, &[&other, &bob], &pki);
        assert_eq!(u.plaintext, ENTITY, "{what}");
        assert!(u.decrypted(), "{what}");
        assert_eq!(
            u.layers,
            vec![Layer::Encrypted {
                authenticated: what.contains("GCM")
            }],
            "{what}"
        );
        assert!(u.signatures.is_empty());
    }
    // RSA-OAEP key transport: the padding is a per-recipient option of the CLI.
    let smime = cli_encrypt(
        &pki,
        &bob,
        &["-aes-256-cbc", "-keyopt", "rsa_padding_mode:oaep"],
        ENTITY,
    );
    let der = openssl(
        &[&"cms", &"-cmsout", &"-print", &"-inform", &"SMIME"],
        &smime,
    );
    assert!(
        String::from_utf8_lossy(&der).contains("rsaesOaep"),
        "the CLI really used OAEP"
    );
    let u = unwrap_ok(&outer(&smime), &[&bob], &pki);
    assert_eq!(u.plaintext, ENTITY);
}

#[test]
fn wrong_recipient_truncated_and_garbled_input_are_errors_not_panics() {
    let pki = Pki::new("Test CA");
    let bob = pki.user("bob@example.test");
    let eve = pki.user("eve@example.test");
    let msg = outer(&cli_encrypt(&pki, &bob, &["-aes-256-cbc"], ENTITY));
    let k = [keys(&eve)];
    match engine::unwrap(&msg, &k, &pki.store()) {
        Err(SmimeError::Undecryptable(why)) => {
            assert!(why.contains("serial"), "names the recipient: {why}")
        }
        other => panic!("expected Undecryptable, got {other:?}"),
    }
    match engine::unwrap(&msg, &[], &pki.store()) {
        Err(SmimeError::Undecryptable(why)) => assert!(why.contains("no private key"), "{why}"),
        other => panic!("expected Undecryptable, got {other:?}"),
    }
    // Truncated at every length, and garbled bytes: always a clean answer.
    let k = [keys(&bob)];
    let store = pki.store();
    for cut in (0..msg.len()).step_by(37) {
        let _ = engine::unwrap(&msg[..cut], &k, &store);
    }
    let body_start = memchr::memmem::find(&msg, b"\r\n\r\n").unwrap() + 4;
    let mut garbled = msg.clone();
    for i in (body_start..garbled.len()).step_by(11) {
        if garbled[i].is_ascii_alphanumeric() {
            garbled[i] = if garbled[i] == b'A' { b'B' } else { b'A' };
        }
    }
    assert!(matches!(
        engine::unwrap(&garbled, &k, &store),
        Err(SmimeError::Malformed(_) | SmimeError::Undecryptable(_))
    ));
    let truncated = &msg[..body_start + (msg.len() - body_start) / 2];
    match engine::unwrap(truncated, &k, &store) {
        Err(SmimeError::Malformed(why)) => assert!(!why.is_empty()),
        other => panic!("expected Malformed, got {other:?}"),
    }
    let not_base64 =
        b"Content-Type: application/pkcs7-mime; smime-type=enveloped-data\r\nContent-Transfer-Encoding: base64\r\n\r\n%%%%\r\n";
    assert!(matches!(
        engine::unwrap(not_base64, &k, &store),
        Err(SmimeError::Malformed(_))
    ));
    // not S/MIME at all
    assert!(
        engine::unwrap(b"Subject: x\r\n\r\nhi\r\n", &k, &store)
            .unwrap()
            .is_none()
    );
}

fn cli_sign(pki: &Pki, signer: &User, opts: &[&str], content: &[u8]) -> Vec<u8> {
    let input = pki.path("sign-in.txt");
    std::fs::write(&input, content).unwrap();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"cms",
        &"-sign",
        &"-binary",
        &"-in",
        &input,
        &"-signer",
        &signer.cert_path,
        &"-inkey",
        &signer.key_path,
    ];
    for o in opts {
        args.push(o);
    }
    openssl(&args, b"")
}

#[test]
fn verifies_detached_and_opaque_signatures_of_openssl_cms() {
    let pki = Pki::new("Test CA");
    let alice = pki.user("alice@partner.test");
    // detached multipart/signed, SHA-256
    let msg = outer(&cli_sign(&pki, &alice, &[], ENTITY));
    let u = unwrap_ok(&msg, &[], &pki);
    assert_eq!(u.plaintext, ENTITY);
    assert_eq!(u.layers, vec![Layer::Signed { opaque: false }]);
    let s = &u.signatures[0];
    assert_eq!(s.status, SignatureStatus::Valid);
    assert_eq!(s.signer_address.as_deref(), Some("alice@partner.test"));
    assert_eq!(s.signer().unwrap(), alice.cert);
    assert_eq!(s.digest, "sha256");
    assert!(
        s.capabilities
            .iter()
            .any(|c| c == "2.16.840.1.101.3.4.1.42"),
        "openssl announces aes256-CBC: {:?}",
        s.capabilities
    );
    assert!(u.signed_entity.is_some());
    // the signer named by subject key identifier instead of issuer and serial
    let msg = outer(&cli_sign(&pki, &alice, &["-keyid"], ENTITY));
    let u = unwrap_ok(&msg, &[], &pki);
    assert_eq!(u.signatures[0].status, SignatureStatus::Valid);
    assert_eq!(
        u.signatures[0].signer_address.as_deref(),
        Some("alice@partner.test")
    );
    assert_eq!(u.signatures[0].signer().unwrap(), alice.cert);
    // opaque signed-data with SHA-1, as old Outlook sends it
    let msg = outer(&cli_sign(
        &pki,
        &alice,
        &["-nodetach", "-md", "sha1"],
        ENTITY,
    ));
    let u = unwrap_ok(&msg, &[], &pki);
    assert_eq!(u.plaintext, ENTITY);
    assert_eq!(u.layers, vec![Layer::Signed { opaque: true }]);
    assert_eq!(u.signatures[0].status, SignatureStatus::Valid);
    assert_eq!(u.signatures[0].digest, "sha1");
    assert!(u.signatures[0].opaque);
}

#[test]
fn streamed_ber_and_signatures_without_their_certificate() {
    let pki = Pki::new("Test CA");
    let alice = pki.user("alice@partner.test");
    // Streamed output; the opaque one is indefinite-length BER (checked: 30 80), as
    // Thunderbird and Outlook send it: the typed read goes through OpenSSL's re-encoding,
    // the verification through the certificate-free copy.
    for opts in [&["-stream"][..], &["-stream", "-nodetach"][..]] {
        let msg = outer(&cli_sign(&pki, &alice, opts, ENTITY));
        let u = unwrap_ok(&msg, &[], &pki);
        assert_eq!(u.plaintext, ENTITY, "{opts:?}");
        assert_eq!(u.signatures[0].status, SignatureStatus::Valid, "{opts:?}");
        assert_eq!(u.signatures[0].signer().unwrap(), alice.cert, "{opts:?}");
    }
    // No certificate in the message: nothing to check the signature with — never valid.
    let msg = outer(&cli_sign(&pki, &alice, &["-nocerts"], ENTITY));
    let u = unwrap_ok(&msg, &[], &pki);
    assert_eq!(u.plaintext, ENTITY);
    match &u.signatures[0].status {
        SignatureStatus::Invalid(why) => assert!(why.contains("signer"), "{why}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert!(u.signatures[0].signer_der.is_none());
}

#[test]
fn untrusted_expired_unknown_critical_and_tampered_signatures_are_told_apart() {
    let pki = Pki::new("Test CA");
    let stranger_ca = Pki::new("Stranger CA");
    let mallory = stranger_ca.user("mallory@elsewhere.test");
    let msg = outer(&cli_sign(&stranger_ca, &mallory, &[], ENTITY));
    let u = unwrap_ok(&msg, &[], &pki);
    match &u.signatures[0].status {
        SignatureStatus::UntrustedChain(why) => assert!(why.contains("issuer"), "{why}"),
        other => panic!("expected UntrustedChain, got {other:?}"),
    }
    let old = pki.user_valid("old@partner.test", -400, -10);
    let msg = outer(&cli_sign(&pki, &old, &[], ENTITY));
    let u = unwrap_ok(&msg, &[], &pki);
    match &u.signatures[0].status {
        SignatureStatus::UntrustedChain(why) => assert!(why.contains("expired"), "{why}"),
        other => panic!("expected UntrustedChain (expired), got {other:?}"),
    }
    // a signer certificate with a critical extension nobody knows
    let ext = openssl::x509::X509Extension::new_from_der(
        &openssl::asn1::Asn1Object::from_str("1.3.6.1.4.1.55555.7").unwrap(),
        true,
        &openssl::asn1::Asn1OctetString::new_from_bytes(&[0x05, 0x00]).unwrap(),
    )
    .unwrap();
    let odd = pki.user_with("odd@partner.test", ext);
    let msg = outer(&cli_sign(&pki, &odd, &[], ENTITY));
    let u = unwrap_ok(&msg, &[], &pki);
    match &u.signatures[0].status {
        SignatureStatus::UntrustedChain(why) => {
            assert!(why.contains("critical extension"), "{why}")
        }
        other => panic!("expected UntrustedChain (critical extension), got {other:?}"),
    }
    let alice = pki.user("alice@partner.test");
    let msg = outer(&cli_sign(&pki, &alice, &[], ENTITY));
    let tampered = String::from_utf8(msg)
        .unwrap()
        .replacen("quarterly", "QUARTERLY", 1);
    let u = unwrap_ok(tampered.as_bytes(), &[], &pki);
    assert!(
        matches!(u.signatures[0].status, SignatureStatus::Invalid(_)),
        "{:?}",
        u.signatures[0].status
    );
    assert!(u.plaintext.windows(9).any(|w| w == b"QUARTERLY"));
}

#[test]
fn nested_sign_then_encrypt_and_encrypt_then_sign() {
    let pki = Pki::new("Test CA");
    let alice = pki.user("alice@partner.test");
    let bob = pki.user("bob@example.test");
    // sign, then encrypt the signed entity (what Thunderbird does)
    let signed = super::mime::to_crlf(&cli_sign(&pki, &alice, &[], ENTITY));
    let signed_entity = strip_mime_version(&signed);
    let msg = outer(&cli_encrypt(&pki, &bob, &["-aes-256-cbc"], &signed_entity));
    let u = unwrap_ok(&msg, &[&bob], &pki);
    assert_eq!(
        u.layers,
        vec![
            Layer::Encrypted {
                authenticated: false
            },
            Layer::Signed { opaque: false }
        ]
    );
    assert_eq!(u.plaintext, ENTITY);
    assert_eq!(u.signatures[0].status, SignatureStatus::Valid);
    assert_eq!(u.signed_entity.as_deref(), Some(&signed_entity[..]));
    // encrypt, then sign the encrypted entity (opaque): the signature is outside
    let enc = strip_mime_version(&super::mime::to_crlf(&cli_encrypt(
        &pki,
        &bob,
        &["-aes-256-gcm"],
        ENTITY,
    )));
    let msg = outer(&cli_sign(&pki, &alice, &["-nodetach"], &enc));
    let u = unwrap_ok(&msg, &[&bob], &pki);
    assert_eq!(
        u.layers,
        vec![
            Layer::Signed { opaque: true },
            Layer::Encrypted {
                authenticated: true
            }
        ]
    );
    assert_eq!(u.plaintext, ENTITY);
    assert_eq!(u.signatures[0].status, SignatureStatus::Valid);
    assert!(
        u.signed_entity.is_none(),
        "the signature covers ciphertext, not the plaintext"
    );
}

fn strip_mime_version(entity: &[u8]) -> Vec<u8> {
    let s = String::from_utf8_lossy(entity);
    s.replacen("MIME-Version: 1.0\r\n", "", 1).into_bytes()
}

/// `openssl cms -verify` of an S/MIME entity against the test CA: the signed content.
fn cli_verify(pki: &Pki, signed: &[u8]) -> Vec<u8> {
    openssl(
        &[
            &"cms",
            &"-verify",
            // no -binary: in binary mode the CLI keeps the CR of the CRLF that belongs to
            // the closing boundary (RFC 2046) as content; mail clients do not.
            &"-CAfile",
            &pki.ca_path(),
            &"-inform",
            &"SMIME",
        ],
        signed,
    )
}

#[test]
fn openssl_cms_verifies_and_decrypts_what_the_engine_produces() {
    let pki = Pki::new("Test CA");
    let alice = pki.user("alice@example.test");
    let bob = pki.user("bob@partner.test");
    let signed = engine::sign(ENTITY, &keys(&alice), &[]).unwrap();
    assert_eq!(cli_verify(&pki, &signed), ENTITY);
    // a changed byte breaks it for the CLI too
    let tampered = String::from_utf8(signed.clone())
        .unwrap()
        .replacen("Line two", "Line 2!!", 1);
    assert!(!openssl_ok(
        &[&"cms", &"-verify", &"-CAfile", &pki.ca_path()],
        tampered.as_bytes()
    ));
    for cipher in [ContentCipher::Aes256Cbc, ContentCipher::Aes256Gcm] {
        let enc = engine::encrypt(&signed, std::slice::from_ref(&bob.cert), cipher).unwrap();
        let printed = String::from_utf8(openssl(
            &[&"cms", &"-cmsout", &"-print", &"-inform", &"SMIME"],
            &enc,
        ))
        .unwrap();
        assert!(
            printed.contains(match cipher {
                ContentCipher::Aes256Gcm => "aes-256-gcm",
                ContentCipher::Aes256Cbc => "aes-256-cbc",
            }),
            "{cipher:?}"
        );
        let plain = openssl(
            &[
                &"cms",
                &"-decrypt",
                &"-binary",
                &"-recip",
                &bob.cert_path,
                &"-inkey",
                &bob.key_path,
            ],
            &enc,
        );
        assert_eq!(plain, signed, "{cipher:?}");
        // and the engine reads its own output back
        let msg = outer(&enc);
        let u = unwrap_ok(&msg, &[&bob], &pki);
        assert_eq!(u.plaintext, ENTITY);
        assert_eq!(u.signatures[0].status, SignatureStatus::Valid);
    }
    // Our signatures announce what we read: AES-256-GCM first, AES-CBC, nothing weaker
    // (no RC2, DES or 3DES).
    let u = unwrap_ok(&outer(&signed), &[], &pki);
    assert_eq!(
        u.signatures[0].capabilities.first().map(String::as_str),
        Some("2.16.840.1.101.3.4.1.46")
    );
    assert!(super::info::capabilities_list_gcm(
        &u.signatures[0].capabilities
    ));
    assert!(
        u.signatures[0]
            .capabilities
            .iter()
            .all(|c| c.starts_with("2.16.840.1.101.3.4.1.")),
        "{:?}",
        u.signatures[0].capabilities
    );
    // and the CLI reads them the same way
    let printed = String::from_utf8(openssl(
        &[&"cms", &"-cmsout", &"-print", &"-inform", &"SMIME"],
        &signed,
    ))
    .unwrap();
    assert!(
        printed.contains("aes-256-gcm") && !printed.contains("rc2"),
        "{printed}"
    );
    assert!(super::info::capabilities_list_gcm(&[
        "2.16.840.1.101.3.4.1.46".to_string()
    ]));
}

#[test]
fn a_chain_sent_incomplete_is_completed_from_held_intermediates_never_trusted_by_them() {
    use openssl::x509::store::X509StoreBuilder;
    let root = super::testpki::Pki::named("Root CA");
    let sub = root.sub_ca("Issuing Sub CA");
    let alice = sub.user("alice@partner.test");
    let pair = KeyPair {
        cert: &alice.cert,
        key: &alice.key,
    };
    // the signature carries alice's certificate only, not the sub-CA's
    let msg = outer(&engine::sign(ENTITY, &pair, &[]).unwrap());
    let mut b = X509StoreBuilder::new().unwrap();
    b.add_cert(root.ca_cert.clone()).unwrap();
    let anchors = b.build();
    let status = |intermediates: &[openssl::x509::X509],
                  anchors: &openssl::x509::store::X509StoreRef| {
        let u = engine::unwrap_with(&msg, &[], anchors, intermediates, None)
            .unwrap()
            .unwrap();
        u.signatures[0].status.clone()
    };
    assert!(
        matches!(status(&[], &anchors), SignatureStatus::UntrustedChain(_)),
        "{:?}",
        status(&[], &anchors)
    );
    assert_eq!(
        status(std::slice::from_ref(&sub.ca_cert), &anchors),
        SignatureStatus::Valid
    );
    // completing the chain is no licence for a certificate not made for S/MIME
    let web = sub.issue(super::testpki::UserSpec {
        eku_email: false,
        ..super::testpki::UserSpec::email("web@partner.test")
    });
    let web_pair = KeyPair {
        cert: &web.cert,
        key: &web.key,
    };
    let web_msg = outer(&engine::sign(ENTITY, &web_pair, &[]).unwrap());
    let u = engine::unwrap_with(
        &web_msg,
        &[],
        &anchors,
        std::slice::from_ref(&sub.ca_cert),
        None,
    )
    .unwrap()
    .unwrap();
    match &u.signatures[0].status {
        SignatureStatus::UntrustedChain(why) => assert!(why.contains("emailProtection"), "{why}"),
        other => panic!("{other:?}"),
    }
    // an intermediate only links: with no trusted root it is still untrusted
    let empty = X509StoreBuilder::new().unwrap().build();
    assert!(matches!(
        status(std::slice::from_ref(&sub.ca_cert), &empty),
        SignatureStatus::UntrustedChain(_)
    ));
}

/// The engine's own path — not OpenSSL's whole-message CMS functions, which it falls back
/// to for what it does not read — opens and checks what `openssl cms` produces.
#[test]
fn the_primitive_path_itself_opens_and_checks_what_the_cli_produces() {
    use super::cms_info;
    use super::engine::{Check, ContentDigests, Opened};
    let pki = Pki::new("Test CA");
    let bob = pki.user("bob@example.test");
    let bob_der = bob.cert.to_der().unwrap();
    for opts in [
        vec!["-aes-128-cbc"],
        vec!["-aes-192-cbc"],
        vec!["-aes-256-cbc"],
        vec!["-aes-128-gcm"],
        vec!["-aes-256-gcm"],
        vec!["-des3"],
        vec!["-aes-256-cbc", "-keyopt", "rsa_padding_mode:oaep"],
        vec![
            "-aes-256-gcm",
            "-keyopt",
            "rsa_padding_mode:oaep",
            "-keyopt",
            "rsa_oaep_md:sha256",
        ],
    ] {
        let der = cli_encrypt(
            &pki,
            &bob,
            &[&["-outform", "DER"][..], &opts].concat(),
            ENTITY,
        );
        let env = cms_info::envelope(&der).unwrap();
        assert_eq!(env.recipients.len(), 1, "{opts:?}");
        assert!(env.recipients[0].id.names(&bob_der), "{opts:?}");
        match engine::open(&env, &env.recipients[0], &bob.key) {
            Opened::Plain(p) => assert_eq!(p, ENTITY, "{opts:?}"),
            other => panic!("{opts:?}: {other:?}"),
        }
        // A changed key or content byte fails like a wrong key: no panic, no padding oracle.
        // AES-GCM always notices; CBC has no integrity, so about one time in 256 the last
        // block's padding still looks right and garbage comes out — never the plaintext.
        let mut bad_key = env.clone();
        bad_key.recipients[0].encrypted_key[7] ^= 1;
        let mut bad_content = env.clone();
        let last = bad_content.ciphertext.len() - 1;
        bad_content.ciphertext[last] ^= 1;
        for bad in [&bad_key, &bad_content] {
            match engine::open(bad, &bad.recipients[0], &bob.key) {
                Opened::Failed(_) => {}
                Opened::Plain(p) if !env.authenticated => assert_ne!(p, ENTITY, "{opts:?}"),
                other => panic!("{opts:?}: a changed message gave {other:?}"),
            }
        }
    }
    let alice = pki.user("alice@partner.test");
    let carol = pki.user_ec("carol@partner.test");
    for (signer, md, detached) in [
        (&alice, "sha1", true),
        (&alice, "sha256", true),
        (&alice, "sha384", false),
        (&alice, "sha512", false),
        (&carol, "sha256", true),
        (&carol, "sha384", false),
    ] {
        let mut opts = vec!["-outform", "DER", "-md", md];
        if !detached {
            opts.push("-nodetach");
        }
        let der = cli_sign(&pki, signer, &opts, ENTITY);
        let info = cms_info::signed_info(&der).unwrap();
        assert_eq!(info.content.is_some(), !detached);
        let s = &info.signers[0];
        let cert = openssl::x509::X509::from_der(&info.certificates[s.cert.unwrap()].der).unwrap();
        let what = format!("{} {md} detached={detached}", signer.cert_path.display());
        assert_eq!(
            engine::check_signature(
                s,
                &cert,
                info.content_type,
                &mut ContentDigests::new(ENTITY)
            ),
            Check::Valid,
            "{what}"
        );
        let mut changed = ENTITY.to_vec();
        changed[50] ^= 0x20;
        assert!(
            matches!(
                engine::check_signature(
                    s,
                    &cert,
                    info.content_type,
                    &mut ContentDigests::new(&changed)
                ),
                Check::Invalid(_)
            ),
            "{what}"
        );
        let mut forged = s.clone();
        let last = forged.signature.len() - 1;
        forged.signature[last] ^= 1;
        assert!(
            matches!(
                engine::check_signature(
                    &forged,
                    &cert,
                    info.content_type,
                    &mut ContentDigests::new(ENTITY)
                ),
                Check::Invalid(_)
            ),
            "{what}"
        );
    }
}

/// What the engine's own path leaves to OpenSSL's CMS still works: an RSA-PSS signature
/// is verified, an EC key signs, and tampering is still caught on that path.
#[test]
fn schemes_left_to_openssl_cms_still_work() {
    let pki = Pki::new("Test CA");
    let alice = pki.user("alice@partner.test");
    let pss = cli_sign(&pki, &alice, &["-keyopt", "rsa_padding_mode:pss"], ENTITY);
    let printed = String::from_utf8(openssl(
        &[&"cms", &"-cmsout", &"-print", &"-inform", &"SMIME"],
        &pss,
    ))
    .unwrap();
    assert!(printed.contains("rsassaPss"), "the CLI really used PSS");
    let u = unwrap_ok(&outer(&pss), &[], &pki);
    assert_eq!(u.signatures[0].status, SignatureStatus::Valid);
    let tampered = String::from_utf8(outer(&pss))
        .unwrap()
        .replacen("quarterly", "QUARTERLY", 1);
    let u = unwrap_ok(tampered.as_bytes(), &[], &pki);
    assert!(matches!(
        u.signatures[0].status,
        SignatureStatus::Invalid(_)
    ));

    let carol = pki.user_ec("carol@partner.test");
    let signed = engine::sign(ENTITY, &keys(&carol), &[]).unwrap();
    assert_eq!(cli_verify(&pki, &signed), ENTITY);
    let u = unwrap_ok(&outer(&signed), &[], &pki);
    assert_eq!(u.signatures[0].status, SignatureStatus::Valid);
}

/// Remembered chain verdicts: the same answer as a fresh check, per signer and chain; the
/// signature itself is checked on every message.
#[test]
fn remembered_chain_verdicts_answer_as_a_fresh_check_and_never_skip_the_signature() {
    let pki = Pki::new("Test CA");
    let stranger_ca = Pki::new("Stranger CA");
    let alice = pki.user("alice@partner.test");
    let mallory = stranger_ca.user("mallory@elsewhere.test");
    let good = outer(&cli_sign(&pki, &alice, &[], ENTITY));
    let strange = outer(&cli_sign(&stranger_ca, &mallory, &[], ENTITY));
    let tampered = String::from_utf8(good.clone())
        .unwrap()
        .replacen("quarterly", "QUARTERLY", 1)
        .into_bytes();
    let verdicts = engine::ChainVerdicts::default();
    let store = pki.store();
    let status = |msg: &[u8]| {
        engine::unwrap_with(msg, &[], &store, &[], Some(&verdicts))
            .unwrap()
            .unwrap()
            .signatures[0]
            .status
            .clone()
    };
    for _ in 0..3 {
        assert_eq!(status(&good), SignatureStatus::Valid);
        assert!(matches!(
            status(&strange),
            SignatureStatus::UntrustedChain(_)
        ));
        assert!(matches!(status(&tampered), SignatureStatus::Invalid(_)));
    }
}

/// An encoding the walker refuses (here a five-byte length form) gets a second try through
/// OpenSSL's BER reader instead of being called malformed.
#[test]
fn encodings_the_walker_refuses_get_a_second_try_through_openssl() {
    use super::cms_info;
    let pki = Pki::new("Test CA");
    let alice = pki.user("alice@partner.test");
    let der = cli_sign(&pki, &alice, &["-outform", "DER", "-nodetach"], ENTITY);
    assert_eq!(&der[..2], &[0x30, 0x82]);
    let mut odd = vec![0x30, 0x85, 0, 0, 0];
    odd.extend_from_slice(&der[2..]);
    assert!(cms_info::signed_info(&odd).is_err());
    let info = cms_info::signed_info_any(&odd, 8).unwrap();
    assert_eq!(info.content.as_deref(), Some(ENTITY));
    assert!(cms_info::signed_info_any(b"\x30\x85garbage", 8).is_err());
}

/// Every truncation and a changed byte at every position of real CMS structures (opaque
/// signed data, AES-GCM enveloped data): an error or a result from the readers, the
/// decryption and the signature check — never a panic.
#[test]
fn truncated_or_mutated_cms_is_an_error_or_a_result_never_a_panic() {
    use super::cms_info;
    use super::engine::ContentDigests;
    let pki = Pki::new("Test CA");
    let alice = pki.user("alice@partner.test");
    let bob = pki.user("bob@example.test");
    let signed = cli_sign(&pki, &alice, &["-outform", "DER", "-nodetach"], ENTITY);
    let enveloped = cli_encrypt(&pki, &bob, &["-aes-256-gcm", "-outform", "DER"], ENTITY);
    let exercise = |der: &[u8]| {
        if let Ok(env) = cms_info::envelope(der) {
            for r in &env.recipients {
                let _ = engine::open(&env, r, &bob.key);
            }
        }
        if let Ok(info) = cms_info::signed_info(der) {
            for s in &info.signers {
                let cert = s
                    .cert
                    .and_then(|i| openssl::x509::X509::from_der(&info.certificates[i].der).ok());
                if let Some(cert) = cert {
                    let _ = engine::check_signature(
                        s,
                        &cert,
                        info.content_type,
                        &mut ContentDigests::new(ENTITY),
                    );
                }
                let _ = s.capabilities.len();
            }
        }
        let _ = cms_info::recipients(der);
        let _ = cms_info::kind(der);
    };
    for der in [&signed, &enveloped] {
        for cut in 0..der.len() {
            exercise(&der[..cut]);
        }
        for i in 0..der.len() {
            let mut m = der.clone();
            m[i] ^= 0xa5;
            exercise(&m);
        }
    }
}
