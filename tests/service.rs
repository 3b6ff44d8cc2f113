//! Started as root, the gateway binds its port, gives the data directory to the service user
//! (`[service] user`) and runs as that user: the process's ids, the files' owners and modes
//! are checked from outside, and mail still flows. Without the user, a root start stops and
//! says what to do. Needs the system user `portcullis` (`bash .ci/install-deps` creates it).

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::harness::{Client, Gateway, Sink, config_text, message, run_expecting_exit, wait_until};

fn service_user() -> nix::unistd::User {
    nix::unistd::User::from_name("portcullis")
        .unwrap()
        .expect("the system user portcullis is needed: bash .ci/install-deps creates it")
}

/// The base config, run as `service` instead of staying root; the test's directory open
/// to the service user for traversal and the config readable, as a package installs them.
fn start_as_service(next_hop: std::net::SocketAddr, service: &str) -> Gateway {
    Gateway::start_custom(|dir, smtp, metrics| {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711)).unwrap();
        let text = config_text(dir, smtp, metrics, next_hop, "");
        let root = "[service]\nallow_root = true\n";
        assert_eq!(text.matches(root).count(), 1, "config_text changed shape");
        text.replace(root, service)
    })
}

/// A field of /proc/PID/status (`Uid`, `Gid`, `Groups`), its values.
fn status_field(pid: u32, name: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect()
}

#[tokio::test]
async fn a_root_start_runs_as_the_service_user_with_private_files() {
    let user = service_user();
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    let sink = Sink::start().await;
    let gw = start_as_service(sink.addr, "[service]\nuser = \"portcullis\"\n");
    let pid = gw.pid();
    // Real, effective, saved and file-system ids: all the service user's, no root group.
    assert_eq!(status_field(pid, "Uid"), [uid; 4], "{}", gw.log());
    assert_eq!(status_field(pid, "Gid"), [gid; 4]);
    assert!(!status_field(pid, "Groups").contains(&0));
    assert!(
        gw.log().contains("running as the service user"),
        "{}",
        gw.log()
    );

    // Mail flows: stored by the service user, delivered.
    let mut c = Client::connect(gw.smtp).await;
    let r = c
        .send_message(
            "a@ext.test",
            &["u@example.test"],
            &message("a@ext.test", "u@example.test", "svc@ext.test", "hello"),
        )
        .await;
    assert_eq!(r.code, 250, "{}; log:\n{}", r.text, gw.log());
    assert!(wait_until(15, || sink.count() == 1).await, "{}", gw.log());

    // Everything in the data directory is the service user's, and private.
    let data = gw.data_dir();
    let mut seen = Vec::new();
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(meta.uid(), uid, "{name} is not the service user's");
        let mode = meta.mode() & 0o777;
        let private = match name.as_str() {
            "admin.sock" => mode == 0o660,
            _ => mode & 0o077 == 0,
        };
        assert!(private, "{name} has mode {mode:o}");
        seen.push(name);
    }
    for expected in ["queue.db", "smime-master.key", "admin.sock", "spool"] {
        assert!(
            seen.iter().any(|n| n == expected),
            "{expected} missing: {seen:?}"
        );
    }
    let dir_mode = std::fs::metadata(&data).unwrap().mode() & 0o777;
    assert!(dir_mode == 0o700 || dir_mode == 0o710, "{dir_mode:o}");
    // Root (an operator) still works through the admin socket.
    let (code, out, err) = gw.cli(&["queue", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("offline"), "{err}{out}");

    // check-config names a database opened to others (a master key opened to others is
    // an error of its own).
    let db = data.join("queue.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = gw.cli(&["check-config"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("queue.db has mode 0644") && err.contains("chmod it to 0600"),
        "{err}"
    );
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();

    // Root's CLI working offline on the files leaves them the service user's.
    let mut gw = gw;
    gw.kill9();
    // The shared-memory index is rebuilt from the log by whoever opens the database next
    // (nothing has it open now): here, root.
    std::fs::remove_file(data.join("queue.db-shm")).unwrap();
    let (code, out, err) = gw.cli(&["queue", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("offline") || out.contains("offline"),
        "{out}{err}"
    );
    for file in ["queue.db", "queue.db-wal", "queue.db-shm"] {
        let meta = std::fs::metadata(data.join(file)).unwrap();
        assert_eq!(meta.uid(), uid, "{file} became root's");
    }
}

#[tokio::test]
async fn a_root_start_without_the_service_user_stops_and_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    let port = crate::harness::free_port();
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\nmetrics_bind = \"\"\n[[listeners]]\nbind = \"127.0.0.1:{port}\"\n\
             tls = \"none\"\n[service]\nuser = \"no-such-service-user\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let (code, err) = run_expecting_exit(&config, 20);
    assert_ne!(code, 0);
    assert!(
        err.contains("no-such-service-user") && err.contains("does not exist"),
        "{err}"
    );
    assert!(
        err.contains("adduser") && err.contains("allow_root"),
        "{err}"
    );
    // Nothing was opened: no data directory, no listener.
    assert!(!dir.path().join("data").exists());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}
