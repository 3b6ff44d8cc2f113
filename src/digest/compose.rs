//! The report message: text and HTML parts listing held entries, with action links. Every
//! text from mail is escaped for its part; the HTML has no remote content.

use std::fmt::Write as _;
use std::time::{Duration, UNIX_EPOCH};

use quarantine::Entry;

use super::token::LinkAction;
use crate::actions::disclaimer::escape_html as html;
use crate::actions::text::{TransferEncoding, encode};
use crate::config::HeldReason;

/// One listed entry with its links (`(action, url)`; empty without an endpoint).
pub struct Line<'a> {
    pub entry: &'a Entry,
    pub reason: HeldReason,
    pub links: Vec<(LinkAction, String)>,
}

/// What a report says.
pub struct Report<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub hostname: &'a str,
    pub lines: Vec<Line<'a>>,
    /// Entries held for the recipient now (listed or not).
    pub total_held: usize,
    /// New entries not listed (past `max_entries`).
    pub not_listed: usize,
    pub now: i64,
    pub id: &'a str,
}

fn date(t: i64) -> String {
    let (y, m, d) = crate::clock::civil_from_days(t.div_euclid(86_400));
    let s = t.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        s / 3600,
        s / 60 % 60
    )
}

/// Text from mail for one line of a report: hidden characters escaped, cut at `max`.
fn clean(s: &str, max: usize) -> String {
    quarantine::escape::line(s, max)
}

fn reason_words(r: HeldReason, reason: &str) -> String {
    match r {
        HeldReason::Spam => "spam".into(),
        HeldReason::Virus => "virus".into(),
        HeldReason::Policy => format!("policy ({})", quarantine::rule_of(reason)),
    }
}

fn sender_of(e: &Entry) -> String {
    if e.from.is_empty() {
        e.mail_from.clone()
    } else {
        e.from.clone()
    }
}

