//! A message as a tree of MIME entities, each a range of the message's bytes: what the
//! message actions need to change one part and leave every other byte as it was.
//!
//! Header fields are read with mail-parser (through [`mime::content_type`]); the entity
//! boundaries are found here, on the bytes, so that each range is exact (RFC 2046 §5.1.1:
//! the CRLF before a delimiter line belongs to the delimiter, not to the part before it).

use crate::smime::mime::{self, ContentType};

/// How much of a message an action walks (`[limits] max_mime_parts`, `max_mime_depth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MimeLimits {
    pub max_parts: usize,
    pub max_depth: usize,
}

impl MimeLimits {
    pub fn from_config(limits: &crate::config::Limits) -> MimeLimits {
        MimeLimits {
            max_parts: limits.max_mime_parts,
            max_depth: limits.max_mime_depth,
        }
    }
}

impl Default for MimeLimits {
    fn default() -> Self {
        MimeLimits {
            max_parts: crate::config::defaults::MAX_MIME_PARTS,
            max_depth: crate::config::defaults::MAX_MIME_DEPTH,
        }
    }
}

/// One entity: its header block, its body and, for a multipart, its parts.
#[derive(Debug, Clone)]
pub struct Entity {
    /// Where the header block starts.
    pub start: usize,
    /// Where the header block ends (after its last field's line end, before the empty line).
    pub header_end: usize,
    /// Where the body starts (after the empty line).
    pub body_start: usize,
    /// Where the body ends (exclusive).
    pub end: usize,
    pub ct: ContentType,
    /// A multipart's boundary (only when its parts were read).
    pub boundary: Option<String>,
    pub parts: Vec<Entity>,
}

impl Entity {
    pub fn is_multipart(&self) -> bool {
        self.boundary.is_some()
    }

    /// An attachment rather than a body part: `Content-Disposition: attachment`, or a file
    /// name (what mail clients show as an attachment).
    pub fn is_attachment(&self) -> bool {
        self.ct.disposition.as_deref() == Some("attachment") || self.ct.file_name.is_some()
    }

    pub fn header<'a>(&self, message: &'a [u8]) -> &'a [u8] {
        &message[self.start..self.header_end]
    }

    pub fn body<'a>(&self, message: &'a [u8]) -> &'a [u8] {
        &message[self.body_start..self.end]
    }

    /// Content the user signed or encrypted: S/MIME, PGP/MIME. Nothing inside it may change.
    pub fn is_protected(&self) -> bool {
        matches!(
            self.ct.mime_type.as_str(),
            "multipart/signed"
                | "multipart/encrypted"
                | "application/pkcs7-mime"
                | "application/x-pkcs7-mime"
                | "application/pgp-encrypted"
        )
    }
}

/// Why a message is not walked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooComplex {
    #[error("more than {0} MIME parts ([limits] max_mime_parts)")]
    Parts(usize),
    #[error("multiparts nested deeper than {0} ([limits] max_mime_depth)")]
    Depth(usize),
}

/// The message's tree. Message/rfc822 attachments are leaves: an attached message is
/// never changed.
pub fn parse(message: &[u8], limits: MimeLimits) -> Result<Entity, TooComplex> {
    let mut count = 0;
    entity(message, 0, message.len(), 0, limits, &mut count)
}

