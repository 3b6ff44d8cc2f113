//! The quarantine with the real gateway: a message held by score is listed, released to one
//! recipient (delivered once, with the released header and without our spam tags) and
//! deleted for the other (never delivered), both audited; release can teach Bayes; bulk
//! actions by filter; held queue rows of an older data directory are migrated.

use serde_json::Value;

use crate::harness::{Client, Gateway, Sink, python, wait_until};

/// A missing Date: scores 9 (quarantine from 8, reject from 12); expiry and the queue scan
/// every second so the metrics and releases show quickly.
const HOLD: &str = "[symbols]\nHDR_MISSING_DATE = 9.0\n\
[queue]\nscan_interval_secs = 1\n\
[quarantine]\nexpiry_interval_secs = 1\n";

fn no_date(id: &str, subject: &str) -> String {
    format!(
        "From: Sender <a@ext.test>\r\nTo: ann@example.test, bob@example.test\r\n\
Subject: {subject}\r\nMessage-ID: <{id}>\r\n\r\nHello, this is {id}.\r\n"
    )
}

fn cli_ok(gw: &Gateway, args: &[&str]) -> String {
    let (code, out, err) = gw.cli(args);
    assert_eq!(code, 0, "portcullis {args:?}: {out}{err}");
    out
}

fn json(gw: &Gateway, args: &[&str]) -> Value {
    serde_json::from_str(&cli_ok(gw, args)).unwrap()
}

fn bayes_ham(gw: &Gateway) -> i64 {
    json(gw, &["bayes", "status", "--json"])["ham"]
        .as_i64()
        .unwrap()
}

/// The value of a metric line (`name{labels} value`), 0 when absent.
fn metric(gw: &Gateway, line_start: &str) -> f64 {
    gw.metrics_text()
        .lines()
        .find_map(|l| {
            l.strip_prefix(line_start)
                .and_then(|v| v.trim().parse::<f64>().ok())
        })
        .unwrap_or(0.0)
}

