//! The admin API on its Unix socket, end to end: the real gateway, the real CLI (as root
//! and as other users through `setpriv`), and the library's client for the API's own
//! answers (JSON errors, OpenAPI, counters).

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use portcullis::admin::client::Client as Api;
use portcullis::admin::types::{ListName, NewListEntry};

use crate::harness::smime::{TestPki, crlf, openssl};
use crate::harness::tls::require_tool;
use crate::harness::{Client, Gateway, Sink, SinkMode, binary, message, wait_until};

async fn api(gw: &Gateway) -> Api {
    Api::connect(gw.data_dir().join("admin.sock"))
        .await
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", gw.log()))
}

#[tokio::test]
async fn json_errors_name_the_field_openapi_and_counters() {
    let sink = Sink::start().await;
    sink.set_mode(SinkMode::Defer);
    // No scan for an hour: only the API's retry can make the message go.
    let gw = Gateway::start(
        sink.addr,
        "[queue]\nscan_interval_secs = 3600\nretry_initial_secs = 3600\n",
    );
    let sock = gw.data_dir().join("admin.sock");
    let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660, "socket mode {mode:o}");
    let api = api(&gw).await;
    assert_eq!(api.health().await.unwrap().status, "ok");

    // Bad requests: each names its field.
    let post = |body: &str| {
        let api = api.clone();
        let body = body.as_bytes().to_vec();
        async move {
            api.raw(axum::http::Method::POST, "/v1/lists", Some(body))
                .await
                .unwrap_err()
        }
    };
    let field = |e: &portcullis::admin::ApiError| e.detail.field.clone().unwrap_or_default();
    let e = post(r#"{"list": "block"}"#).await;
    assert_eq!(
        (e.status.as_u16(), field(&e).as_str()),
        (400, "sender"),
        "{e:?}"
    );
    let e = post(r#"{"list": "maybe", "sender": "@x.test"}"#).await;
    assert_eq!(field(&e), "list", "{e:?}");
    let e = post(r#"{"list": "block", "sender": "not a sender"}"#).await;
    assert_eq!(field(&e), "sender", "{e:?}");
    assert!(e.detail.message.contains("not a sender"), "{e:?}");
    let e = post(r#"{"list": "block", "sender": "@x.test", "recipient": "a b"}"#).await;
    assert_eq!(field(&e), "recipient", "{e:?}");
    let e = post(r#"{"list": "block", "sender": "@x.test", "colour": "red"}"#).await;
    assert_eq!(field(&e), "colour", "{e:?}");
    let e = api
        .raw(axum::http::Method::GET, "/v1/queue/not-hex", None)
        .await
        .unwrap_err();
    assert_eq!((e.status.as_u16(), field(&e).as_str()), (400, "id"));
    let e = api
        .raw(axum::http::Method::GET, "/v1/nothing", None)
        .await
        .unwrap_err();
    assert_eq!(
        (e.status.as_u16(), e.detail.code.as_str()),
        (404, "not_found")
    );
    // The same shape on the wire, read without the client.
    require_tool("curl", "curl");
    let out = Command::new("curl")
        .args(["-s", "--unix-socket"])
        .arg(&sock)
        .args([
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"list":"block"}"#,
        ])
        .arg("http://portcullis/v1/lists")
        .output()
        .unwrap();
    assert!(out.status.success(), "curl failed");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["field"], "sender", "{v}");
    assert_eq!(v["error"]["code"], "bad_request", "{v}");

    // OpenAPI from the code.
    let doc = api.openapi().await.unwrap();
    assert!(doc["paths"]["/v1/lists"]["post"].is_object(), "{doc}");
    assert!(doc["paths"]["/v1/certs"]["post"].is_object(), "{doc}");

    // Counters after one accepted message.
    let msg = message("a@ext.test", "u@example.test", "c1@ext.test", "x");
    let r = Client::connect(gw.smtp)
        .await
        .send_message("a@ext.test", &["u@example.test"], &msg)
        .await;
    assert_eq!(r.code, 250);
    let c = api.counters().await.unwrap();
    let accepted = c
        .messages
        .iter()
        .find(|m| m.direction == "inbound" && m.verdict == "accept")
        .map(|m| m.count);
    assert_eq!(accepted, Some(1), "{c:?}");
    assert!(c.clamd.is_none(), "ClamAV is off: {c:?}");
    assert_eq!((c.queue.queued, c.queue.held), (1, 0), "{c:?}");
    assert!(c.queue.oldest_age_secs.is_some(), "{c:?}");
    // Deferred once; a retry through the API hands it to delivery at once.
    let mut queue = api.queue_list().await.unwrap();
    for _ in 0..400 {
        if queue.iter().all(|m| m.attempts == 1) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        queue = api.queue_list().await.unwrap();
    }
    assert_eq!(queue[0].attempts, 1, "{queue:?}");
    sink.set_mode(SinkMode::Accept);
    api.queue_retry(&queue[0].id).await.unwrap();
    assert!(wait_until(10, || sink.count() == 1).await, "{}", gw.log());
    let mut c = api.counters().await.unwrap();
    for _ in 0..200 {
        if c.queue.queued == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        c = api.counters().await.unwrap();
    }
    assert_eq!(
        (c.queue.queued, c.queue.oldest_age_secs),
        (0, None),
        "{c:?}"
    );
}

/// An identity imported through the API is in use the moment the call returns: mail
/// encrypted to it right after is decrypted (the store's own poll is an hour away).
#[tokio::test]
async fn a_key_imported_through_the_api_decrypts_the_next_message_at_once() {
    let pki = TestPki::new("Admin CA");
    let bob = pki.holder("bob@example.test");
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        "[certs]\nsystem_roots = false\nreload_secs = 3600\n[smime]\nenabled = true\n",
    );
    let (code, _, err) = gw.cli(&["certs", "trust-ca", pki.ca().to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("offline"), "the CLI must use the API: {err}");
    let content = pki.path("content");
    std::fs::write(
        &content,
        "Content-Type: text/plain\r\n\r\nThe plan, in confidence.\r\n",
    )
    .unwrap();
    let encrypted = crlf(&openssl(
        &[
            "cms",
            "-encrypt",
            "-binary",
            "-aes-256-cbc",
            "-in",
            content.to_str().unwrap(),
            "-recip",
            bob.cert.to_str().unwrap(),
        ],
        b"",
    ));
    let mail = format!(
        "From: <alice@partner.test>\r\nTo: <bob@example.test>\r\nSubject: plan\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <enc1@partner.test>\r\n{}",
        String::from_utf8_lossy(&encrypted)
    );
    let (code, out, err) = gw.cli(&[
        "certs",
        "import",
        bob.p12.to_str().unwrap(),
        "--password-file",
        bob.password_file.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("new"), "{out}");
    assert!(!err.contains("offline"), "the CLI must use the API: {err}");
    // At once: no settling time.
    let r = Client::connect(gw.smtp)
        .await
        .send_message("alice@partner.test", &["bob@example.test"], &mail)
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(wait_until(10, || sink.count() == 1).await, "{}", gw.log());
    let got = &sink.all()[0].data;
    assert!(got.contains("The plan, in confidence."), "{got}");
    assert!(got.contains("X-Portcullis-SMIME: decrypted"), "{got}");

    // Deleting it through the API takes effect as fast: the same mail is undecryptable.
    let fp = serde_json::from_str::<serde_json::Value>(&gw.cli(&["certs", "list", "--json"]).1)
        .unwrap()["domains"][0]["certs"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, _, err) = gw.cli(&["certs", "delete", &fp]);
    assert_eq!(code, 0, "{err}");
    let r = Client::connect(gw.smtp)
        .await
        .send_message(
            "alice@partner.test",
            &["bob@example.test"],
            &mail.replace("enc1@", "enc2@"),
        )
        .await;
    assert!(
        wait_until(10, || gw.log().contains("SMIME_UNDECRYPTABLE")).await,
        "{} {}",
        r.code,
        gw.log()
    );
}

/// `setpriv` runs the CLI as `nobody` with the given group: (exit code, stdout, stderr).
fn cli_as(gw: &Gateway, group: &str, args: &[&str]) -> (i32, String, String) {
    require_tool("setpriv", "util-linux");
    let out = Command::new("setpriv")
        .args([
            "--reuid=nobody",
            &format!("--regid={group}"),
            "--clear-groups",
        ])
        .arg(binary())
        .arg(args[0])
        .arg("--config")
        .arg(&gw.config_path)
        .args(&args[1..])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Let other users reach the config file and the data directory's socket (the tests'
/// temporary directory is root's alone).
fn open_to_others(gw: &Gateway) {
    std::fs::set_permissions(gw.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&gw.config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

#[tokio::test]
async fn users_outside_the_groups_are_refused_and_auditors_only_read() {
    let hop = Sink::dead_addr();
    let gw = Gateway::start(
        hop,
        "[admin]\nsocket_group = \"nogroup\"\naudit_group = \"nogroup\"\n",
    );
    open_to_others(&gw);
    // An operator (root) adds an entry: the audit line carries the uid.
    let (code, _, err) = gw.cli(&["lists", "add", "block", "@spam.test"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        wait_until(5, || gw.log().lines().any(|l| l.contains("admin request")
            && l.contains("uid=0")
            && l.contains("POST")))
        .await,
        "{}",
        gw.log()
    );

    // Not in the socket's group: the system refuses the connection; the CLI says why.
    let (code, _, err) = cli_as(&gw, "daemon", &["lists", "show"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("permission denied") && err.contains("nogroup"),
        "{err}"
    );
    // In the audit group: reading works, changing is refused by the API.
    let (code, out, err) = cli_as(&gw, "nogroup", &["lists", "show"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("@spam.test"), "{out}");
    let (code, _, err) = cli_as(&gw, "nogroup", &["lists", "add", "allow", "@friend.test"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("may only read") && err.contains("uid 65534"),
        "{err}"
    );
    let (_, out, _) = gw.cli(&["lists", "show", "--json"]);
    assert!(!out.contains("friend.test"), "{out}");
    assert!(
        gw.log().contains("admin request refused") && gw.log().contains("uid=65534"),
        "{}",
        gw.log()
    );

    // In the socket's group but in no role: 403, with what to do.
    drop(gw);
    let gw = Gateway::start(hop, "[admin]\nsocket_group = \"nogroup\"\n");
    open_to_others(&gw);
    let (code, _, err) = cli_as(&gw, "nogroup", &["queue", "list"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("may not use the admin API") && err.contains("operator_group"),
        "{err}"
    );
}

#[tokio::test]
async fn offline_the_cli_works_on_the_files_and_says_so() {
    let hop = Sink::dead_addr();
    let mut gw = Gateway::start(hop, "");
    let entry = NewListEntry {
        list: ListName::Block,
        sender: "@offline.test".into(),
        recipient: None,
        comment: Some("added while running".into()),
        expires_at: None,
    };
    let added = api(&gw).await.lists_add(&entry).await.unwrap();
    assert_eq!(added.entry.added_by, "uid 0 (root)");
    gw.kill9();
    let (code, out, err) = gw.cli(&["lists", "show"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("@offline.test"), "{out}");
    assert!(
        err.contains("the gateway is not running") && err.contains("offline"),
        "{err}"
    );
    // A removal made offline is what the gateway loads at its next start.
    let (code, _, err) = gw.cli(&["lists", "remove", &added.entry.id.to_string()]);
    assert_eq!(code, 0, "{err}");
    gw.spawn();
    assert!(api(&gw).await.lists_all().await.unwrap().is_empty());
    let (code, _, err) = gw.cli(&["lists", "remove", "999"]);
    assert_eq!(code, 1, "{err}");
}

/// A held message to two recipients: released to one by an operator who is not root
/// (the CLI as `nobody`, a member of the operator group, through the API), deleted for the
/// other by root; the sink gets one copy, and the audit rows carry each caller's uid from
/// the socket. Then the sender goes on the block list from the held message.
#[tokio::test]
async fn quarantine_through_the_api_audits_the_calling_uid() {
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        "[symbols]\nHDR_MISSING_DATE = 9.0\n[admin]\nsocket_group = \"nogroup\"\noperator_group = \"nogroup\"\n",
    );
    open_to_others(&gw);
    let held = "From: Sender <a@ext.test>\r\nTo: ann@example.test, bob@example.test\r\n\
                Subject: offer\r\nMessage-ID: <h1@ext.test>\r\n\r\nHello.\r\n";
    let r = Client::connect(gw.smtp)
        .await
        .send_message(
            "a@ext.test",
            &["ann@example.test", "bob@example.test"],
            held,
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    let (code, out, err) = cli_as(&gw, "nogroup", &["quarantine", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let page: serde_json::Value = serde_json::from_str(&out).unwrap();
    let id = page["entries"][0]["message"].as_str().unwrap().to_string();
    assert_eq!(page["entries"].as_array().unwrap().len(), 2, "{page}");

    let (code, out, err) = cli_as(
        &gw,
        "nogroup",
        &[
            "quarantine",
            "release",
            &id,
            "--recipient",
            "ann@example.test",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("released: 1 entr(ies)"), "{out}");
    let (code, _, err) = gw.cli(&[
        "quarantine",
        "delete",
        &id,
        "--recipient",
        "bob@example.test",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("offline"), "{err}");
    assert!(wait_until(10, || sink.count() == 1).await, "{}", gw.log());
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(sink.count(), 1, "only ann's copy is delivered");
    assert_eq!(sink.all()[0].rcpts, ["ann@example.test"]);

    let shown = api(&gw).await.quarantine_show(&id).await.unwrap();
    let who: Vec<(String, i64, String)> = shown
        .audit
        .iter()
        .map(|a| (a.recipient.clone(), a.uid, a.user_name.clone()))
        .collect();
    assert_eq!(
        who,
        [
            ("ann@example.test".to_string(), 65534, "nobody".to_string()),
            ("bob@example.test".to_string(), 0, "root".to_string()),
        ],
        "{shown:?}"
    );

    // The sender, blocked from the held message: the next one is refused at RCPT TO.
    let (code, out, err) = gw.cli(&["quarantine", "list-sender", &id, "block", "--domain"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("@ext.test"), "{out}");
    let mut c = Client::greeted(gw.smtp).await;
    c.cmd("EHLO client.test", 250).await;
    c.cmd("MAIL FROM:<a@ext.test>", 250).await;
    let r = c.cmd("RCPT TO:<ann@example.test>", 550).await;
    assert!(r.text.contains("refused by policy"), "{}", r.text);
}

/// `portcullis reload` (POST /v1/config/reload): the changed file is in force for the next
/// message; a bad file is refused naming the key, and the configuration in force stays.
#[tokio::test]
async fn reload_through_the_api_applies_at_once_and_refuses_a_bad_file() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let no_date = "From: <a@ext.test>\r\nMessage-ID: <r1@ext.test>\r\nSubject: x\r\n\r\nhi\r\n";
    let send = || async {
        Client::connect(gw.smtp)
            .await
            .send_message("a@ext.test", &["u@example.test"], no_date)
            .await
            .code
    };
    assert_eq!(send().await, 250);
    let original = std::fs::read_to_string(&gw.config_path).unwrap();
    std::fs::write(
        &gw.config_path,
        format!("{original}\n[symbols]\nHDR_MISSING_DATE = 20.0\n"),
    )
    .unwrap();
    let (code, out, err) = gw.cli(&["reload"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("symbols.HDR_MISSING_DATE"), "{out}");
    assert_eq!(send().await, 550);

    std::fs::write(
        &gw.config_path,
        format!("{original}\n[symbols]\nHDR_MISSING_DATE = 20.0\n[verdict]\nreject_score = -1.0\n"),
    )
    .unwrap();
    let (code, _, err) = gw.cli(&["reload"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("verdict") && err.contains("reload refused"),
        "{err}"
    );
    assert_eq!(send().await, 550, "the configuration in force stays");
}

/// A local client cannot hold the admin socket: a connection that sends no request header
/// within `header_timeout_secs` is closed, connections past `max_connections` are closed at
/// once, and the API keeps answering meanwhile.
#[tokio::test]
async fn idle_and_surplus_admin_connections_are_closed() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    use std::time::{Duration, Instant};

    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        "[admin]\nheader_timeout_secs = 1\nmax_connections = 3\n",
    );
    let sock = gw.data_dir().join("admin.sock");
    // How long until the gateway closes this connection (it sends nothing first).
    let closed_after = |mut c: UnixStream| {
        let start = Instant::now();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 256];
        let n = c.read(&mut buf).expect("closed, not timed out");
        (n, start.elapsed())
    };
    let idle: Vec<UnixStream> = (0..3)
        .map(|_| UnixStream::connect(&sock).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    // The fourth is over the bound: closed at once, without an answer.
    let (n, after) = closed_after(UnixStream::connect(&sock).unwrap());
    assert_eq!(n, 0);
    assert!(
        after < Duration::from_millis(900),
        "surplus closed after {after:?}"
    );
    // The idle ones are closed by the header timeout (hyper may answer 408 first).
    for c in idle {
        let (_, after) = closed_after(c);
        assert!(
            after < Duration::from_secs(5),
            "idle closed after {after:?}"
        );
    }
    // A header dripped slower than the timeout is cut as well.
    use std::io::Write;
    let mut slow = UnixStream::connect(&sock).unwrap();
    let start = Instant::now();
    let cut = b"GET /v1/health HTTP/1.1\r\nHost: x\r\n".iter().any(|b| {
        std::thread::sleep(Duration::from_millis(300));
        slow.write_all(&[*b]).is_err()
    });
    assert!(
        cut,
        "a header dripped over {:?} was not cut",
        start.elapsed()
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "cut after {:?}",
        start.elapsed()
    );
    // Slots free again: the API answers.
    let api = api(&gw).await;
    assert_eq!(api.health().await.unwrap().status, "ok");
}
