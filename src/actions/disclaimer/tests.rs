use super::*;
use crate::actions::test_support::{
    mail_parser_view, mixed_with_pdf, python_parts, sample_pdf as pdf,
};

const TEXT: &str = "This message is confidential.\nIf you are not the addressee, delete it.";

fn plain() -> Disclaimer {
    Disclaimer {
        text: TEXT.into(),
        html: None,
    }
}

fn added(message: &[u8], d: &Disclaimer) -> (Vec<u8>, Vec<String>) {
    match add(message, d, MimeLimits::default()) {
        DisclaimerOutcome::Added { message, parts } => (message, parts),
        other => panic!("not added: {other:?}"),
    }
}

/// The disclaimer's words, however the reader wrapped them.
fn has_disclaimer(text: &str) -> bool {
    text::contains_loosely(text, "This message is confidential.")
        && text::contains_loosely(text, "If you are not the addressee, delete it.")
}

/// Both readers see the disclaimer in every body text part and the attachments unchanged.
fn check_readers(message: &[u8], attachments: &[(&str, &[u8])]) {
    let py = python_parts(message);
    let bodies: Vec<_> = py
        .iter()
        .filter(|p| p.content_type.starts_with("text/") && p.disposition.is_none())
        .collect();
    assert!(!bodies.is_empty(), "no body part: {py:?}");
    for b in &bodies {
        let t = b.text.as_deref().unwrap();
        assert!(has_disclaimer(t), "python: no disclaimer in {t:?}");
    }
    for (name, bytes) in attachments {
        let a = py
            .iter()
            .find(|p| p.filename.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("python: no attachment {name}"));
        assert_eq!(&a.bytes, bytes, "python: {name} changed");
    }
    let view = mail_parser_view(message);
    let found = view.attachments;
    for t in view.plain.iter().chain(&view.html) {
        assert!(has_disclaimer(t), "mail-parser: no disclaimer in {t:?}");
    }
    for (name, bytes) in attachments {
        let a = found
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("mail-parser: no attachment {name}"));
        assert_eq!(&a.1, bytes, "mail-parser: {name} changed");
    }
}

