//! Delivery status notifications (RFC 3464): the bounce a sender gets when we give up.

use crate::clock::rfc5322_date;
use crate::queue::trace::printable;
use crate::smtp::address::smtp_path;

/// One recipient we could not deliver to.
pub struct FailedRecipient<'a> {
    pub address: &'a str,
    /// The next hop's reply or our own reason, e.g. "550 5.1.1 user unknown".
    pub diagnostic: &'a str,
}

/// Build a DSN for `failed` recipients of the message `original` (queue id `id`). At most
/// `max_returned` bytes of the original's header are returned; never its body.
pub fn build(
    hostname: &str,
    id: &str,
    sender: &str,
    arrival: i64,
    failed: &[FailedRecipient],
    original: &[u8],
    max_returned: usize,
) -> Vec<u8> {
    let now = std::time::SystemTime::now();
    let arrival = std::time::UNIX_EPOCH + std::time::Duration::from_secs(arrival.max(0) as u64);
    let boundary = format!("{id}.dsn/{hostname}");
    let mut m = String::new();
    m.push_str(&format!(
        "From: Mail Delivery System <MAILER-DAEMON@{hostname}>\r\n"
    ));
    m.push_str(&format!("To: <{}>\r\n", shown(sender)));
    m.push_str("Subject: Undelivered Mail Returned to Sender\r\n");
    m.push_str(&format!("Date: {}\r\n", rfc5322_date(now)));
    m.push_str(&format!("Message-ID: <{id}.dsn@{hostname}>\r\n"));
    m.push_str("Auto-Submitted: auto-replied\r\n");
    m.push_str("MIME-Version: 1.0\r\n");
    m.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n\r\n"
    ));
    m.push_str("This is a MIME-encapsulated message.\r\n\r\n");
    m.push_str(&format!(
        "--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
    ));
    m.push_str(&format!(
        "This is the mail gateway at {hostname}.\r\n\r\nYour message could not be delivered to one or more recipients.\r\nIt has been returned below, headers only.\r\n\r\n"
    ));
    for f in failed {
        m.push_str(&format!(
            "<{}>: {}\r\n",
            shown(f.address),
            one_line(f.diagnostic)
        ));
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n"
    ));
    m.push_str(&format!("Reporting-MTA: dns; {hostname}\r\n"));
    m.push_str(&format!("X-Portcullis-Queue-ID: {id}\r\n"));
    m.push_str(&format!("Arrival-Date: {}\r\n", rfc5322_date(arrival)));
    for f in failed {
        m.push_str(&format!(
            "\r\nFinal-Recipient: rfc822; {}\r\n",
            shown(f.address)
        ));
        m.push_str("Action: failed\r\n");
        m.push_str(&format!("Status: {}\r\n", status_code(f.diagnostic)));
        m.push_str(&format!(
            "Diagnostic-Code: smtp; {}\r\n",
            one_line(f.diagnostic)
        ));
    }
    m.push_str(&format!(
        "\r\n--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n"
    ));
    let mut out = m.into_bytes();
    out.extend_from_slice(&returned_header(original, max_returned));
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    out
}

/// An address as it is written in a path, for the DSN's header and report fields.
fn shown(address: &str) -> String {
    smtp_path(address).unwrap_or_else(|| printable(address))
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The enhanced status code in a reply ("550 5.1.1 no such user" → "5.1.1"), else 5.0.0.
fn status_code(diagnostic: &str) -> String {
    diagnostic
        .split_whitespace()
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && parts[0] == "5"
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .unwrap_or("5.0.0")
        .to_string()
}

/// The header block of `raw`: up to its first empty line, whether lines end in CRLF or in
/// a bare LF (a bounce must not carry the body to a possibly forged sender).
fn header_block(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"\r\n") || raw.starts_with(b"\n") {
        return &raw[..0];
    }
    let mut from = 0;
    while let Some(i) = memchr::memchr(b'\n', &raw[from..]).map(|i| i + from) {
        let next = &raw[i + 1..];
        if next.starts_with(b"\n") || next.starts_with(b"\r\n") {
            return &raw[..=i];
        }
        from = i + 1;
    }
    raw
}

/// What the DSN returns of `raw`: its header block, cut at the last whole line within
/// `max` bytes, with every line ending in CRLF (a bare CR or LF from an old queue entry
/// is not passed on).
fn returned_header(raw: &[u8], max: usize) -> Vec<u8> {
    let mut head = header_block(raw);
    if head.len() > max {
        let cut = &head[..max];
        head = match memchr::memrchr(b'\n', cut) {
            Some(i) => &cut[..=i],
            None => &cut[..0],
        };
    }
    let mut out = Vec::with_capacity(head.len() + 2);
    let mut i = 0;
    while i < head.len() {
        match head[i] {
            b'\r' if head.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 2;
                continue;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            c => out.push(c),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsn_is_a_parseable_multipart_report() {
        let orig = b"From: a@b.test\r\nSubject: hello\r\n\r\nsecret body\r\n";
        let failed = [FailedRecipient {
            address: "u@x.test",
            diagnostic: "550 5.1.1 <u@x.test>: user unknown",
        }];
        let dsn = build("gw.test", "ABC", "a@b.test", 0, &failed, orig, 16384);
        let msg = mail_parser::MessageParser::default().parse(&dsn).unwrap();
        assert_eq!(msg.subject(), Some("Undelivered Mail Returned to Sender"));
        let text = String::from_utf8_lossy(&dsn);
        assert!(text.contains("multipart/report; report-type=delivery-status"));
        assert!(text.contains("Final-Recipient: rfc822; u@x.test"));
        assert!(text.contains("Status: 5.1.1"));
        assert!(text.contains("Subject: hello"));
        assert!(!text.contains("secret body"), "only headers are returned");
        assert_eq!(status_code("timeout"), "5.0.0");
    }

    #[test]
    fn only_the_header_is_returned_whatever_the_line_ends() {
        assert_eq!(
            returned_header(b"From: a\nSubject: s\n\nbody\r\n\r\nmore", 1000),
            b"From: a\r\nSubject: s\r\n"
        );
        assert_eq!(
            returned_header(b"From: a\r\nSubject: s\r\n\r\nbody\n\nmore", 1000),
            b"From: a\r\nSubject: s\r\n"
        );
        assert_eq!(
            returned_header(b"From: a\r\nX: y\n\r\nbody", 1000),
            b"From: a\r\nX: y\r\n"
        );
        assert_eq!(returned_header(b"\nbody only", 1000), b"");
        assert_eq!(
            returned_header(b"From: a\rX: b\r\n\r\nbody", 1000),
            b"From: a\r\nX: b\r\n"
        );
    }

    #[test]
    fn the_returned_header_is_capped_at_a_line() {
        let mut raw = Vec::new();
        for i in 0..1000 {
            raw.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(40)).as_bytes());
        }
        raw.extend_from_slice(b"\r\nbody");
        let got = returned_header(&raw, 16 * 1024);
        assert!(got.len() <= 16 * 1024);
        assert!(got.len() > 15 * 1024);
        assert!(got.ends_with(b"\r\n"));
        assert!(got.starts_with(b"X-Filler-0: "));
    }
}
