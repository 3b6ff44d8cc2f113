//! The engine against the `openssl cms` command line tool, in both directions.

use super::engine::{self, ContentCipher, KeyPair, Layer, SignatureStatus, SmimeError, Unwrapped};
use crate::certs::test_pki::on_disk::{Pki, User, openssl, openssl_ok};

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
    assert!(crate::certs::info::capabilities_list_gcm(
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
    assert!(crate::certs::info::capabilities_list_gcm(&[
        "2.16.840.1.101.3.4.1.46".to_string()
    ]));
}

#[test]
fn a_chain_sent_incomplete_is_completed_from_held_intermediates_never_trusted_by_them() {
    use openssl::x509::store::X509StoreBuilder;
    let root = crate::certs::test_pki::Pki::named("Root CA");
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
    let web = sub.issue(crate::certs::test_pki::UserSpec {
        eku_email: false,
        ..crate::certs::test_pki::UserSpec::email("web@partner.test")
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

/// RSA-PSS and ECDSA signatures are verified on the engine's own path (no other verifier
/// is left), and tampering is caught there.
#[test]
fn rsa_pss_and_ecdsa_signatures_verify_on_the_engines_own_path() {
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
        &u.signatures[0].status,
        SignatureStatus::Invalid(why) if why.contains("message digest mismatch")
    ));
    let pss_sha384 = cli_sign(
        &pki,
        &alice,
        &[
            "-md",
            "sha384",
            "-keyopt",
            "rsa_padding_mode:pss",
            "-keyopt",
            "rsa_pss_saltlen:20",
        ],
        ENTITY,
    );
    let u = unwrap_ok(&outer(&pss_sha384), &[], &pki);
    assert_eq!(u.signatures[0].status, SignatureStatus::Valid);

    let carol = pki.user_ec("carol@partner.test");
    let by_cli = cli_sign(&pki, &carol, &["-md", "sha512"], ENTITY);
    let u = unwrap_ok(&outer(&by_cli), &[], &pki);
    assert_eq!(u.signatures[0].status, SignatureStatus::Valid);
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

/// SignedData built field by field, so a test can name any certificate as the signer, list
/// any certificates in any order, and put any attribute anywhere.
mod built {
    use super::super::cms_info::{
        OID_CONTENT_TYPE, OID_DATA, OID_MESSAGE_DIGEST, OID_MGF1, OID_RSASSA_PSS, OID_SHA256,
        OID_SHA256_RSA, OID_SIGNED_DATA, OID_SIGNING_TIME,
    };
    use crate::certs::der::{self as ber, INTEGER, OCTET_STRING, OID, SEQUENCE, SET, tlv_of};
    use ::der::asn1::ObjectIdentifier;
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::sign::Signer;

    pub fn oid(o: ObjectIdentifier) -> Vec<u8> {
        tlv_of(OID, &[o.as_bytes()])
    }

    pub fn attribute(o: ObjectIdentifier, values: &[&[u8]]) -> Vec<u8> {
        tlv_of(SEQUENCE, &[&oid(o), &tlv_of(SET, values)])
    }

    pub fn content_type(o: ObjectIdentifier) -> Vec<u8> {
        attribute(OID_CONTENT_TYPE, &[&oid(o)])
    }

    pub fn message_digest(content: &[u8]) -> Vec<u8> {
        let d = openssl::sha::sha256(content);
        attribute(OID_MESSAGE_DIGEST, &[&tlv_of(OCTET_STRING, &[&d])])
    }

    pub fn signing_time() -> Vec<u8> {
        attribute(
            OID_SIGNING_TIME,
            &[&tlv_of(ber::UTC_TIME, &[b"261128100000Z"])],
        )
    }

    /// The usual signed attributes over `content`.
    pub fn usual(content: &[u8]) -> Vec<Vec<u8>> {
        vec![
            content_type(OID_DATA),
            message_digest(content),
            signing_time(),
        ]
    }

    /// The signer identifier for a certificate: issuer and serial, as they are in it.
    pub fn issuer_serial(cert_der: &[u8]) -> Vec<u8> {
        let ids = ber::cert_ids(cert_der).unwrap();
        tlv_of(SEQUENCE, &[ids.issuer, ids.serial])
    }

    /// The signer identifier naming the key identifier `ski`.
    pub fn key_id(ski: &[u8]) -> Vec<u8> {
        tlv_of(0x80, &[ski])
    }

    pub struct Signing<'a> {
        pub sid: Vec<u8>,
        pub key: &'a PKey<Private>,
        pub certs: Vec<Vec<u8>>,
        pub content: &'a [u8],
        pub econtent_type: ObjectIdentifier,
        pub signed: Option<Vec<Vec<u8>>>,
        pub unsigned: Vec<Vec<u8>>,
        /// RSA-PSS (SHA-256, MGF1 with SHA-256, salt 32) instead of PKCS#1 v1.5.
        pub pss: bool,
    }

    /// An opaque SignedData, SHA-256 with RSA PKCS#1 v1.5 or RSA-PSS.
    pub fn signed_data(s: &Signing<'_>) -> Vec<u8> {
        let attrs = s.signed.as_ref().map(|a| a.concat());
        let covered = match &attrs {
            Some(a) => tlv_of(SET, &[a]),
            None => s.content.to_vec(),
        };
        let mut signer = Signer::new(MessageDigest::sha256(), s.key).unwrap();
        if s.pss {
            signer
                .set_rsa_padding(openssl::rsa::Padding::PKCS1_PSS)
                .unwrap();
            signer
                .set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::custom(32))
                .unwrap();
            signer.set_rsa_mgf1_md(MessageDigest::sha256()).unwrap();
        }
        signer.update(&covered).unwrap();
        let signature = signer.sign_to_vec().unwrap();
        let alg = |o| tlv_of(SEQUENCE, &[&oid(o), &[0x05, 0x00]]);
        let sha256 = tlv_of(SEQUENCE, &[&oid(OID_SHA256)]);
        let signature_alg = if s.pss {
            tlv_of(
                SEQUENCE,
                &[
                    &oid(OID_RSASSA_PSS),
                    &tlv_of(
                        SEQUENCE,
                        &[
                            &tlv_of(0xa0, &[&sha256]),
                            &tlv_of(0xa1, &[&tlv_of(SEQUENCE, &[&oid(OID_MGF1), &sha256])]),
                            &tlv_of(0xa2, &[&tlv_of(INTEGER, &[&[32]])]),
                        ],
                    ),
                ],
            )
        } else {
            alg(OID_SHA256_RSA)
        };
        let version = if s.sid[0] == 0x80 { 3u8 } else { 1u8 };
        let mut si: Vec<Vec<u8>> = vec![
            tlv_of(INTEGER, &[&[version]]),
            s.sid.clone(),
            alg(OID_SHA256),
        ];
        if let Some(a) = &attrs {
            si.push(tlv_of(0xa0, &[a]));
        }
        si.push(signature_alg);
        si.push(tlv_of(OCTET_STRING, &[&signature]));
        if !s.unsigned.is_empty() {
            si.push(tlv_of(0xa1, &[&s.unsigned.concat()]));
        }
        let si: Vec<&[u8]> = si.iter().map(Vec::as_slice).collect();
        let encap = tlv_of(
            SEQUENCE,
            &[
                &oid(s.econtent_type),
                &tlv_of(0xa0, &[&tlv_of(OCTET_STRING, &[s.content])]),
            ],
        );
        let sd = tlv_of(
            SEQUENCE,
            &[
                &tlv_of(INTEGER, &[&[version]]),
                &tlv_of(SET, &[&alg(OID_SHA256)]),
                &encap,
                &tlv_of(0xa0, &[&s.certs.concat()]),
                &tlv_of(SET, &[&tlv_of(SEQUENCE, &si)]),
            ],
        );
        tlv_of(SEQUENCE, &[&oid(OID_SIGNED_DATA), &tlv_of(0xa0, &[&sd])])
    }

    /// The SignedData as a whole message (application/pkcs7-mime).
    pub fn message(der: &[u8]) -> Vec<u8> {
        let mut m = b"From: <alice@partner.test>\r\nTo: <bob@example.test>\r\nSubject: figures\r\n\
            Content-Type: application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\n\
            Content-Transfer-Encoding: base64\r\n\r\n"
            .to_vec();
        super::super::mime::put_base64_lines(&mut m, der);
        m
    }
}

/// A certificate naming `issuer` as its issuer, with `serial`, the subject key identifier
/// `ski` and alice's address, on `key`: a forger's look-alike of alice's certificate.
fn look_alike(
    issuer: &openssl::x509::X509NameRef,
    serial: &openssl::asn1::Asn1IntegerRef,
    ski: Option<&[u8]>,
    key: &openssl::pkey::PKey<openssl::pkey::Private>,
) -> openssl::x509::X509 {
    use openssl::x509::extension::{ExtendedKeyUsage, KeyUsage, SubjectAlternativeName};
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "alice@partner.test")
        .unwrap();
    let name = name.build();
    let mut b = openssl::x509::X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(serial).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(30).unwrap())
        .unwrap();
    b.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .build()
            .unwrap(),
    )
    .unwrap();
    b.append_extension(ExtendedKeyUsage::new().email_protection().build().unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .email("alice@partner.test")
        .build(&b.x509v3_context(None, None))
        .unwrap();
    b.append_extension(san).unwrap();
    if let Some(ski) = ski {
        let value = crate::certs::der::tlv_of(crate::certs::der::OCTET_STRING, &[ski]);
        let ext = openssl::x509::X509Extension::new_from_der(
            &openssl::asn1::Asn1Object::from_str("2.5.29.14").unwrap(),
            false,
            &openssl::asn1::Asn1OctetString::new_from_bytes(&value).unwrap(),
        )
        .unwrap();
        b.append_extension(ext).unwrap();
    }
    b.sign(key, openssl::hash::MessageDigest::sha256()).unwrap();
    b.build()
}

