//! Allow and block lists through the running gateway: entries added with the CLI (through
//! the admin API) apply to the very next message. An allowed partner earns `LIST_ALLOW`
//! only when authenticated (dnsmasq serves its SPF and DMARC records); the same From
//! sent from elsewhere earns nothing.

use crate::auth::{logged_symbols, send};
use crate::harness::dns::{Dns, txt};
use crate::harness::{Client, Gateway, Sink, message, wait_until};

fn lists(gw: &Gateway, args: &[&str]) -> String {
    let mut all = vec!["lists"];
    all.extend_from_slice(args);
    let (code, out, err) = gw.cli(&all);
    assert_eq!(code, 0, "lists {args:?}: {err}");
    assert!(!err.contains("offline"), "the CLI must use the API: {err}");
    out
}

async fn send_to(gw: &Gateway, from: &str, rcpts: &[&str], id: &str) -> u16 {
    let msg = message(from, rcpts[0], id, "hello");
    Client::connect(gw.smtp)
        .await
        .send_message(from, rcpts, &msg)
        .await
        .code
}

/// RCPT TO's reply for each recipient; when one was accepted, a message follows (250 expected).
async fn rcpt_codes(gw: &Gateway, from: &str, rcpts: &[&str]) -> Vec<u16> {
    let mut c = Client::connect(gw.smtp).await;
    c.expect(220).await;
    c.cmd("EHLO client.test", 250).await;
    c.cmd(&format!("MAIL FROM:<{from}>"), 250).await;
    let mut codes = Vec::new();
    for r in rcpts {
        c.send_raw(format!("RCPT TO:<{r}>\r\n").as_bytes()).await;
        codes.push(c.read_reply().await.expect("reply to RCPT TO").code);
    }
    if codes.contains(&250) {
        let reply = c.data(&message(from, rcpts[0], "rcpt@o", "hello")).await;
        assert_eq!(reply.code, 250, "{reply:?}");
    }
    codes
}

#[tokio::test]
async fn a_blocked_sender_is_refused_in_the_dialog_until_removed() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let out = lists(
        &gw,
        &[
            "add",
            "block",
            "@spam.test",
            "--comment",
            "bulk mailer",
            "--json",
        ],
    );
    let added: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = added["entry"]["id"].as_i64().unwrap();
    // The envelope sender is enough: refused at RCPT TO, before any data.
    assert_eq!(
        rcpt_codes(&gw, "x@spam.test", &["u@example.test"]).await,
        [550]
    );
    assert!(
        gw.log().contains("recipient refused by block list"),
        "{}",
        gw.log()
    );
    assert_eq!(
        send_to(&gw, "x@fine.test", &["u@example.test"], "b2@fine.test").await,
        250
    );
    // A blocked From: header is only seen with the message: refused at the end of DATA.
    let msg = message("x@spam.test", "u@example.test", "b1@spam.test", "hello");
    let mut c = Client::connect(gw.smtp).await;
    c.expect(220).await;
    c.envelope("bounce@fine.test", &["u@example.test"]).await;
    assert_eq!(c.data(&msg).await.code, 550);
    assert!(logged_symbols(&gw, "bounce@fine.test").contains("LIST_BLOCK"));

    // A block for one recipient only: mail to others passes; when the message also goes
    // to them, only that recipient is refused and the others still get it.
    lists(
        &gw,
        &["add", "block", "y@other.test", "--for", "boss@example.test"],
    );
    assert_eq!(
        send_to(&gw, "y@other.test", &["u@example.test"], "b3@o").await,
        250
    );
    let before = sink.count();
    assert_eq!(
        rcpt_codes(
            &gw,
            "y@other.test",
            &["u@example.test", "boss@example.test"]
        )
        .await,
        [250, 550]
    );
    assert!(
        wait_until(20, || sink.count() > before).await,
        "the accepted recipient's copy never arrived"
    );
    let last = sink.all().pop().unwrap();
    assert_eq!(last.rcpts, ["u@example.test"]);

    let out = lists(&gw, &["show"]);
    assert!(
        out.contains("@spam.test") && out.contains("bulk mailer"),
        "{out}"
    );
    assert!(out.contains("boss@example.test"), "{out}");
    lists(&gw, &["remove", &id.to_string()]);
    assert_eq!(
        send_to(&gw, "x@spam.test", &["u@example.test"], "b5@spam.test").await,
        250
    );
}

#[tokio::test]
async fn an_allowed_partner_passes_only_when_authenticated() {
    let dns = Dns::start(&[
        "--local-ttl=300".to_string(),
        txt("partner.test", "v=spf1 ip4:127.0.0.1 -all"),
        txt("_dmarc.partner.test", "v=DMARC1; p=none"),
    ]);
    let sink = Sink::start().await;
    // Unsigned mail scores 20: refused unless an allow entry outweighs it.
    let gw = Gateway::start(
        sink.addr,
        &format!(
            "dns_servers = [\"{}\"]\n[auth]\nenabled = true\n[symbols]\nDKIM_NONE = 20.0\n",
            dns.addr
        ),
    );
    let msg = |id: &str| message("bob@partner.test", "u@example.test", id, "the offer");
    assert_eq!(
        send(&gw, None, "bob@partner.test", &msg("p1@partner.test")).await,
        550
    );
    lists(
        &gw,
        &["add", "allow", "@partner.test", "--comment", "our supplier"],
    );

    // Authenticated (SPF pass aligned with From: DMARC pass): allowed.
    assert_eq!(
        send(&gw, None, "bob@partner.test", &msg("p2@partner.test")).await,
        250
    );
    let syms = logged_symbols(&gw, "bob@partner.test");
    assert!(
        syms.contains("LIST_ALLOW") && syms.contains("DMARC_PASS"),
        "{syms}"
    );

    // The same From from a host SPF does not allow: not authenticated, nothing given.
    assert_eq!(
        send(
            &gw,
            Some("127.0.0.3"),
            "bob@partner.test",
            &msg("p3@partner.test")
        )
        .await,
        550
    );
    let syms = logged_symbols(&gw, "bob@partner.test");
    assert!(
        !syms.contains("LIST_ALLOW") && syms.contains("SPF_FAIL"),
        "{syms}"
    );
}
