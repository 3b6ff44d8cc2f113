//! Rule evaluation per message, at 100 and 1,000 realistic rules: what `[[rules]]` add to
//! each message, without SMTP, stages and queue around them.
//!
//!   cargo bench --bench rules_eval [-- --messages N] [-- --rules FILE]
//!   cargo bench --bench rules_eval -- --emit 100 > bench/rules-100.toml
//!
//! Per message it does what the gateway does with rules: at RCPT TO the envelope rules
//! for each recipient (the session), the skipped stages (the pipeline, before the checks),
//! then the facts after the checks (attachments sniffed when a rule asks) and the full
//! evaluation for each recipient (the rules step). The rules mix partner domains,
//! subdomain and exact addresses, globs, regexes, CIDRs, symbols, scores, sizes and
//! attachment kinds; the messages mix matching and non-matching senders, recipients,
//! clients and attachments. Prints one JSON object: µs of CPU per message (the thread's
//! CPU time, so a busy machine does not inflate it), medians of 5 rounds.

use std::hint::black_box;
use std::time::Instant;

use filters::{Direction, Envelope, Facts, ScoreCard, Symbol, TlsFacts};
use portcullis::rules::pattern::Address;
use portcullis::rules::{EnvelopeFacts, MessageFacts, RuleSet, RulesFile};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `n` realistic rules, as an operator writes them (valid for `check-config`).
fn rules_text(n: usize) -> String {
    let mut s =
        String::from("# Realistic rules for the rules benchmark (benches/rules_eval.rs --emit).\n");
    for i in 0..n {
        let (when, actions, cont) = match i % 10 {
            0 => (
                format!(
                    "direction = \"inbound\", sender = [\"@partner{i}.example\", \".partner{i}.example\"]"
                ),
                "skip = [\"bayes\"], add_header = \"X-Partner: yes\"".to_string(),
                true,
            ),
            1 => (
                format!("sender = \".vendor{i}.example\", tls = \"verified_cert\""),
                "adjust_points = -1.5".to_string(),
                true,
            ),
            2 => (
                format!(
                    "recipient = \"~^(ap|invoices)-{i}[0-9]*@example\\\\.test$\", from = \"*@billing{i}.example\""
                ),
                "tag = true".to_string(),
                false,
            ),
            3 => (
                format!(
                    "direction = \"outbound\", client = [\"10.{}.0.0/16\", \"2001:db8:{:x}::/48\"], recipient = \"@example.test\"",
                    i % 250,
                    i
                ),
                "skip = [\"header_sanity\"]".to_string(),
                true,
            ),
            4 => (
                format!("helo = [\"mx*.spamhost{i}.example\", \"*.dyn{i}.example\"]"),
                "reject = \"Your server is not welcome here\"".to_string(),
                false,
            ),
            5 => (
                format!(
                    "sender = \"@news{i}.example\", symbols = [\"BAYES_SPAM\", \"DKIM_FAIL\"], score = {{ min = 3.0 }}"
                ),
                "quarantine = true".to_string(),
                false,
            ),
            6 => (
                format!(
                    "recipient = \"team{i}@example.test\", attachment = [\"executable\", \"office_macro\"]"
                ),
                "reject = \"Programs and macros are not accepted\"".to_string(),
                false,
            ),
            7 => (
                format!("direction = \"outbound\", sender = \"user{i}@example.test\""),
                format!(
                    "smime = {{ sign = \"require\" }}, archive = {{ to = \"archive{i}@example.test\" }}"
                ),
                true,
            ),
            8 => (
                format!("from = \"~^noreply-{i}@\", size = {{ max = 50000 }}"),
                "add_header = \"X-Automated: yes\"".to_string(),
                true,
            ),
            _ => (
                format!("sender = [\"blocked{i}@spam.example\", \"*@*.blocked{i}.example\"]"),
                "reject = true".to_string(),
                false,
            ),
        };
        s.push_str(&format!(
            "\n[[rules]]\nname = \"rule-{i:04}\"\nwhen = {{ {when} }}\nactions = {{ {actions} }}\n"
        ));
        if cont {
            s.push_str("continue = true\n");
        }
    }
    s
}

