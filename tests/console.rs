//! The operator console (`portcullis tui`) driven as an operator would: the real binary in a
//! tmux pane (keys with send-keys, the screen with capture-pane) against a running gateway
//! that holds two messages. One is released with a key and reaches the next hop; the other
//! is deleted after the confirmation; a subject carrying an ANSI escape sequence is shown
//! as inert text. An auditor (run as `nobody` through `setpriv`) sees and cannot act; the
//! console's API client reads every answer of a real gateway.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Client, Gateway, Sink, binary, wait_until};

/// A missing Date: scores 9, held from 8; the queue is scanned every second.
const HOLD: &str = "[symbols]\nHDR_MISSING_DATE = 9.0\n[queue]\nscan_interval_secs = 1\n";

/// A tmux server of its own (`-L`), killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux is needed for the console test: bash .ci/install-deps installs it")
    }

    /// Start `portcullis tui --config CONFIG` in a 160×48 pane, as root.
    fn start(config: &Path) -> Tmux {
        Tmux::start_as(config, "")
    }

    /// The same, run through `prefix` (`setpriv ...` to run it as another user). Each
    /// test has a tmux server of its own.
    fn start_as(config: &Path, prefix: &str) -> Tmux {
        use std::sync::atomic::{AtomicU32, Ordering};
        static SERVERS: AtomicU32 = AtomicU32::new(0);
        let tmux = Tmux {
            socket: format!(
                "portcullis-console-{}-{}",
                std::process::id(),
                SERVERS.fetch_add(1, Ordering::Relaxed)
            ),
        };
        let command = format!(
            "{prefix}{} tui --config {}",
            binary().display(),
            config.display()
        );
        let out = tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "console",
            "-x",
            "160",
            "-y",
            "48",
            &command,
        ]);
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    /// Keys by tmux name (`Enter`, `Escape`) or text typed literally (`-l`).
    fn keys(&self, keys: &[&str]) {
        let out = self.run(&[&["send-keys", "-t", "console"], keys].concat());
        assert!(out.status.success(), "send-keys {keys:?}");
    }

    fn type_text(&self, text: &str) {
        let out = self.run(&["send-keys", "-t", "console", "-l", text]);
        assert!(out.status.success(), "send-keys -l {text}");
    }

    /// The pane as text.
    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "console"]).stdout)
            .into_owned()
    }

    /// The pane with its attributes as escape sequences (`-e`): colours show as SGR.
    fn screen_with_attributes(&self) -> String {
        String::from_utf8_lossy(
            &self
                .run(&["capture-pane", "-p", "-e", "-t", "console"])
                .stdout,
        )
        .into_owned()
    }

    fn alive(&self) -> bool {
        self.run(&["has-session", "-t", "console"]).status.success()
    }

    /// Wait until the pane shows `text`; panics with the screen otherwise.
    fn wait_for(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the console did not show {text:?} within 20 s; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn held(id: &str, subject: &str) -> String {
    format!(
        "From: Sender <a@ext.test>\r\nTo: ann@example.test\r\nSubject: {subject}\r\n\
Message-ID: <{id}>\r\n\r\nHello, this is {id}.\r\n"
    )
}

#[tokio::test]
async fn the_console_releases_one_held_message_and_deletes_another() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, HOLD);
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message(
            "a@ext.test",
            &["ann@example.test"],
            &held("keep@ext.test", "Quarterly figures"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    // An encoded word that decodes to ESC [31m: a subject that would turn a terminal red.
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message(
            "a@ext.test",
            &["ann@example.test"],
            &held("drop@ext.test", "=?UTF-8?Q?=1B[31mRED=1B[0m_lottery_win?="),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(sink.all().is_empty(), "held mail is not delivered");

    let kept = held_id(&gw, "Quarterly figures").await;
    let dropped = held_id(&gw, "lottery win").await;

    let tmux = Tmux::start(&gw.config_path);
    tmux.wait_for("1 Dashboard");
    tmux.wait_for("Held now   2");
    // Today's symbols count the two held messages; no connection used STARTTLS.
    let screen = tmux.wait_for("Top symbols today (UTC)");
    assert!(
        screen
            .lines()
            .any(|l| l.contains("HDR_MISSING_DATE") && l.trim_end().ends_with(" 2")),
        "{screen}"
    );
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("TLS        0 % of ") && l.contains("connections used STARTTLS")),
        "{screen}"
    );
    tmux.keys(&["2"]);
    let screen = tmux.wait_for("Quarterly figures");
    assert!(screen.contains("2 held of 2 loaded"), "{screen}");

    // The escape sequence is shown as text, and nothing on screen turned red from it.
    let screen = tmux.wait_for("lottery win");
    assert!(
        screen.contains("\\u{1b}[31mRED\\u{1b}[0m lottery win"),
        "{screen}"
    );
    let raw = tmux.screen_with_attributes();
    assert!(
        !raw.contains("\u{1b}[31mRED"),
        "the subject was interpreted:\n{raw:?}"
    );

    // Release: filter to the message, one key.
    tmux.type_text("/Quarterly");
    tmux.keys(&["Enter"]);
    tmux.wait_for("1 held of 1 loaded");
    tmux.keys(&["r"]);
    tmux.wait_for("released 1 of 1");
    assert!(
        wait_until(20, || sink.all().len() == 1).await,
        "the released message did not reach the next hop; log:\n{}",
        gw.log()
    );
    let delivered = &sink.all()[0];
    assert_eq!(delivered.message_id().as_deref(), Some("keep@ext.test"));

    // Delete the other: d asks, y confirms.

    tmux.keys(&["Escape"]);
    tmux.wait_for("1 held of 1 loaded");
    tmux.wait_for("lottery win");
    tmux.keys(&["d"]);
    let screen = tmux.wait_for("Confirm");
    assert!(screen.contains("Delete 1 held message?"), "{screen}");
    tmux.keys(&["y"]);
    tmux.wait_for("deleted 1 of 1");
    tmux.wait_for("Nothing is held.");
    assert!(gw.held_json().is_empty(), "nothing is held any more");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        sink.all().len(),
        1,
        "the deleted message was never delivered"
    );
    // The audit table has both actions with the operator's uid (the console runs as root).
    let api = admin(&gw).await;
    for (message, action) in [(kept, "release"), (dropped, "delete")] {
        let shown = api.quarantine_show(&message).await.unwrap();
        assert!(
            shown
                .audit
                .iter()
                .any(|a| a.action == action && a.uid == 0 && a.user_name == "root"),
            "{action}: {shown:?}"
        );
    }

    // q quits and the pane's program ends.
    tmux.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.alive() {
        assert!(Instant::now() < deadline, "the console did not quit on q");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The admin API as the test's own client.
async fn admin(gw: &Gateway) -> portcullis::admin::client::Client {
    portcullis::admin::client::Client::connect(gw.data_dir().join("admin.sock"))
        .await
        .unwrap_or_else(|e| panic!("{e}; log:\n{}", gw.log()))
}

/// The message id of the held message whose subject contains `subject`.
async fn held_id(gw: &Gateway, subject: &str) -> String {
    let page = admin(gw)
        .await
        .quarantine_list(&Default::default())
        .await
        .unwrap();
    page.entries
        .iter()
        .find(|e| e.subject.contains(subject))
        .unwrap_or_else(|| panic!("no held message about {subject:?}: {page:?}"))
        .message
        .clone()
}

/// A CA trusted and a PKCS#12 imported with the console's prompts: the password is never
/// on the screen, and the certificate shows as usable for encryption.
#[tokio::test]
async fn a_certificate_imported_through_the_console_is_usable() {
    use crate::harness::smime::{PASSWORD, TestPki};
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let pki = TestPki::new("Console Import CA");
    let carol = pki.holder("carol@partner.test");

    let tmux = Tmux::start(&gw.config_path);
    tmux.wait_for("1 Dashboard");
    tmux.keys(&["3"]);
    tmux.wait_for("No certificates");
    tmux.keys(&["c"]);
    tmux.wait_for("Trust CA certificates");
    tmux.type_text(pki.ca().to_str().unwrap());
    tmux.keys(&["Enter"]);
    tmux.wait_for("trusted:");

    tmux.keys(&["i"]);
    tmux.wait_for("Import a certificate");
    tmux.type_text(carol.p12.to_str().unwrap());
    tmux.keys(&["Enter"]);
    tmux.wait_for("it is not shown");
    tmux.type_text(PASSWORD);
    std::thread::sleep(Duration::from_millis(300));
    let screen = tmux.screen();
    assert!(
        !screen.contains(PASSWORD),
        "the password was echoed:\n{screen}"
    );
    tmux.keys(&["Enter"]);
    tmux.wait_for("carol@partner.test");
    // The domain's row (once the list is reloaded): one certificate, usable for encryption.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let screen = tmux.screen();
        let row = screen.lines().find(|l| l.starts_with("partner.test "));
        if let Some(row) = row {
            let numbers: Vec<&str> = row.split_whitespace().skip(1).take(2).collect();
            assert_eq!(numbers, ["1", "1"], "certificates and usable:\n{screen}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no row for partner.test within 20 s:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let certs = admin(&gw).await.certs_list(None).await.unwrap();
    assert!(
        certs
            .domains
            .iter()
            .any(|d| d.domain == "partner.test" && d.usable_for_encryption == 1),
        "{certs:?}"
    );
    tmux.keys(&["q"]);
}

#[tokio::test]
async fn without_a_gateway_the_console_says_so_and_quits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!("data_dir = \"{}\"\n", dir.path().join("data").display()),
    )
    .unwrap();
    let tmux = Tmux::start(&config);
    let screen = tmux.wait_for("The gateway cannot be reached");
    assert!(screen.contains("the gateway is not running"), "{screen}");
    assert!(screen.contains("admin.sock"), "{screen}");
    tmux.keys(&["C-c"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while tmux.alive() {
        assert!(
            Instant::now() < deadline,
            "the console did not quit on Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test]
async fn an_auditor_sees_everything_and_acts_on_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let found = Command::new("setpriv").arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "setpriv is needed: bash .ci/install-deps installs util-linux"
    );
    let sink = Sink::start().await;
    let gw = Gateway::start(
        sink.addr,
        &format!("{HOLD}[admin]\nsocket_group = \"nogroup\"\naudit_group = \"nogroup\"\n"),
    );
    // nobody may pass through the test's directory and read the config.
    std::fs::set_permissions(gw.dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&gw.config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message(
            "a@ext.test",
            &["ann@example.test"],
            &held("audit@ext.test", "Audited message"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);

    let tmux = Tmux::start_as(
        &gw.config_path,
        "setpriv --reuid=nobody --regid=nogroup --clear-groups ",
    );
    tmux.wait_for("Held now   1");
    // The role is known before any key: read-only from the start.
    tmux.wait_for("[read-only]");
    tmux.keys(&["2"]);
    tmux.wait_for("Audited message");
    // Reading works: the detail and the gateway's preview.
    tmux.keys(&["Enter"]);
    tmux.wait_for("Hello, this is audit@ext.test.");
    tmux.keys(&["Escape"]);
    // No question for what cannot be done, and nothing is sent to the gateway.
    tmux.keys(&["r"]);
    tmux.wait_for("read-only: your role may only read");
    tmux.keys(&["d"]);
    let screen = tmux.wait_for("read-only: your role may only read");
    assert!(!screen.contains("Confirm"), "{screen}");
    tmux.keys(&["?"]);
    tmux.wait_for("(read-only)");
    tmux.keys(&["Escape"]);
    assert_eq!(gw.held_json().len(), 1, "still held");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(sink.all().is_empty(), "nothing was released");
    assert!(
        !gw.log()
            .lines()
            .any(|l| l.contains("admin request refused")),
        "the console tried what the role does not allow:\n{}",
        gw.log()
    );
    tmux.keys(&["q"]);
}

/// The console's own API client (the one its screens use) against a real gateway: every
/// call it makes, and the answers read into its types.
#[tokio::test]
async fn the_console_client_reads_every_answer_of_a_real_gateway() {
    use tui::api::types::{CertUpload, HeldQuery, HeldTarget, ListName, NewListEntry, PinLevel};
    use tui::api::{Api, ApiError, UnixClient};

    let sink = Sink::start().await;
    sink.set_mode(crate::harness::SinkMode::Defer);
    let gw = Gateway::start(
        sink.addr,
        &format!("{HOLD}[certs]\nsystem_roots = false\nreload_secs = 1\n"),
    );
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message(
            "a@ext.test",
            &["ann@example.test"],
            &held("contract@ext.test", "Contract check"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    // Accepted (it has a Date) and deferred by the next hop: it waits in the queue.
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message(
            "b@ext.test",
            &["bob@example.test"],
            &crate::harness::message("b@ext.test", "bob@example.test", "queued@ext.test", "hi"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);

    let api = UnixClient::new(gw.data_dir().join("admin.sock"));
    let health = api.health().await.unwrap();
    assert_eq!(health.hostname.as_str(), "gw.portcullis.test");
    let counters = api.counters().await.unwrap();
    assert_eq!(counters.queue.held, 1);
    assert!(
        counters
            .messages
            .iter()
            .any(|m| m.verdict == "quarantine" && m.count == 1)
    );

    // The quarantine: list, search, show, preview.
    let page = api
        .held_list(&HeldQuery::default(), 500, None)
        .await
        .unwrap();
    assert_eq!(page.entries.len(), 1);
    let entry = &page.entries[0];
    assert_eq!(entry.subject.as_str(), "Contract check");
    assert_eq!(entry.recipient.as_str(), "ann@example.test");
    assert_eq!(entry.mail_from.as_str(), "a@ext.test");
    assert_eq!(entry.reason.as_str(), "score 9.00");
    assert!(
        entry
            .symbols
            .iter()
            .any(|s| s.name.as_str() == "HDR_MISSING_DATE" && s.points == 9.0)
    );
    let none = HeldQuery {
        subject: Some("nothing like this".into()),
        ..HeldQuery::default()
    };
    assert!(
        api.held_list(&none, 10, None)
            .await
            .unwrap()
            .entries
            .is_empty()
    );
    let by_sender = HeldQuery {
        sender: Some("@ext.test".into()),
        min_score: Some(8.0),
        ..HeldQuery::default()
    };
    assert_eq!(
        api.held_list(&by_sender, 10, None)
            .await
            .unwrap()
            .entries
            .len(),
        1
    );
    let message = entry.message.to_string();
    let shown = api.held_show(&message).await.unwrap();
    assert_eq!(shown.entries.len(), 1);
    let preview = api.held_preview(&message).await.unwrap();
    assert!(
        preview
            .text
            .as_str()
            .contains("Hello, this is contract@ext.test.")
    );
    assert!(preview.headers.iter().any(|h| h.name.as_str() == "Subject"));
    match api.held_show("00000000000000000").await {
        Err(ApiError::Status { status: 404, .. }) => {}
        other => panic!("{other:?}"),
    }

    // The queue.
    let queue = api.queue_list().await.unwrap();
    assert_eq!(queue.len(), 1, "{queue:?}");
    assert_eq!(queue[0].recipients[0].address.as_str(), "bob@example.test");
    let queued_id = queue[0].id.to_string();

    // Certificates: a PKCS#12 with its password, a CA, the listing, a delete.
    let pki = crate::harness::smime::TestPki::new("Console CA");
    let bob = pki.holder("bob@example.test");
    let upload = |path: &Path, password: Option<&str>| CertUpload {
        data: base64_simd::STANDARD.encode_to_string(std::fs::read(path).unwrap()),
        name: Some("file".into()),
        password: password.map(str::to_string),
    };
    let imported = api
        .cert_import(&upload(&bob.p12, Some(crate::harness::smime::PASSWORD)))
        .await
        .unwrap();
    assert!(!imported.stored.is_empty(), "{imported:?}");
    api.cert_trust_ca(&upload(&pki.ca(), None)).await.unwrap();
    let certs = api.certs_list().await.unwrap();
    let domain = certs
        .domains
        .iter()
        .find(|d| d.domain.as_str() == "example.test")
        .unwrap_or_else(|| panic!("{certs:?}"));
    assert_eq!(domain.certificates, 1);
    assert_eq!(domain.usable_for_encryption, 1);
    let cert = &domain.certs[0];
    assert!(cert.subject.contains("bob@example.test"), "{cert:?}");
    assert!(cert.has_private_key);
    assert!(cert.not_after > cert.not_before);
    assert!(cert.chain.trusted, "{cert:?}");
    assert!(certs.cas.iter().any(|c| c.subject.contains("Console CA")));
    let deleted = api.cert_delete(&cert.fingerprint).await.unwrap();
    assert!(deleted.had_private_key);

    // Trust: pin, see it, unpin.
    let pinned = api
        .trust_pin("partner.test", Some(PinLevel::High))
        .await
        .unwrap();
    assert_eq!(pinned.pinned.as_deref(), Some("high"));
    let trust = api.trust_list().await.unwrap();
    assert!(
        trust
            .iter()
            .any(|d| d.domain.as_str() == "partner.test" && d.pinned.as_deref() == Some("high"))
    );
    assert_eq!(
        api.trust_pin("partner.test", None).await.unwrap().pinned,
        None
    );

    // Quarantine reports: a recipient's own frequency, then back to the schedule.
    let set = api
        .digest_set("Ann@Example.test", Some("weekly"))
        .await
        .unwrap();
    assert_eq!(
        (set.recipient.as_str(), set.frequency.as_str()),
        ("ann@example.test", "weekly")
    );
    let set = api.digest_set("ann@example.test", None).await.unwrap();
    assert_eq!(set.frequency, "daily");

    // Lists: add, list, remove.
    let added = api
        .lists_add(&NewListEntry {
            list: ListName::Block,
            sender: "@spam.test".into(),
            recipient: None,
            comment: Some("campaign".into()),
        })
        .await
        .unwrap();
    assert_eq!(added.change.as_str(), "new");
    let lists = api.lists_all().await.unwrap();
    assert!(
        lists.iter().any(|e| e.list == "block"
            && e.sender.as_str() == "@spam.test"
            && e.recipient.is_none())
    );
    api.lists_remove(added.entry.id).await.unwrap();

    // Retry last: the delivery attempt it starts writes to the database while it runs.
    api.queue_retry(&queued_id).await.unwrap();

    // Release with an allow entry for the sender, as the `a` key does.
    let allowed = api
        .held_allow_sender(&message, "ann@example.test")
        .await
        .unwrap();
    assert_eq!(allowed.entry.list, "allow");
    assert_eq!(allowed.entry.sender.as_str(), "a@ext.test");
    let target = HeldTarget {
        message: message.clone(),
        recipient: Some("ann@example.test".into()),
    };
    let report = api.held_release(&target, false).await.unwrap();
    assert_eq!(report.touched, 1);
    assert!(
        api.held_list(&HeldQuery::default(), 10, None)
            .await
            .unwrap()
            .entries
            .is_empty()
    );
}
