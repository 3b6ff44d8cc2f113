//! Ordered rules through the real gateway: refusals at RCPT TO, per-recipient outcomes in
//! one DATA (the refused recipient's copy held, the other delivered), skipped stages,
//! added header fields, a quarantine by rule, and check-config naming a bad rule.

use crate::auth::logged_symbols;
use crate::harness::{Gateway, Sink, binary, message, wait_until};

const RULES: &str = r#"
[[rules]]
name = "closed-mailbox"
when = { recipient = "closed@example.test" }
actions = { reject = "Mailbox closed by policy" }

[[rules]]
name = "partner-skips-header-checks"
when = { sender = "@partner.test" }
actions = { skip = "header_sanity", add_header = "X-Partner: yes" }
continue = true

[[rules]]
name = "no-big-mail-for-interns"
when = { recipient = "intern@example.test", size = { min = 10 } }
actions = { reject = true }

[[rules]]
name = "hold-spammy"
when = { from = "@spammy.test" }
actions = { quarantine = true }
"#;

fn held(gw: &Gateway) -> Vec<serde_json::Value> {
    gw.held_json()
}

#[tokio::test]
async fn a_rule_refuses_one_recipient_at_rcpt_and_the_other_is_delivered() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, RULES);
    let mut c = gw.client().await;
    c.expect(220).await;
    c.cmd("EHLO client.test", 250).await;
    c.cmd("MAIL FROM:<a@ext.test>", 250).await;
    let r = c.cmd("RCPT TO:<closed@example.test>", 550).await;
    assert!(
        r.text.contains("5.7.1 Mailbox closed by policy"),
        "{}",
        r.text
    );
    c.cmd("RCPT TO:<open@example.test>", 250).await;
    let r = c
        .data(&message(
            "a@ext.test",
            "open@example.test",
            "r1@ext.test",
            "hi",
        ))
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 1).await);
    assert_eq!(sink.all()[0].rcpts, ["open@example.test"]);
    assert!(gw.log().contains("rule=closed-mailbox"), "{}", gw.log());
}

#[tokio::test]
async fn one_data_two_outcomes_the_refused_copy_is_held_with_its_reason() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, RULES);
    let mut c = gw.client().await;
    let r = c
        .send_message(
            "a@ext.test",
            &["boss@example.test", "intern@example.test"],
            &message(
                "a@ext.test",
                "boss@example.test",
                "r2@ext.test",
                "a long enough body",
            ),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    // The accepted recipient's copy arrives, for that recipient only.
    assert!(wait_until(10, || sink.count() == 1).await);
    let got = &sink.all()[0];
    assert_eq!(got.rcpts, ["boss@example.test"]);
    assert_eq!(got.message_id().as_deref(), Some("r2@ext.test"));
    // The refused one is held, with the rule that refused it.
    let held = held(&gw);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["recipient"], "intern@example.test");
    assert_eq!(
        held[0]["reason"],
        "refused for this recipient by rule no-big-mail-for-interns"
    );
    let (code, out, _) = gw.cli(&["quarantine", "show", held[0]["message"].as_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        out.contains("refused for this recipient by rule no-big-mail-for-interns"),
        "{out}"
    );
    // Nothing else is waiting: the held copy is never delivered, nothing bounced.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(sink.count(), 1);

    // Only the intern: refused in the dialog, nothing stored.
    let mut c = gw.client().await;
    let r = c
        .send_message(
            "a@ext.test",
            &["intern@example.test"],
            &message("a@ext.test", "intern@example.test", "r3@ext.test", "x"),
        )
        .await;
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(r.text.contains("5.7.1"), "{}", r.text);
    assert_eq!(gw.held_json().len(), 1);
    assert!(gw.queue_json().is_empty());
}

#[tokio::test]
async fn skip_add_header_and_quarantine_by_rule() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, RULES);
    // No Date, no Message-ID: header sanity would report both.
    let bare = "From: <p@partner.test>\r\nSubject: hello\r\n\r\nhi\r\n";
    let mut c = gw.client().await;
    let r = c
        .send_message("p@partner.test", &["u@example.test"], bare)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    let mut c = gw.client().await;
    let r = c
        .send_message("o@other.test", &["u@example.test"], bare)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 2).await);
    // The partner's message: the stage did not run, its symbols are absent.
    let skipped = logged_symbols(&gw, "p@partner.test");
    assert!(!skipped.contains("HDR_"), "{skipped}");
    let checked = logged_symbols(&gw, "o@other.test");
    assert!(checked.contains("HDR_MISSING_DATE"), "{checked}");
    // The rule's header field is on the partner's message only.
    let all = sink.all();
    let partner = all
        .iter()
        .find(|m| m.mail_from == "p@partner.test")
        .unwrap();
    assert!(
        partner.data.contains("\r\nX-Partner: yes\r\n"),
        "{}",
        partner.data
    );
    let other = all.iter().find(|m| m.mail_from == "o@other.test").unwrap();
    assert!(!other.data.contains("X-Partner"), "{}", other.data);

    // Quarantine by a rule on the header From: 250, held with the rule's name.
    let mut c = gw.client().await;
    let r = c
        .send_message(
            "bulk@mailer.test",
            &["u@example.test"],
            &message(
                "news@spammy.test",
                "u@example.test",
                "r4@spammy.test",
                "deal",
            ),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    let held = held(&gw);
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["reason"], "rule hold-spammy");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(sink.count(), 2);
}

#[test]
fn check_config_names_a_bad_rule_in_a_rules_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.toml"),
        "[[rules]]\nname = \"good\"\nwhen = { sender = \"@a.test\" }\nactions = { tag = true }\n\n[[rules]]\nname = \"partner-fast-lane\"\nwhen = { sender = \"@b.test\" }\nactions = { skip = [\"bayes\", \"spamd\"] }\n",
    )
    .unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(&config, "rules_file = \"rules.toml\"\n").unwrap();
    let out = std::process::Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("rule `partner-fast-lane`") && err.contains("\"spamd\""),
        "{err}"
    );
    assert!(err.contains("rules.toml"), "{err}");
    // Fixed, the same file passes (relative to the config file's directory).
    std::fs::write(
        dir.path().join("rules.toml"),
        "[[rules]]\nname = \"partner-fast-lane\"\nwhen = { sender = \"@b.test\" }\nactions = { skip = [\"bayes\"] }\n",
    )
    .unwrap();
    let out = std::process::Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
