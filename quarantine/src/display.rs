//! The header fields an operator sees in a listing — From, To, Subject, Date, Message-ID —
//! decoded (RFC 2047 words, folding), escaped ([`crate::escape`]) and bounded.

use mail_parser::{Address, MessageParser};
use serde::{Deserialize, Serialize};

use crate::escape;

/// Decoded, escaped and bounded display fields of a message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisplayFields {
    pub from: String,
    pub to: String,
    pub subject: String,
    pub date: String,
    /// Without `<>`.
    pub message_id: String,
}

/// Read the display fields from the header block of `raw`; each at most `max_chars`
/// characters. A missing or unparsable field is empty.
pub fn display_fields(raw: &[u8], max_chars: usize) -> DisplayFields {
    let Some(message) = MessageParser::new().parse_headers(raw) else {
        return DisplayFields::default();
    };
    let line = |s: &str| escape::line(s.trim(), max_chars);
    DisplayFields {
        from: message
            .from()
            .map(|a| addresses(a, max_chars))
            .unwrap_or_default(),
        to: message
            .to()
            .map(|a| addresses(a, max_chars))
            .unwrap_or_default(),
        subject: message.subject().map(line).unwrap_or_default(),
        date: message.date().map(|d| d.to_rfc3339()).unwrap_or_default(),
        message_id: message.message_id().map(line).unwrap_or_default(),
    }
}

/// `Name <addr>, addr2, …`, cut at `max_chars` (a long list is not read to its end).
fn addresses(list: &Address<'_>, max_chars: usize) -> String {
    let mut out = String::new();
    for addr in list.iter() {
        if out.chars().count() >= max_chars {
            break;
        }
        if !out.is_empty() {
            out.push_str(", ");
        }
        match (addr.name(), addr.address()) {
            (Some(name), Some(address)) => out.push_str(&format!("{name} <{address}>")),
            (None, Some(address)) => out.push_str(address),
            (Some(name), None) => out.push_str(name),
            (None, None) => {}
        }
    }
    escape::line(&out, max_chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_decoded_escaped_and_bounded() {
        let raw = b"From: =?UTF-8?B?R3LDvMOfZQ==?= <a@example.test>\r\n\
To: b@example.test, \"C D\" <c@example.test>\r\n\
Subject: =?UTF-8?Q?invoice_=E2=80=AEfdp.exe?=\r\n\
\x20folded\r\n\
Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n\
Message-ID: <abc@example.test>\r\n\r\nbody\r\n";
        let d = display_fields(raw, 200);
        assert_eq!(d.from, "Grüße <a@example.test>");
        assert_eq!(d.to, "b@example.test, C D <c@example.test>");
        assert_eq!(d.subject, "invoice \\u{202e}fdp.exe folded");
        assert_eq!(d.date, "2026-11-28T10:00:00Z");
        assert_eq!(d.message_id, "abc@example.test");
        let long = format!("Subject: {}\r\n\r\n", "x".repeat(5000));
        assert_eq!(display_fields(long.as_bytes(), 10).subject, "xxxxxxxxxx…");
        assert_eq!(display_fields(b"", 10), DisplayFields::default());
    }
}
