//! Relay control: a client on "the internet" (127.0.0.1; only 127.0.0.2 is internal in the
//! test config) must not get mail to any domain but `example.test` through the gateway,
//! however the recipient is dressed up. Every trick is a full attempt (EHLO, MAIL, RCPT,
//! DATA with a message if DATA is allowed), so a trick that got through would leave a
//! message in the queue or at the next hop.

use crate::harness::{Client, Gateway, Sink, message, wait_until};

/// How a trick must be refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// 550 5.7.1: relay denied / routing denied.
    Relay,
    /// 501 5.1.3: the address does not parse.
    BadAddress,
    /// 501 5.5.4: the RCPT command does not parse.
    BadSyntax,
}

impl Want {
    fn code(self) -> (u16, &'static str) {
        match self {
            Want::Relay => (550, "5.7.1"),
            Want::BadAddress => (501, "5.1.3"),
            Want::BadSyntax => (501, "5.5.4"),
        }
    }
}

struct Trick {
    what: &'static str,
    /// The whole RCPT command line, without CRLF (may hold odd bytes).
    rcpt: &'static str,
    want: Want,
    ehlo: &'static str,
    mail: &'static str,
    tls: bool,
}

const fn t(what: &'static str, rcpt: &'static str, want: Want) -> Trick {
    Trick {
        what,
        rcpt,
        want,
        ehlo: "EHLO client.test",
        mail: "MAIL FROM:<a@ext.test>",
        tls: false,
    }
}

fn tricks() -> Vec<Trick> {
    use Want::*;
    vec![
        t("plain foreign domain", "RCPT TO:<u@evil.test>", Relay),
        t(
            "source route via us to a foreign domain",
            "RCPT TO:<@example.test:u@evil.test>",
            Relay,
        ),
        t(
            "two-hop source route to a foreign domain",
            "RCPT TO:<@example.test,@x.test:u@evil.test>",
            Relay,
        ),
        t(
            "source route via a foreign host to a local user",
            "RCPT TO:<@evil.test:u@example.test>",
            Relay,
        ),
        t("%-hack", "RCPT TO:<u%evil.test@example.test>", Relay),
        t(
            "%-hack, foreign domain last",
            "RCPT TO:<u%example.test@evil.test>",
            Relay,
        ),
        t("bang path", "RCPT TO:<evil.test!u@example.test>", Relay),
        t(
            "quoted local part with @",
            "RCPT TO:<\"u@evil.test\"@example.test>",
            Relay,
        ),
        t(
            "quoted local part with %",
            "RCPT TO:<\"u%evil.test\"@example.test>",
            Relay,
        ),
        t(
            "quoted local part with !",
            "RCPT TO:<\"evil.test!u\"@example.test>",
            Relay,
        ),
        t(
            "quoted local part with a source route",
            "RCPT TO:<\"@evil.test:u\"@example.test>",
            Relay,
        ),
        t(
            "escaped @ in a quoted local part",
            "RCPT TO:<\"u\\@evil.test\"@example.test>",
            Relay,
        ),
        t(
            "look-alike: our domain as a prefix",
            "RCPT TO:<u@example.test.evil.test>",
            Relay,
        ),
        t(
            "look-alike: our domain as a suffix",
            "RCPT TO:<u@evilexample.test>",
            Relay,
        ),
        t("look-alike: truncated", "RCPT TO:<u@example.tes>", Relay),
        t(
            "subdomain of ours (not configured)",
            "RCPT TO:<u@sub.example.test>",
            Relay,
        ),
        // Address literals are valid RFC 5321 syntax, but the command parser (smtp-proto)
        // does not take them: they are refused as bad syntax, which is a refusal all the same.
        t("IPv4 literal", "RCPT TO:<u@[127.0.0.1]>", BadAddress),
        t(
            "IPv4 literal of the internal net",
            "RCPT TO:<u@[127.0.0.2]>",
            BadAddress,
        ),
        t("IPv6 literal", "RCPT TO:<u@[IPv6:::1]>", BadAddress),
        t("bare IPv4 as a domain", "RCPT TO:<u@127.0.0.1>", Relay),
        t("localhost", "RCPT TO:<u@localhost>", Relay),
        t("trailing dot, foreign", "RCPT TO:<u@evil.test.>", Relay),
        t("uppercase foreign", "RCPT TO:<U@EVIL.TEST>", Relay),
        t("lowercase command", "rcpt to:<u@evil.test>", Relay),
        t(
            "foreign postmaster",
            "RCPT TO:<postmaster@evil.test>",
            Relay,
        ),
        t(
            "quoted plain local part",
            "RCPT TO:<\"u\"@evil.test>",
            Relay,
        ),
        t("space after the colon", "RCPT TO: <u@evil.test>", Relay),
        t("trailing space", "RCPT TO:<u@evil.test> ", Relay),
        t(
            "DSN parameters naming a local ORCPT",
            "RCPT TO:<u@evil.test> NOTIFY=NEVER ORCPT=rfc822;u@example.test",
            Relay,
        ),
        t(
            "unquoted second @",
            "RCPT TO:<u@evil.test@example.test>",
            BadAddress,
        ),
        t(
            "CR between two domains",
            "RCPT TO:<u@example.test\r@evil.test>",
            BadAddress,
        ),
        t("empty <> recipient", "RCPT TO:<>", BadAddress),
        t(
            "% in the domain",
            "RCPT TO:<u@evil.test%example.test>",
            BadAddress,
        ),
        t("empty label", "RCPT TO:<u@example..test>", BadAddress),
        t(
            "non-ASCII without SMTPUTF8",
            "RCPT TO:<u@ex\u{e4}mple.test>",
            BadAddress,
        ),
        t(
            "space before the closing bracket",
            "RCPT TO:<u@evil.test >",
            BadSyntax,
        ),
        t("no angle brackets", "RCPT TO:u@evil.test", BadSyntax),
        Trick {
            mail: "MAIL FROM:<a@ext.test> SMTPUTF8",
            ..t(
                "IDN look-alike (Cyrillic a) with SMTPUTF8",
                "RCPT TO:<u@ex\u{430}mple.test>",
                Relay,
            )
        },
        Trick {
            mail: "MAIL FROM:<boss@example.test>",
            ..t(
                "local sender, foreign recipient",
                "RCPT TO:<u@evil.test>",
                Relay,
            )
        },
        Trick {
            mail: "MAIL FROM:<>",
            ..t(
                "null sender, foreign recipient",
                "RCPT TO:<u@evil.test>",
                Relay,
            )
        },
        Trick {
            ehlo: "EHLO [127.0.0.2]",
            ..t(
                "EHLO claims the internal address",
                "RCPT TO:<u@evil.test>",
                Relay,
            )
        },
        Trick {
            ehlo: "EHLO gw.portcullis.test",
            ..t("EHLO claims our own name", "RCPT TO:<u@evil.test>", Relay)
        },
        Trick {
            ehlo: "HELO localhost",
            ..t("HELO localhost", "RCPT TO:<u@evil.test>", Relay)
        },
        Trick {
            tls: true,
            ..t("inside STARTTLS", "RCPT TO:<u@evil.test>", Relay)
        },
    ]
}

