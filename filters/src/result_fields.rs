//! The header fields that carry a gateway's verdict, and their removal from inbound mail.
//!
//! Whoever reads our verdict downstream (the internal server's filing rules, the user's
//! client, an operator) trusts these fields because we write them. A sender can write them
//! too, so every such field that arrives from outside is removed before ours are added:
//! `X-Portcullis-*` (score, S/MIME result, queue id), `X-Spam-*` (our tag, and any other
//! filter's verdict, which nobody here vouched for), and `Authentication-Results` fields
//! claiming our authserv-id (RFC 8601 §5).

/// The fields of the header block of `raw` as byte ranges, continuation lines included. The
/// header block ends at the first empty line, CRLF or bare LF.
pub fn header_fields(raw: &[u8]) -> HeaderFields<'_> {
    HeaderFields { raw, pos: 0 }
}

/// Iterator of [`header_fields`].
pub struct HeaderFields<'a> {
    raw: &'a [u8],
    pos: usize,
}

impl Iterator for HeaderFields<'_> {
    type Item = (usize, usize);

    fn next(&mut self) -> Option<(usize, usize)> {
        let raw = self.raw;
        let start = self.pos;
        let mut end = start;
        while end < raw.len() {
            let line_end = memchr::memchr(b'\n', &raw[end..]).map_or(raw.len(), |i| end + i + 1);
            let line = &raw[end..line_end];
            let first = end == start;
            if first && (line == b"\r\n" || line == b"\n") {
                // The empty line: the header block is over.
                self.pos = raw.len();
                return None;
            }
            if !first && !matches!(line.first(), Some(b' ' | b'\t')) {
                break;
            }
            end = line_end;
        }
        self.pos = end;
        (end > start).then_some((start, end))
    }
}

/// Remove every field of the header block of `raw` that `forged` matches. `None` when there
/// is none, so the caller keeps the original bytes.
pub fn strip_fields(raw: &[u8], mut forged: impl FnMut(&[u8]) -> bool) -> Option<Vec<u8>> {
    let drop: Vec<(usize, usize)> = header_fields(raw)
        .filter(|&(s, e)| forged(&raw[s..e]))
        .collect();
    if drop.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut last = 0;
    for (s, e) in drop {
        out.extend_from_slice(&raw[last..s]);
        last = e;
    }
    out.extend_from_slice(&raw[last..]);
    Some(out)
}

/// The name of a header field (before the colon, trimmed); empty without a colon.
pub fn field_name(field: &[u8]) -> &[u8] {
    field
        .iter()
        .position(|&b| b == b':')
        .map_or(&[][..], |colon| field[..colon].trim_ascii())
}

/// Is `field` one of the verdict fields only we may write (other than
/// Authentication-Results, which is ours only with our authserv-id)?
pub fn is_our_verdict_field(field: &[u8]) -> bool {
    let name = field_name(field);
    let starts = |prefix: &[u8]| {
        name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
    };
    starts(b"x-portcullis-") || starts(b"x-spam-")
}

/// Remove from inbound mail every verdict field a sender could have forged: ours
/// (`X-Portcullis-*`), other filters' `X-Spam-*`, and Authentication-Results claiming
/// `authserv_id`. `None` when there is none.
pub fn strip_forged_verdicts(raw: &[u8], authserv_id: &str) -> Option<Vec<u8>> {
    strip_fields(raw, |field| {
        is_our_verdict_field(field) || crate::auth::claims_authserv_id(field, authserv_id)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_verdicts_are_removed_in_the_header_only() {
        let raw = b"Received: from x\r\n\
X-Portcullis-SMIME: decrypted, signed by <ceo@example.test>, chain trusted\r\n\
x-spam-flag: NO\r\n\
X-Spam-Status: No, score=-5\r\n\tfolded=yes\r\n\
X-Portcullis-Score: -10.00 (accept)\r\n\
Authentication-Results: gw.example; dkim=pass\r\n\
X-Spammy-But-Not-Ours: kept\r\n\
Subject: hi\r\n\
\r\n\
X-Portcullis-Score: in the body stays\r\n";
        let out = strip_forged_verdicts(raw, "gw.example").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "Received: from x\r\nX-Spammy-But-Not-Ours: kept\r\nSubject: hi\r\n\r\n\
X-Portcullis-Score: in the body stays\r\n"
        );
    }

    #[test]
    fn bare_lf_messages_end_their_header_at_the_first_empty_line() {
        let raw = b"Subject: a\nX-Spam-Flag: YES\n\nX-Spam-Flag: body\n";
        let out = strip_forged_verdicts(raw, "gw.example").unwrap();
        assert_eq!(out, b"Subject: a\n\nX-Spam-Flag: body\n");
        assert!(strip_forged_verdicts(b"Subject: a\r\n\r\n", "gw.example").is_none());
    }
}
