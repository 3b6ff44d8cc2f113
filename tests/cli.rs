//! The command line (check-config, queue) and the metrics endpoint.

use crate::harness::{Client, Gateway, Sink, binary, message, wait_until};

fn check_config(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_names_the_bad_key() {
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/portcullis.toml"
    ))
    .unwrap();
    assert_eq!(check_config(&example).0, 0);
    let (code, err) = check_config("hostname = \"gw\"\nmax_mesage_size = 10\n");
    assert_eq!(code, 2);
    assert!(err.contains("max_mesage_size"), "{err}");
    let (code, err) = check_config("[[listeners]]\nbind = \"127.0.0.1:25\"\ntls = \"sometimes\"\n");
    assert_eq!(code, 2);
    assert!(err.contains("tls") && err.contains("sometimes"), "{err}");
    let (code, err) = check_config("[queue]\nretry_initial_secs = 0\n");
    assert_eq!(code, 2);
    assert!(err.contains("queue.retry_initial_secs"), "{err}");
}

#[tokio::test]
async fn queue_commands_show_retry_and_delete() {
    let hop = Sink::dead_addr();
    let gw = Gateway::start(
        hop,
        "[queue]\nretry_initial_secs = 3600\nscan_interval_secs = 1\n",
    );
    let mut c = Client::connect(gw.smtp).await;
    for i in 0..2 {
        let msg = message(
            "a@ext.test",
            "u@example.test",
            &format!("q{i}@ext.test"),
            "x",
        );
        assert_eq!(
            c.send_message("a@ext.test", &["u@example.test"], &msg)
                .await
                .code,
            250
        );
        c = Client::connect(gw.smtp).await;
    }
    assert!(wait_until(10, || gw.queue_json().iter().all(|m| m["attempts"] == 1)).await);
    let q = gw.queue_json();
    assert_eq!(q.len(), 2);
    let id = q[0]["id"].as_str().unwrap().to_string();

    let (code, out, _) = gw.cli(&["queue", "list"]);
    assert_eq!(code, 0);
    assert!(out.contains(&id) && out.contains("2 message(s)"), "{out}");
    let (code, out, _) = gw.cli(&["queue", "show", &id, "--json"]);
    assert_eq!(code, 0);
    let shown: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(shown["recipients"][0]["address"], "u@example.test");
    assert_eq!(shown["direction"], "inbound");

    // retry: the hop is up now, the message goes at the next scan (not in an hour)
    let sink = Sink::start_on(hop).await;
    let (code, _, _) = gw.cli(&["queue", "retry", &id]);
    assert_eq!(code, 0);
    assert!(
        wait_until(10, || sink.count() == 1).await,
        "log:\n{}",
        gw.log()
    );
    // delete: the other one is gone without delivery
    let other = q[1]["id"].as_str().unwrap().to_string();
    let (code, out, _) = gw.cli(&["queue", "delete", &other]);
    assert_eq!(code, 0, "{out}");
    assert!(wait_until(5, || gw.queue_json().is_empty()).await);
    assert!(
        !gw.data_dir()
            .join("spool")
            .join(format!("{other}.eml"))
            .exists()
    );
    let (code, _, err) = gw.cli(&["queue", "show", &other]);
    assert_eq!(code, 1, "{err}");
    let (code, _, err) = gw.cli(&["queue", "delete", "../../etc/passwd"]);
    assert_eq!(code, 2);
    assert!(err.contains("not a queue id"), "{err}");
}

#[tokio::test]
async fn metrics_count_connections_messages_and_deliveries() {
    let sink = Sink::start().await;
    let gw = Gateway::start(sink.addr, "");
    let mut c = Client::connect(gw.smtp).await;
    let msg = message("a@ext.test", "u@example.test", "metrics@ext.test", "x");
    assert_eq!(
        c.send_message("a@ext.test", &["u@example.test"], &msg)
            .await
            .code,
        250
    );
    assert!(wait_until(10, || sink.count() == 1).await);
    assert!(
        wait_until(5, || gw
            .metrics_text()
            .contains("portcullis_deliveries_total{result=\"delivered\"} 1"))
        .await,
        "{}",
        gw.metrics_text()
    );
    let m = gw.metrics_text();
    for needle in [
        // the harness's readiness probe and the client
        "portcullis_smtp_connections_total 2",
        "portcullis_messages_total{direction=\"inbound\",verdict=\"accept\"} 1",
        "portcullis_stage_duration_seconds_count{stage=\"header_sanity\"} 1",
        "portcullis_queue_depth",
    ] {
        assert!(m.contains(needle), "metrics lack {needle}:\n{m}");
    }
}

#[test]
fn version_names_the_revision_openssl_and_the_main_crates() {
    let out = std::process::Command::new(binary())
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("portcullis {}", env!("CARGO_PKG_VERSION"))
    );
    let head = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match head {
        Some(h) => assert_eq!(lines[1], format!("revision {h}"), "{text}"),
        None => assert!(lines[1].starts_with("revision "), "{text}"),
    }
    assert!(lines[2].starts_with("OpenSSL 3."), "{text}");
    for krate in ["tokio ", "mail-auth ", "sqlx ", "openssl 0.10"] {
        assert!(lines[3].contains(krate), "{krate}: {text}");
    }
}

#[tokio::test]
async fn doctor_checks_a_live_installation_and_says_what_to_fix() {
    let dns = crate::harness::dns::Dns::start(&[]);
    let sink = Sink::start().await;
    let mut gw = Gateway::start(sink.addr, &format!("dns_servers = [\"{}\"]\n", dns.addr));
    let (code, out, err) = gw.cli(&["doctor"]);
    assert_eq!(code, 0, "{out}{err}");
    for check in [
        "smtp",
        "admin",
        "dns",
        "clamd",
        "database",
        "permissions",
        "certificate",
        "disk",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with("ok   ") && l[5..].starts_with(check)),
            "{check}:\n{out}"
        );
    }
    assert!(out.contains("0 failed"), "{out}");

    // A database opened to others is named; a stopped gateway fails the live checks.
    let db = gw.data_dir().join("queue.db");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    gw.kill9();
    let (code, out, _) = gw.cli(&["doctor"]);
    assert_eq!(code, 1, "{out}");
    let line = |check: &str| {
        out.lines()
            .find(|l| l[5..].starts_with(check))
            .unwrap_or_else(|| panic!("no {check} line:\n{out}"))
            .to_string()
    };
    assert!(line("smtp").starts_with("FAIL") && line("smtp").contains("start the gateway"));
    assert!(line("admin").starts_with("FAIL"), "{out}");
    assert!(
        line("permissions").starts_with("WARN")
            && line("permissions").contains("queue.db has mode 0644"),
        "{out}"
    );
    assert!(line("database").starts_with("ok"), "{out}");
    assert!(out.contains("2 failed"), "{out}");
}