/// A base64 body of `data` as an attachment named `name`.
fn with_attachment(from: &str, data: &[u8]) -> Vec<u8> {
    let b64 = base64_simd::STANDARD.encode_to_string(data);
    format!(
        "From: <{from}>\r\nTo: <u@example.test>\r\nSubject: report\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <b@x>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n{}\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"report.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n",
        "Please find the report attached. ".repeat(100)
    )
    .into_bytes()
}

struct Sample {
    envelope: Envelope,
    raw: Vec<u8>,
    card: ScoreCard,
}

fn samples() -> Vec<Sample> {
    let env = |direction, ip: &str, helo: &str, from: &str, rcpts: &[&str], tls: bool| Envelope {
        direction,
        client_ip: ip.parse().unwrap(),
        helo: helo.into(),
        mail_from: from.into(),
        rcpt_to: rcpts.iter().map(|r| r.to_string()).collect(),
        smtputf8: false,
        body_8bit: false,
        tls: tls.then(|| TlsFacts {
            version: "TLSv1.3".into(),
            peer_cert_verified: true,
            ..TlsFacts::default()
        }),
    };
    let card = |syms: &[(&'static str, f64)]| {
        let mut c = ScoreCard::default();
        for (n, p) in syms {
            let mut s = Symbol::new(n, "");
            s.points = *p;
            c.add(s);
        }
        c
    };
    let mut pdf = b"%PDF-1.7\n".to_vec();
    pdf.resize(20_000, b'x');
    let plain = |from: &str| {
        format!(
            "From: <{from}>\r\nTo: <u@example.test>\r\nSubject: hello\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <a@x>\r\n\r\n{}\r\n",
            "Some ordinary text of an ordinary message. ".repeat(200)
        )
        .into_bytes()
    };
    vec![
        Sample {
            envelope: env(
                Direction::Inbound,
                "198.51.100.7",
                "mail.somewhere.example",
                "ann@somewhere.example",
                &["u@example.test"],
                false,
            ),
            raw: plain("ann@somewhere.example"),
            card: card(&[("DKIM_NONE", 0.5), ("SPF_PASS", -0.5)]),
        },
        Sample {
            envelope: env(
                Direction::Inbound,
                "203.0.113.9",
                "mx1.partner500.example",
                "bob@partner500.example",
                &["u@example.test", "team506@example.test"],
                true,
            ),
            raw: with_attachment("bob@partner500.example", &pdf),
            card: card(&[("DKIM_PASS", -1.0), ("DMARC_PASS", -1.5)]),
        },
        Sample {
            envelope: env(
                Direction::Inbound,
                "192.0.2.33",
                "mx7.spamhost904.example",
                "offers@news905.example",
                &["sales@example.test"],
                false,
            ),
            raw: plain("offers@news905.example"),
            card: card(&[("BAYES_SPAM", 7.0), ("SPF_SOFTFAIL", 1.5)]),
        },
        Sample {
            envelope: env(
                Direction::Outbound,
                "10.3.4.5",
                "ws-17.corp",
                "user707@example.test",
                &["x@customer.example", "y@example.test"],
                false,
            ),
            raw: plain("user707@example.test"),
            card: ScoreCard::default(),
        },
        Sample {
            envelope: env(
                Direction::Inbound,
                "198.51.100.200",
                "smtp.billing302.example",
                "noreply-808@billing302.example",
                &["ap-3021@example.test"],
                true,
            ),
            raw: plain("noreply-808@billing302.example"),
            card: card(&[("DKIM_PASS", -1.0)]),
        },
    ]
}

/// The rules' work for one message, as the gateway does it. The message is parsed
/// before: the pipeline parses it once for every stage, the rules add no parse.
fn one_message(
    rules: &RuleSet,
    s: &Sample,
    parsed: Option<&mail_parser::Message<'_>>,
    facts: &Facts,
) -> usize {
    let env = EnvelopeFacts::of(&s.envelope);
    let mut n = 0;
    // RCPT TO, per recipient (the session).
    for r in &s.envelope.rcpt_to {
        n += rules.evaluate(&env, &Address::new(r), None).matches.len();
    }
    // The skipped stages (the pipeline, before the checks): the same envelope pass.
    for r in &s.envelope.rcpt_to {
        n += rules.evaluate(&env, &Address::new(r), None).skip.len();
    }
    // The rules step, after the checks.
    let message = MessageFacts::new(rules, parsed, facts, &s.card, s.raw.len());
    for r in &s.envelope.rcpt_to {
        n += rules
            .evaluate(&env, &Address::new(r), Some(&message))
            .matches
            .len();
    }
    n
}

/// This thread's CPU time: what the work costs, whatever else the machine runs.
fn thread_cpu_secs() -> f64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    t.tv_sec as f64 + t.tv_nsec as f64 * 1e-9
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn measure(rules: &RuleSet, samples: &[Sample], messages: usize) -> (f64, usize) {
    let facts = Facts {
        authenticated_domain: Some("partner500.example".into()),
        ..Facts::default()
    };
    let parsed: Vec<_> = samples
        .iter()
        .map(|s| mail_parser::MessageParser::default().parse(&s.raw))
        .collect();
    let work: Vec<_> = samples.iter().zip(&parsed).collect();
    let mut matched = 0;
    for (s, p) in work.iter().cycle().take(200) {
        matched += black_box(one_message(rules, s, p.as_ref(), &facts));
    }
    let rounds: Vec<f64> = (0..5)
        .map(|_| {
            let started = thread_cpu_secs();
            for (s, p) in work.iter().cycle().take(messages) {
                matched += black_box(one_message(rules, black_box(s), p.as_ref(), &facts));
            }
            (thread_cpu_secs() - started) / messages as f64 * 1e6
        })
        .collect();
    (median(rounds), matched)
}

fn compile(text: &str) -> (RuleSet, f64) {
    let file: RulesFile = toml::from_str(text).expect("rules parse");
    let started = Instant::now();
    let set = RuleSet::compile(&file.rules).unwrap_or_else(|e| panic!("rules compile: {e}"));
    (set, started.elapsed().as_secs_f64() * 1000.0)
}

fn main() {
    let mut messages = 20_000;
    let mut file = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--messages" => {
                messages = it
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--messages N")
            }
            "--rules" => file = it.next(),
            "--emit" => {
                let n = it.next().and_then(|v| v.parse().ok()).expect("--emit N");
                print!("{}", rules_text(n));
                return;
            }
            // cargo bench passes --bench
            _ => {}
        }
    }
    let samples = samples();
    let mut results = serde_json::Map::new();
    let mut sets = vec![
        ("rules_100".to_string(), rules_text(100)),
        ("rules_1000".to_string(), rules_text(1000)),
    ];
    if let Some(f) = file {
        sets.push((
            f.clone(),
            std::fs::read_to_string(&f).expect("read --rules FILE"),
        ));
    }
    for (name, text) in sets {
        let (set, compile_ms) = compile(&text);
        let (us, matched) = measure(&set, &samples, messages);
        results.insert(
            name,
            serde_json::json!({
                "rules": set.len(),
                "us_per_message": (us * 100.0).round() / 100.0,
                "compile_ms": (compile_ms * 10.0).round() / 10.0,
                "matches_seen": matched,
            }),
        );
    }
    let (empty, _) = compile("");
    let (us, _) = measure(&empty, &samples, messages);
    results.insert(
        "no_rules".into(),
        serde_json::json!({ "rules": 0, "us_per_message": (us * 100.0).round() / 100.0 }),
    );
    results.insert("messages".into(), messages.into());
    println!("{}", serde_json::Value::Object(results));
}
