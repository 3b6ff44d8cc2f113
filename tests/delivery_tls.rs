//! Outbound TLS policy (`[[tls_policy]]` for recipient domains): the real gateway delivers
//! to the harness sink, which offers STARTTLS with certificates made by the `openssl`
//! command line (a test CA, a server certificate it signed, a self-signed one).

use std::path::Path;

use crate::harness::{Gateway, Sink, message, wait_until};

const QUICK: &str = "[queue]\nretry_initial_secs = 1\nretry_max_secs = 1\nscan_interval_secs = 1\n";

/// ca.crt/ca.key, server.crt/server.key (CA-signed, for 127.0.0.1 and localhost), self.crt/self.key.
fn make_certs(dir: &Path) {
    crate::harness::tls::make_certs(
        dir,
        "Outbound Test CA",
        "server",
        "localhost",
        "DNS:localhost,IP:127.0.0.1",
        "serverAuth",
    );
}

fn policy(domain: &str, verified: bool) -> String {
    format!(
        "[[tls_policy]]\ndomain = \"{domain}\"\ndirection = \"outbound\"\nrequire_tls = true\nrequire_verified_cert = {verified}\n"
    )
}

/// Start a gateway whose outbound smarthost is `smarthost`; `top` holds top-level keys.
fn gateway(sink: &Sink, smarthost: &Sink, top: &str, tables: &str) -> Gateway {
    Gateway::start(
        sink.addr,
        &format!(
            "outbound_smarthost = \"{}\"\n{top}{tables}{QUICK}",
            smarthost.addr
        ),
    )
}

async fn send_out(gw: &Gateway, rcpts: &[&str], id: &str) {
    let mut c = gw.internal_client().await;
    let r = c
        .send_message(
            "u@example.test",
            rcpts,
            &message("u@example.test", rcpts[0], id, "hello"),
        )
        .await;
    assert_eq!(r.code, 250, "{r:?}");
}

fn last_error(gw: &Gateway) -> String {
    gw.queue_json()
        .iter()
        .filter_map(|m| m["last_error"].as_str().map(String::from))
        .collect::<Vec<_>>()
        .join(" | ")
}

#[tokio::test]
async fn required_tls_never_falls_back_to_plaintext() {
    let inbound = Sink::start().await; // our internal server: receives the bounce
    let plain = Sink::start().await; // a smarthost without STARTTLS
    let gw = gateway(&inbound, &plain, "", &policy("secure.test", false));
    send_out(&gw, &["a@secure.test", "b@open.test"], "mixed@example.test").await;
    // the domain without a policy goes out in clear at once
    assert!(
        wait_until(10, || plain
            .all()
            .iter()
            .any(|m| m.rcpts == ["b@open.test"]))
        .await
    );
    // the one with require_tls is held back, with the reason
    assert!(
        wait_until(10, || last_error(&gw).contains("does not offer STARTTLS")).await,
        "queue: {:?}\nlog:\n{}",
        gw.queue_json(),
        gw.log()
    );
    assert!(
        plain
            .all()
            .iter()
            .all(|m| !m.rcpts.iter().any(|r| r == "a@secure.test"))
    );
    assert!(
        last_error(&gw).contains("policy requires TLS"),
        "{}",
        last_error(&gw)
    );
}

#[tokio::test]
async fn required_tls_gives_up_after_max_age_with_a_bounce_naming_the_policy() {
    let inbound = Sink::start().await;
    let plain = Sink::start().await;
    let gw = Gateway::start(
        inbound.addr,
        &format!(
            "outbound_smarthost = \"{}\"\n{}[queue]\nretry_initial_secs = 1\nretry_max_secs = 1\nscan_interval_secs = 1\nmax_age_secs = 2\n",
            plain.addr,
            policy("secure.test", false)
        ),
    );
    send_out(&gw, &["a@secure.test"], "old@example.test").await;
    assert!(
        wait_until(15, || inbound.all().iter().any(|m| m.rcpts
            == ["u@example.test"]
            && m.data.contains("does not offer STARTTLS")))
        .await,
        "no bounce naming the reason; inbound: {:?}\nlog:\n{}",
        inbound.all(),
        gw.log()
    );
    assert_eq!(plain.count(), 0, "sent in clear: {:?}", plain.all());
}

#[tokio::test]
async fn verified_tls_checks_the_servers_chain_and_name() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let p = |f: &str| certs.path().join(f);
    let inbound = Sink::start().await;
    let self_signed = Sink::start_tls(&p("self.crt"), &p("self.key")).await;
    let ca_signed = Sink::start_tls(&p("server.crt"), &p("server.key")).await;
    let ca = format!("outbound_tls_ca = \"{}\"\n", p("ca.crt").display());
    let policies = format!(
        "{}{}",
        policy("tls.test", false),
        policy("verified.test", true)
    );

    // require_tls alone: any certificate will do, but TLS it is.
    let gw = gateway(&inbound, &self_signed, &ca, &policies);
    send_out(&gw, &["x@tls.test"], "t1@example.test").await;
    assert!(
        wait_until(10, || self_signed
            .all()
            .iter()
            .any(|m| m.rcpts == ["x@tls.test"]))
        .await
    );
    assert!(self_signed.all()[0].tls, "delivered without TLS");
    // require_verified_cert: the self-signed server is refused, the message waits.
    send_out(&gw, &["y@verified.test"], "t2@example.test").await;
    held_back(&gw, &self_signed, "y@verified.test").await;
    drop(gw);

    // The CA-signed server verifies against outbound_tls_ca: delivered over TLS.
    let gw = gateway(&inbound, &ca_signed, &ca, &policies);
    send_out(&gw, &["y@verified.test"], "t3@example.test").await;
    assert!(
        wait_until(10, || ca_signed
            .all()
            .iter()
            .any(|m| m.rcpts == ["y@verified.test"]))
        .await,
        "{:?}\n{}",
        gw.queue_json(),
        gw.log()
    );
    assert!(ca_signed.all().iter().all(|m| m.tls));
    drop(gw);

    // ... and not without it (the test CA is in no system store).
    let gw = gateway(&inbound, &ca_signed, "", &policies);
    send_out(&gw, &["z@verified.test"], "t4@example.test").await;
    held_back(&gw, &ca_signed, "z@verified.test").await;
}

/// The message to `rcpt` waits in the queue for want of verified TLS, and `server` never
/// got it.
async fn held_back(gw: &Gateway, server: &Sink, rcpt: &str) {
    assert!(
        wait_until(10, || last_error(gw).contains("verified-tls")).await,
        "{:?}\n{}",
        gw.queue_json(),
        gw.log()
    );
    assert!(!server.all().iter().any(|m| m.rcpts == [rcpt]));
}
