//! Fixed API answers for the unit tests, read from JSON as the gateway sends it (so the
//! sanitizing and the defaults of the types are exercised too).

use serde_json::json;

use crate::api::types::*;
use crate::app::App;
use crate::ui::Theme;
use crate::worker::Reply;

/// 2026-12-03 08:00:00 UTC.
pub const NOW: i64 = 1_796_284_800;

fn from<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("fixture parses")
}

pub fn health() -> Health {
    from(
        json!({"status": "ok", "version": "0.1.0", "hostname": "mx.example.com", "pid": 812, "uptime_secs": 3605}),
    )
}

pub fn counters(accept: u64) -> Counters {
    from(json!({
        "messages": [
            {"direction": "inbound", "verdict": "accept", "count": accept},
            {"direction": "inbound", "verdict": "reject", "count": 311},
            {"direction": "inbound", "verdict": "quarantine", "count": 7}
        ],
        "queue": {"queued": 3, "held": 7, "oldest_received_at": NOW - 412, "oldest_age_secs": 412},
        "clamd": {"up": true, "version": "ClamAV 1.4.6", "signatures": "27460",
                  "signature_date": "Thu Nov 27 08:38:19 2026", "latency_ms": 1.8},
        "dns": {"up": true, "latency_ms": 3.4, "error": null, "age_secs": 12},
        "tls": {"connections": 1200, "tls": 996},
        "symbols": [{"name": "HDR_MISSING_DATE", "count": 35},
                    {"name": "BAYES_SPAM", "count": 212},
                    {"name": "AUTH_SPF_FAIL", "count": 48}],
        "uptime_secs": 3605
    }))
}

/// Three held entries; the newest has a subject with an ANSI escape sequence and a bidi
/// override.
pub fn held() -> HeldPage {
    let entry = |id: i64,
                 message: &str,
                 rcpt: &str,
                 from: &str,
                 subject: &str,
                 score: f64,
                 reason: &str,
                 ago: i64| {
        json!({
            "entry": id, "message": message, "recipient": rcpt, "state": "held",
            "changed_at": NOW - ago, "direction": "inbound", "mail_from": from,
            "from": format!("Sender <{from}>"), "to": rcpt, "subject": subject,
            "date": "2026-12-03T07:00:00Z", "message_id": format!("{message}@ext.example"),
            "size": 18_930, "client_ip": "192.0.2.7", "helo": "mail.ext.example",
            "tls": "TLSv1.3 TLS_AES_256_GCM_SHA384", "score": score,
            "symbols": [{"name": "BAYES_SPAM", "points": 5.1}, {"name": "SPF_FAIL", "points": 2.0},
                        {"name": "DKIM_PASS", "points": -0.5}],
            "reason": reason, "received_at": NOW - ago, "expires_at": NOW + 30 * 86_400
        })
    };
    from(json!({
        "entries": [
            entry(3, "18A3F2C4B5D60003", "ceo@example.com", "billing@bad.example",
                  "\u{1b}[31mURGENT\u{1b}[0m invoice \u{202e}fdp.exe", 9.5, "score 9.00", 60),
            entry(2, "18A3F2C4B5D60002", "sales@example.com", "news@promo.example",
                  "Weekly offers for you", 6.2, "score 6.00", 3600),
            entry(1, "18A3F2C4B5D60001", "it@example.com", "",
                  "Undelivered Mail Returned to Sender", 12.0, "forced by CLAM_VIRUS", 7200),
        ],
        "next": null
    }))
}

pub fn held_detail() -> (HeldMessage, Preview) {
    let shown: HeldMessage = from(json!({"entries": [], "audit": [], "body_kept": true}));
    let preview: Preview = from(json!({
        "headers": [{"name": "Subject", "value": "\u{1b}[31mURGENT"}, {"name": "From", "value": "Sender <billing@bad.example>"}],
        "text": "Please pay the attached invoice.\r\nRegards\u{1b}]0;pwned\u{7}",
        "from_html": true,
        "attachments": [{"name": "invoice.pdf.exe", "content_type": "application/octet-stream", "size": 40960}],
        "truncated": false
    }));
    (shown, preview)
}