/// Names that print like the CA's but are encoded differently: letter case, spaces, the
/// string type.
fn issuer_look_alikes(ca_cn: &str) -> Vec<(&'static str, openssl::x509::X509Name)> {
    use openssl::asn1::Asn1Type;
    let named = |text: &str, ty: Option<Asn1Type>| {
        let mut n = openssl::x509::X509NameBuilder::new().unwrap();
        match ty {
            Some(ty) => n.append_entry_by_text_with_type("CN", text, ty).unwrap(),
            None => n.append_entry_by_text("CN", text).unwrap(),
        }
        n.build()
    };
    vec![
        ("lower case", named(&ca_cn.to_lowercase(), None)),
        ("upper case", named(&ca_cn.to_uppercase(), None)),
        ("doubled space", named(&ca_cn.replace(' ', "  "), None)),
        ("trailing space", named(&format!("{ca_cn} "), None)),
        (
            "PrintableString",
            named(ca_cn, Some(Asn1Type::PRINTABLESTRING)),
        ),
        ("BMPString", named(ca_cn, Some(Asn1Type::BMPSTRING))),
    ]
}

/// Signer identification by issuer and serial number: a forger's certificate whose issuer
/// name differs from the real one only in case, spaces or string type, with alice's
/// serial, listed before alice's real certificate, never makes the forger's signature
/// alice's; nor does a certificate with the very same issuer and serial (which one signed
/// cannot be told: invalid). The certificate that verified is the one reported.
#[test]
fn look_alike_issuers_and_duplicate_serials_never_pass_for_the_real_certificate() {
    use built::{Signing, issuer_serial, message, signed_data, usual};
    let pki = Pki::new("Partner CA");
    let alice = pki.user("alice@partner.test");
    let forger_key =
        openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let alice_der = alice.cert.to_der().unwrap();
    let serial = alice.cert.serial_number();
    let content = ENTITY;
    let mut fakes = issuer_look_alikes("Partner CA");
    // the real CA's name, byte for byte: a duplicate issuer and serial
    fakes.push((
        "same issuer bytes",
        pki.ca.subject_name().to_owned().unwrap(),
    ));
    let ca_name = pki.ca.subject_name().to_der().unwrap();
    for (what, issuer) in &fakes {
        // each look-alike really is another encoding (the duplicate really is the same)
        assert_eq!(
            issuer.to_der().unwrap() == ca_name,
            *what == "same issuer bytes",
            "{what}"
        );
        let fake = look_alike(issuer, serial, None, &forger_key);
        let fake_der = fake.to_der().unwrap();
        let exact_duplicate = *what == "same issuer bytes";
        for (signed_by, key, pss) in [
            ("forger", &forger_key, false),
            ("forger", &forger_key, true),
            ("alice", &alice.key, false),
            ("alice", &alice.key, true),
        ] {
            // the identifier names alice's certificate; the look-alike comes first
            let der = signed_data(&Signing {
                sid: issuer_serial(&alice_der),
                key,
                certs: vec![fake_der.clone(), alice_der.clone()],
                content,
                econtent_type: super::cms_info::OID_DATA,
                signed: Some(usual(content)),
                unsigned: vec![],
                pss,
            });
            let u = engine::unwrap(&message(&der), &[], &pki.store())
                .unwrap()
                .unwrap();
            let s = &u.signatures[0];
            let case = format!("{what}, signed by {signed_by}, pss {pss}");
            match (signed_by, exact_duplicate) {
                ("alice", false) => {
                    assert_eq!(s.status, SignatureStatus::Valid, "{case}");
                    assert_eq!(
                        s.signer_der.as_deref(),
                        Some(alice_der.as_slice()),
                        "{case}"
                    );
                }
                (_, true) => assert!(
                    matches!(&s.status, SignatureStatus::Invalid(w) if w.contains("several")),
                    "{case}: {:?}",
                    s.status
                ),
                _ => assert!(
                    matches!(s.status, SignatureStatus::Invalid(_)),
                    "{case}: {:?}",
                    s.status
                ),
            }
            // the identifier names the look-alike: it verifies the forger's signature, and
            // then it is that certificate whose chain is judged (and fails)
            let der = signed_data(&Signing {
                sid: issuer_serial(&fake_der),
                key,
                certs: vec![alice_der.clone(), fake_der.clone()],
                content,
                econtent_type: super::cms_info::OID_DATA,
                signed: Some(usual(content)),
                unsigned: vec![],
                pss,
            });
            let u = engine::unwrap(&message(&der), &[], &pki.store())
                .unwrap()
                .unwrap();
            let s = &u.signatures[0];
            assert_ne!(s.status, SignatureStatus::Valid, "{case} (named)");
            if signed_by == "forger" && !exact_duplicate {
                assert!(
                    matches!(s.status, SignatureStatus::UntrustedChain(_)),
                    "{case} (named): {:?}",
                    s.status
                );
                assert_eq!(s.signer_der.as_deref(), Some(fake_der.as_slice()), "{case}");
            }
        }
    }
}