fn entity(
    message: &[u8],
    start: usize,
    end: usize,
    depth: usize,
    limits: MimeLimits,
    count: &mut usize,
) -> Result<Entity, TooComplex> {
    *count += 1;
    if *count > limits.max_parts {
        return Err(TooComplex::Parts(limits.max_parts));
    }
    let split = mime::split(&message[start..end]);
    let header_end = start + split.header.len();
    let body_start = end - split.body.len();
    let ct = mime::content_type(split.header);
    let mut e = Entity {
        start,
        header_end,
        body_start,
        end,
        ct,
        boundary: None,
        parts: Vec::new(),
    };
    let boundary =
        e.ct.mime_type
            .starts_with("multipart/")
            .then(|| e.ct.param("boundary").map(str::to_string))
            .flatten()
            .filter(|b| !b.is_empty());
    let Some(boundary) = boundary else {
        return Ok(e);
    };
    if depth + 1 > limits.max_depth {
        return Err(TooComplex::Depth(limits.max_depth));
    }
    let body = &message[body_start..end];
    let delimiter = format!("--{boundary}");
    let lines = mime::delimiter_lines(body, delimiter.as_bytes());
    for (i, &(_, line_end)) in lines.iter().enumerate() {
        let (line_start, _) = lines[i];
        if body[line_start + delimiter.len()..].starts_with(b"--") {
            break; // the closing delimiter
        }
        let part_end = match lines.get(i + 1) {
            Some(&(next, _)) => {
                let mut end = next;
                if end >= 2 && &body[end - 2..end] == b"\r\n" {
                    end -= 2;
                } else if end >= 1 && body[end - 1] == b'\n' {
                    end -= 1;
                }
                end.max(line_end)
            }
            // No closing delimiter: the last part runs to the end.
            None => body.len(),
        };
        e.parts.push(entity(
            message,
            body_start + line_end,
            body_start + part_end,
            depth + 1,
            limits,
            count,
        )?);
    }
    e.boundary = Some(boundary);
    Ok(e)
}

/// Changes to a message: byte ranges replaced, everything else copied as it was.
#[derive(Debug, Default)]
pub struct Edits {
    edits: Vec<(usize, usize, Vec<u8>)>,
}

impl Edits {
    /// Replace `start..end` (an insertion when they are equal) with `bytes`.
    pub fn replace(&mut self, start: usize, end: usize, bytes: Vec<u8>) {
        self.edits.push((start, end, bytes));
    }

    pub fn is_empty(&self) -> bool {
        self.edits.is_empty()
    }

    /// The message with the edits made. Ranges must not overlap; insertions at one place
    /// keep the order they were given in.
    pub fn apply(mut self, message: &[u8]) -> Vec<u8> {
        self.edits.sort_by_key(|&(start, end, _)| (start, end));
        let extra: usize = self.edits.iter().map(|e| e.2.len()).sum();
        let mut out = Vec::with_capacity(message.len() + extra);
        let mut at = 0;
        for (start, end, bytes) in self.edits {
            debug_assert!(start >= at, "overlapping edits");
            out.extend_from_slice(&message[at..start.max(at)]);
            out.extend_from_slice(&bytes);
            at = end.max(at);
        }
        out.extend_from_slice(&message[at..]);
        out
    }
}

