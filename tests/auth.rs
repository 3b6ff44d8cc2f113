//! Sender authentication against real, independent parts: dnsmasq on loopback serves the SPF,
//! DKIM and DMARC records; Python's dkimpy signs the messages; openssl makes the key. The
//! gateway is the real binary with `[auth] enabled`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::harness::dns::{Dns, txt};
use crate::harness::sink::Received;
use crate::harness::tls::require_tool;
use crate::harness::{self, Client, Gateway, Sink, message, wait_until};

const OTHER_IP: &str = "127.0.0.3";

/// A DKIM key pair made with openssl: the private key file and the `p=` value.
pub(crate) struct Key {
    _dir: tempfile::TempDir,
    pub(crate) private: PathBuf,
    pub(crate) public_b64: String,
}

pub(crate) fn rsa_key() -> Key {
    require_tool("openssl", "openssl");
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("dkim.pem");
    let ok = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&private)
        .arg("2048")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success(), "openssl genrsa failed");
    let der = Command::new("openssl")
        .args(["rsa", "-pubout", "-outform", "DER", "-in"])
        .arg(&private)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(der.status.success(), "openssl rsa -pubout failed");
    Key {
        _dir: dir,
        private,
        public_b64: base64(&der.stdout),
    }
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Sign `msg` with dkimpy (the independent signer): returns the DKIM-Signature + message.
pub(crate) fn dkimpy_sign(msg: &str, key: &Path, domain: &str, selector: &str) -> String {
    dkimpy("dkim", msg, key, domain, selector)
}

/// `mode` "dkim": DKIM-sign; "arc": add an ARC set as the forwarder `domain` would (its
/// ARC-Authentication-Results come from the message's Authentication-Results of `domain`).
fn dkimpy(mode: &str, msg: &str, key: &Path, domain: &str, selector: &str) -> String {
    let probe = Command::new("python3")
        .args(["-c", "import dkim, authres, nacl"])
        .status()
        .expect("python3 is required: run `bash .ci/install-deps`");
    assert!(
        probe.success(),
        "Python's dkimpy, authres and pynacl are required by this test: run `bash .ci/install-deps` (pip install dkimpy authres pynacl)"
    );
    let script = r#"
import sys, dkim
key = open(sys.argv[1], 'rb').read()
domain, selector, mode = sys.argv[2].encode(), sys.argv[3].encode(), sys.argv[4]
msg = sys.stdin.buffer.read()
signed = [b'from', b'to', b'subject', b'date', b'message-id']
if mode == 'arc':
    sig = b''.join(dkim.arc_sign(msg, selector, domain, key, domain, include_headers=signed))
else:
    sig = dkim.sign(msg, selector, domain, key, include_headers=signed)
sys.stdout.buffer.write(sig + msg)
"#;
    let key = key.to_str().unwrap();
    let out = harness::python(
        script,
        &[key, domain, selector, mode],
        msg.as_bytes(),
        "dkimpy signing",
    );
    let signed = String::from_utf8(out).unwrap();
    assert!(
        signed.starts_with("DKIM-Signature:") || signed.starts_with("ARC-Seal:"),
        "{signed}"
    );
    signed
}

/// The DNS world of these tests (all under `.test`, served by dnsmasq).
fn dns(key: &Key) -> Dns {
    let spf_here = "v=spf1 ip4:127.0.0.1 -all";
    let spf_elsewhere = "v=spf1 ip4:192.0.2.1 -all";
    Dns::start(&[
        // dnsmasq gives its own records TTL 0 by default, which no cache keeps.
        "--local-ttl=300".to_string(),
        txt("signed.test", spf_here),
        txt(
            "sel._domainkey.signed.test",
            &format!("v=DKIM1; k=rsa; p={}", key.public_b64),
        ),
        txt("_dmarc.signed.test", "v=DMARC1; p=reject"),
        txt(
            "sel._domainkey.fwd.test",
            &format!("v=DKIM1; k=rsa; p={}", key.public_b64),
        ),
        txt("soft.test", "v=spf1 ip4:127.0.0.1 ~all"),
        txt("hard.test", spf_here),
        txt("neutral.test", "v=spf1 ?all"),
        txt("broken.test", "v=spf1 include:missing.test -all"),
        txt("helo.test", spf_here),
        txt("reject.test", spf_elsewhere),
        txt("_dmarc.reject.test", "v=DMARC1; p=reject"),
        txt("quarantine.test", spf_elsewhere),
        txt("_dmarc.quarantine.test", "v=DMARC1; p=quarantine"),
        txt("monitor.test", spf_elsewhere),
        txt("_dmarc.monitor.test", "v=DMARC1; p=none"),
    ])
}

