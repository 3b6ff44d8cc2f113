use super::*;
use crate::actions::test_support::{mail_parser_view, mixed_with_pdf, python_parts, sample_pdf};
use crate::certs::test_pki::on_disk::{self, openssl, openssl_ok};

fn pdfs(data: &[u8], name: Option<&str>) -> bool {
    data.starts_with(b"%PDF-") || name.is_some_and(|n| n.to_ascii_lowercase().ends_with(".pdf"))
}

fn signed(message: &[u8], user: &on_disk::User) -> (Vec<u8>, Vec<String>) {
    let signer = Signer {
        cert: &user.cert,
        key: &user.key,
        chain: &[],
    };
    match sign_attachments(message, &pdfs, &signer, MimeLimits::default()) {
        AttachmentSigning::Signed { message, names } => (message, names),
        other => panic!("not signed: {other:?}"),
    }
}

/// The attachment and its signature as Python's `email` reads them, written to files, and
/// checked with exactly the command a recipient runs.
fn verify_with_openssl_cli(pki: &on_disk::Pki, message: &[u8], name: &str) -> Vec<u8> {
    let parts = python_parts(message);
    let file = parts
        .iter()
        .find(|p| p.filename.as_deref() == Some(name))
        .expect("the attachment");
    let p7s_name = format!("{name}.p7s");
    let p7s = parts
        .iter()
        .find(|p| p.filename.as_deref() == Some(p7s_name.as_str()))
        .expect("its signature");
    assert_eq!(p7s.content_type, "application/pkcs7-signature");
    assert_eq!(p7s.disposition.as_deref(), Some("attachment"));
    let content = pki.path(name);
    let signature = pki.path(&p7s_name);
    std::fs::write(&content, &file.bytes).unwrap();
    std::fs::write(&signature, &p7s.bytes).unwrap();
    let ca = pki.ca_path();
    let out = pki.path("verified.out");
    openssl(
        &[
            &"cms",
            &"-verify",
            &"-binary",
            &"-inform",
            &"DER",
            &"-content",
            &content,
            &"-in",
            &signature,
            &"-CAfile",
            &ca,
            &"-out",
            &out,
        ],
        b"",
    );
    assert_eq!(std::fs::read(&out).unwrap(), file.bytes);
    // the same signature over changed content fails
    let mut changed = file.bytes.clone();
    changed[20] ^= 1;
    let tampered = pki.path("tampered.pdf");
    std::fs::write(&tampered, &changed).unwrap();
    assert!(!openssl_ok(
        &[
            &"cms",
            &"-verify",
            &"-binary",
            &"-inform",
            &"DER",
            &"-content",
            &tampered,
            &"-in",
            &signature,
            &"-CAfile",
            &ca,
            &"-out",
            &"/dev/null",
        ],
        b"",
    ));
    p7s.bytes.clone()
}

/// `openssl cms -cmsout -print`: the CAdES-BES signed attributes are there.
fn check_cades_attributes(pki: &on_disk::Pki, der: &[u8]) {
    let path = pki.path("print.p7s");
    std::fs::write(&path, der).unwrap();
    let printed = String::from_utf8(openssl(
        &[
            &"cms", &"-cmsout", &"-print", &"-inform", &"DER", &"-in", &path,
        ],
        b"",
    ))
    .unwrap();
    for attribute in [
        "contentType",
        "messageDigest",
        "signingTime",
        "id-smime-aa-signingCertificateV2",
    ] {
        assert!(
            printed.contains(&format!("object: {attribute}")),
            "no {attribute} in:\n{printed}"
        );
    }
    assert!(printed.contains("algorithm: sha256"), "{printed}");
}

#[test]
fn a_pdf_attachment_gets_a_p7s_the_openssl_cli_verifies() {
    let pki = on_disk::Pki::new("Attachment CA");
    let user = pki.user("accounting@example.test");
    let m = mixed_with_pdf("Content-Type: text/plain\r\n\r\nThe invoice.");
    let (out, names) = signed(&m, &user);
    assert_eq!(names, ["invoice.pdf"]);
    // everything before the signature part is as it was, the attachment byte for byte
    let pdf_end = memchr::memmem::rfind(&m, b"\r\n--mix--").unwrap();
    assert_eq!(&out[..pdf_end], &m[..pdf_end]);
    assert!(out.ends_with(b"\r\n--mix--\r\n"));
    let der = verify_with_openssl_cli(&pki, &out, "invoice.pdf");
    check_cades_attributes(&pki, &der);
    let attachments = mail_parser_view(&out).attachments;
    let names: Vec<_> = attachments.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["invoice.pdf", "invoice.pdf.p7s"]);
    assert_eq!(attachments[0].1, sample_pdf());
    assert_eq!(attachments[1].1, der);
    // passing twice: not signed again
    let signer = Signer {
        cert: &user.cert,
        key: &user.key,
        chain: &[],
    };
    assert!(matches!(
        sign_attachments(&out, &pdfs, &signer, MimeLimits::default()),
        AttachmentSigning::NoneChosen
    ));
}

#[test]
fn an_ecdsa_identity_signs_too() {
    let pki = on_disk::Pki::new("EC Attachment CA");
    let user = pki.user_ec("accounting@example.test");
    let m = mixed_with_pdf("Content-Type: text/plain\r\n\r\nThe invoice.");
    let (out, _) = signed(&m, &user);
    let der = verify_with_openssl_cli(&pki, &out, "invoice.pdf");
    check_cades_attributes(&pki, &der);
}

#[test]
fn a_message_that_is_the_attachment_becomes_multipart() {
    let pki = on_disk::Pki::new("Attachment CA");
    let user = pki.user("accounting@example.test");
    let mut m = b"From: a@example.test\r\nSubject: scan\r\nMIME-Version: 1.0\r\n\
Content-Type: application/pdf; name=\"scan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"scan.pdf\"\r\n\r\n"
        .to_vec();
    m.extend_from_slice(crate::smime::mime::base64_lines(&sample_pdf()).as_bytes());
    let (out, names) = signed(&m, &user);
    assert_eq!(names, ["scan.pdf"]);
    assert!(out.starts_with(b"From: a@example.test\r\nSubject: scan\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed;"));
    verify_with_openssl_cli(&pki, &out, "scan.pdf");
}

#[test]
fn only_chosen_attachments_and_never_inside_protected_content() {
    let pki = on_disk::Pki::new("Attachment CA");
    let user = pki.user("accounting@example.test");
    let signer = Signer {
        cert: &user.cert,
        key: &user.key,
        chain: &[],
    };
    let none = |_: &[u8], _: Option<&str>| false;
    let m = mixed_with_pdf("Content-Type: text/plain\r\n\r\nThe invoice.");
    assert!(matches!(
        sign_attachments(&m, &none, &signer, MimeLimits::default()),
        AttachmentSigning::NoneChosen
    ));
    // a PDF inside a multipart/signed: the user's signature must stay valid
    let inner = String::from_utf8(mixed_with_pdf("Content-Type: text/plain\r\n\r\nx")).unwrap();
    let inner = &inner[inner.find("Content-Type: multipart/mixed").unwrap()..];
    let protected = format!(
        "From: a@example.test\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=\"s\"\r\n\r\n\
--s\r\n{inner}\r\n--s\r\nContent-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n--s--\r\n"
    );
    let outcome = sign_attachments(protected.as_bytes(), &pdfs, &signer, MimeLimits::default());
    assert!(
        matches!(outcome, AttachmentSigning::NotSigned(_)),
        "{outcome:?}"
    );
    assert_eq!(outcome.symbol().unwrap().name, "ATTACHMENT_NOT_SIGNED");
}
