//! For the actions' unit tests: what two independent MIME readers — mail-parser and
//! Python's `email` package (the real `python3`) — make of a message.

use std::io::Write;

use mail_parser::MimeHeaders;
use std::process::{Command, Stdio};

/// One leaf part as Python's `email` package (policy `default`) reads it.
#[derive(Debug)]
pub struct PyPart {
    pub content_type: String,
    pub filename: Option<String>,
    pub disposition: Option<String>,
    /// The decoded payload (transfer encoding undone).
    pub bytes: Vec<u8>,
    /// text/*: the decoded text (charset applied).
    pub text: Option<String>,
}

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
json.dump({"parts": parts, "defects": defects}, sys.stdout)
"#;

/// The message's leaf parts as Python reads them; panics (with what to install) when
/// python3 is missing, and when Python finds a MIME defect.
pub fn python_parts(message: &[u8]) -> Vec<PyPart> {
    let mut child = Command::new("python3")
        .args(["-c", READER])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed for this test (Debian: apt-get install python3)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(message)
        .expect("write to python3");
    let out = child.wait_with_output().expect("python3 ran");
    assert!(
        out.status.success(),
        "python3 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("python3's JSON");
    let defects = v["defects"].as_array().unwrap();
    assert!(
        defects.is_empty(),
        "Python's email package found defects {defects:?} in:\n{}",
        String::from_utf8_lossy(message)
    );
    v["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| PyPart {
            content_type: p["type"].as_str().unwrap().to_string(),
            filename: p["filename"].as_str().map(str::to_string),
            disposition: p["disposition"].as_str().map(str::to_string),
            bytes: base64_simd::STANDARD
                .decode_to_vec(p["bytes"].as_str().unwrap())
                .unwrap(),
            text: p["text"].as_str().map(str::to_string),
        })
        .collect()
}

/// What mail-parser reads: body texts and attachments.
pub struct MailParserView {
    /// Every text/plain body part's text.
    pub plain: Vec<String>,
    /// Every text/html body part's text.
    pub html: Vec<String>,
    /// (file name, decoded bytes) of each attachment.
    pub attachments: Vec<(String, Vec<u8>)>,
}

pub fn mail_parser_view(message: &[u8]) -> MailParserView {
    let m = mail_parser::MessageParser::default()
        .parse(message)
        .expect("mail-parser parses the message");
    let plain = (0..m.text_body.len())
        .filter_map(|i| m.body_text(i).map(|t| t.into_owned()))
        .collect();
    let html = (0..m.html_body.len())
        .filter_map(|i| m.body_html(i).map(|t| t.into_owned()))
        .collect();
    let attachments = m
        .attachments()
        .map(|a| {
            (
                a.attachment_name().unwrap_or_default().to_string(),
                a.contents().to_vec(),
            )
        })
        .collect();
    MailParserView {
        plain,
        html,
        attachments,
    }
}

/// A small file that is a PDF to anything that looks at its first bytes.
pub fn sample_pdf() -> Vec<u8> {
    let mut pdf = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n".to_vec();
    pdf.extend((0..2000u32).map(|i| (i * 7 % 256) as u8));
    pdf.extend_from_slice(b"\n%%EOF\n");
    pdf
}

/// A multipart/mixed message: `body_part` (header fields, empty line, body), then
/// `invoice.pdf` ([`sample_pdf`]) as a base64 attachment.
pub fn mixed_with_pdf(body_part: &str) -> Vec<u8> {
    let mut m = format!(
        "From: a@example.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"mix\"\r\n\r\n\
This is a multi-part message in MIME format.\r\n\
--mix\r\n{body_part}\r\n\
--mix\r\nContent-Type: application/pdf; name=\"invoice.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\
Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n\r\n"
    )
    .into_bytes();
    m.extend_from_slice(crate::smime::mime::base64_lines(&sample_pdf()).as_bytes());
    m.extend_from_slice(b"--mix--\r\n");
    m
}