fn auth_config(dns: &Dns, extra_auth: &str) -> String {
    format!(
        "dns_servers = [\"{}\"]\n[auth]\nenabled = true\ndns_timeout_ms = 1000\n{extra_auth}\n",
        dns.addr
    )
}

/// Send one message from `ip` (127.0.0.1 unless given) and return the reply code.
pub(crate) async fn send(gw: &Gateway, from_ip: Option<&str>, mail_from: &str, msg: &str) -> u16 {
    let mut c = match from_ip {
        Some(ip) => Client::connect_from(gw.smtp, ip.parse::<IpAddr>().unwrap()).await,
        None => Client::connect(gw.smtp).await,
    };
    c.send_message(mail_from, &["u@example.test"], msg)
        .await
        .code
}

/// The delivered copy with this Message-ID.
pub(crate) async fn delivered(sink: &Sink, gw: &Gateway, id: &str) -> Received {
    assert!(
        wait_until(10, || sink
            .all()
            .iter()
            .any(|m| m.message_id().as_deref() == Some(id)))
        .await,
        "{id} not delivered; log:\n{}",
        gw.log()
    );
    sink.all()
        .into_iter()
        .find(|m| m.message_id().as_deref() == Some(id))
        .unwrap()
}

/// Our Authentication-Results field(s) of a delivered message, unfolded.
fn our_auth_results(m: &Received) -> Vec<String> {
    let head = m.data.split("\r\n\r\n").next().unwrap();
    let unfolded = head.replace("\r\n\t", " ").replace("\r\n ", " ");
    unfolded
        .lines()
        .filter(|l| {
            l.to_ascii_lowercase()
                .starts_with("authentication-results: gw.portcullis.test")
        })
        .map(str::to_string)
        .collect()
}

/// The symbols the gateway logged for the message from `mail_from`.
pub(crate) fn logged_symbols(gw: &Gateway, mail_from: &str) -> String {
    let log = gw.log();
    log.lines()
        .rev()
        .filter(|l| l.contains(&format!("mail_from={mail_from} ")))
        .find_map(|l| l.split("symbols=").nth(1))
        .unwrap_or_else(|| panic!("no message line for {mail_from}; log:\n{log}"))
        .to_string()
}

