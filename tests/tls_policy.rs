//! TLS reputation and per-domain TLS policy, with certificates made by the `openssl`
//! command line and swaks as the sending client.

use std::path::Path;

use crate::harness::tls::{swaks, swaks_args};
use crate::harness::{Gateway, Sink, config_text};

/// A CA, a client certificate it signed for mx.partner.test, and a self-signed one.
fn make_certs(dir: &Path) {
    crate::harness::tls::make_certs(
        dir,
        "Partner Test CA",
        "client",
        "mx.partner.test",
        "DNS:mx.partner.test",
        "clientAuth",
    );
}

#[tokio::test]
async fn partner_policy_and_certificate_reputation() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let ca = certs.path().join("ca.crt");
    let policy = "[[tls_policy]]\ndomain = \"partner.test\"\nrequire_tls = true\nrequire_verified_cert = true\n";
    let gw = Gateway::start_custom(|dir, smtp, metrics| {
        config_text(dir, smtp, metrics, Sink::dead_addr(), policy).replacen(
            "tls = \"starttls\"\n",
            &format!("tls = \"starttls\"\nclient_ca = \"{}\"\n", ca.display()),
            1,
        )
    });
    let cert = |name: &str| certs.path().join(name).to_str().unwrap().to_string();

    // the partner without TLS, with TLS but no certificate, with a self-signed one: refused
    for (what, extra) in [
        ("plaintext", vec![]),
        ("TLS, no certificate", vec!["--tls".to_string()]),
        (
            "self-signed certificate",
            vec![
                "--tls".into(),
                "--tls-cert".into(),
                cert("self.crt"),
                "--tls-key".into(),
                cert("self.key"),
            ],
        ),
    ] {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let (code, out) = swaks(swaks_args(&gw, "mx.partner.test", "a@partner.test", &extra)).await;
        assert_ne!(code, 0, "{what}: accepted?\n{out}");
        assert!(out.contains("530 5.7.0"), "{what}:\n{out}");
    }
    assert!(gw.queue_json().is_empty());

    // with the CA-signed certificate: accepted, and the name match earns the bonus
    let (code, out) = swaks(swaks_args(
        &gw,
        "mx.partner.test",
        "a@partner.test",
        &[
            "--tls",
            "--tls-cert",
            &cert("client.crt"),
            "--tls-key",
            &cert("client.key"),
        ],
    ))
    .await;
    assert_eq!(code, 0, "{out}");
    // a sender without a policy may still use plaintext
    let (code, out) = swaks(swaks_args(&gw, "mx.other.test", "b@other.test", &[])).await;
    assert_eq!(code, 0, "{out}");
    let q = gw.queue_json();
    assert_eq!(q.len(), 2);
    let symbols = |from: &str| {
        q.iter().find(|m| m["mail_from"] == from).unwrap()["symbols"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        symbols("a@partner.test").contains("TLS_CERT_NAME_MATCH(-1.50)"),
        "{}",
        symbols("a@partner.test")
    );
    assert!(
        symbols("b@other.test").contains("TLS_NONE"),
        "{}",
        symbols("b@other.test")
    );
}

#[tokio::test]
async fn a_partner_that_always_showed_a_certificate_is_flagged_when_it_stops() {
    use crate::harness::dns::{Dns, txt};
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let ca = certs.path().join("ca.crt");
    // SPF passes for 127.0.0.1 and the From is the MAIL FROM: authenticated (no DMARC
    // record, aligned all the same), so the sessions teach the domain's TLS habit.
    let dns = Dns::start(&[
        "--local-ttl=300".to_string(),
        txt("partner.test", "v=spf1 ip4:127.0.0.1 -all"),
    ]);
    let extra = format!("dns_servers = [\"{}\"]\n[auth]\nenabled = true\n", dns.addr);
    let gw = Gateway::start_custom(|dir, smtp, metrics| {
        config_text(dir, smtp, metrics, Sink::dead_addr(), &extra).replacen(
            "tls = \"starttls\"\n",
            &format!("tls = \"starttls\"\nclient_ca = \"{}\"\n", ca.display()),
            1,
        )
    });
    let cert = |name: &str| certs.path().join(name).to_str().unwrap().to_string();
    let with_cert = [
        "--tls".to_string(),
        "--tls-cert".into(),
        cert("client.crt"),
        "--tls-key".into(),
        cert("client.key"),
    ];
    let with_cert: Vec<&str> = with_cert.iter().map(String::as_str).collect();
    for i in 0..2 {
        let from = format!("s{i}@partner.test");
        let (code, out) = swaks(swaks_args(&gw, "mx.partner.test", &from, &with_cert)).await;
        assert_eq!(code, 0, "{out}");
    }
    // now in plaintext
    let (code, out) = swaks(swaks_args(
        &gw,
        "mx.partner.test",
        "plain@partner.test",
        &[],
    ))
    .await;
    assert_eq!(code, 0, "{out}");
    let q = gw.queue_json();
    let symbols = |from: &str| {
        q.iter().find(|m| m["mail_from"] == from).unwrap()["symbols"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        !symbols("s1@partner.test").contains("TLS_DOWNGRADE"),
        "{}",
        symbols("s1@partner.test")
    );
    let s = symbols("plain@partner.test");
    assert!(s.contains("TLS_DOWNGRADE(3.00)"), "{s}");
    let metrics = gw.metrics_text();
    assert!(
        metrics.contains("portcullis_symbols_total{symbol=\"TLS_DOWNGRADE\"} 1"),
        "{metrics}"
    );
    assert!(
        gw.log()
            .contains("TLS downgrade: this domain always showed a verified client certificate"),
        "no alert in the log:\n{}",
        gw.log()
    );
    // a sender from elsewhere has no history: nothing to flag
    let (code, out) = swaks(swaks_args(&gw, "mx.other.test", "b@other.test", &[])).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        !gw.queue_json()
            .iter()
            .any(|m| m["mail_from"] == "b@other.test"
                && m["symbols"].as_str().unwrap().contains("TLS_DOWNGRADE"))
    );
}