/// Signer identification by subject key identifier: a forger's certificate carrying alice's
/// key identifier makes the signer ambiguous (invalid), one whose identifier differs only by
/// a leading zero byte is not alice's; alice's own signature named by key id verifies.
#[test]
fn look_alike_key_identifiers_never_pass_for_the_real_certificate() {
    use built::{Signing, key_id, message, signed_data, usual};
    let pki = Pki::new("Partner CA");
    let alice = pki.user("alice@partner.test");
    let forger_key =
        openssl::pkey::PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
    let alice_der = alice.cert.to_der().unwrap();
    let ski = crate::certs::der::subject_key_id(&alice_der)
        .unwrap()
        .to_vec();
    let issuer = openssl::x509::X509NameBuilder::new().unwrap().build();
    let serial =
        openssl::asn1::Asn1Integer::from_bn(&openssl::bn::BigNum::from_u32(7).unwrap()).unwrap();
    let padded = [&[0u8][..], &ski].concat();
    let status = |key, certs: Vec<Vec<u8>>, id: &[u8]| {
        let der = signed_data(&Signing {
            sid: key_id(id),
            key,
            certs,
            content: ENTITY,
            econtent_type: super::cms_info::OID_DATA,
            signed: Some(usual(ENTITY)),
            unsigned: vec![],
            pss: true,
        });
        let u = engine::unwrap(&message(&der), &[], &pki.store())
            .unwrap()
            .unwrap();
        u.signatures[0].clone()
    };
    // alice alone, named by key id: valid
    let s = status(&alice.key, vec![alice_der.clone()], &ski);
    assert_eq!(s.status, SignatureStatus::Valid);
    // the same key id on a forger's certificate, listed first
    let same = look_alike(&issuer, &serial, Some(&ski), &forger_key)
        .to_der()
        .unwrap();
    for key in [&forger_key, &alice.key] {
        let s = status(key, vec![same.clone(), alice_der.clone()], &ski);
        assert!(
            matches!(&s.status, SignatureStatus::Invalid(w) if w.contains("several")),
            "{:?}",
            s.status
        );
    }
    // a key id that differs by a leading zero byte: not alice's certificate
    let near = look_alike(&issuer, &serial, Some(&padded), &forger_key)
        .to_der()
        .unwrap();
    let s = status(&forger_key, vec![near.clone(), alice_der.clone()], &ski);
    assert!(
        matches!(s.status, SignatureStatus::Invalid(_)),
        "{:?}",
        s.status
    );
    let s = status(&forger_key, vec![alice_der.clone(), near.clone()], &padded);
    assert_ne!(s.status, SignatureStatus::Valid);
    assert_eq!(s.signer_der.as_deref(), Some(near.as_slice()));
}