#[tokio::test]
async fn held_by_score_released_to_one_recipient_deleted_for_the_other() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, HOLD);
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message(
            "a@ext.test",
            &["ann@example.test", "bob@example.test"],
            &no_date("held1@ext.test", "Quarterly =?UTF-8?Q?r=C3=A9sum=C3=A9?="),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert!(gw.queue_json().is_empty(), "held mail is not in the queue");

    // Listed through the CLI: one entry per recipient, one message.
    let entries = gw.held_json();
    assert_eq!(entries.len(), 2, "{entries:?}");
    let id = entries[0]["message"].as_str().unwrap().to_string();
    assert!(entries.iter().all(|e| e["message"] == id.as_str()));
    let mut rcpts: Vec<&str> = entries
        .iter()
        .map(|e| e["recipient"].as_str().unwrap())
        .collect();
    rcpts.sort();
    assert_eq!(rcpts, ["ann@example.test", "bob@example.test"]);
    let e = &entries[0];
    assert_eq!(e["state"], "held");
    assert_eq!(e["reason"], "score 9.00");
    assert_eq!(e["subject"], "Quarterly résumé");
    assert_eq!(e["message_id"], "held1@ext.test");
    assert_eq!(e["from"], "Sender <a@ext.test>");
    assert_eq!(e["client_ip"], "127.0.0.1");
    assert_eq!(e["direction"], "inbound");
    assert!(
        e["symbols"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "HDR_MISSING_DATE" && s["points"] == 9.0),
        "{e}"
    );
    let text = cli_ok(&gw, &["quarantine", "list"]);
    assert!(text.contains(&id) && text.contains("2 entr(ies)"), "{text}");
    let found = cli_ok(
        &gw,
        &[
            "quarantine",
            "list",
            "--subject",
            "quarterly",
            "--reason",
            "score",
            "--since",
            "00:00",
        ],
    );
    assert!(found.contains("2 entr(ies)"), "{found}");
    let preview = cli_ok(&gw, &["quarantine", "preview", &id]);
    assert!(
        preview.contains("Hello, this is held1@ext.test."),
        "{preview}"
    );
    assert!(
        preview.contains("X-Spam-Flag: YES"),
        "the stored copy is flagged: {preview}"
    );
    assert!(
        wait_until(10, || metric(&gw, "portcullis_quarantine_held ") == 2.0).await,
        "{}",
        gw.metrics_text()
    );

    // Release to ann, learning ham.
    let ham_before = bayes_ham(&gw);
    let out = cli_ok(
        &gw,
        &[
            "quarantine",
            "release",
            &id,
            "--recipient",
            "ann@example.test",
            "--learn",
        ],
    );
    assert!(
        out.contains("released: 1 entr(ies) of 1 message(s)"),
        "{out}"
    );
    assert!(out.contains("1 learned"), "{out}");
    // An operator's correction counts bayes.feedback_weight (3) messages.
    assert_eq!(
        bayes_ham(&gw),
        ham_before + 3,
        "release --learn teaches ham"
    );
    assert!(
        wait_until(15, || sink.count() == 1).await,
        "the released copy is delivered; log:\n{}",
        gw.log()
    );
    let got = &sink.all()[0];
    assert_eq!(
        got.rcpts,
        ["ann@example.test"],
        "only the released recipient"
    );
    assert!(
        got.data.starts_with("X-Portcullis-Released: by "),
        "{}",
        got.data
    );
    assert!(!got.data.contains("X-Spam-Flag"), "{}", got.data);
    assert!(!got.data.contains("X-Portcullis-Score"), "{}", got.data);
    assert!(got.data.contains("Hello, this is held1@ext.test."));

    // Delete for bob: never delivered.
    let out = cli_ok(
        &gw,
        &[
            "quarantine",
            "delete",
            &id,
            "--recipient",
            "bob@example.test",
        ],
    );
    assert!(out.contains("deleted: 1 entr(ies)"), "{out}");
    // A second action finds nothing held: exit 1.
    let (code, out, _) = gw.cli(&["quarantine", "release", &id]);
    assert_eq!(code, 1, "{out}");
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert_eq!(sink.count(), 1, "bob's copy is never delivered");
    assert!(gw.held_json().is_empty());
    assert!(
        gw.queue_json().is_empty(),
        "the released copy left the queue"
    );

    // Both actions are in the audit, with who and from which state.
    let shown = json(&gw, &["quarantine", "show", &id, "--json"]);
    let audit = shown["audit"].as_array().unwrap();
    assert_eq!(audit.len(), 2, "{shown}");
    let uid = rustix::process::getuid().as_raw() as i64;
    for (row, (action, rcpt, to)) in audit.iter().zip([
        ("release", "ann@example.test", "released"),
        ("delete", "bob@example.test", "deleted"),
    ]) {
        assert_eq!(row["action"], action, "{row}");
        assert_eq!(row["recipient"], rcpt);
        assert_eq!(row["from_state"], "held");
        assert_eq!(row["to_state"], to);
        assert_eq!(row["uid"], uid);
        assert!(!row["user_name"].as_str().unwrap().is_empty());
    }
    assert!(
        audit[0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("queued as ")
    );
    assert_eq!(shown["body_kept"], false, "no entry held: the body is gone");
    let states: Vec<&str> = shown["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["released", "deleted"]);

    // The metrics count what the CLI did.
    assert!(
        wait_until(10, || {
            metric(&gw, "portcullis_quarantine_held ") == 0.0
                && metric(
                    &gw,
                    "portcullis_quarantine_entries_total{action=\"released\"}",
                ) == 1.0
                && metric(
                    &gw,
                    "portcullis_quarantine_entries_total{action=\"deleted\"}",
                ) == 1.0
        })
        .await,
        "{}",
        gw.metrics_text()
    );
}

#[tokio::test]
async fn bulk_actions_by_filter_and_held_outbound_mail() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, HOLD);
    for (from, n) in [("x@spam.test", 3), ("y@other.test", 1)] {
        for i in 0..n {
            let mut c = Client::connect(gw.smtp).await;
            let mut msg = no_date(&format!("{i}.{from}"), "offer");
            if from.starts_with('y') {
                // Above the inline limit (256 KiB): held as a file, released as a spool file.
                msg.push_str(&"large body line\r\n".repeat(20_000));
            }
            let r = c.send_message(from, &["ann@example.test"], &msg).await;
            assert_eq!(r.code, 250, "{}", r.text);
        }
    }
    // Outbound mail is held the same way.
    let mut c = gw.internal_client().await;
    let r = c
        .send_message(
            "ann@example.test",
            &["partner@far.test"],
            &no_date("out@x", "out"),
        )
        .await;
    assert_eq!(r.code, 250, "{}", r.text);
    assert_eq!(gw.held_json().len(), 5);
    let files = || {
        std::fs::read_dir(gw.data_dir().join("quarantine"))
            .unwrap()
            .count()
    };
    assert_eq!(files(), 1, "the large held body is a file");

    let report = json(
        &gw,
        &[
            "quarantine",
            "delete",
            "--sender",
            "@spam.test",
            "--reason",
            "score",
            "--json",
        ],
    );
    assert_eq!(report["touched"], 3, "{report}");
    assert_eq!(report["messages"], 3);
    let outbound = json(
        &gw,
        &["quarantine", "list", "--direction", "outbound", "--json"],
    );
    assert_eq!(outbound["entries"].as_array().unwrap().len(), 1);
    assert_eq!(outbound["entries"][0]["recipient"], "partner@far.test");
    let report = json(
        &gw,
        &["quarantine", "delete", "--direction", "outbound", "--json"],
    );
    assert_eq!(report["touched"], 1);
    let report = json(
        &gw,
        &[
            "quarantine",
            "release",
            "--recipient",
            "ann@example.test",
            "--json",
        ],
    );
    assert_eq!(report["touched"], 1, "only y@other.test's message was left");
    assert!(wait_until(15, || sink.count() == 1).await, "{}", gw.log());
    let got = &sink.all()[0];
    assert_eq!(got.mail_from, "y@other.test");
    assert!(got.data.len() > 300_000, "{}", got.data.len());
    assert!(got.data.starts_with("X-Portcullis-Released: by "));
    assert_eq!(files(), 0, "no held entry left: no body kept");
    // Bulk actions need a filter: nothing is released by accident.
    let (code, _, err) = gw.cli(&["quarantine", "release"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("name a message ID or at least one filter"),
        "{err}"
    );
    let deleted = json(&gw, &["quarantine", "list", "--state", "deleted", "--json"]);
    assert_eq!(deleted["entries"].as_array().unwrap().len(), 4);
}

/// A data directory of the previous version (schema up to 0006, as sqlx recorded it) with a
/// held queue row: the gateway moves it into the quarantine, and it can be released.
#[tokio::test]
async fn held_queue_rows_of_an_older_version_are_migrated() {
    let sink = Sink::start().await;
    let mut gw = Gateway::start(sink.addr, HOLD);
    gw.kill9();
    let data = gw.data_dir();
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::create_dir_all(&data).unwrap();
    let migrations = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let body = "Received: from old\r\nX-Spam-Flag: YES\r\nFrom: <old@ext.test>\r\n\
Subject: from before\r\nMessage-ID: <old1@ext.test>\r\n\r\nkept across the upgrade\r\n";
    let script = r#"
import hashlib, os, sqlite3, sys
db, migrations, body = sys.argv[1], sys.argv[2], sys.stdin.read().encode()
con = sqlite3.connect(db)
con.execute("""CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY,
    description TEXT NOT NULL, installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL, checksum BLOB NOT NULL, execution_time BIGINT NOT NULL)""")
for name in sorted(os.listdir(migrations)):
    version = int(name.split("_")[0])
    if version > 6:
        continue
    sql = open(os.path.join(migrations, name), "rb").read()
    con.executescript(sql.decode())
    con.execute("INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES (?, ?, 1, ?, 0)",
                (version, name[5:-4].replace("_", " "), hashlib.sha384(sql).digest()))
con.execute("""INSERT INTO queue (id, direction, state, mail_from, recipients, received_at, size,
    next_attempt, client_ip, helo, score, symbols) VALUES ('0A0B0C', 'inbound', 'held', 'old@ext.test',
    '[{"address":"ann@example.test","status":"pending"}]', strftime('%s','now'), ?, 0, '192.0.2.7',
    'old.example', 9.0, 'HDR_MISSING_DATE(9.00)')""", (len(body),))
con.execute("INSERT INTO bodies (id, data) VALUES ('0A0B0C', ?)", (body,))
con.commit()
"#;
    python(
        script,
        &[data.join("queue.db").to_str().unwrap(), migrations],
        body.as_bytes(),
        "build a data directory of the previous version",
    );
    gw.spawn();
    assert!(gw.queue_json().is_empty(), "the held row left the queue");
    let entries = gw.held_json();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["message"], "0A0B0C");
    assert_eq!(entries[0]["subject"], "from before");
    assert_eq!(entries[0]["recipient"], "ann@example.test");
    assert_eq!(entries[0]["symbols"][0]["name"], "HDR_MISSING_DATE");
    let out = cli_ok(&gw, &["quarantine", "release", "0A0B0C"]);
    assert!(out.contains("released: 1"), "{out}");
    assert!(wait_until(15, || sink.count() == 1).await, "{}", gw.log());
    let got = &sink.all()[0];
    assert!(got.data.contains("kept across the upgrade"));
    assert!(!got.data.contains("X-Spam-Flag"), "{}", got.data);
}