/// A header block with the fields named `names` removed and `added` fields appended (each
/// without its line end). The other fields stay byte for byte.
pub fn rewrite_fields(header: &[u8], names: &[&str], added: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(header.len() + 128);
    for field in mime::fields(header) {
        if !names.iter().any(|n| mime::is_field(field, n)) {
            out.extend_from_slice(field);
            if !field.ends_with(b"\n") {
                out.extend_from_slice(b"\r\n");
            }
        }
    }
    for field in added {
        out.extend_from_slice(field.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A Content-Type field for `mime_type` with `params` (values quoted where RFC 2045 needs
/// it; non-ASCII ones as RFC 2231 UTF-8 values).
pub fn content_type_field(mime_type: &str, params: &[(String, String)]) -> String {
    let mut field = format!("Content-Type: {mime_type}");
    for (name, value) in params {
        field.push_str(";\r\n\t");
        field.push_str(&parameter(name, value));
    }
    field
}

/// `name=value` with the value as a token, a quoted string, or RFC 2231 encoded.
pub fn parameter(name: &str, value: &str) -> String {
    const TSPECIALS: &[char] = &[
        '(', ')', '<', '>', '@', ',', ';', ':', '\\', '"', '/', '[', ']', '?', '=',
    ];
    if !value.is_ascii() || value.chars().any(|c| c.is_ascii_control()) {
        let mut encoded = String::with_capacity(value.len() * 3);
        for b in value.bytes() {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                encoded.push(b as char);
            } else {
                encoded.push_str(&format!("%{b:02X}"));
            }
        }
        return format!("{name}*=utf-8''{encoded}");
    }
    if !value.is_empty() && !value.contains(|c: char| c == ' ' || TSPECIALS.contains(&c)) {
        return format!("{name}={value}");
    }
    let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
    format!("{name}=\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIXED: &[u8] = b"From: a@b.test\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n\
preamble\r\n\
--outer\r\n\
Content-Type: multipart/alternative; boundary=inner\r\n\r\n\
--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n\
--inner\r\nContent-Type: text/html\r\n\r\n<p>html</p>\r\n\
--inner--\r\n\
--outer\r\n\
Content-Type: application/pdf; name=\"a.pdf\"\r\nContent-Disposition: attachment\r\n\r\nJVBERi0=\r\n\
--outer--\r\nepilogue\r\n";

    #[test]
    fn ranges_are_exact_and_the_delimiter_owns_its_crlf() {
        let tree = parse(MIXED, MimeLimits::default()).unwrap();
        assert_eq!(tree.ct.mime_type, "multipart/mixed");
        assert_eq!(tree.parts.len(), 2);
        let alt = &tree.parts[0];
        assert_eq!(alt.ct.mime_type, "multipart/alternative");
        assert_eq!(alt.parts[0].body(MIXED), b"plain");
        assert_eq!(alt.parts[1].body(MIXED), b"<p>html</p>");
        assert_eq!(alt.parts[1].header(MIXED), b"Content-Type: text/html\r\n");
        let pdf = &tree.parts[1];
        assert!(pdf.is_attachment());
        assert_eq!(pdf.ct.file_name.as_deref(), Some("a.pdf"));
        assert_eq!(pdf.body(MIXED), b"JVBERi0=");
        assert!(!alt.parts[0].is_attachment());
    }

    #[test]
    fn limits_bound_the_walk() {
        let few = MimeLimits {
            max_parts: 4,
            max_depth: 20,
        };
        assert_eq!(parse(MIXED, few).unwrap_err(), TooComplex::Parts(4));
        let shallow = MimeLimits {
            max_parts: 100,
            max_depth: 1,
        };
        assert_eq!(parse(MIXED, shallow).unwrap_err(), TooComplex::Depth(1));
        // a bomb of nested multiparts stops at the depth limit, not at the stack's end
        let mut bomb = Vec::new();
        for i in 0..10_000 {
            bomb.extend_from_slice(
                format!("Content-Type: multipart/mixed; boundary=b{i}\r\n\r\n--b{i}\r\n")
                    .as_bytes(),
            );
        }
        assert_eq!(
            parse(&bomb, MimeLimits::default()).unwrap_err(),
            TooComplex::Depth(20)
        );
    }

    #[test]
    fn edits_leave_every_other_byte() {
        let mut e = Edits::default();
        e.replace(0, 4, b"FROM".to_vec());
        e.replace(10, 10, b"!".to_vec());
        let out = e.apply(b"From: a@b.test\r\n");
        assert_eq!(out, b"FROM: a@b.!test\r\n");
    }

    #[test]
    fn fields_are_replaced_and_parameters_quoted() {
        let h = b"Content-Type: text/plain;\r\n charset=us-ascii\r\nX-A: 1\r\nContent-Transfer-Encoding: 7bit\r\n";
        let out = rewrite_fields(
            h,
            &["content-type", "content-transfer-encoding"],
            &["Content-Type: text/plain; charset=utf-8".into()],
        );
        assert_eq!(
            out,
            b"X-A: 1\r\nContent-Type: text/plain; charset=utf-8\r\n"
        );
        assert_eq!(parameter("charset", "utf-8"), "charset=utf-8");
        assert_eq!(parameter("name", "a b.pdf"), "name=\"a b.pdf\"");
        assert_eq!(parameter("name", "r\u{e9}.pdf"), "name*=utf-8''r%C3%A9.pdf");
    }
}