/// One trick on a fresh connection. Returns a description of what went wrong, if anything.
async fn attempt(gw: &Gateway, n: usize, trick: &Trick) -> Option<String> {
    let mut c = Client::greeted(gw.smtp).await;
    if trick.tls {
        c.cmd("EHLO client.test", 250).await;
        c.starttls().await;
    }
    c.cmd(trick.ehlo, 250).await;
    c.cmd(trick.mail, 250).await;
    c.send_raw(format!("{}\r\n", trick.rcpt).as_bytes()).await;
    let r = c.read_reply().await.expect("a reply to RCPT");
    let (code, enhanced) = trick.want.code();
    let mut problem = None;
    if r.code != code || !r.text.contains(enhanced) {
        problem = Some(format!(
            "{} ({:?}): want {code} {enhanced}, got {:?}",
            trick.what,
            trick.rcpt,
            r.text.trim_end()
        ));
    }
    // Whatever the answer was, try to send: a trick that got through must leave a trace.
    c.send_raw(b"DATA\r\n").await;
    let d = c.read_reply().await.expect("a reply to DATA");
    if d.code == 354 {
        let msg = message(
            "a@ext.test",
            "u@evil.test",
            &format!("trick{n}@ext.test"),
            "relay?",
        );
        c.send_raw(format!("{msg}.\r\n").as_bytes()).await;
        let end = c.read_reply().await.expect("a reply to the end of DATA");
        let note = format!(
            "{} ({:?}): DATA was accepted; end of data got {:?}",
            trick.what,
            trick.rcpt,
            end.text.trim_end()
        );
        problem = Some(problem.map_or(note.clone(), |p| format!("{p}; {note}")));
    } else if d.code != 554 {
        let note = format!(
            "{} ({:?}): DATA without recipients got {:?}, want 554",
            trick.what,
            trick.rcpt,
            d.text.trim_end()
        );
        problem = Some(problem.map_or(note.clone(), |p| format!("{p}; {note}")));
    }
    c.cmd("QUIT", 221).await;
    problem
}

