//! Level of trust, end to end: the real gateway with `[auth] enabled` (DNS from dnsmasq on
//! loopback, DKIM signatures by dkimpy), an outbound conversation, then inbound replies —
//! authenticated ones earn trust, a forged copy of the same From does not. Pins through the
//! CLI, as an operator sets them.

use crate::auth::{dkimpy_sign, logged_symbols, rsa_key, send};
use crate::harness::dns::{Dns, txt};
use crate::harness::{Gateway, Sink, message, wait_until};

/// The score the gateway logged for the last message from `mail_from`.
fn logged_score(gw: &Gateway, mail_from: &str) -> f64 {
    let log = gw.log();
    log.lines()
        .rev()
        .filter(|l| l.contains(&format!("mail_from={mail_from} ")))
        .find_map(|l| l.split(" score=").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score logged for {mail_from}; log:\n{log}"))
}

fn trust_json(gw: &Gateway) -> Vec<serde_json::Value> {
    let (code, out, err) = gw.cli(&["trust", "list", "--json"]);
    assert_eq!(code, 0, "trust list failed: {err}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test]
async fn a_conversation_earns_trust_and_a_forged_partner_earns_none() {
    let key = rsa_key();
    let dns = Dns::start(&[
        "--local-ttl=300".to_string(),
        txt("partner.test", "v=spf1 ip4:127.0.0.1 -all"),
        txt(
            "sel._domainkey.partner.test",
            &format!("v=DKIM1; k=rsa; p={}", key.public_b64),
        ),
        txt("_dmarc.partner.test", "v=DMARC1; p=none"),
    ]);
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        &format!(
            "dns_servers = [\"{}\"]\noutbound_smarthost = \"{}\"\n[auth]\nenabled = true\n[trust]\npin_reload_secs = 1\n",
            dns.addr, sink.addr
        ),
    );
    let signed = |from: &str, id: &str| {
        dkimpy_sign(
            &message(from, "u@example.test", id, "about the offer"),
            &key.private,
            "partner.test",
            "sel",
        )
    };

    // 1. Before any conversation: authenticated, but nobody here ever wrote to bob.
    assert_eq!(
        send(
            &gw,
            None,
            "bob@partner.test",
            &signed("bob@partner.test", "t1@p")
        )
        .await,
        250
    );
    let before = logged_score(&gw, "bob@partner.test");
    let syms = logged_symbols(&gw, "bob@partner.test");
    assert!(
        syms.contains("DMARC_PASS") && !syms.contains("TRUST_"),
        "{syms}"
    );

    // 2. Our user writes to bob (outbound, from the internal network).
    let mut c = gw.internal_client().await;
    let r = c
        .send_message(
            "u@example.test",
            &["bob@partner.test"],
            &message(
                "u@example.test",
                "bob@partner.test",
                "out1@example.test",
                "offer?",
            ),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");

    // 3. Bob's authenticated reply: a known correspondent, from a known server network.
    assert_eq!(
        send(
            &gw,
            None,
            "bob@partner.test",
            &signed("bob@partner.test", "t2@p")
        )
        .await,
        250
    );
    let syms = logged_symbols(&gw, "bob@partner.test");
    assert!(syms.contains("TRUST_CORRESPONDENT"), "{syms}");
    assert!(syms.contains("TRUST_KNOWN_SERVER"), "{syms}");
    let after = logged_score(&gw, "bob@partner.test");
    assert!(
        after < before - 1.0,
        "trust did not lower the score: {before} → {after}"
    );

    // 4. The same From forged: another client address (SPF fails), no signature.
    let forged = message(
        "bob@partner.test",
        "u@example.test",
        "t3@p",
        "about the offer",
    );
    assert_eq!(
        send(&gw, Some("127.0.0.3"), "bob@partner.test", &forged).await,
        250
    );
    let syms = logged_symbols(&gw, "bob@partner.test");
    assert!(syms.contains("SPF_FAIL"), "{syms}");
    assert!(syms.contains("TRUST_UNAUTHENTICATED(0.00)"), "{syms}");
    assert!(
        !syms.contains("TRUST_CORRESPONDENT") && !syms.contains("TRUST_KNOWN"),
        "{syms}"
    );

    // 5. What was learned is on disk (written within a second) and visible to operators.
    assert!(
        wait_until(10, || trust_json(&gw)
            .iter()
            .any(|d| d["domain"] == "partner.test"
                && d["correspondents"] == 1
                && d["servers"] == 1))
        .await,
        "{:?}",
        trust_json(&gw)
    );
    let (code, out, _) = gw.cli(&["trust", "show", "partner.test"]);
    assert_eq!(code, 0);
    assert!(out.contains("u@example.test → bob@partner.test"), "{out}");
    assert!(out.contains("127.0.0.0/24"), "{out}");

    // 6. An operator pins the partner: a new person there, authenticated, gets the pin.
    let (code, _, err) = gw.cli(&["trust", "set", "partner.test", "sometimes"]);
    assert_ne!(code, 0);
    assert!(err.contains("high, medium, low or none"), "{err}");
    let (code, out, err) = gw.cli(&["trust", "set", "partner.test", "high"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pinned high"), "{out}");
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await; // pin_reload_secs = 1
    assert_eq!(
        send(
            &gw,
            None,
            "carol@partner.test",
            &signed("carol@partner.test", "t4@p")
        )
        .await,
        250
    );
    let syms = logged_symbols(&gw, "carol@partner.test");
    assert!(syms.contains("TRUST_PINNED(-4.00)"), "{syms}");
    // ... a forged carol does not
    let forged = message("carol@partner.test", "u@example.test", "t5@p", "x");
    assert_eq!(
        send(&gw, Some("127.0.0.3"), "carol@partner.test", &forged).await,
        250
    );
    let syms = logged_symbols(&gw, "carol@partner.test");
    assert!(!syms.contains("TRUST_PINNED"), "{syms}");
    let (code, out, _) = gw.cli(&["trust", "set", "partner.test", "auto"]);
    assert_eq!(code, 0);
    assert!(out.contains("pin removed"), "{out}");
}