#[tokio::test]
async fn dkimpy_signature_passes_and_an_altered_copy_fails() {
    let key = rsa_key();
    let dns = dns(&key);
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, &auth_config(&dns, ""));

    let msg = message(
        "a@signed.test",
        "u@example.test",
        "good@signed.test",
        "hello",
    );
    let signed = dkimpy_sign(&msg, &key.private, "signed.test", "sel");
    assert_eq!(send(&gw, None, "a@signed.test", &signed).await, 250);
    let m = delivered(&sink, &gw, "good@signed.test").await;
    let ar = our_auth_results(&m);
    assert_eq!(ar.len(), 1, "{ar:?}");
    for want in [
        "dkim=pass header.i=@signed.test header.s=sel",
        "spf=pass",
        "smtp.mailfrom=a@signed.test",
        "dmarc=pass header.from=signed.test",
    ] {
        assert!(ar[0].contains(want), "{want} missing in {}", ar[0]);
    }
    // Our A-R comes right after our Received line.
    let head: Vec<&str> = m.data.lines().collect();
    assert!(head[0].starts_with("Received: "), "{}", m.data);
    assert!(
        m.data.find("Authentication-Results:") < m.data.find("X-Portcullis-Score:"),
        "{}",
        m.data
    );
    let syms = logged_symbols(&gw, "a@signed.test");
    for s in ["SPF_PASS", "DKIM_PASS", "DMARC_PASS", "ARC_NONE"] {
        assert!(syms.contains(s), "{s} missing: {syms}");
    }

    // Altered after signing: the body changes, the signature breaks. SPF still passes
    // aligned, so DMARC passes and the message is accepted, but DKIM reports the failure.
    let signed2 = dkimpy_sign(
        &message(
            "b@signed.test",
            "u@example.test",
            "bad@signed.test",
            "pay 10 EUR",
        ),
        &key.private,
        "signed.test",
        "sel",
    );
    let altered = signed2.replace("pay 10 EUR", "pay 1000 EUR");
    assert_eq!(send(&gw, None, "b@signed.test", &altered).await, 250);
    let m = delivered(&sink, &gw, "bad@signed.test").await;
    let ar = our_auth_results(&m);
    assert!(
        !ar[0].contains("dkim=pass") && ar[0].contains("dkim="),
        "{}",
        ar[0]
    );
    let syms = logged_symbols(&gw, "b@signed.test");
    assert!(
        syms.contains("DKIM_FAIL") && !syms.contains("DKIM_PASS"),
        "{syms}"
    );

    // Altered header (Subject is signed): fails too.
    let signed3 = dkimpy_sign(
        &message("c@signed.test", "u@example.test", "hdr@signed.test", "x"),
        &key.private,
        "signed.test",
        "sel",
    );
    let altered = signed3.replace("Subject: test", "Subject: URGENT test");
    assert_eq!(send(&gw, None, "c@signed.test", &altered).await, 250);
    let syms = logged_symbols(&gw, "c@signed.test");
    assert!(syms.contains("DKIM_FAIL"), "{syms}");

    // From another IP with the signature intact: SPF fails, DKIM passes aligned → DMARC
    // passes and p=reject does not apply.
    let signed4 = dkimpy_sign(
        &message("d@signed.test", "u@example.test", "fwd@signed.test", "x"),
        &key.private,
        "signed.test",
        "sel",
    );
    assert_eq!(
        send(&gw, Some(OTHER_IP), "d@signed.test", &signed4).await,
        250
    );
    let syms = logged_symbols(&gw, "d@signed.test");
    for s in ["SPF_FAIL", "DKIM_PASS", "DMARC_PASS"] {
        assert!(syms.contains(s), "{s} missing: {syms}");
    }
}

#[tokio::test]
async fn spf_results_by_client_ip_and_helo_for_the_null_sender() {
    let key = rsa_key();
    let dns = dns(&key);
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, &auth_config(&dns, ""));
    let cases = [
        (None, "p@soft.test", "SPF_PASS", "spf=pass"),
        (
            Some(OTHER_IP),
            "s@soft.test",
            "SPF_SOFTFAIL",
            "spf=softfail",
        ),
        (Some(OTHER_IP), "f@hard.test", "SPF_FAIL", "spf=fail"),
        (None, "n@neutral.test", "SPF_NEUTRAL", "spf=neutral"),
        (None, "x@broken.test", "SPF_PERMERROR", "spf=permerror"),
        (None, "z@nospf.test", "SPF_NONE", "spf=none"),
    ];
    for (i, (ip, from, symbol, ar_text)) in cases.iter().enumerate() {
        let id = format!("spf{i}@x.test");
        let msg = message(from, "u@example.test", &id, "x");
        assert_eq!(send(&gw, *ip, from, &msg).await, 250, "{from}");
        let m = delivered(&sink, &gw, &id).await;
        let ar = our_auth_results(&m);
        assert!(ar[0].contains(ar_text), "{from}: {}", ar[0]);
        let syms = logged_symbols(&gw, from);
        assert!(syms.contains(symbol), "{from}: {syms}");
    }

    // Null sender: the HELO identity is checked.
    let mut c = Client::connect(gw.smtp).await;
    c.expect(220).await;
    c.cmd("EHLO helo.test", 250).await;
    c.cmd("MAIL FROM:<>", 250).await;
    c.cmd("RCPT TO:<u@example.test>", 250).await;
    let r = c
        .data(&message(
            "mailer-daemon@helo.test",
            "u@example.test",
            "dsn@helo.test",
            "x",
        ))
        .await;
    assert_eq!(r.code, 250);
    let m = delivered(&sink, &gw, "dsn@helo.test").await;
    let ar = our_auth_results(&m);
    assert!(
        ar[0].contains("spf=pass") && ar[0].contains("smtp.helo=helo.test"),
        "{}",
        ar[0]
    );

    // A sender with a HELO name whose SPF disowns the client: checked separately.
    let mut c = Client::connect_from(gw.smtp, OTHER_IP.parse::<IpAddr>().unwrap()).await;
    c.expect(220).await;
    c.cmd("EHLO hard.test", 250).await;
    c.cmd("MAIL FROM:<h@neutral.test>", 250).await;
    c.cmd("RCPT TO:<u@example.test>", 250).await;
    let r = c
        .data(&message(
            "h@neutral.test",
            "u@example.test",
            "helo@x.test",
            "x",
        ))
        .await;
    assert_eq!(r.code, 250);
    let m = delivered(&sink, &gw, "helo@x.test").await;
    let ar = our_auth_results(&m);
    assert!(
        ar[0].contains("spf=neutral")
            && ar[0].contains("spf=fail")
            && ar[0].contains("smtp.helo=hard.test"),
        "{}",
        ar[0]
    );
    let syms = logged_symbols(&gw, "h@neutral.test");
    assert!(
        syms.contains("SPF_NEUTRAL") && syms.contains("SPF_HELO_FAIL"),
        "{syms}"
    );

    // Null sender and an address-literal HELO: no identity to check, but no 451 either.
    let mut c = Client::connect(gw.smtp).await;
    c.expect(220).await;
    c.cmd("EHLO [127.0.0.1]", 250).await;
    c.cmd("MAIL FROM:<>", 250).await;
    c.cmd("RCPT TO:<u@example.test>", 250).await;
    let r = c
        .data(&message(
            "mailer-daemon@x.test",
            "u@example.test",
            "lit@x.test",
            "x",
        ))
        .await;
    assert_eq!(r.code, 250, "{}; log:\n{}", r.text, gw.log());
    let m = delivered(&sink, &gw, "lit@x.test").await;
    let ar = our_auth_results(&m);
    assert!(ar[0].contains("spf=none"), "{}", ar[0]);
}