#[tokio::test]
async fn no_trick_makes_the_gateway_an_open_relay() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let tricks = tricks();
    assert!(tricks.len() >= 20);
    let mut problems = Vec::new();
    for (n, trick) in tricks.iter().enumerate() {
        if let Some(p) = attempt(&gw, n, trick).await {
            problems.push(p);
        }
    }
    // Nothing may have been stored, nor sent on.
    let queued = gw.queue_json();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let delivered: Vec<_> = sink
        .all()
        .into_iter()
        .map(|m| (m.mail_from, m.rcpts))
        .collect();
    assert!(
        problems.is_empty() && queued.is_empty() && delivered.is_empty(),
        "relay control failed for {} of {} tricks:\n  {}\nqueue: {queued:?}\ndelivered: {delivered:?}",
        problems.len(),
        tricks.len(),
        problems.join("\n  ")
    );

    // The same pipeline does deliver legitimate mail, so the checks above could see a leak.
    let mut c = Client::connect(gw.smtp).await;
    let msg = message("a@ext.test", "u@example.test", "legit@ext.test", "hello");
    let r = c
        .send_message("a@ext.test", &["u@example.test"], &msg)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        wait_until(10, || sink.count() == 1).await,
        "log:\n{}",
        gw.log()
    );
    assert!(wait_until(10, || gw.queue_json().is_empty()).await);
    let all = sink.all();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].rcpts, vec!["u@example.test".to_string()]);
    assert_eq!(all[0].message_id().as_deref(), Some("legit@ext.test"));
}

#[tokio::test]
async fn local_recipients_are_accepted_from_anyone() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let mut c = Client::greeted(gw.smtp).await;
    c.cmd("EHLO client.test", 250).await;
    c.cmd("MAIL FROM:<a@ext.test>", 250).await;
    for rcpt in [
        "RCPT TO:<u@example.test>",
        "RCPT TO:<U@EXAMPLE.TEST.>",
        "RCPT TO:<postmaster>",
        "RCPT TO:<PostMaster>",
        "RCPT TO:<\"v\"@example.test>",
    ] {
        let r = c.cmd(rcpt, 250).await;
        assert!(r.text.contains("2.1.5"), "{rcpt}: {}", r.text);
    }
    // Refusing a foreign recipient does not spoil the transaction.
    c.cmd("RCPT TO:<u@evil.test>", 550).await;
    let msg = message("a@ext.test", "u@example.test", "local@ext.test", "hi");
    let r = c.data(&msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 1).await);
    let got = &sink.all()[0];
    // Duplicates (by case, and the trailing dot) are one recipient; postmaster gets our domain.
    assert_eq!(
        got.rcpts,
        vec![
            "u@example.test".to_string(),
            "postmaster@example.test".to_string(),
            "v@example.test".to_string(),
        ]
    );
}

#[tokio::test]
async fn internal_clients_may_relay() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let mut c = gw.internal_client().await;
    c.expect(220).await;
    c.cmd("EHLO host.internal.test", 250).await;
    c.cmd("MAIL FROM:<staff@example.test>", 250).await;
    c.cmd("RCPT TO:<u@evil.test>", 250).await;
    c.cmd("RCPT TO:<U@Other.Test.>", 250).await;
    c.cmd("RCPT TO:<u@example.test>", 250).await;
    // Hidden routes stay refused even for internal clients.
    let r = c.cmd("RCPT TO:<u%evil.test@example.test>", 550).await;
    assert!(r.text.contains("5.7.1"), "{}", r.text);
    // Nothing is sent: no message may sit in the queue for MX delivery.
    c.cmd("RSET", 250).await;
    c.cmd("QUIT", 221).await;
    assert!(gw.queue_json().is_empty());
    assert_eq!(sink.count(), 0);
}

