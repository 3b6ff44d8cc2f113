//! Header sanity: the minimum RFC 5322 shape every message should have.
//!
//! Reports missing From/Date/Message-ID, duplicated single-occurrence headers, and raw
//! 8-bit bytes in the header block when the client did not ask for SMTPUTF8 (RFC 6532).
//! Reads only the header block of the raw message; cheap enough to run inline.

use crate::{MessageContext, Stage, StageFuture, Symbol};

pub struct HeaderSanity;

/// Headers RFC 5322 §3.6 allows at most once.
const SINGLE_OCCURRENCE: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "date",
    "message-id",
    "in-reply-to",
    "references",
    "subject",
];

impl Stage for HeaderSanity {
    fn name(&self) -> &'static str {
        "header_sanity"
    }

    fn check<'a>(&'a self, ctx: &'a MessageContext<'a>) -> StageFuture<'a> {
        Box::pin(async move { Ok(inspect(ctx.raw, ctx.envelope.smtputf8)) })
    }
}

/// The header block: everything before the first empty line.
fn header_block(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"\r\n") || raw.starts_with(b"\n") {
        return &raw[..0];
    }
    let mut i = 0;
    while let Some(pos) = raw[i..].iter().position(|&b| b == b'\n') {
        let next = i + pos + 1;
        match raw.get(next..) {
            Some([b'\r', b'\n', ..]) | Some([b'\n', ..]) => return &raw[..next],
            _ => i = next,
        }
    }
    raw
}

/// Lowercased names of the header fields, in order (continuation lines skipped).
fn field_names(block: &[u8]) -> Vec<String> {
    block
        .split(|&b| b == b'\n')
        .filter(|line| !line.is_empty() && line[0] != b' ' && line[0] != b'\t' && line[0] != b'\r')
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = &line[..colon];
            (!name.is_empty() && name.iter().all(|b| (33..=126).contains(b)))
                .then(|| String::from_utf8_lossy(name).to_ascii_lowercase())
        })
        .collect()
}

pub fn inspect(raw: &[u8], smtputf8: bool) -> Vec<Symbol> {
    let block = header_block(raw);
    let names = field_names(block);
    let mut found = Vec::new();
    if names.is_empty() {
        found.push(Symbol::new("HDR_UNPARSEABLE", "no header fields"));
        return found;
    }
    let has = |n: &str| names.iter().any(|x| x == n);
    if !has("from") {
        found.push(Symbol::new("HDR_MISSING_FROM", ""));
    }
    if !has("date") {
        found.push(Symbol::new("HDR_MISSING_DATE", ""));
    }
    if !has("message-id") {
        found.push(Symbol::new("HDR_MISSING_MESSAGE_ID", ""));
    }
    let duplicated: Vec<&str> = SINGLE_OCCURRENCE
        .iter()
        .copied()
        .filter(|n| names.iter().filter(|x| x == n).count() > 1)
        .collect();
    if !duplicated.is_empty() {
        found.push(Symbol::new("HDR_DUPLICATE", duplicated.join(",")));
    }
    if !smtputf8 && block.iter().any(|&b| b >= 0x80) {
        found.push(Symbol::new("HDR_8BIT_NO_SMTPUTF8", ""));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &str, utf8: bool) -> Vec<&'static str> {
        inspect(raw.as_bytes(), utf8)
            .iter()
            .map(|s| s.name)
            .collect()
    }

    #[test]
    fn clean_message_has_no_findings() {
        let m = "From: a@b.example\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@b>\r\nSubject: hi\r\n\r\nbody\r\nFrom: not a header\r\n";
        assert!(names(m, false).is_empty());
    }

    #[test]
    fn missing_headers_are_reported() {
        assert_eq!(
            names("Subject: hi\r\n\r\nbody\r\n", false),
            vec![
                "HDR_MISSING_FROM",
                "HDR_MISSING_DATE",
                "HDR_MISSING_MESSAGE_ID"
            ]
        );
    }

    #[test]
    fn folded_lines_do_not_count_as_fields_and_duplicates_do() {
        let m = "From: a@b\r\nDate: x\r\nMessage-ID: <1@b>\r\nSubject: one\r\n two: not a field\r\nSubject: again\r\n\r\n";
        let found = inspect(m.as_bytes(), false);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "HDR_DUPLICATE");
        assert_eq!(found[0].detail, "subject");
    }

    #[test]
    fn eight_bit_headers_need_smtputf8() {
        let m = "From: J\u{fc}rgen <j@b>\r\nDate: x\r\nMessage-ID: <1@b>\r\n\r\n";
        assert_eq!(names(m, false), vec!["HDR_8BIT_NO_SMTPUTF8"]);
        assert!(names(m, true).is_empty());
        // 8-bit in the body is not a header problem
        let body8 = "From: a@b\r\nDate: x\r\nMessage-ID: <1@b>\r\n\r\nJ\u{fc}rgen\r\n";
        assert!(names(body8, false).is_empty());
    }

    #[test]
    fn garbage_is_unparseable() {
        assert_eq!(names("\r\njust a body", false), vec!["HDR_UNPARSEABLE"]);
        assert_eq!(
            names("no colon anywhere\r\n", false),
            vec!["HDR_UNPARSEABLE"]
        );
    }
}