/// RFC 5652 §5.3 and §11: contentType, messageDigest and signingTime once each, with one
/// value, among the signed attributes only; the contentType attribute equal to the
/// eContentType; signed attributes present over content that is not data. A signature that
/// breaks these is invalid though its cryptography holds (OpenSSL refuses these too).
#[test]
fn signed_attributes_that_break_rfc_5652_make_the_signature_invalid() {
    use super::cms_info::{OID_DATA, OID_MESSAGE_DIGEST, OID_RECEIPT, OID_SIGNED_DATA};
    use built::{
        Signing, attribute, content_type, issuer_serial, message, message_digest, signed_data,
        signing_time,
    };
    let pki = Pki::new("Partner CA");
    let alice = pki.user("alice@partner.test");
    let alice_der = alice.cert.to_der().unwrap();
    let status = |signed: Option<Vec<Vec<u8>>>, unsigned: Vec<Vec<u8>>, econtent| {
        let der = signed_data(&Signing {
            sid: issuer_serial(&alice_der),
            key: &alice.key,
            certs: vec![alice_der.clone()],
            content: ENTITY,
            econtent_type: econtent,
            signed,
            unsigned,
            pss: false,
        });
        engine::unwrap(&message(&der), &[], &pki.store())
            .unwrap()
            .unwrap()
            .signatures[0]
            .status
            .clone()
    };
    let (ct, md, st) = (
        content_type(OID_DATA),
        message_digest(ENTITY),
        signing_time(),
    );
    let d = openssl::sha::sha256(ENTITY);
    let two_digests = attribute(
        OID_MESSAGE_DIGEST,
        &[
            &crate::certs::der::tlv_of(crate::certs::der::OCTET_STRING, &[&d]),
            &crate::certs::der::tlv_of(crate::certs::der::OCTET_STRING, &[&d]),
        ],
    );
    // the controls: what every client sends, and an unrelated unsigned attribute
    assert_eq!(
        status(
            Some(vec![ct.clone(), md.clone(), st.clone()]),
            vec![],
            OID_DATA
        ),
        SignatureStatus::Valid
    );
    assert_eq!(status(None, vec![], OID_DATA), SignatureStatus::Valid);
    let unrelated = attribute(
        ::der::asn1::ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.2.14"),
        &[&crate::certs::der::tlv_of(crate::certs::der::SEQUENCE, &[])],
    );
    assert_eq!(
        status(
            Some(vec![ct.clone(), md.clone()]),
            vec![unrelated],
            OID_DATA
        ),
        SignatureStatus::Valid
    );
    type Attrs = Vec<Vec<u8>>;
    let broken: Vec<(&str, Option<Attrs>, Attrs, _)> = vec![
        (
            "contentType twice",
            Some(vec![ct.clone(), ct.clone(), md.clone()]),
            vec![],
            OID_DATA,
        ),
        (
            "messageDigest twice",
            Some(vec![ct.clone(), md.clone(), md.clone()]),
            vec![],
            OID_DATA,
        ),
        (
            "messageDigest with two values",
            Some(vec![ct.clone(), two_digests]),
            vec![],
            OID_DATA,
        ),
        (
            "signingTime twice",
            Some(vec![ct.clone(), md.clone(), st.clone(), st.clone()]),
            vec![],
            OID_DATA,
        ),
        (
            "contentType moved to the unsigned attributes",
            Some(vec![md.clone()]),
            vec![ct.clone()],
            OID_DATA,
        ),
        (
            "messageDigest moved to the unsigned attributes",
            Some(vec![ct.clone()]),
            vec![md.clone()],
            OID_DATA,
        ),
        (
            "signingTime among the unsigned attributes",
            Some(vec![ct.clone(), md.clone()]),
            vec![st.clone()],
            OID_DATA,
        ),
        (
            "contentType repeated among the unsigned attributes",
            Some(vec![ct.clone(), md.clone()]),
            vec![ct.clone()],
            OID_DATA,
        ),
        (
            "contentType attribute differs from eContentType",
            Some(vec![content_type(OID_SIGNED_DATA), md.clone()]),
            vec![],
            OID_DATA,
        ),
        (
            "no signed attributes over a receipt",
            None,
            vec![],
            OID_RECEIPT,
        ),
        (
            "an empty set of signed attributes",
            Some(vec![]),
            vec![],
            OID_DATA,
        ),
    ];
    for (what, signed, unsigned, econtent) in broken {
        let s = status(signed, unsigned, econtent);
        assert!(matches!(s, SignatureStatus::Invalid(_)), "{what}: {s:?}");
    }
}