/// The battery refuses `<@evil.test:u@example.test>` (source route via a foreign host):
/// the same route must not pass when the client puts white space before the `@`. The
/// command parser skips such bytes inside the path and hands over `u@example.test`, so
/// only the raw text shows the route.
#[tokio::test]
async fn source_routes_hidden_behind_white_space_are_refused() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let tricks = [
        t(
            "source route behind a space",
            "RCPT TO:< @evil.test:u@example.test>",
            Want::Relay,
        ),
        t(
            "source route behind two spaces",
            "RCPT TO:<  @example.test:u@evil.test>",
            Want::Relay,
        ),
        t(
            "source route behind a CR",
            "RCPT TO:<\r@evil.test:u@example.test>",
            Want::Relay,
        ),
    ];
    let mut problems = Vec::new();
    for (n, trick) in tricks.iter().enumerate() {
        if let Some(p) = attempt(&gw, 100 + n, trick).await {
            problems.push(p);
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let queued = gw.queue_json();
    let delivered: Vec<_> = sink.all().into_iter().map(|m| m.rcpts).collect();
    assert!(
        problems.is_empty() && queued.is_empty() && delivered.is_empty(),
        "source routes got through:\n  {}\nqueue: {queued:?}\ndelivered: {delivered:?}",
        problems.join("\n  ")
    );
}

/// A quoted local part may hold `>` and spaces; written back unquoted it would end the path
/// and add ESMTP parameters (ENVID, NOTIFY) to the command the next hop reads.
#[tokio::test]
async fn quoted_local_parts_reach_the_next_hop_quoted() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let mut c = Client::greeted(gw.smtp).await;
    c.cmd("EHLO client.test", 250).await;
    c.cmd(r#"MAIL FROM:<"ceo> ENVID=x"@evil.test>"#, 250).await;
    c.cmd(r#"RCPT TO:<"root> NOTIFY=SUCCESS"@example.test>"#, 250)
        .await;
    c.cmd("RCPT TO:<plain.user@example.test>", 250).await;
    let msg = message("ceo@evil.test", "root@example.test", "q@evil.test", "hi");
    let r = c.data(&msg).await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        wait_until(10, || sink.count() == 1).await,
        "not delivered; log:\n{}",
        gw.log()
    );
    let got = &sink.all()[0];
    assert_eq!(got.mail_line, r#"MAIL FROM:<"ceo> ENVID=x"@evil.test>"#);
    assert_eq!(
        got.rcpt_lines,
        vec![
            r#"RCPT TO:<"root> NOTIFY=SUCCESS"@example.test>"#.to_string(),
            "RCPT TO:<plain.user@example.test>".to_string(),
        ]
    );
}

/// NUL, CR, LF, other C0 controls and DEL in a quoted sender or recipient are refused at
/// the command; nothing reaches the next hop.
#[tokio::test]
async fn control_characters_in_addresses_are_refused() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let mut c = Client::greeted(gw.smtp).await;
    c.cmd("EHLO client.test", 250).await;
    for ctl in ["\0", "\r", "\x01", "\t", "\x7f"] {
        c.send_raw(format!("MAIL FROM:<\"a{ctl}b\"@evil.test>\r\n").as_bytes())
            .await;
        let r = c.read_reply().await.unwrap();
        assert_eq!(r.code, 553, "{ctl:?}: {}", r.text);
        assert!(r.text.contains("5.1.7"), "{ctl:?}: {}", r.text);
    }
    c.cmd("MAIL FROM:<a@ext.test>", 250).await;
    for ctl in ["\0", "\r", "\x1b", "\x7f"] {
        c.send_raw(format!("RCPT TO:<\"u{ctl}v\"@example.test>\r\n").as_bytes())
            .await;
        let r = c.read_reply().await.unwrap();
        assert_eq!(r.code, 553, "{ctl:?}: {}", r.text);
        assert!(r.text.contains("5.1.3"), "{ctl:?}: {}", r.text);
    }
    c.cmd("RCPT TO:<u@example.test>", 250).await;
    let r = c
        .data(&message(
            "a@ext.test",
            "u@example.test",
            "ctl@ext.test",
            "x",
        ))
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 1).await);
    let got = &sink.all()[0];
    assert_eq!(got.mail_line, "MAIL FROM:<a@ext.test>");
    assert_eq!(got.rcpt_lines, vec!["RCPT TO:<u@example.test>".to_string()]);
}