#[test]
fn text_plain_quoted_printable_latin1_stays_latin1() {
    let m = b"From: a@example.test\r\nSubject: hi\r\nMIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
Gr=FC=DFe aus K=F6ln, ein sehr langer Satz der weich umbrochen werden muss weil e=\r\nr lang ist.\r\n";
    let (out, parts) = added(m, &plain());
    assert_eq!(parts, ["text/plain"]);
    let s = String::from_utf8(out.clone()).unwrap();
    assert!(s.starts_with("X-Portcullis-Disclaimer: added\r\nFrom: a@example.test\r\n"));
    assert!(
        s.contains("charset=iso-8859-1\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
    );
    let py = python_parts(&out);
    let t = py[0].text.as_deref().unwrap();
    assert!(t.starts_with("Gr\u{fc}\u{df}e aus K\u{f6}ln"), "{t:?}");
    assert!(t.contains("weil er lang ist."), "{t:?}");
    check_readers(&out, &[]);
}

#[test]
fn a_disclaimer_the_charset_cannot_hold_turns_the_part_to_utf8() {
    let m =
        b"From: a@example.test\r\nContent-Type: text/plain; charset=iso-8859-1; format=flowed\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\r\nK=F6ln\r\n";
    let d = Disclaimer {
        text: "Fee: 5 \u{20ac}. This message is confidential.\nIf you are not the addressee, delete it.".into(),
        html: None,
    };
    let (out, parts) = added(m, &d);
    assert_eq!(parts, ["text/plain (now utf-8)"]);
    let s = String::from_utf8(out.clone()).unwrap();
    assert!(
        s.contains("Content-Type: text/plain;\r\n\tcharset=utf-8;\r\n\tformat=flowed\r\n"),
        "{s}"
    );
    let py = python_parts(&out);
    let t = py[0].text.as_deref().unwrap();
    assert!(
        t.starts_with("K\u{f6}ln") && t.contains("5 \u{20ac}"),
        "{t:?}"
    );
    check_readers(&out, &[]);
}

#[test]
fn a_message_without_mime_fields_gets_them_when_it_must_change() {
    let m = b"From: a@example.test\r\nSubject: plain\r\n\r\nhello\r\n";
    // ASCII: nothing but the text changes
    let (out, _) = added(m, &plain());
    assert!(out.starts_with(b"X-Portcullis-Disclaimer: added\r\nFrom: a@example.test\r\nSubject: plain\r\n\r\nhello\r\n\r\nThis message"));
    check_readers(&out, &[]);
    let d = Disclaimer {
        text: format!("\u{a9} ACME. {TEXT}"),
        html: None,
    };
    let (out, _) = added(m, &d);
    let s = String::from_utf8(out.clone()).unwrap();
    assert!(s.contains("MIME-Version: 1.0\r\n"), "{s}");
    assert!(
        s.contains("Content-Transfer-Encoding: quoted-printable\r\n"),
        "{s}"
    );
    assert!(
        python_parts(&out)[0]
            .text
            .as_deref()
            .unwrap()
            .contains("\u{a9} ACME.")
    );
    check_readers(&out, &[]);
}

#[test]
fn text_html_base64_gets_it_before_body_end_escaped() {
    let html = "<html><head><meta charset=\"utf-8\"></head><body><p>Gr\u{fc}\u{df}e</p>\r\n</BODY></html>\r\n";
    let mut m = b"From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n".to_vec();
    m.extend_from_slice(crate::smime::mime::base64_lines(html.as_bytes()).as_bytes());
    let d = Disclaimer {
        text: "Confidential <b>& private</b>.\nThis message is confidential.\nIf you are not the addressee, delete it.".into(),
        html: None,
    };
    let (out, parts) = added(&m, &d);
    assert_eq!(parts, ["text/html"]);
    let py = python_parts(&out);
    let t = py[0].text.as_deref().unwrap();
    let at = t
        .find("Confidential &lt;b&gt;&amp; private&lt;/b&gt;.<br>")
        .expect(t);
    assert!(at < t.find("</BODY>").unwrap(), "before </body>: {t}");
    assert!(
        t.ends_with("</BODY></html>\r\n") || t.ends_with("</BODY></html>\n"),
        "{t:?}"
    );
    check_readers(&out, &[]);
    // the HTML variant as written; no </body>: at the end
    let d = Disclaimer {
        text: TEXT.into(),
        html: Some("<p class=\"d\">This message is confidential.<br>If you are not the addressee, delete it.</p>".into()),
    };
    let m2 =
        b"From: a@example.test\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<p>hi</p>\r\n";
    let (out, _) = added(m2, &d);
    let t = python_parts(&out)[0].text.clone().unwrap();
    assert!(
        t.starts_with("<p>hi</p>") && t.contains("<p class=\"d\">This message"),
        "{t}"
    );
}

#[test]
fn html_in_a_charset_that_cannot_hold_it_gets_character_references() {
    let m = b"From: a@example.test\r\nContent-Type: text/html; charset=us-ascii\r\n\r\n<body>hi</body>\r\n";
    let d = Disclaimer {
        text: format!("\u{a9} ACME. {TEXT}"),
        html: None,
    };
    let (out, _) = added(m, &d);
    let s = String::from_utf8(out.clone()).unwrap();
    assert!(s.contains("&#169; ACME."), "{s}");
    assert!(s.contains("charset=us-ascii"), "charset kept: {s}");
    check_readers(&out, &[]);
}

const ALTERNATIVE: &[u8] = b"From: a@example.test\r\nMIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n\
--alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nhello\r\n\
--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n\
<html><body><p>hello</p></body></html>\r\n\
--alt--\r\n";

#[test]
fn multipart_alternative_gets_it_in_both() {
    let (out, parts) = added(ALTERNATIVE, &plain());
    assert_eq!(parts, ["text/plain", "text/html"]);
    let py = python_parts(&out);
    assert_eq!(py.len(), 2);
    assert!(py[1].text.as_deref().unwrap().contains("<br>"));
    check_readers(&out, &[]);
}

#[test]
fn multipart_mixed_gets_it_in_the_text_never_the_attachment() {
    let m =
        mixed_with_pdf("Content-Type: text/plain; charset=us-ascii\r\n\r\nSee the invoice.\r\n");
    let (out, parts) = added(&m, &plain());
    assert_eq!(parts, ["text/plain"]);
    check_readers(&out, &[("invoice.pdf", &pdf())]);
    // every byte from the attachment's delimiter on is as it was
    let tail = &m[memchr::memmem::find(&m, b"--mix\r\nContent-Type: application/pdf").unwrap()..];
    assert!(out.ends_with(tail));
    // a text attachment is an attachment too
    let m = mixed_with_pdf(
        "Content-Type: text/plain; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\r\nnotes",
    );
    assert!(matches!(
        add(&m, &plain(), MimeLimits::default()),
        DisclaimerOutcome::NotAdded(_)
    ));
}

#[test]
fn nested_alternative_in_related_in_mixed() {
    let m = b"From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"m\"\r\n\r\n\
--m\r\nContent-Type: multipart/alternative; boundary=\"a\"\r\n\r\n\
--a\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nhello\r\n\
--a\r\nContent-Type: multipart/related; boundary=\"r\"\r\n\r\n\
--r\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<body><img src=\"cid:logo\"></body>\r\n\
--r\r\nContent-Type: image/png\r\nContent-ID: <logo>\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n\
--r--\r\n\
--a--\r\n\
--m\r\nContent-Type: text/plain; name=\"a.txt\"\r\nContent-Disposition: attachment; filename=\"a.txt\"\r\n\r\nattached text\r\n\
--m--\r\n";
    let (out, parts) = added(m, &plain());
    assert_eq!(parts, ["text/plain", "text/html"]);
    let py = python_parts(&out);
    let attached = py
        .iter()
        .find(|p| p.filename.as_deref() == Some("a.txt"))
        .unwrap();
    assert!(!has_disclaimer(attached.text.as_deref().unwrap()));
    assert_eq!(attached.bytes, b"attached text");
    let png = py.iter().find(|p| p.content_type == "image/png").unwrap();
    assert_eq!(png.bytes, b"\x89PNG\r\n\x1a\n");
    let html = py.iter().find(|p| p.content_type == "text/html").unwrap();
    assert!(has_disclaimer(html.text.as_deref().unwrap()));
    let plain_part = py
        .iter()
        .find(|p| p.content_type == "text/plain" && p.filename.is_none())
        .unwrap();
    assert!(has_disclaimer(plain_part.text.as_deref().unwrap()));
}

#[test]
fn signed_or_encrypted_content_is_never_touched() {
    let signed = b"From: a@example.test\r\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"s\"\r\n\r\n\
--s\r\nContent-Type: text/plain\r\n\r\nsigned text\r\n--s\r\nContent-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n--s--\r\n";
    let enveloped = b"From: a@example.test\r\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n";
    let pgp_mime = b"From: a@example.test\r\nContent-Type: multipart/encrypted; protocol=\"application/pgp-encrypted\"; boundary=\"e\"\r\n\r\n\
--e\r\nContent-Type: application/pgp-encrypted\r\n\r\nVersion: 1\r\n--e\r\nContent-Type: application/octet-stream\r\n\r\n-----BEGIN PGP MESSAGE-----\r\n--e--\r\n";
    let inline_pgp = b"From: a@example.test\r\nContent-Type: text/plain\r\n\r\n-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\nhello\r\n";
    let signed_in_mixed = [
        &b"From: a@example.test\r\nContent-Type: multipart/mixed; boundary=\"x\"\r\n\r\n--x\r\n"[..],
        &signed[22..],
        b"\r\n--x--\r\n",
    ]
    .concat();
    for m in [
        &signed[..],
        enveloped,
        pgp_mime,
        inline_pgp,
        &signed_in_mixed,
    ] {
        let outcome = add(m, &plain(), MimeLimits::default());
        assert!(
            matches!(outcome, DisclaimerOutcome::Protected(_)),
            "{outcome:?} for {}",
            String::from_utf8_lossy(m)
        );
        assert_eq!(
            outcome.symbol().unwrap().name,
            "DISCLAIMER_SKIPPED_PROTECTED"
        );
    }
}

#[test]
fn once_per_message_whatever_a_marker_from_outside_says() {
    let (once, _) = added(ALTERNATIVE, &plain());
    assert!(matches!(
        add(&once, &plain(), MimeLimits::default()),
        DisclaimerOutcome::AlreadyPresent
    ));
    // a forged marker does not keep the disclaimer out, and is not written twice
    let forged = [&b"X-Portcullis-Disclaimer: added\r\n"[..], ALTERNATIVE].concat();
    let (out, parts) = added(&forged, &plain());
    assert_eq!(parts.len(), 2);
    assert_eq!(
        memchr::memmem::find_iter(&out, b"X-Portcullis-Disclaimer").count(),
        1
    );
    check_readers(&out, &[]);
    // one alternative had it already (an earlier pass with a different HTML form): the
    // other gets it
    let half = String::from_utf8(ALTERNATIVE.to_vec()).unwrap().replace(
        "hello\r\n--alt",
        &format!("hello\r\n\r\n{}\r\n--alt", TEXT.replace('\n', "\r\n")),
    );
    let (_, parts) = added(half.as_bytes(), &plain());
    assert_eq!(parts, ["text/html"]);
}

#[test]
fn the_walk_is_bounded() {
    let m = mixed_with_pdf("Content-Type: text/plain\r\n\r\nhi");
    let tight = MimeLimits {
        max_parts: 2,
        max_depth: 20,
    };
    match add(&m, &plain(), tight) {
        DisclaimerOutcome::NotAdded(why) => assert!(why.contains("max_mime_parts"), "{why}"),
        other => panic!("{other:?}"),
    }
}