impl Report<'_> {
    fn text(&self) -> String {
        let mut t = String::new();
        let _ = writeln!(
            t,
            "Messages held for you by the mail gateway {}.\n",
            self.hostname
        );
        for l in &self.lines {
            let e = l.entry;
            let _ = writeln!(t, "Received: {}", date(e.received_at));
            let _ = writeln!(t, "From:     {}", clean(&sender_of(e), 120));
            let _ = writeln!(t, "Subject:  {}", clean(&e.subject, 160));
            let _ = writeln!(
                t,
                "Score:    {:.1}, held as {}",
                e.score,
                reason_words(l.reason, &e.reason)
            );
            let _ = writeln!(t, "Kept until {}", date(e.expires_at));
            for (action, url) in &l.links {
                let _ = writeln!(t, "  {}: {url}", action.label());
            }
            t.push('\n');
        }
        if self.not_listed > 0 {
            let _ = writeln!(t, "{} more new messages are not listed.", self.not_listed);
        }
        let _ = writeln!(
            t,
            "{} messages are held for you in all. Held messages are deleted when they expire.",
            self.total_held
        );
        t
    }

    fn html(&self) -> String {
        let mut h = String::from(
            "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>Quarantine report</title></head><body>",
        );
        let _ = write!(
            h,
            "<p>Messages held for you by the mail gateway {}.</p><table border=\"1\" cellpadding=\"4\" cellspacing=\"0\">\
             <tr><th>Received</th><th>From</th><th>Subject</th><th>Score</th><th>Held as</th><th>Kept until</th><th></th></tr>",
            html(self.hostname)
        );
        for l in &self.lines {
            let e = l.entry;
            let links: Vec<String> = l
                .links
                .iter()
                .map(|(a, url)| format!("<a href=\"{}\">{}</a>", html(url), html(a.label())))
                .collect();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                date(e.received_at),
                html(&clean(&sender_of(e), 120)),
                html(&clean(&e.subject, 160)),
                e.score,
                html(&reason_words(l.reason, &e.reason)),
                date(e.expires_at),
                links.join("<br>")
            );
        }
        h.push_str("</table>");
        if self.not_listed > 0 {
            let _ = write!(
                h,
                "<p>{} more new messages are not listed.</p>",
                self.not_listed
            );
        }
        let _ = write!(
            h,
            "<p>{} messages are held for you in all. Held messages are deleted when they expire.</p></body></html>",
            self.total_held
        );
        h
    }

    /// The whole message, CRLF, ready for the queue.
    pub fn message(&self) -> Vec<u8> {
        let boundary = format!("=_portcullis_digest_{}", self.id);
        let new = self.lines.len() + self.not_listed;
        let date = crate::clock::rfc5322_date(UNIX_EPOCH + Duration::from_secs(self.now as u64));
        let mut m = String::new();
        let _ = write!(
            m,
            "From: Mail gateway <{from}>\r\nTo: <{to}>\r\nSubject: Quarantine report: {new} new message{s} held for you\r\n\
             Date: {date}\r\nMessage-ID: <digest.{id}@{host}>\r\nAuto-Submitted: auto-generated\r\n\
             X-Auto-Response-Suppress: All\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/alternative; boundary=\"{boundary}\"\r\n\r\n",
            from = self.from,
            to = self.to,
            s = if new == 1 { "" } else { "s" },
            id = self.id,
            host = self.hostname,
        );
        for (ctype, body) in [("text/plain", self.text()), ("text/html", self.html())] {
            let _ = write!(
                m,
                "--{boundary}\r\nContent-Type: {ctype}; charset=utf-8\r\n\
                 Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            );
            let encoded = encode(body.as_bytes(), TransferEncoding::QuotedPrintable);
            m.push_str(&String::from_utf8_lossy(&encoded));
            m.push_str("\r\n");
        }
        let _ = write!(m, "--{boundary}--\r\n");
        m.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use filters::Direction;
    use quarantine::State;

    fn entry(subject: &str, from: &str) -> Entry {
        Entry {
            entry: 7,
            message: "661C0000000000000".into(),
            recipient: "ann@example.test".into(),
            state: State::Held,
            changed_at: 0,
            direction: Direction::Inbound,
            mail_from: "x@ext.test".into(),
            from: from.into(),
            to: String::new(),
            subject: subject.into(),
            date: String::new(),
            message_id: String::new(),
            size: 10,
            client_ip: String::new(),
            helo: String::new(),
            tls: None,
            score: 9.25,
            symbols: Vec::new(),
            reason: "score 9.25".into(),
            received_at: 1_764_000_000,
            expires_at: 1_766_592_000,
            release_requested_at: None,
        }
    }

    #[test]
    fn a_report_escapes_mail_text_and_parses_as_two_parts() {
        let e = entry(
            "<script>alert(1)</script> \u{202E}gpj.exe \u{1b}[31m",
            "\"Bob <b>\" <bob@ext.test>",
        );
        let report = Report {
            from: "postmaster@gw.test",
            to: "ann@example.test",
            hostname: "gw.test",
            lines: vec![Line {
                entry: &e,
                reason: HeldReason::Spam,
                links: vec![(LinkAction::Release, "https://gw.test:8443/a/abc.def".into())],
            }],
            total_held: 3,
            not_listed: 0,
            now: 1_764_000_100,
            id: "661C0000000000001",
        };
        let raw = report.message();
        let parsed = mail_parser::MessageParser::default().parse(&raw).unwrap();
        assert_eq!(
            parsed.subject(),
            Some("Quarantine report: 1 new message held for you")
        );
        let text = parsed.body_text(0).unwrap();
        let html = parsed.body_html(0).unwrap();
        assert!(
            text.contains("Release to me: https://gw.test:8443/a/abc.def"),
            "{text}"
        );
        assert!(text.contains("\\u{202e}gpj.exe"), "{text}");
        assert!(!text.contains('\u{1b}') && !text.contains('\u{202E}'));
        assert!(html.contains("&lt;script&gt;"), "{html}");
        assert!(!html.contains("<script>"));
        assert!(!html.contains("<img") && !html.contains("src="));
        assert!(html.contains("href=\"https://gw.test:8443/a/abc.def\""));
        assert!(text.contains("3 messages are held for you in all"));
        assert!(text.contains("Kept until 2025-12-24"), "{text}");
    }
}
