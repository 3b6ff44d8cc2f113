//! Quarantine reports end to end: held messages (one by score for two recipients, one virus
//! from a real clamd) produce a report per recipient at the test's SMTP sink, with working
//! links served over HTTPS. A real headless Chromium opens a link: the page changes nothing
//! until its button is pressed, and then releases to that recipient only. HEAD and a plain
//! GET with a link scanner's user agent change nothing; a used or altered link is refused;
//! a virus is offered only "ask an administrator", and the request shows in the API's list.

use std::process::Command;

use serde_json::Value;

use crate::harness::browser::Browser;
use crate::harness::clamd::{Clamd, eicar};
use crate::harness::tls::require_tool;
use crate::harness::{Client, Gateway, Sink, free_port, wait_until};

fn cli_json(gw: &Gateway, args: &[&str]) -> Value {
    let (code, out, err) = gw.cli(args);
    assert_eq!(code, 0, "portcullis {args:?}: {out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The entries of every state, by (recipient, message id header).
fn entry_state(gw: &Gateway, recipient: &str, message_id: &str) -> String {
    let all = cli_json(gw, &["quarantine", "list", "--state", "all", "--json"]);
    let entries = all["entries"].as_array().cloned().unwrap_or_default();
    entries
        .iter()
        .find(|e| e["recipient"] == recipient && e["message_id"] == message_id)
        .map(|e| e["state"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no entry for {recipient} {message_id}: {all}"))
}

/// curl against the endpoint (self-signed certificate): (status, body).
fn curl(args: &[&str], url: &str) -> (u16, String) {
    let out = Command::new(require_tool("curl", "curl"))
        .args(["-sk", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// The links of a report's text part, as (label, url), per listed entry (blocks end at a
/// blank line).
fn links_by_entry(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let Some(subject) = block
            .lines()
            .find_map(|l| l.strip_prefix("Subject:"))
            .map(|s| s.trim().to_string())
        else {
            continue;
        };
        let links = block
            .lines()
            .filter_map(|l| {
                let (label, url) = l.trim().split_once(": https://")?;
                Some((label.to_string(), format!("https://{url}")))
            })
            .collect();
        out.push((subject, links));
    }
    out
}

#[tokio::test]
async fn a_report_link_releases_to_its_recipient_only_when_its_button_is_pressed() {
    let sink = Sink::start().await;
    let clamd = Clamd::start();
    let web_port = free_port();
    let gw = Gateway::start(
        sink.addr,
        &format!(
            "[symbols]\nHDR_MISSING_DATE = 9.0\n[queue]\nscan_interval_secs = 1\n\
             {}virus_action = \"quarantine\"\n\
             [digest]\nhttp_bind = \"127.0.0.1:{web_port}\"\n",
            clamd.config(false)
        ),
    );
    struct Dump<'a>(&'a Gateway);
    impl Drop for Dump<'_> {
        fn drop(&mut self) {
            if std::thread::panicking() {
                eprintln!("gateway log:\n{}", self.0.log());
            }
        }
    }
    let _dump = Dump(&gw);
    let mut c = Client::connect(gw.smtp).await;
    let spam = "From: Shop <shop@ext.test>\r\nTo: ann@example.test, bob@example.test\r\n\
                Subject: Cheap <b>offers</b>\r\nMessage-ID: <spam1@ext.test>\r\n\r\nBuy now.\r\n";
    let r = c
        .send_message(
            "shop@ext.test",
            &["ann@example.test", "bob@example.test"],
            spam,
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    let virus = format!(
        "From: <x@ext.test>\r\nTo: ann@example.test\r\nSubject: Invoice\r\n\
         Date: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <virus1@ext.test>\r\n\r\n{}\r\n",
        eicar()
    );
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message("x@ext.test", &["ann@example.test"], &virus)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(gw.held_json().len(), 3, "{:?}", gw.held_json());

    // A dry run shows the reports and sends nothing; the real run queues one per recipient.
    let dry = cli_json(&gw, &["digest", "send", "--dry-run", "--json"]);
    assert_eq!(dry.as_array().unwrap().len(), 2, "{dry}");
    assert!(dry[0]["queue_id"].is_null() && dry[0]["message"].is_string());
    let sent = cli_json(&gw, &["digest", "send", "--json"]);
    assert_eq!(sent.as_array().unwrap().len(), 2, "{sent}");
    assert!(
        wait_until(20, || sink.count() == 2).await,
        "two reports at the sink; log:\n{}",
        gw.log()
    );
    // Nothing new: no second report.
    let again = cli_json(&gw, &["digest", "send", "--json"]);
    assert_eq!(again.as_array().unwrap().len(), 0, "{again}");

    let reports = sink.all();
    let ann = reports
        .iter()
        .find(|m| m.rcpts == ["ann@example.test"])
        .expect("a report to ann");
    assert!(reports.iter().any(|m| m.rcpts == ["bob@example.test"]));
    let parsed = mail_parser::MessageParser::default()
        .parse(ann.data.as_bytes())
        .unwrap();
    assert_eq!(
        parsed.subject(),
        Some("Quarantine report: 2 new messages held for you")
    );
    let html = parsed.body_html(0).unwrap();
    assert!(html.contains("Cheap &lt;b&gt;offers&lt;/b&gt;"), "{html}");
    assert!(!html.contains("<img") && !html.contains("<b>offers"));
    let text = parsed.body_text(0).unwrap().replace("\r\n", "\n");
    let entries = links_by_entry(&text);
    let (_, spam_links) = entries
        .iter()
        .find(|(s, _)| s.contains("offers"))
        .unwrap_or_else(|| panic!("{text}"));
    let (_, virus_links) = entries
        .iter()
        .find(|(s, _)| s == "Invoice")
        .unwrap_or_else(|| panic!("{text}"));
    let labels: Vec<&str> = spam_links.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        labels,
        [
            "Release to me",
            "Release to me, it is not spam",
            "Always allow this sender for me",
            "Delete"
        ]
    );
    let virus_labels: Vec<&str> = virus_links.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(virus_labels, ["Ask an administrator to release it"]);
    let release = spam_links[0].1.clone();
    assert!(release.starts_with(&format!("https://gw.portcullis.test:{web_port}/a/")));
    let release = release.replace("gw.portcullis.test", "127.0.0.1");

    // Link scanners: HEAD, a GET with a scanner's user agent, and a real browser's GET
    // change nothing.
    let (code, _) = curl(&["-I"], &release);
    assert_eq!(code, 200);
    let (code, page) = curl(
        &[
            "-A",
            "Mozilla/5.0 (compatible; Microsoft Safe Links scanner)",
        ],
        &release,
    );
    assert_eq!(code, 200);
    assert!(page.contains("<form method=\"post\""), "{page}");
    assert!(page.contains("Cheap &lt;b&gt;offers&lt;/b&gt;"), "{page}");
    let mut browser = Browser::start();
    let shown = browser.open(&release);
    assert!(shown.contains("Release to me"), "{shown}");
    assert!(shown.contains("shop@ext.test"), "{shown}");
    assert_eq!(
        entry_state(&gw, "ann@example.test", "spam1@ext.test"),
        "held"
    );
    assert_eq!(
        entry_state(&gw, "bob@example.test", "spam1@ext.test"),
        "held"
    );
    // A POST without the page's nonce and cookie is refused.
    let (code, _) = curl(&["-X", "POST", "-d", "nonce=0123"], &release);
    assert_eq!(code, 403);
    assert_eq!(
        entry_state(&gw, "ann@example.test", "spam1@ext.test"),
        "held"
    );

    // Pressing the button releases to ann only.
    browser.eval("document.querySelector('button').click()");
    let done = browser.wait_for_text("released to you");
    assert!(done.contains("Done"), "{done}");
    assert!(
        wait_until(20, || sink
            .all()
            .iter()
            .any(|m| m.message_id().as_deref() == Some("spam1@ext.test")))
        .await,
        "the released message at the sink; log:\n{}",
        gw.log()
    );
    let delivered: Vec<_> = sink
        .all()
        .into_iter()
        .filter(|m| m.message_id().as_deref() == Some("spam1@ext.test"))
        .collect();
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].rcpts, ["ann@example.test"]);
    assert_eq!(
        entry_state(&gw, "ann@example.test", "spam1@ext.test"),
        "released"
    );
    assert_eq!(
        entry_state(&gw, "bob@example.test", "spam1@ext.test"),
        "held"
    );
    assert!(
        delivered[0]
            .data
            .contains("X-Portcullis-Released: by ann@example.test via report"),
        "{}",
        delivered[0].data
    );
    let all = cli_json(&gw, &["quarantine", "list", "--state", "all", "--json"]);
    let held_id = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["message_id"] == "spam1@ext.test")
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_string();
    let shown = cli_json(&gw, &["quarantine", "show", &held_id, "--json"]);
    let audit = shown["audit"].as_array().cloned().unwrap_or_default();
    assert!(
        audit
            .iter()
            .any(|a| a["user_name"] == "ann@example.test via report"
                && a["recipient"] == "ann@example.test"
                && a["action"] == "release"),
        "{shown}"
    );

    // The used link, a changed one, and the button of a page opened before are refused.
    let replay = browser.open(&release);
    assert!(replay.contains("used already"), "{replay}");
    let mut altered = release.clone();
    let last = altered.pop().unwrap();
    altered.push(if last == 'A' { 'B' } else { 'A' });
    let (code, page) = curl(&[], &altered);
    assert_eq!(code, 400, "{page}");
    assert!(page.contains("not valid"));

    // The virus: only a request, which operators then see.
    let request = virus_links[0].1.replace("gw.portcullis.test", "127.0.0.1");
    let shown = browser.open(&request);
    assert!(shown.contains("Ask an administrator"), "{shown}");
    browser.eval("document.querySelector('button').click()");
    browser.wait_for_text("passed to the administrators");
    let requested = cli_json(
        &gw,
        &["quarantine", "list", "--release-requested", "--json"],
    );
    let requested = requested["entries"].as_array().unwrap().clone();
    assert_eq!(requested.len(), 1, "{requested:?}");
    assert_eq!(requested[0]["message_id"], "virus1@ext.test");
    assert!(requested[0]["release_requested_at"].is_i64());
    assert_eq!(
        entry_state(&gw, "ann@example.test", "virus1@ext.test"),
        "held"
    );
    assert!(
        !sink
            .all()
            .iter()
            .any(|m| m.message_id().as_deref() == Some("virus1@ext.test")),
        "a requested virus is never delivered"
    );
}

#[tokio::test]
async fn a_recipients_own_frequency_is_set_through_the_api_and_off_means_no_report() {
    let sink = Sink::start().await;
    // Reports are DKIM-signed like any outbound mail of the sender's domain.
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("ed.pem");
    let made = Command::new(require_tool("openssl", "openssl"))
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let gw = Gateway::start(
        sink.addr,
        &format!(
            "[symbols]\nHDR_MISSING_DATE = 9.0\n\
             [[dkim_signing]]\ndomain = \"gw.portcullis.test\"\nselector = \"ed\"\nkey = \"{}\"\n",
            key.display()
        ),
    );
    let set = cli_json(&gw, &["digest", "set", "Ann@Example.test", "off", "--json"]);
    assert_eq!(set["recipient"], "ann@example.test");
    assert_eq!(set["frequency"], "off");
    let all = cli_json(&gw, &["digest", "show", "--json"]);
    assert_eq!(all.as_array().unwrap().len(), 1, "{all}");
    let mut c = Client::connect(gw.smtp).await;
    let m = "From: <a@ext.test>\r\nTo: ann@example.test\r\nSubject: s\r\nMessage-ID: <f1@ext.test>\r\n\r\nx\r\n";
    assert_eq!(
        c.send_message("a@ext.test", &["ann@example.test"], m)
            .await
            .code,
        250
    );
    // Off: the run passes ann over; named explicitly, she gets one.
    let sent = cli_json(&gw, &["digest", "send", "--json"]);
    assert_eq!(sent.as_array().unwrap().len(), 0, "{sent}");
    let sent = cli_json(
        &gw,
        &[
            "digest",
            "send",
            "--recipient",
            "ann@example.test",
            "--json",
        ],
    );
    assert_eq!(sent[0]["listed"], 1, "{sent}");
    // Without an endpoint the report has no links.
    assert!(wait_until(20, || sink.count() == 1).await, "{}", gw.log());
    let report = &sink.all()[0];
    assert!(!report.data.contains("https://"));
    assert!(
        report.data.starts_with("DKIM-Signature:"),
        "{}",
        report.data
    );
    assert!(report.data.contains("d=gw.portcullis.test"));
    assert!(
        report
            .data
            .contains("From: Mail gateway <postmaster@gw.portcullis.test>")
    );
    // Back to the schedule.
    let set = cli_json(
        &gw,
        &["digest", "set", "ann@example.test", "default", "--json"],
    );
    assert_eq!(set["frequency"], "daily");
    let (code, _, err) = gw.cli(&["digest", "set", "ann@example.test", "sometimes"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("expected off, hourly, daily, weekly or default"),
        "{err}"
    );
}

#[tokio::test]
async fn links_are_rate_limited_per_link_and_per_client_address() {
    let sink = Sink::start().await;
    let web_port = free_port();
    let gw = Gateway::start(
        sink.addr,
        &format!(
            "[symbols]\nHDR_MISSING_DATE = 9.0\n\
             [digest]\nhttp_bind = \"127.0.0.1:{web_port}\"\nbase_url = \"https://127.0.0.1:{web_port}\"\n\
             rate_per_minute = 8\ntoken_rate_per_minute = 3\n"
        ),
    );
    let mut c = Client::connect(gw.smtp).await;
    let m = "From: <a@ext.test>\r\nTo: ann@example.test\r\nSubject: s\r\nMessage-ID: <r1@ext.test>\r\n\r\nx\r\n";
    assert_eq!(
        c.send_message("a@ext.test", &["ann@example.test"], m)
            .await
            .code,
        250
    );
    cli_json(&gw, &["digest", "send", "--json"]);
    assert!(wait_until(20, || sink.count() == 1).await, "{}", gw.log());
    let report = sink.all()[0].data.clone();
    let parsed = mail_parser::MessageParser::default()
        .parse(report.as_bytes())
        .unwrap();
    let text = parsed.body_text(0).unwrap().replace("\r\n", "\n");
    let link = links_by_entry(&text)[0].1[0].1.clone();
    // Three opens of one link, then 429 for it.
    for _ in 0..3 {
        assert_eq!(curl(&[], &link).0, 200);
    }
    let (code, page) = curl(&[], &link);
    assert_eq!(code, 429, "{page}");
    // Other requests from this address count too: 8 a minute in all (the 4 above included).
    let other = format!("https://127.0.0.1:{web_port}/a/not-a-token");
    let codes: Vec<u16> = (0..5).map(|_| curl(&[], &other).0).collect();
    assert_eq!(codes, [400, 400, 400, 400, 429], "{codes:?}");
    assert_eq!(entry_state(&gw, "ann@example.test", "r1@ext.test"), "held");
}
