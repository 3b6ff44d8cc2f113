//! `portcullis explain` against the live gateway: the same message with the same envelope
//! and config gets the same verdict, symbols (names and points) and reply from both — a
//! clean message, a spam-scored one (the Bayes model the gateway uses) and a refused one.

use std::collections::BTreeMap;

use crate::bayes::{generated, train_generated};
use crate::harness::{Gateway, Sink, binary, message, wait_until};

const CONFIG: &str = r#"log_format = "json"
[bayes]
min_ham = 5
min_spam = 5
reload_secs = 1
[verdict]
quarantine_score = 50.0
reject_score = 60.0
[symbols]
HDR_MISSING_DATE = 100.0
"#;

/// What the gateway decided, from its `portcullis::message` log line (JSON).
#[derive(Debug)]
struct Live {
    verdict: String,
    score: f64,
    /// name → points, as the log prints them (two decimals).
    symbols: BTreeMap<String, String>,
}

impl Live {
    fn of(line: &serde_json::Value) -> Live {
        Live {
            verdict: line["verdict"].as_str().unwrap().to_string(),
            score: line["score"].as_f64().unwrap(),
            symbols: parse_summary(line["symbols"].as_str().unwrap()),
        }
    }
}

/// "A(1.00), B(2.50)" → {A: "1.00", B: "2.50"}
fn parse_summary(s: &str) -> BTreeMap<String, String> {
    s.split(", ")
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, points) = p.trim_end_matches(')').split_once('(').unwrap();
            (name.to_string(), points.to_string())
        })
        .collect()
}

/// Send `msg` from 127.0.0.1 (inbound) and read the verdict the gateway logged.
async fn send_live(gw: &Gateway, msg: &str) -> (u16, String, Live) {
    let (r, line) = gw
        .send_and_verdict("sender@ext.test", &["u@example.test"], msg)
        .await;
    let live = Live::of(&line);
    (r.code, r.text.trim_end().to_string(), live)
}

/// `portcullis explain --json` on `msg` with the envelope the client used.
fn explain(gw: &Gateway, msg: &str, rcpts: &[&str]) -> (i32, serde_json::Value, String) {
    let file = gw.dir.path().join("explained.eml");
    std::fs::write(&file, msg).unwrap();
    let mut args = vec![
        "explain",
        file.to_str().unwrap(),
        "--from",
        "sender@ext.test",
        "--client-ip",
        "127.0.0.1",
        "--helo",
        "client.test",
        "--tls",
        "none",
        "--json",
    ];
    for r in rcpts {
        args.extend_from_slice(&["--to", r]);
    }
    let (code, out, err) = gw.cli(&args);
    let json = serde_json::from_str(&out).unwrap_or(serde_json::Value::Null);
    (code, json, err)
}

/// Live and explained agree on verdict, score, symbols and reply.
fn assert_same(live_code: u16, live_text: &str, live: &Live, explained: &serde_json::Value) {
    assert_eq!(explained["action"], live.verdict.as_str(), "{explained:#}");
    let score = explained["score"].as_f64().unwrap();
    assert!((score - live.score).abs() < 1e-9, "{score} vs {live:?}");
    let symbols: BTreeMap<String, String> = explained["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                format!("{:.2}", s["points"].as_f64().unwrap()),
            )
        })
        .collect();
    assert_eq!(symbols, live.symbols, "{explained:#}");
    // Each stage's symbols are the card's, in order.
    let by_stage: Vec<serde_json::Value> = explained["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["symbols"].as_array().unwrap().clone())
        .collect();
    assert_eq!(&by_stage, explained["symbols"].as_array().unwrap());
    let reply = &explained["reply"];
    assert_eq!(reply["code"].as_u64().unwrap(), live_code as u64);
    let line = reply["line"].as_str().unwrap();
    if live_code == 250 {
        // The queue id is the gateway's; explain stores nothing.
        let cut = |s: &str| s.split("queued as").next().unwrap().to_string();
        assert_eq!(cut(line), cut(live_text), "{line} vs {live_text}");
        assert!(line.starts_with("250 2.0.0 Ok: queued as"), "{line}");
    } else {
        assert_eq!(line, live_text);
    }
}

