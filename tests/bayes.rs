//! The Bayesian spam filter in the real gateway: no opinion while untrained, and
//! `portcullis bayes train` / `bayes learn` change the verdict of the next similar message
//! (the running gateway reloads the model the CLI wrote). Fixtures are generated here.

use std::path::Path;

use crate::harness::{Client, Gateway, Sink, wait_until};

const SPAM_WORDS: &[&str] = &[
    "viagra",
    "cheap",
    "pills",
    "winner",
    "casino",
    "bonus",
    "lottery",
    "prize",
    "discount",
    "pharmacy",
    "guaranteed",
    "unsubscribe",
    "limited",
    "exclusive",
    "cash",
];
const HAM_WORDS: &[&str] = &[
    "meeting",
    "agenda",
    "project",
    "review",
    "patch",
    "release",
    "schedule",
    "notes",
    "budget",
    "team",
    "design",
    "quarterly",
    "minutes",
    "deadline",
    "draft",
];

/// A generated message: words picked from `words` by `i`, sender and subject to match.
pub(crate) fn generated(i: usize, spam: bool) -> String {
    let words = if spam { SPAM_WORDS } else { HAM_WORDS };
    let pick = |k: usize| words[(i * 7 + k * 3) % words.len()];
    let body: Vec<&str> = (0..40).map(pick).collect();
    let (from, subject, url) = if spam {
        (
            format!("\"Best Deals\" <promo{i}@deals-{}.example>", i % 3),
            format!("{} {} {}!!", pick(1), pick(2), pick(3)).to_uppercase(),
            format!("http://www.cheap-{}.example/buy?id={i}", i % 2),
        )
    } else {
        (
            format!("\"Ann Colleague\" <ann{}@partner.example>", i % 2),
            format!("Re: {} {}", pick(1), pick(2)),
            "https://wiki.partner.example/project/notes".to_string(),
        )
    };
    format!(
        "From: {from}\r\nTo: <u@example.test>\r\nSubject: {subject}\r\n\
         Date: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <gen{i}-{spam}@x.example>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n\
         {}\r\n{url}\r\n",
        body.join(" ")
    )
}

fn write_set(dir: &Path, range: std::ops::Range<usize>, spam: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for i in range {
        std::fs::write(dir.join(format!("{i}.eml")), generated(i, spam)).unwrap();
    }
}

/// Send one message and return the queue row the gateway stored for it (the next hop is
/// dead, so every accepted message stays in the queue with its symbols).
async fn send_and_row(gw: &Gateway, msg: &str) -> serde_json::Value {
    let before = gw.stored_json().len();
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message("someone@ext.test", &["u@example.test"], msg)
        .await;
    assert_eq!(r.code, 250, "{r:?}; log:\n{}", gw.log());
    assert!(wait_until(5, || gw.stored_json().len() == before + 1).await);
    // queue and quarantine ids sort by time: the newest row is this message's
    gw.stored_json()
        .into_iter()
        .max_by_key(|m| m["id"].as_str().unwrap_or("").to_string())
        .unwrap()
}

/// `portcullis bayes train` on `dir/ham` and `dir/spam`: (exit code, stdout, stderr).
fn train(gw: &Gateway, dir: &std::path::Path) -> (i32, String, String) {
    let (ham, spam) = (dir.join("ham"), dir.join("spam"));
    gw.cli(&[
        "bayes",
        "train",
        "--ham",
        ham.to_str().unwrap(),
        "--spam",
        spam.to_str().unwrap(),
    ])
}

/// Generated ham 0..`ham` and spam 0..`spam` in `data/fixtures`, learned with
/// `bayes train` (which must succeed); its output.
pub(crate) fn train_generated(gw: &Gateway, ham: usize, spam: usize) -> String {
    let dir = gw.dir.path().join("fixtures");
    write_set(&dir.join("ham"), 0..ham, false);
    write_set(&dir.join("spam"), 0..spam, true);
    let (code, out, err) = train(gw, &dir);
    assert_eq!(code, 0, "{out}{err}");
    out
}

