//! The matching table: facts in, the matched rules and their actions out, for every
//! condition form; and the checks `check-config` reports.

use filters::{Action, Direction, Facts, ScoreCard, Symbol, TlsFacts};

use super::pattern::Address;
use super::sniff::samples;
use super::*;

fn set(toml_text: &str) -> RuleSet {
    let f: RulesFile = toml::from_str(toml_text).unwrap();
    RuleSet::compile(&f.rules).unwrap()
}

fn compile_err(toml_text: &str) -> String {
    let f: RulesFile = toml::from_str(toml_text).unwrap();
    RuleSet::compile(&f.rules).unwrap_err()
}

/// The envelope of the table: inbound from 192.0.2.10, HELO mx.partner.test, no TLS.
fn env() -> EnvelopeFacts {
    EnvelopeFacts::new(
        Direction::Inbound,
        "192.0.2.10".parse().unwrap(),
        "MX.Partner.test",
        None,
        "Billing-7@Partner.test",
    )
}

fn card(symbols: &[(&'static str, f64)]) -> ScoreCard {
    let mut c = ScoreCard::default();
    for (name, points) in symbols {
        let mut s = Symbol::new(name, "");
        s.points = *points;
        c.add(s);
    }
    c
}

/// The names of the rules that matched, and the deciding verdict.
fn run(
    rules: &RuleSet,
    env: &EnvelopeFacts,
    rcpt: &str,
    message: Option<&MessageFacts<'_>>,
) -> (Vec<String>, Option<Action>) {
    let e = rules.evaluate(env, &Address::new(rcpt), message);
    (
        e.matches.iter().map(|m| m.rule.clone()).collect(),
        e.verdict.map(|(v, _)| v.action),
    )
}

fn message_with(raw: &[u8], card: &ScoreCard, rules: &RuleSet, f: impl FnOnce(&MessageFacts<'_>)) {
    let parsed = mail_parser::MessageParser::default().parse(raw);
    let facts = Facts {
        authenticated_domain: Some("partner.test".into()),
        ..Facts::default()
    };
    let m = MessageFacts::new(rules, parsed.as_ref(), &facts, card, raw.len());
    f(&m)
}

#[test]
fn envelope_conditions_match_at_rcpt() {
    let rules = set(r#"
[[rules]]
name = "by-client"
when = { client = ["192.0.2.0/24"] }
continue = true
[[rules]]
name = "by-client-host"
when = { client = "192.0.2.10" }
continue = true
[[rules]]
name = "wrong-net"
when = { client = ["198.51.100.0/24", "2001:db8::/32"] }
continue = true
[[rules]]
name = "by-helo"
when = { helo = "*.partner.test" }
continue = true
[[rules]]
name = "no-tls"
when = { tls = "none" }
continue = true
[[rules]]
name = "any-tls"
when = { tls = ["any"] }
continue = true
[[rules]]
name = "by-sender-regex"
when = { sender = "~^billing-[0-9]+@partner\\.test$" }
continue = true
[[rules]]
name = "by-sender-parent"
when = { sender = ".test" }
continue = true
[[rules]]
name = "by-recipient-exact"
when = { recipient = "sales@example.test" }
continue = true
[[rules]]
name = "by-recipient-domain"
when = { recipient = ["@other.test", "@example.test"] }
continue = true
[[rules]]
name = "outbound-only"
when = { direction = "outbound" }
continue = true
[[rules]]
name = "by-score"
when = { score = { min = 1.0 } }
actions = { reject = true }
"#);
    let (matched, verdict) = run(&rules, &env(), "Sales@Example.test", None);
    assert_eq!(
        matched,
        [
            "by-client",
            "by-client-host",
            "by-helo",
            "no-tls",
            "by-sender-regex",
            "by-sender-parent",
            "by-recipient-exact",
            "by-recipient-domain"
        ]
    );
    // The content rule is not looked at before DATA.
    assert_eq!(verdict, None);
    let (matched, _) = run(&rules, &env(), "info@example.test", None);
    assert!(!matched.contains(&"by-recipient-exact".to_string()));
    // TLS with a verified client certificate.
    let tls = TlsFacts {
        version: "TLSv1.3".into(),
        peer_cert_verified: true,
        ..TlsFacts::default()
    };
    let e = EnvelopeFacts::new(
        Direction::Outbound,
        "10.1.2.3".parse().unwrap(),
        "ws1",
        Some(&tls),
        "",
    );
    let (matched, _) = run(&rules, &e, "x@y.test", None);
    assert_eq!(matched, ["any-tls", "outbound-only"]);
}

#[test]
fn first_verdict_decides_and_continue_rules_only_add() {
    let rules = set(r#"
[[rules]]
name = "mark"
when = { recipient = "@example.test" }
actions = { add_header = "X-Seen: yes", adjust_points = 2.0 }
continue = true
[[rules]]
name = "quarantine-partner"
when = { sender = "@partner.test", score = { min = 3.0 } }
actions = { quarantine = true, add_header = ["X-Partner: held"] }
[[rules]]
name = "never-reached"
when = { sender = "@partner.test" }
actions = { reject = true }
"#);
    let c = card(&[("HDR_MISSING_DATE", 1.5)]);
    message_with(b"From: a@partner.test\r\n\r\nhi\r\n", &c, &rules, |m| {
        let e = rules.evaluate(&env(), &Address::new("u@example.test"), Some(m));
        // 1.5 + 2 points from "mark" reach the quarantine rule's min of 3.
        assert_eq!(
            e.matches
                .iter()
                .map(|m| m.rule.as_str())
                .collect::<Vec<_>>(),
            ["mark", "quarantine-partner"]
        );
        let (v, name) = e.verdict.unwrap();
        assert_eq!(
            (v.action, name.as_str()),
            (Action::Quarantine, "quarantine-partner")
        );
        assert_eq!(e.headers, ["X-Seen: yes", "X-Partner: held"]);
        assert_eq!(e.points, 2.0);
        assert!(
            e.matches[1].condition.contains("score 3.50"),
            "{:?}",
            e.matches[1]
        );
        assert!(e.matches[1].actions.contains(&"quarantine".to_string()));
        // Without "mark"'s points the score rule does not hold: the next rule decides.
        let e = rules.evaluate(&env(), &Address::new("u@other.test"), Some(m));
        assert_eq!(e.verdict.unwrap().1, "never-reached");
    });
}

#[test]
fn message_conditions() {
    let rules = set(r#"
[[rules]]
name = "authenticated"
when = { authenticated = true }
continue = true
[[rules]]
name = "from-glob"
when = { from = "*@*.partner.test" }
continue = true
[[rules]]
name = "from-domain"
when = { from = "@partner.test" }
continue = true
[[rules]]
name = "virus"
when = { symbols = ["CLAM_VIRUS", "BAYES_SPAM"] }
continue = true
[[rules]]
name = "score-band"
when = { score = { min = 2.0, max = 5.0 } }
continue = true
[[rules]]
name = "trusted"
when = { trust = ["medium", "high"] }
continue = true
[[rules]]
name = "small"
when = { size = { max = 100000 } }
continue = true
[[rules]]
name = "big"
when = { size = { min = 100000 } }
continue = true
[[rules]]
name = "unsigned"
when = { smime = "unsigned" }
continue = true
[[rules]]
name = "signed"
when = { smime = ["signed_valid"] }
continue = true
"#);
    let c = card(&[
        ("CLAM_VIRUS", 0.0),
        ("HDR_MISSING_DATE", 3.0),
        ("TRUST_CORRESPONDENT", -1.0),
        ("TRUST_KNOWN_SERVER", -1.0),
    ]);
    message_with(
        b"From: Ann <ann@partner.test>\r\n\r\nhi\r\n",
        &c,
        &rules,
        |m| {
            let (matched, _) = run(&rules, &env(), "u@example.test", Some(m));
            assert_eq!(
                matched,
                [
                    "authenticated",
                    "from-domain",
                    "virus",
                    "trusted",
                    "small",
                    "unsigned"
                ]
            );
            // score 1.0 (3 - 2) is below the band
        },
    );
    let c = card(&[("SMIME_SIGNED_VALID", 2.5)]);
    message_with(b"From: b@mx.partner.test\r\n\r\nhi\r\n", &c, &rules, |m| {
        let (matched, _) = run(&rules, &env(), "u@example.test", Some(m));
        assert_eq!(
            matched,
            [
                "authenticated",
                "from-glob",
                "score-band",
                "small",
                "signed"
            ]
        );
    });
}

/// A multipart message with one attachment of these bytes.
fn with_attachment(name: &str, data: &[u8]) -> Vec<u8> {
    use base64_simd::STANDARD;
    let b64 = STANDARD.encode_to_string(data);
    format!(
        "From: a@partner.test\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"{name}\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--b--\r\n"
    )
    .into_bytes()
}

#[test]
fn attachments_are_sniffed_by_content_not_name() {
    let rules = set(r#"
[[rules]]
name = "executables"
when = { attachment = "executable" }
actions = { reject = "Programs are not accepted by mail" }
[[rules]]
name = "macros"
when = { attachment = ["office_macro"] }
actions = { quarantine = true }
[[rules]]
name = "locked"
when = { attachment = "encrypted_archive" }
actions = { quarantine = true }
[[rules]]
name = "pdf"
when = { attachment = "pdf" }
actions = { tag = true }
"#);
    let c = ScoreCard::default();
    let decide = |raw: &[u8]| {
        let mut out = None;
        message_with(raw, &c, &rules, |m| {
            out = run(&rules, &env(), "u@example.test", Some(m))
                .0
                .first()
                .cloned();
        });
        out
    };
    // A program named like a PDF is an executable.
    assert_eq!(
        decide(&with_attachment("invoice.pdf", &samples::pe())).as_deref(),
        Some("executables")
    );
    assert_eq!(
        decide(&with_attachment(
            "report.docm",
            &samples::zip(&[
                ("[Content_Types].xml", 0, b"<x/>"),
                ("word/vbaProject.bin", 0, b"\0"),
            ])
        ))
        .as_deref(),
        Some("macros")
    );
    assert_eq!(
        decide(&with_attachment("old.doc", &samples::ole("_VBA_PROJECT"))).as_deref(),
        Some("macros")
    );
    assert_eq!(
        decide(&with_attachment(
            "files.zip",
            &samples::zip(&[("a.txt", 1, b"xx")])
        ))
        .as_deref(),
        Some("locked")
    );
    assert_eq!(
        decide(&with_attachment("x.bin", b"%PDF-1.4\n...")).as_deref(),
        Some("pdf")
    );
    // A plain ZIP, a text file called .exe: nothing.
    assert_eq!(
        decide(&with_attachment(
            "a.zip",
            &samples::zip(&[("a.txt", 0, b"hi")])
        )),
        None
    );
    assert_eq!(decide(&with_attachment("setup.exe", b"just text")), None);
    // The reject's text is carried.
    message_with(&with_attachment("a.pdf", &samples::pe()), &c, &rules, |m| {
        let e = rules.evaluate(&env(), &Address::new("u@example.test"), Some(m));
        let (v, _) = e.verdict.unwrap();
        assert_eq!(v.text.as_deref(), Some("Programs are not accepted by mail"));
        assert!(e.matches[0].condition.contains("attachment executable"));
    });
}

#[test]
fn skip_smime_and_message_actions_are_carried() {
    let rules = set(r#"
[[rules]]
name = "internal"
when = { direction = "outbound", recipient = "@example.test" }
actions = { skip = ["bayes", "clamav"] }
continue = true
[[rules]]
name = "legal"
when = { direction = "outbound", sender = "@example.test" }
actions = { smime = { sign = "require" }, disclaimer = { text = "Confidential." }, sign_attachments = { types = ["pdf"], names = ["*.pdf"], identity = "Legal@Example.test" }, archive = { to = "archive@example.test" } }
continue = true
[[rules]]
name = "to-disk"
when = { direction = "outbound" }
actions = { archive = { dir = "/var/lib/portcullis/archive" } }
"#);
    let e = EnvelopeFacts::new(
        Direction::Outbound,
        "10.0.0.1".parse().unwrap(),
        "ws",
        None,
        "ann@example.test",
    );
    let out = rules.evaluate(&e, &Address::new("bob@example.test"), None);
    assert_eq!(out.skip, ["bayes", "clamav"]);
    assert_eq!(
        out.smime,
        Some(SmimeOverride {
            sign: Some(crate::config::SmimeRule::Require),
            encrypt: None
        })
    );
    let kinds: Vec<&str> = out.message_actions.iter().map(|a| a.kind()).collect();
    assert_eq!(
        kinds,
        ["disclaimer", "sign_attachments", "archive", "archive"]
    );
    match &out.message_actions[1] {
        MessageAction::SignAttachments {
            select,
            identity,
            rule,
        } => {
            assert_eq!(
                (identity.as_str(), rule.as_str()),
                ("legal@example.test", "legal")
            );
            assert!(select.selects(b"%PDF-1.5", Some("x.bin")));
            assert!(select.selects(b"text", Some("Contract.PDF")));
            assert!(!select.selects(b"text", Some("notes.txt")));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        out.message_actions[3],
        MessageAction::Archive {
            rule: "to-disk".into(),
            target: ArchiveTarget::Dir("/var/lib/portcullis/archive".into())
        }
    );
    // Not for the outside: the "internal" rule's skip does not hold.
    let out = rules.evaluate(&e, &Address::new("bob@else.test"), None);
    assert!(out.skip.is_empty());
}

#[test]
fn check_config_names_the_rule() {
    let cases = [
        (
            "[[rules]]\nname = \"s\"\nactions = { skip = [\"spamassassin\"] }",
            "rule `s`: `actions.skip`: \"spamassassin\"",
        ),
        (
            "[[rules]]\nname = \"re\"\nwhen = { sender = \"~(unclosed\" }",
            "rule `re`: `when.sender`: bad regex",
        ),
        (
            "[[rules]]\nname = \"net\"\nwhen = { client = \"10.0.0.0/33\" }",
            "rule `net`: `when.client`",
        ),
        (
            "[[rules]]\nname = \"g\"\nwhen = { helo = \"\" }",
            "rule `g`: `when.helo`",
        ),
        (
            "[[rules]]\nname = \"two\"\nactions = { accept = true, reject = true }",
            "rule `two`: conflicting actions accept and reject",
        ),
        (
            "[[rules]]\nname = \"all\"\nactions = { tag = true }\n[[rules]]\nname = \"late\"\nwhen = { sender = \"@x.test\" }\nactions = { reject = true }",
            "rule `late` can never match: rule `all` before it has no conditions",
        ),
        (
            "[[rules]]\nname = \"wide\"\nwhen = { direction = \"inbound\" }\n[[rules]]\nname = \"narrow\"\nwhen = { direction = \"inbound\", sender = \"@x.test\" }\nactions = { reject = true }",
            "rule `narrow` can never match: rule `wide`",
        ),
        (
            "[[rules]]\nname = \"a\"\n[[rules]]\nname = \"a\"\ncontinue = true",
            "rule `a`: the name is used twice",
        ),
        (
            "[[rules]]\nname = \"sym\"\nwhen = { symbols = \"NO_SUCH\" }",
            "rule `sym`: `when.symbols`",
        ),
        (
            "[[rules]]\nname = \"late-skip\"\nwhen = { score = { min = 1.0 } }\nactions = { skip = \"bayes\" }",
            "rule `late-skip`: `actions.skip` needs conditions known at RCPT TO",
        ),
        (
            "[[rules]]\nname = \"hdr\"\nactions = { add_header = \"Bad header\" }",
            "rule `hdr`: `actions.add_header`",
        ),
        (
            "[[rules]]\nname = \"arch\"\nactions = { archive = { to = \"a@b.test\", dir = \"/x\" } }",
            "rule `arch`: `actions.archive`: give exactly one",
        ),
        (
            "[[rules]]\nname = \"id\"\nactions = { sign_attachments = { types = [\"pdf\"], identity = \"nobody\" } }",
            "rule `id`: `actions.sign_attachments.identity`",
        ),
        (
            "[[rules]]\nname = \"kind\"\nwhen = { attachment = \"movie\" }",
            "rule `kind`: `when.attachment`: \"movie\"",
        ),
        (
            "[[rules]]\nname = \"range\"\nwhen = { score = { min = 5.0, max = 1.0 } }",
            "rule `range`: `when.score`",
        ),
        (
            "[[rules]]\nname = \"txt\"\nactions = { reject = \"line\\r\\nbreak\" }",
            "rule `txt`: `actions.reject`",
        ),
    ];
    for (text, expected) in cases {
        let e = compile_err(text);
        assert!(
            e.contains(expected),
            "{text}\n  gave: {e}\n  want: {expected}"
        );
    }
    // A continue rule without conditions shadows nothing.
    set(
        "[[rules]]\nname = \"all\"\ncontinue = true\nactions = { add_header = \"X-A: 1\" }\n[[rules]]\nname = \"b\"\nwhen = { sender = \"@x.test\" }\nactions = { reject = true }",
    );
}

#[test]
fn the_default_set_decides_as_the_default_thresholds() {
    let rules = RuleSet::compile(&default_rules()).unwrap();
    let t = crate::config::VerdictConfig::default();
    for score in [-2.0, 0.0, 4.99, 5.0, 7.9, 8.0, 11.9, 12.0, 30.0] {
        let c = card(&[("HDR_MISSING_DATE", score)]);
        message_with(b"From: a@b.test\r\n\r\nx\r\n", &c, &rules, |m| {
            let e = rules.evaluate(&env(), &Address::new("u@example.test"), Some(m));
            let with_rules = crate::pipeline::verdict::decide_for(&c, &t, Some(&e)).action;
            let thresholds = crate::pipeline::verdict::decide(&c, &t).0;
            assert_eq!(with_rules, thresholds, "score {score}");
        });
    }
    // A forced action still comes first (clamav.virus_action = "quarantine").
    let mut c = card(&[("HDR_MISSING_DATE", 20.0)]);
    c.add(Symbol::new("CLAM_VIRUS", "Eicar").forcing(Action::Quarantine));
    message_with(b"From: a@b.test\r\n\r\nx\r\n", &c, &rules, |m| {
        let e = rules.evaluate(&env(), &Address::new("u@example.test"), Some(m));
        assert_eq!(e.verdict.as_ref().unwrap().1, "reject-viruses");
        let v = crate::pipeline::verdict::decide_for(&c, &t, Some(&e));
        assert_eq!(v.action, Action::Quarantine);
    });
}

#[test]
fn the_index_finds_rules_in_their_written_order() {
    let rules = set(r#"
[[rules]]
name = "1-parent"
when = { recipient = ".example.test" }
continue = true
[[rules]]
name = "2-glob"
when = { recipient = "*@mx.example.test" }
continue = true
[[rules]]
name = "3-exact"
when = { recipient = ["u@mx.example.test", "v@mx.example.test"] }
continue = true
[[rules]]
name = "4-helo"
when = { helo = "mx.*" }
continue = true
[[rules]]
name = "5-sender-domain"
when = { sender = "@partner.test", recipient = "~^u@" }
continue = true
[[rules]]
name = "6-other-parent"
when = { recipient = ".other.test" }
continue = true
[[rules]]
name = "7-null-sender"
when = { sender = "<>" }
continue = true
[[rules]]
name = "8-domain"
when = { recipient = "@mx.example.test" }
"#);
    let (matched, _) = run(&rules, &env(), "u@mx.example.test", None);
    assert_eq!(
        matched,
        [
            "1-parent",
            "2-glob",
            "3-exact",
            "4-helo",
            "5-sender-domain",
            "8-domain"
        ]
    );
    let null = EnvelopeFacts::new(
        Direction::Inbound,
        "192.0.2.1".parse().unwrap(),
        "x",
        None,
        "",
    );
    let (matched, _) = run(&rules, &null, "w@a.other.test", None);
    assert_eq!(matched, ["6-other-parent", "7-null-sender"]);
}
