//! A safe plain-text rendering of a held message for an operator: the text part (or the HTML
//! part reduced to text — nothing remote is ever fetched, no markup survives), the
//! attachments' names, types and sizes, and the full header. Everything is escaped
//! ([`crate::escape`]) and the work is bounded: only the first `max_bytes` of the message
//! are read, and the text is cut at `max_bytes`.

use mail_parser::{MessageParser, MimeHeaders};
use serde::Serialize;

use crate::escape;

/// Longest attachment name or header field name shown.
const NAME_CHARS: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeaderField {
    pub name: String,
    /// Unfolded, escaped, undecoded.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attachment {
    pub name: String,
    pub content_type: String,
    /// Decoded bytes.
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preview {
    pub headers: Vec<HeaderField>,
    /// The text part, or the HTML part as text; escaped.
    pub text: String,
    /// Whether the text came from HTML.
    pub from_html: bool,
    pub attachments: Vec<Attachment>,
    /// The message was longer than the preview reads, or the text longer than it shows:
    /// what is shown is the beginning.
    pub truncated: bool,
}

/// Render `raw` (at most its first `max_bytes`).
pub fn preview(raw: &[u8], max_bytes: usize) -> Preview {
    let mut truncated = raw.len() > max_bytes;
    let raw = &raw[..raw.len().min(max_bytes)];
    let headers = filters::result_fields::header_fields(raw)
        .map(|(s, e)| {
            let field = String::from_utf8_lossy(&raw[s..e]);
            let (name, value) = field.split_once(':').unwrap_or((&field, ""));
            let unfolded: String = value
                .split(['\r', '\n'])
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            HeaderField {
                name: escape::line(name.trim(), NAME_CHARS),
                value: escape::line(&unfolded, max_bytes),
            }
        })
        .collect();
    let Some(message) = MessageParser::new().parse(raw) else {
        return Preview {
            headers,
            text: String::new(),
            from_html: false,
            attachments: Vec::new(),
            truncated,
        };
    };
    let from_html = message.text_body_count() == 0
        || message
            .text_part(0)
            .is_some_and(|p| matches!(p.body, mail_parser::PartType::Html(_)));
    let mut text = message
        .body_text(0)
        .map(|t| escape::text(&t))
        .unwrap_or_default();
    if text.len() > max_bytes {
        let mut cut = max_bytes;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        truncated = true;
    }
    let attachments = message
        .attachments()
        .map(|part| Attachment {
            name: escape::line(part.attachment_name().unwrap_or(""), NAME_CHARS),
            content_type: part
                .content_type()
                .map(|ct| match ct.subtype() {
                    Some(sub) => format!("{}/{}", ct.ctype(), sub),
                    None => ct.ctype().to_string(),
                })
                .map(|ct| escape::line(&ct, NAME_CHARS))
                .unwrap_or_else(|| "application/octet-stream".into()),
            size: part.len() as u64,
        })
        .collect();
    Preview {
        headers,
        text,
        from_html: from_html && message.html_body_count() > 0,
        attachments,
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &str = "From: a@example.test\r\n\
Subject: =?UTF-8?Q?x?=\r\n\
X-Evil: one\u{202E}two\r\n\
\x20folded\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b\"\r\n\
\r\n\
--b\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<html><head><style>p{}</style></head><body><p>Hello <b>there</b></p>\
<img src=\"http://tracker.example/x.png\"><script>alert(1)</script>\x1b[2J</body></html>\r\n\
--b\r\n\
Content-Type: application/pdf\r\n\
Content-Disposition: attachment; filename=\"invoice\u{202E}fdp.exe\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
SGVsbG8gd29ybGQ=\r\n\
--b--\r\n";

    #[test]
    fn html_is_text_attachments_are_listed_everything_is_escaped() {
        let p = preview(MIXED.as_bytes(), 1 << 20);
        assert!(p.from_html);
        assert!(p.text.contains("Hello"), "{}", p.text);
        assert!(p.text.contains("there"));
        assert!(!p.text.contains('<'), "no markup: {}", p.text);
        assert!(!p.text.contains("tracker.example"), "{}", p.text);
        assert!(!p.text.contains('\x1b'));
        assert_eq!(
            p.attachments,
            vec![Attachment {
                name: "invoice\\u{202e}fdp.exe".into(),
                content_type: "application/pdf".into(),
                size: 11,
            }]
        );
        let evil = p.headers.iter().find(|h| h.name == "X-Evil").unwrap();
        assert_eq!(evil.value, "one\\u{202e}two folded");
        assert!(!p.truncated);
    }

    #[test]
    fn the_work_is_bounded() {
        let big = format!(
            "Subject: big\r\nContent-Type: text/plain\r\n\r\n{}",
            "word ".repeat(100_000)
        );
        let p = preview(big.as_bytes(), 4096);
        assert!(p.truncated);
        assert!(p.text.len() <= 4096);
        assert!(p.text.starts_with("word word"));
        assert_eq!(p.headers.len(), 2);
        let plain = preview(b"Subject: s\r\n\r\nplain text\x07\r\n", 4096);
        assert_eq!(plain.text.trim_end(), "plain text\\u{7}");
        assert!(!plain.from_html);
    }
}