pub fn certs() -> CertList {
    let cert = |fp: &str, subject: &str, days: i64, usable: bool, key: bool| {
        json!({
            "fingerprint": fp, "subject": subject, "issuer": "CN=Example CA", "serial": "01",
            "addresses": [subject.trim_start_matches("CN=")], "not_before": NOW - 300 * 86_400,
            "not_after": NOW + days * 86_400, "is_ca": false, "source": "imported",
            "explicitly_trusted": false, "has_private_key": key,
            "chain": {"trusted": true, "detail": "CN=Example CA", "chain": []},
            "revocation": {"state": "good"}, "usable_for_encryption": usable,
            "encryption_problems": [], "signing_problems": []
        })
    };
    // A certificate that came with a signed message.
    let mut alice = cert("bb22", "CN=alice@example.com", 200, false, false);
    alice["source"] = json!("harvested");
    alice["message_id"] = json!("m1@example.com");
    from(json!({
        "domains": [
            {"domain": "example.com", "certificates": 2, "usable_for_encryption": 1, "gateway": [],
             "certs": [cert("aa11", "CN=bob@example.com", 5, true, true),
                       alice]},
            {"domain": "partner.example", "certificates": 1, "usable_for_encryption": 1, "gateway": [],
             "certs": [cert("cc33", "CN=carol@partner.example", 20, true, false)]},
            {"domain": "far.example", "certificates": 1, "usable_for_encryption": 1, "gateway": [],
             "certs": [cert("dd44", "CN=dave@far.example", 400, true, false)]}
        ],
        "cas": [cert("ee55", "CN=Example CA", 3000, false, false)]
    }))
}

pub fn trust() -> Vec<TrustDomain> {
    from(json!([
        {"domain": "partner.example", "weight": 42.5, "pinned": null, "correspondents": 12, "servers": 2,
         "tls_verified": 40, "tls_unverified": 1, "last_activity": NOW - 86_400},
        {"domain": "supplier.example", "weight": 3.0, "pinned": "high", "correspondents": 1, "servers": 1,
         "tls_verified": 3, "tls_unverified": 0, "last_activity": NOW - 5 * 86_400}
    ]))
}

pub fn queue() -> Vec<QueueMessage> {
    from(json!([
        {"id": "18A3F2C4B5D60010", "direction": "inbound", "state": "queued", "mail_from": "a@ext.example",
         "recipients": [{"address": "u@example.com", "status": "pending"}], "received_at": NOW - 900,
         "size": 1893, "attempts": 3, "next_attempt": NOW + 120,
         "last_error": "451 4.4.1 connect to 127.0.0.1:10025: Connection refused",
         "client_ip": "192.0.2.7", "helo": "mail.ext.example", "score": 0.5, "symbols": "SPF_PASS(-0.50)"},
        {"id": "18A3F2C4B5D60011", "direction": "outbound", "state": "queued", "mail_from": "",
         "recipients": [{"address": "x@far.example", "status": "pending"}, {"address": "y@far.example", "status": "failed", "error": "550 no such user"}],
         "received_at": NOW - 60, "size": 900, "attempts": 0, "next_attempt": NOW,
         "last_error": null, "client_ip": "10.0.0.5", "helo": "ws1", "score": 0.0, "symbols": ""}
    ]))
}

pub fn lists() -> Vec<ListEntry> {
    from(json!([
        {"id": 4, "list": "allow", "sender": "@partner.example", "recipient": "sales.example.com",
         "comment": "supplier", "expires_at": NOW + 90 * 86_400, "expired": false, "added_at": NOW - 86_400,
         "added_by": "uid 1001 (bob)"},
        {"id": 5, "list": "block", "sender": "198.51.100.0/24", "recipient": null, "comment": null,
         "expires_at": null, "expired": false, "added_at": NOW - 3600, "added_by": "uid 0 (root)"}
    ]))
}

/// An app with every screen loaded from the fixtures, at [`NOW`].
pub fn loaded_app() -> App {
    let mut app = App::new(Theme { color: true }, NOW);
    app.start();
    app.on_reply(Reply::Health(Ok(health())));
    app.on_reply(Reply::Counters(Ok(counters(1000))));
    app.quarantine.page.loading = true;
    app.on_reply(Reply::Held {
        query: HeldQuery::default(),
        append: false,
        result: Ok(held()),
    });
    app.on_reply(Reply::Certs(Ok(certs())));
    app.on_reply(Reply::Trust(Ok(trust())));
    app.on_reply(Reply::Queue(Ok(queue())));
    app.on_reply(Reply::Lists(Ok(lists())));
    app.outbox.clear();
    app
}

/// What the operator sees: the app drawn on a `width` × `height` terminal, as text.
pub fn draw(app: &mut App, width: u16, height: u16) -> String {
    let mut terminal =
        ratatui::Terminal::new(ratatui::backend::TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| app.render(f)).unwrap();
    screen_text(terminal.backend().buffer())
}

/// A buffer's text, one line per row, trailing spaces trimmed.
pub fn screen_text(buffer: &ratatui::buffer::Buffer) -> String {
    let area = buffer.area;
    let mut out = String::new();
    for y in 0..area.height {
        let mut line = String::new();
        for x in 0..area.width {
            line.push_str(buffer[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