fn symbols(row: &serde_json::Value) -> String {
    row["symbols"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn untrained_model_gives_no_opinion() {
    let gw = Gateway::start(Sink::dead_addr(), "[bayes]\nreload_secs = 1\n");
    let row = send_and_row(&gw, &generated(1, true)).await;
    assert!(!symbols(&row).contains("BAYES_"), "{row}");
    assert_eq!(row["state"], "queued");

    // A few learned messages are not enough (default: 200 of each class).
    let out = train_generated(&gw, 3, 3);
    assert!(out.contains("learned 3 ham and 3 spam"), "{out}");
    assert!(
        wait_until(10, || gw.log().contains("Bayes model reloaded")).await,
        "{}",
        gw.log()
    );
    let row = send_and_row(&gw, &generated(2, true)).await;
    assert!(!symbols(&row).contains("BAYES_"), "{row}");
    let status = status(&gw);
    assert_eq!(status["ham"], 3);
    assert_eq!(status["spam"], 3);
    assert_eq!(status["ready"], false);
}

#[tokio::test]
async fn learning_changes_the_verdict_of_the_next_similar_message() {
    let gw = Gateway::start(
        Sink::dead_addr(),
        "[bayes]\nmin_ham = 5\nmin_spam = 5\nreload_secs = 1\n",
    );
    // Before any learning: an ordinary accept, no Bayes symbol.
    let row = send_and_row(&gw, &generated(100, true)).await;
    assert!(!symbols(&row).contains("BAYES_"), "{row}");
    assert_eq!(row["state"], "queued");

    train_generated(&gw, 6, 4);
    let dir = gw.dir.path().join("fixtures");
    // One more spam through `bayes learn`, an operator's correction counted
    // bayes.feedback_weight (3) times, passes min_spam = 5; learning it twice is a no-op.
    let one = dir.join("one-spam.eml");
    std::fs::write(&one, generated(4, true)).unwrap();
    for expect in ["learned as spam", "already learned as spam"] {
        let (code, out, err) = gw.cli(&["bayes", "learn", "--spam", one.to_str().unwrap()]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains(expect), "{out}");
        assert!(out.contains("the model has 6 ham, 7 spam"), "{out}");
    }
    // The running gateway picks the model up (reload_secs = 1).
    assert!(
        wait_until(10, || gw.log().contains("spam=7")).await,
        "no reload; log:\n{}",
        gw.log()
    );

    // The next similar spam is no longer a plain accept: BAYES_SPAM, held in quarantine.
    let row = send_and_row(&gw, &generated(101, true)).await;
    assert!(symbols(&row).contains("BAYES_SPAM"), "{row}");
    assert!(row["score"].as_f64().unwrap() >= 5.0, "{row}");
    assert_eq!(row["state"], "held", "{row}");
    // and a similar ham gets BAYES_HAM and is queued for delivery
    let row = send_and_row(&gw, &generated(102, false)).await;
    assert!(symbols(&row).contains("BAYES_HAM"), "{row}");
    assert!(row["score"].as_f64().unwrap() < 0.0, "{row}");
    assert_eq!(row["state"], "queued", "{row}");

    // Moving a message to the other class (an operator's release = ham) is exact: its three
    // spam counts go, three ham counts come.
    let (code, out, _) = gw.cli(&["bayes", "learn", "--ham", one.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("moved from the other class as ham"), "{out}");
    assert!(out.contains("the model has 9 ham, 4 spam"), "{out}");
}

#[tokio::test]
async fn eval_reports_recall_fpr_auc_and_speed() {
    let gw = Gateway::start(Sink::dead_addr(), "[bayes]\nmin_ham = 5\nmin_spam = 5\n");
    let dir = gw.dir.path().join("fixtures");
    write_set(&dir.join("train-ham"), 0..10, false);
    write_set(&dir.join("train-spam"), 0..10, true);
    write_set(&dir.join("test-ham"), 50..60, false);
    write_set(&dir.join("test-spam"), 50..60, true);
    let p = |n: &str| dir.join(n).to_str().unwrap().to_string();
    let (code, out, err) = gw.cli(&[
        "bayes",
        "train",
        "--ham",
        &p("train-ham"),
        "--spam",
        &p("train-spam"),
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = gw.cli(&[
        "bayes",
        "eval",
        "--ham",
        &p("test-ham"),
        "--spam",
        &p("test-spam"),
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["spam_recall"], 1.0, "{r}");
    assert_eq!(r["ham_fpr"], 0.0, "{r}");
    assert_eq!(r["auc"], 1.0, "{r}");
    assert!(r["msgs_per_sec"].as_f64().unwrap() > 0.0, "{r}");
    assert_eq!(r["dirs"].as_array().unwrap().len(), 2, "{r}");
    // the text form names each directory
    let (code, out, _) = gw.cli(&[
        "bayes",
        "eval",
        "--ham",
        &p("test-ham"),
        "--spam",
        &p("test-spam"),
    ]);
    assert_eq!(code, 0);
    assert!(out.contains("test-ham") && out.contains("ROC AUC"), "{out}");

    // The whole pipeline on the same directories: the trained Bayes stage decides, and the
    // picture has a curve for the pipeline and one per scoring stage.
    let svg = dir.join("roc.svg");
    let per_message = dir.join("messages.tsv");
    let (code, out, err) = gw.cli(&[
        "eval",
        "--ham",
        &p("test-ham"),
        "--spam",
        &p("test-spam"),
        "--roc",
        svg.to_str().unwrap(),
        "--messages",
        per_message.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["messages"], 20, "{r}");
    assert_eq!(r["spam_recall"], 1.0, "{r}");
    assert_eq!(r["ham_fpr"], 0.0, "{r}");
    assert_eq!(r["auc"], 1.0, "{r}");
    assert_eq!(r["verdicts"]["ham"]["accept"], 10, "{r}");
    assert_eq!(r["recall_at"][0]["fpr"], 0.001, "{r}");
    assert!(
        r["stages"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["stage"] == "bayes" && s["auc"] == 1.0),
        "{r}"
    );
    // Each symbol's hits per class, and one line per message with its symbols.
    let bayes_spam = r["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["symbol"] == "BAYES_SPAM")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        (&bayes_spam["spam"], &bayes_spam["ham"]),
        (&10.into(), &0.into()),
        "{r}"
    );
    let lines = std::fs::read_to_string(&per_message).unwrap();
    assert_eq!(lines.lines().count(), 20, "{lines}");
    let spam_lines: Vec<&str> = lines
        .lines()
        .filter(|l| l.split('\t').nth(2) == Some("spam"))
        .collect();
    assert_eq!(spam_lines.len(), 10, "{lines}");
    assert!(
        spam_lines.iter().all(|l| l.contains("\tBAYES_SPAM=")),
        "{lines}"
    );
    // Recorded authentication results stand in for the live checks when asked for.
    let recorded = |from: &str, to: &str, result: &str| {
        std::fs::create_dir_all(dir.join(to)).unwrap();
        for e in std::fs::read_dir(dir.join(from)).unwrap() {
            let e = e.unwrap();
            let body = std::fs::read(e.path()).unwrap();
            let mut m = format!(
                "Authentication-Results: mx.corpus.test; spf=pass smtp.mailfrom=a@b.test;\r\n\t\
                 dmarc={result} header.from=b.test\r\n"
            )
            .into_bytes();
            m.extend_from_slice(&body);
            std::fs::write(dir.join(to).join(e.file_name()), m).unwrap();
        }
    };
    recorded("test-ham", "ar-ham", "pass");
    recorded("test-spam", "ar-spam", "fail");
    let (ar_ham, ar_spam) = (p("ar-ham"), p("ar-spam"));
    let hits = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["eval", "--ham", &ar_ham, "--spam", &ar_spam, "--json"];
        args.extend_from_slice(extra);
        let (code, out, err) = gw.cli(&args);
        assert_eq!(code, 0, "{out}{err}");
        let r: serde_json::Value = serde_json::from_str(&out).unwrap();
        r["symbols"].clone()
    };
    let find = |symbols: &serde_json::Value, name: &str| {
        symbols
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["symbol"] == name)
            .map(|s| (s["ham"].as_u64().unwrap(), s["spam"].as_u64().unwrap()))
    };
    let with = hits(&["--auth-results", "mx.corpus.test"]);
    assert_eq!(find(&with, "DMARC_PASS"), Some((10, 0)), "{with}");
    assert_eq!(find(&with, "DMARC_POLICY_NONE"), Some((0, 10)), "{with}");
    assert_eq!(find(&with, "SPF_PASS"), Some((10, 10)), "{with}");
    // Another server's results, or none asked for: no authentication symbols at all.
    for extra in [&["--auth-results", "other.test"][..], &[][..]] {
        let without = hits(extra);
        assert_eq!(find(&without, "DMARC_PASS"), None, "{without}");
        assert_eq!(find(&without, "SPF_PASS"), None, "{without}");
    }
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg") && picture.contains("whole pipeline (AUC 1.0000)"));
    assert!(picture.contains("bayes (AUC 1.0000)"), "{picture}");
    // Nothing was learned from the evaluation.
    assert_eq!(status(&gw)["ham"], 10);
}

/// `bayes status --json` of the gateway's model.
fn status(gw: &Gateway) -> serde_json::Value {
    let (code, out, err) = gw.cli(&["bayes", "status", "--json"]);
    assert_eq!(code, 0, "{err}");
    serde_json::from_str(&out).unwrap()
}

#[tokio::test]
async fn autolearn_learns_confident_verdicts_of_authenticated_senders_only() {
    use crate::harness::dns::{Dns, txt};
    // partner.test and deals.test pass SPF for 127.0.0.1 (From = MAIL FROM domain, so the
    // sender is authenticated); 127.0.0.3 fails it.
    let dns = Dns::start(&[
        "--local-ttl=300".to_string(),
        txt("partner.test", "v=spf1 ip4:127.0.0.1 -all"),
        txt("deals.test", "v=spf1 ip4:127.0.0.1 -all"),
    ]);
    let gw = Gateway::start(
        Sink::dead_addr(),
        &format!(
            "dns_servers = [\"{}\"]\n[auth]\nenabled = true\n[bayes]\nmin_ham = 5\nmin_spam = 5\nreload_secs = 1\nautolearn = true\nautolearn_ham_below = 0.05\nautolearn_spam_above = 0.95\n",
            dns.addr
        ),
    );
    train_generated(&gw, 6, 6);
    assert!(
        wait_until(10, || gw.log().contains("spam=6")).await,
        "no reload:\n{}",
        gw.log()
    );

    let send = |ip: &'static str, from: String, msg: String| {
        let gw = &gw;
        async move {
            let mut c = crate::harness::Client::connect_from(gw.smtp, ip.parse().unwrap()).await;
            c.send_message(&from, &["u@example.test"], &msg).await.code
        }
    };
    let as_partner = |m: String| m.replace("partner.example", "partner.test");
    // an authenticated, clearly ham message: learned as ham
    let ham = as_partner(generated(200, false));
    assert_eq!(
        send("127.0.0.1", "ann0@partner.test".into(), ham).await,
        250
    );
    assert!(
        wait_until(10, || status(&gw)["ham"] == 7).await,
        "{}\n{}",
        status(&gw),
        gw.log()
    );
    assert!(gw.log().contains("Bayes autolearn"), "{}", gw.log());
    // the same kind of message, not authenticated (SPF fails from 127.0.0.3): not learned
    let ham = as_partner(generated(202, false));
    assert_eq!(
        send("127.0.0.3", "ann0@partner.test".into(), ham).await,
        250
    );
    // an authenticated, clearly spam message: learned as spam, whatever its verdict
    let spam = generated(201, true)
        .replace("deals-0.example", "deals.test")
        .replace("deals-1.example", "deals.test")
        .replace("deals-2.example", "deals.test");
    let code = send("127.0.0.1", "promo201@deals.test".into(), spam).await;
    assert!(code == 250 || code == 550, "{code}");
    assert!(
        wait_until(10, || status(&gw)["spam"] == 7).await,
        "{}\n{}",
        status(&gw),
        gw.log()
    );
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(status(&gw)["ham"], 7, "the unauthenticated ham was learned");
}