#[tokio::test]
async fn explain_agrees_with_the_live_gateway() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, CONFIG);
    train_generated(&gw, 6, 6);
    assert!(
        wait_until(10, || gw.log().contains("Bayes model reloaded")).await,
        "{}",
        gw.log()
    );

    // 1. A clean message: accepted, delivered.
    let clean = message(
        "sender@ext.test",
        "u@example.test",
        "clean@ext.test",
        "hello",
    );
    let (code, text, live) = send_live(&gw, &clean).await;
    assert_eq!((code, live.verdict.as_str()), (250, "accept"), "{text}");
    let (exit, explained, err) = explain(&gw, &clean, &["u@example.test"]);
    assert_eq!(exit, 0, "{err}");
    assert_same(code, &text, &live, &explained);
    assert!(wait_until(10, || sink.count() == 1).await);

    // 2. Spam by the model the gateway learned: tagged, delivered with the flag.
    let spam = generated(200, true);
    let (code, text, live) = send_live(&gw, &spam).await;
    assert_eq!((code, live.verdict.as_str()), (250, "tag"), "{live:?}");
    assert!(live.symbols.contains_key("BAYES_SPAM"), "{live:?}");
    let (exit, explained, err) = explain(&gw, &spam, &["u@example.test"]);
    assert_eq!(exit, 0, "{err}");
    assert_same(code, &text, &live, &explained);
    let bayes = explained["stages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stage"] == "bayes")
        .expect("a bayes stage");
    assert_eq!(bayes["symbols"][0]["name"], "BAYES_SPAM", "{bayes}");
    assert!(wait_until(10, || sink.count() == 2).await);
    assert!(sink.all()[1].data.contains("X-Spam-Flag: YES"));

    // 3. Refused by a points override: 550 in the dialog, nothing stored.
    let refused = "From: <sender@ext.test>\r\nTo: <u@example.test>\r\nSubject: no date\r\nMessage-ID: <nodate@ext.test>\r\n\r\nbody\r\n";
    let (code, text, live) = send_live(&gw, refused).await;
    assert_eq!((code, live.verdict.as_str()), (550, "reject"), "{text}");
    let (exit, explained, err) = explain(&gw, refused, &["u@example.test"]);
    assert_eq!(exit, 0, "{err}");
    assert_same(code, &text, &live, &explained);
    assert_eq!(explained["symbols"][1]["name"], "HDR_MISSING_DATE");

    // Explain kept nothing: the sink and the queue saw only the live messages.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sink.count(), 2);
    assert!(gw.queue_json().is_empty());

    // The text form: stages with their symbols, the verdict, the reply.
    let file = gw.dir.path().join("explained.eml");
    let (exit, out, err) = gw.cli(&[
        "explain",
        file.to_str().unwrap(),
        "--from",
        "sender@ext.test",
        "--to",
        "u@example.test",
        "--to",
        "someone@elsewhere.test",
    ]);
    assert_eq!(exit, 0, "{err}");
    assert!(
        out.contains("HDR_MISSING_DATE") && out.contains("100.00"),
        "{out}"
    );
    assert!(out.contains("verdict    reject"), "{out}");
    assert!(
        out.contains("reply      550 5.7.1 Message rejected by policy"),
        "{out}"
    );
    assert!(
        out.contains(
            "refused    <someone@elsewhere.test> at RCPT TO: 550 5.7.1 Relay access denied"
        ),
        "{out}"
    );
}

#[tokio::test]
async fn explain_refuses_bad_input_with_exit_code_2() {
    let gw = Gateway::start(Sink::dead_addr(), "");
    let file = gw.dir.path().join("m.eml");
    std::fs::write(
        &file,
        message("a@ext.test", "u@example.test", "m@ext.test", "x"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(binary())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let config = gw.config_path.to_str().unwrap();
    let (code, err) = run(&[
        "explain",
        "/nonexistent/m.eml",
        "--from",
        "a@ext.test",
        "--to",
        "u@example.test",
        "--config",
        config,
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("cannot read the message file /nonexistent/m.eml"),
        "{err}"
    );
    let (code, err) = run(&[
        "explain",
        file.to_str().unwrap(),
        "--from",
        "a@ext.test",
        "--to",
        "u@example.test",
        "--client-ip",
        "300.1.2.3",
        "--config",
        config,
    ]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--client-ip") && err.contains("300.1.2.3"),
        "{err}"
    );
    let (code, err) = run(&["explain", file.to_str().unwrap(), "--from", "a@ext.test"]);
    assert_eq!(code, 2);
    assert!(err.contains("--to"), "{err}");
    // Every recipient refused at RCPT TO: no DATA, the reply says so.
    let (code, out, err) = gw.cli(&[
        "explain",
        file.to_str().unwrap(),
        "--from",
        "a@ext.test",
        "--to",
        "x@elsewhere.test",
        "--json",
    ]);
    assert_eq!(code, 0, "{err}");
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json["refused_recipients"][0]["reply"]["code"], 550);
    assert_eq!(json["reply"]["code"], 554);
}

const RULES: &str = r#"log_format = "json"
[[rules]]
name = "closed-mailbox"
when = { recipient = "closed@example.test" }
actions = { reject = "Mailbox closed by policy" }

[[rules]]
name = "no-big-mail-for-interns"
when = { recipient = "intern@example.test", size = { min = 10 } }
actions = { reject = true }
"#;

#[tokio::test]
async fn explain_shows_which_rules_matched_why_and_what_they_did() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, RULES);
    let msg = message(
        "sender@ext.test",
        "boss@example.test",
        "r@ext.test",
        "a long enough body",
    );
    let (r, line) = gw
        .send_and_verdict(
            "sender@ext.test",
            &["boss@example.test", "intern@example.test"],
            &msg,
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    let live = Live::of(&line);

    let (exit, explained, err) = explain(
        &gw,
        &msg,
        &[
            "boss@example.test",
            "intern@example.test",
            "closed@example.test",
        ],
    );
    assert_eq!(exit, 0, "{err}");
    let refused = &explained["refused_recipients"][0];
    assert_eq!(refused["address"], "closed@example.test");
    assert_eq!(refused["rule"], "closed-mailbox");
    assert_eq!(
        refused["reply"]["line"],
        "550 5.7.1 Mailbox closed by policy"
    );
    let rules = explained["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{explained:#}");
    assert_eq!(rules[0]["rule"], "no-big-mail-for-interns");
    assert_eq!(rules[0]["actions"][0], "reject");
    assert_eq!(rules[0]["recipients"][0], "intern@example.test");
    let why = rules[0]["condition"].as_str().unwrap();
    assert!(
        why.contains("intern@example.test") && why.contains("size"),
        "{why}"
    );
    // Two copies: the intern's held by the rule, the other delivered.
    let copies = explained["copies"].as_array().unwrap();
    assert_eq!(copies.len(), 2, "{explained:#}");
    assert!(
        copies
            .iter()
            .any(|c| c["recipients"][0] == "intern@example.test"
                && c["hold"]
                    .as_str()
                    .unwrap()
                    .contains("no-big-mail-for-interns")),
        "{explained:#}"
    );
    assert_same(r.code, r.text.trim_end(), &live, &explained);
    assert!(wait_until(10, || sink.count() == 1).await);
    assert_eq!(sink.all()[0].rcpts, ["boss@example.test"]);
}