#[tokio::test]
async fn dmarc_reject_is_refused_in_the_dialog_quarantine_held_none_delivered() {
    let key = rsa_key();
    let dns = dns(&key);
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, &auth_config(&dns, ""));

    // p=reject: 550 in the dialog, nothing queued or delivered.
    let msg = message(
        "ceo@reject.test",
        "u@example.test",
        "r@reject.test",
        "wire money",
    );
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message("ceo@reject.test", &["u@example.test"], &msg)
        .await;
    assert_eq!(r.code, 550, "{}", r.text);
    assert!(r.text.contains("5.7.1"), "{}", r.text);
    assert!(gw.stored_json().is_empty());
    assert!(logged_symbols(&gw, "ceo@reject.test").contains("DMARC_POLICY_REJECT"));

    // p=quarantine: accepted (250) and held.
    let msg = message(
        "q@quarantine.test",
        "u@example.test",
        "q@quarantine.test",
        "x",
    );
    assert_eq!(send(&gw, None, "q@quarantine.test", &msg).await, 250);
    let q = gw.stored_json();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["state"], "held", "{:?}", q[0]);

    // p=none: delivered, the failure only scores.
    let msg = message("m@monitor.test", "u@example.test", "m@monitor.test", "x");
    assert_eq!(send(&gw, None, "m@monitor.test", &msg).await, 250);
    let m = delivered(&sink, &gw, "m@monitor.test").await;
    let ar = our_auth_results(&m);
    assert!(
        ar[0].contains("dmarc=fail") && ar[0].contains("policy.dmarc=none"),
        "{}",
        ar[0]
    );
    assert!(logged_symbols(&gw, "m@monitor.test").contains("DMARC_POLICY_NONE"));
    assert_eq!(sink.count(), 1, "the held message must not be delivered");
}