/// The engine stops at its deadline (between layers and signers) with an error, and refuses
/// more signer infos than allowed before checking any.
#[test]
fn the_engine_keeps_to_its_deadline_and_signer_cap() {
    let pki = Pki::new("Test CA");
    let alice = pki.user("alice@partner.test");
    let signed = outer(&engine::sign(ENTITY, &keys(&alice), &[]).unwrap());
    let store = pki.store();
    let limited =
        |limits: &engine::Limits| engine::unwrap_limited(&signed, &[], &store, &[], None, limits);
    let past = engine::Limits {
        max_signers: 8,
        deadline: Some(std::time::Instant::now() - std::time::Duration::from_millis(1)),
        ..Default::default()
    };
    assert!(
        matches!(limited(&past), Err(SmimeError::Malformed(w)) if w.contains("job_timeout_secs"))
    );
    let none = engine::Limits {
        max_signers: 0,
        ..Default::default()
    };
    assert!(matches!(limited(&none), Err(SmimeError::Malformed(w)) if w.contains("max_signers")));
    let fine = engine::Limits {
        max_signers: 1,
        deadline: Some(std::time::Instant::now() + std::time::Duration::from_secs(60)),
        ..Default::default()
    };
    let u = limited(&fine).unwrap().unwrap();
    assert_eq!(u.signatures[0].status, SignatureStatus::Valid);
}

/// Nesting past `[smime] max_layers` makes the message malformed, naming the key; up to it,
/// every layer is verified.
#[test]
fn nesting_past_the_layer_cap_is_malformed() {
    let pki = Pki::new("Test CA");
    let alice = pki.user("alice@partner.test");
    let mut entity = ENTITY.to_vec();
    for _ in 0..3 {
        entity = engine::sign(&entity, &keys(&alice), &[]).unwrap();
    }
    let message = outer(&entity);
    let store = pki.store();
    let with_cap = |max_layers| {
        let limits = engine::Limits {
            max_layers,
            ..Default::default()
        };
        engine::unwrap_limited(&message, &[], &store, &[], None, &limits)
    };
    assert!(
        matches!(with_cap(2), Err(SmimeError::Malformed(w)) if w.contains("max_layers")),
        "three layers over a cap of two"
    );
    let u = with_cap(3).unwrap().unwrap();
    assert_eq!(u.signatures.len(), 3);
    assert!(
        u.signatures
            .iter()
            .all(|s| s.status == SignatureStatus::Valid)
    );
}