#[tokio::test]
async fn dmarc_actions_are_configurable() {
    let key = rsa_key();
    let dns = dns(&key);
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        &auth_config(
            &dns,
            "dmarc_reject_action = \"quarantine\"\ndmarc_quarantine_action = \"none\"",
        ),
    );
    let msg = message("ceo@reject.test", "u@example.test", "r2@reject.test", "x");
    assert_eq!(send(&gw, None, "ceo@reject.test", &msg).await, 250);
    let q = gw.stored_json();
    assert_eq!(q.len(), 1, "{q:?}");
    assert_eq!(q[0]["state"], "held");
    // quarantine → none: only points (SPF_FAIL + DMARC_POLICY_QUARANTINE = 7 < 8), delivered.
    let msg = message(
        "q@quarantine.test",
        "u@example.test",
        "q2@quarantine.test",
        "x",
    );
    assert_eq!(send(&gw, None, "q@quarantine.test", &msg).await, 250);
    delivered(&sink, &gw, "q2@quarantine.test").await;
}

#[tokio::test]
async fn forged_auth_results_with_our_authserv_id_are_removed() {
    let key = rsa_key();
    let dns = dns(&key);
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, &auth_config(&dns, ""));
    let msg = format!(
        "Authentication-Results: gw.portcullis.test; dkim=pass header.d=bank.test; dmarc=pass\r\n\
         Authentication-Results: mx.elsewhere.test; spf=pass smtp.mailfrom=z@soft.test\r\n{}",
        message(
            "z@soft.test",
            "u@example.test",
            "forged@soft.test",
            "trust me"
        )
    );
    assert_eq!(send(&gw, None, "z@soft.test", &msg).await, 250);
    let m = delivered(&sink, &gw, "forged@soft.test").await;
    let ar = our_auth_results(&m);
    assert_eq!(ar.len(), 1, "only ours is left: {ar:?}");
    assert!(!ar[0].contains("bank.test"), "{}", ar[0]);
    assert!(
        m.data
            .contains("Authentication-Results: mx.elsewhere.test;"),
        "another server's field stays: {}",
        m.data
    );
}

#[tokio::test]
async fn dns_failure_tempfails_unless_fail_mode_is_open() {
    // A DNS server that does not answer (nothing listens on the port).
    let dead = crate::harness::free_port();
    let config = |extra: &str| {
        format!(
            "dns_servers = [\"127.0.0.1:{dead}\"]\n[auth]\nenabled = true\ndns_timeout_ms = 200\n{extra}"
        )
    };
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, &config(""));
    let msg = message("a@soft.test", "u@example.test", "t@soft.test", "x");
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message("a@soft.test", &["u@example.test"], &msg)
        .await;
    assert_eq!(r.code, 451, "never a silent pass: {}", r.text);
    assert!(gw.stored_json().is_empty());

    let gw = Gateway::start(sink.addr, &config("[stages.auth]\nfail_mode = \"open\""));
    assert_eq!(send(&gw, None, "a@soft.test", &msg).await, 250);
    let m = delivered(&sink, &gw, "t@soft.test").await;
    assert!(our_auth_results(&m).is_empty(), "{}", m.data);
    assert!(logged_symbols(&gw, "a@soft.test").contains("STAGE_FAILED_OPEN"));
}

#[tokio::test]
async fn arc_set_by_a_forwarder_verifies_and_a_broken_chain_fails() {
    let key = rsa_key();
    let dns = dns(&key);
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, &auth_config(&dns, ""));
    // The forwarder fwd.test received the message, wrote its Authentication-Results and
    // sealed it (dkimpy arc_sign, i=1, cv=none).
    let at_forwarder = format!(
        "Authentication-Results: fwd.test; spf=pass smtp.mailfrom=list@soft.test\r\n{}",
        message(
            "list@soft.test",
            "u@example.test",
            "arc@fwd.test",
            "forwarded"
        )
    );
    let sealed = dkimpy("arc", &at_forwarder, &key.private, "fwd.test", "sel");
    assert!(sealed.contains("ARC-Message-Signature:"), "{sealed}");
    assert_eq!(send(&gw, None, "list@soft.test", &sealed).await, 250);
    let m = delivered(&sink, &gw, "arc@fwd.test").await;
    assert!(our_auth_results(&m)[0].contains("arc=pass"), "{}", m.data);
    assert!(logged_symbols(&gw, "list@soft.test").contains("ARC_PASS"));

    // Changed after sealing: the ARC-Message-Signature no longer verifies.
    let sealed = dkimpy(
        "arc",
        &at_forwarder.replace("arc@fwd.test", "arc2@fwd.test"),
        &key.private,
        "fwd.test",
        "sel",
    );
    let broken = sealed.replace("Subject: test", "Subject: changed");
    assert_eq!(send(&gw, None, "other@soft.test", &broken).await, 250);
    let m = delivered(&sink, &gw, "arc2@fwd.test").await;
    assert!(our_auth_results(&m)[0].contains("arc=fail"), "{}", m.data);
    assert!(logged_symbols(&gw, "other@soft.test").contains("ARC_FAIL"));
}

/// Verify every DKIM-Signature of `msg` with dkimpy, the keys served from `records`
/// (name → TXT); one "True"/"False" per signature, in order.
fn dkimpy_verify(msg: &str, records: &[(&str, String)]) -> Vec<bool> {
    let script = r#"
import sys, json, dkim
records = json.loads(sys.argv[1])
def dnsfunc(name, timeout=5):
    name = name.decode().rstrip('.')
    return records.get(name, '').encode()
msg = sys.stdin.buffer.read()
n = sum(1 for l in msg.split(b'\r\n\r\n', 1)[0].split(b'\r\n') if l.lower().startswith(b'dkim-signature:'))
def ok(i):
    try:
        return dkim.DKIM(msg).verify(idx=i, dnsfunc=dnsfunc)
    except dkim.ValidationError:
        return False
print(' '.join(str(ok(i)) for i in range(n)))
"#;
    let json = format!(
        "{{{}}}",
        records
            .iter()
            .map(|(n, t)| format!("\"{n}\": \"{t}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let out = harness::python(script, &[&json], msg.as_bytes(), "dkimpy verifying");
    String::from_utf8(out)
        .unwrap()
        .split_whitespace()
        .map(|w| w == "True")
        .collect()
}

#[tokio::test]
async fn outbound_mail_is_dkim_signed_rsa_and_ed25519_and_dkimpy_verifies_it() {
    let rsa = rsa_key();
    // Ed25519: p= is the raw 32-byte public key (RFC 8463), the tail of the SPKI DER.
    let ed_dir = tempfile::tempdir().unwrap();
    let ed_key = ed_dir.path().join("ed.pem");
    assert!(
        Command::new("openssl")
            .args(["genpkey", "-algorithm", "ed25519", "-out"])
            .arg(&ed_key)
            .status()
            .unwrap()
            .success()
    );
    let spki = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&ed_key)
        .output()
        .unwrap()
        .stdout;
    let ed_pub = base64(&spki[spki.len() - 32..]);

    let inbound = Sink::start().await;
    let smarthost = Sink::start().await;
    let gw = Gateway::start(
        inbound.addr,
        &format!(
            "outbound_smarthost = \"{}\"\n\
             [[dkim_signing]]\ndomain = \"example.test\"\nselector = \"rsa\"\nkey = \"{}\"\n\
             [[dkim_signing]]\ndomain = \"example.test\"\nselector = \"ed\"\nkey = \"{}\"\n",
            smarthost.addr,
            rsa.private.display(),
            ed_key.display()
        ),
    );
    let mut c = gw.internal_client().await;
    let msg = message(
        "me@example.test",
        "partner@remote.test",
        "signed-out@example.test",
        "Our offer.\r\n.leading dot line\r\nRegards",
    );
    let r = c
        .send_message("me@example.test", &["partner@remote.test"], &msg)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(
        wait_until(10, || smarthost.count() == 1).await,
        "log:\n{}",
        gw.log()
    );
    let out = smarthost.all()[0].data.clone();
    assert_eq!(out.matches("DKIM-Signature:").count(), 2, "{out}");
    assert!(
        out.contains("a=rsa-sha256") && out.contains("a=ed25519-sha256"),
        "{out}"
    );
    let records = [
        (
            "rsa._domainkey.example.test",
            format!("v=DKIM1; k=rsa; p={}", rsa.public_b64),
        ),
        (
            "ed._domainkey.example.test",
            format!("v=DKIM1; k=ed25519; p={ed_pub}"),
        ),
    ];
    assert_eq!(dkimpy_verify(&out, &records), vec![true, true], "{out}");
    // The independent verifier is not fooled: a changed body fails both.
    let tampered = out.replace("Our offer.", "Our new offer.");
    assert_eq!(dkimpy_verify(&tampered, &records), vec![false, false]);

    // Another sender domain has no key: unsigned.
    let msg = message(
        "me@other.test",
        "partner@remote.test",
        "unsigned@other.test",
        "x",
    );
    let mut c = gw.internal_client().await;
    let r = c
        .send_message("me@other.test", &["partner@remote.test"], &msg)
        .await;
    assert_eq!(r.code, 250);
    assert!(wait_until(10, || smarthost.count() == 2).await);
    assert!(!smarthost.all()[1].data.contains("DKIM-Signature:"));
}

#[test]
fn check_config_names_an_unusable_dkim_key() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.pem");
    let ok = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(&short)
        .arg("1024")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
    for (key, want) in [
        (dir.path().join("missing.pem"), "cannot read the key file"),
        (short, "at least 2048"),
    ] {
        let config = dir.path().join("c.toml");
        std::fs::write(
            &config,
            format!(
                "[[dkim_signing]]\ndomain = \"example.test\"\nselector = \"s\"\nkey = \"{}\"\n",
                key.display()
            ),
        )
        .unwrap();
        let out = Command::new(crate::harness::binary())
            .args(["check-config", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(
            err.contains("dkim_signing[0].key") && err.contains(want),
            "{err}"
        );
    }
}

#[tokio::test]
async fn an_unresolvable_extra_signature_is_a_symbol_after_a_dmarc_pass_else_451() {
    let key = rsa_key();
    let dns = dns(&key);
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, &auth_config(&dns, ""));
    // dnsmasq answers only for .test (no upstream): a key under .example is a DNS failure.
    let msg = message("a@signed.test", "u@example.test", "two@signed.test", "x");
    let signed = dkimpy_sign(&msg, &key.private, "signed.test", "sel");
    let twice = dkimpy_sign(&signed, &key.private, "elsewhere.example", "sel");
    assert_eq!(send(&gw, None, "a@signed.test", &twice).await, 250);
    let syms = logged_symbols(&gw, "a@signed.test");
    for s in ["DKIM_PASS", "DKIM_TEMPERROR", "DMARC_PASS"] {
        assert!(syms.contains(s), "{s} missing: {syms}");
    }
    let m = delivered(&sink, &gw, "two@signed.test").await;
    assert!(
        our_auth_results(&m)[0].contains("dkim=temperror"),
        "{}",
        m.data
    );

    // Without a DMARC pass the same DNS failure defers the message.
    let msg = message("b@soft.test", "u@example.test", "one@soft.test", "x");
    let only = dkimpy_sign(&msg, &key.private, "elsewhere.example", "sel");
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message("b@soft.test", &["u@example.test"], &only)
        .await;
    assert_eq!(r.code, 451, "{}", r.text);
}

#[tokio::test]
async fn records_are_cached_for_their_ttl_and_shared_by_sessions() {
    let log_dir = tempfile::tempdir().unwrap();
    let log = log_dir.path().join("queries.log");
    let dns = Dns::start(&[
        "--local-ttl=300".to_string(),
        "--log-queries".to_string(),
        format!("--log-facility={}", log.display()),
        txt("signed.test", "v=spf1 ip4:127.0.0.1 -all"),
        txt("_dmarc.signed.test", "v=DMARC1; p=none"),
    ]);
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, &auth_config(&dns, ""));
    for i in 0..3 {
        let id = format!("c{i}@signed.test");
        let msg = message("a@signed.test", "u@example.test", &id, "x");
        assert_eq!(send(&gw, None, "a@signed.test", &msg).await, 250);
    }
    let queries = std::fs::read_to_string(&log).unwrap_or_default();
    let asked = |name: &str| {
        queries
            .lines()
            .filter(|l| l.contains("query[TXT]") && l.contains(&format!(" {name} from")))
            .count()
    };
    assert_eq!(asked("signed.test"), 1, "SPF record:\n{queries}");
    assert_eq!(asked("_dmarc.signed.test"), 1, "DMARC record:\n{queries}");
    // Negative answers too (the DMARC tree walk's parent).
    assert_eq!(asked("_dmarc.test"), 1, "negative answer:\n{queries}");
}

/// A DKIM-Signature naming `names` header fields that do not exist, with the right body
/// hash for a body of `x` (so a verifier goes on to hash the header fields) and a bogus `b=`.
fn costly_signature(names: usize) -> String {
    let h: Vec<String> = (0..names).map(|i| format!("x-absent-{i}")).collect();
    format!(
        "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=signed.test; s=sel;\r\n\
         \th={}; bh=s14J+iztnrytnRYzb7lhFG/jS/vrxWJnnahfijFMnco=; b=AAAA\r\n",
        h.join(":")
    )
}

#[tokio::test]
async fn dkim_work_is_bounded_and_does_not_stall_other_sessions() {
    let key = rsa_key();
    let dns = dns(&key);
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, &auth_config(&dns, ""));

    // Ten signatures each naming 3,000 absent fields over 60,000 filler fields (about
    // 1 MB): unbounded, that is 1.8 billion field comparisons.
    let filler: String = (0..60_000).map(|i| format!("X-F{i}: f\r\n")).collect();
    let signatures: String = (0..10).map(|_| costly_signature(3_000)).collect();
    let costly = |id: &str| {
        format!(
            "{signatures}{filler}{}",
            message("a@signed.test", "u@example.test", id, "x")
        )
    };
    let started = std::time::Instant::now();
    let attacks: Vec<_> = (0..3)
        .map(|i| {
            let msg = costly(&format!("costly{i}@signed.test"));
            let addr = gw.smtp;
            tokio::spawn(async move {
                let mut c = Client::connect(addr).await;
                c.send_message("a@signed.test", &["u@example.test"], &msg)
                    .await
                    .code
            })
        })
        .collect();
    // Meanwhile a new client is greeted at once.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let greeting = std::time::Instant::now();
    let mut c = Client::connect(gw.smtp).await;
    c.expect(220).await;
    let waited = greeting.elapsed();
    for a in attacks {
        assert_eq!(a.await.unwrap(), 250);
    }
    eprintln!(
        "three costly messages judged in {:?}; a new client waited {waited:?} for its banner",
        started.elapsed()
    );
    assert!(
        waited < std::time::Duration::from_secs(2),
        "a new client waited {waited:?} for its banner"
    );
    let syms = logged_symbols(&gw, "a@signed.test");
    assert!(
        syms.contains("DKIM_PERMERROR") && !syms.contains("DKIM_PASS"),
        "{syms}"
    );
    let m = delivered(&sink, &gw, "costly0@signed.test").await;
    assert!(
        our_auth_results(&m)[0].contains("dkim=permerror"),
        "{}",
        m.data
    );

    // One signature naming too many fields: not checked.
    let one = format!(
        "{}{}",
        costly_signature(101),
        message("b@signed.test", "u@example.test", "wide@signed.test", "x")
    );
    assert_eq!(send(&gw, None, "b@signed.test", &one).await, 250);
    let syms = logged_symbols(&gw, "b@signed.test");
    assert!(syms.contains("DKIM_PERMERROR"), "{syms}");

    // A genuine signature on a message with more header fields than the cap is not
    // vouched for either: no pass without the check.
    let signed = dkimpy_sign(
        &message("c@signed.test", "u@example.test", "many@signed.test", "x"),
        &key.private,
        "signed.test",
        "sel",
    );
    let many: String = (0..1_000).map(|i| format!("X-Many-{i}: m\r\n")).collect();
    let (sig, rest) = signed.split_at(signed.find("\r\nFrom:").unwrap() + 2);
    let padded = format!("{sig}{many}{rest}");
    assert_eq!(send(&gw, None, "c@signed.test", &padded).await, 250);
    let syms = logged_symbols(&gw, "c@signed.test");
    assert!(
        syms.contains("DKIM_PERMERROR") && !syms.contains("DKIM_PASS"),
        "{syms}"
    );
    // The same signed message without the padding passes: the cap, not the signature,
    // stopped it.
    let signed = dkimpy_sign(
        &message("d@signed.test", "u@example.test", "few@signed.test", "x"),
        &key.private,
        "signed.test",
        "sel",
    );
    assert_eq!(send(&gw, None, "d@signed.test", &signed).await, 250);
    assert!(logged_symbols(&gw, "d@signed.test").contains("DKIM_PASS"));
}
