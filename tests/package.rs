//! The Debian package, built with cargo-deb from the binary the tests use, installed with
//! dpkg on this machine, and started the way its systemd unit starts it (no systemd runs
//! here: the unit's User=, Group=, AmbientCapabilities= and ExecStart= are applied with
//! setpriv): it runs as the user the package created, listens on port 25, takes a message
//! and delivers it to the next hop of the packaged configuration. Purged at the end.
//! Needs root, cargo-deb and setpriv (`bash .ci/install-deps` installs them).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{Client, Sink, binary, message, wait_until};

/// Purges the package (and stops the service started from it) when dropped.
struct Installed {
    service: Option<Child>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        if let Some(mut c) = self.service.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("dpkg")
            .args(["--purge", "portcullis"])
            .output();
    }
}

fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (bash .ci/install-deps installs what is needed)"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `Key=value` of the unit's [Service] section.
fn unit_value<'a>(unit: &'a str, key: &str) -> &'a str {
    unit.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("the unit has no {key}=:\n{unit}"))
}

#[tokio::test]
async fn the_debian_package_installs_starts_as_its_user_and_delivers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let deb = dir.path().join("portcullis.deb");
    // The binary this test run built (debug), packaged as is (stripped by cargo-deb).
    assert!(binary().exists());
    run(
        Command::new("cargo")
            .args(["deb", "--no-build", "--profile", "dev", "--fast", "-o"])
            .arg(&deb)
            .current_dir(root),
        "cargo deb",
    );
    let mut installed = Installed { service: None };
    run(Command::new("dpkg").arg("-i").arg(&deb), "dpkg -i");

    // What the package put in place.
    let user = nix::unistd::User::from_name("portcullis")
        .unwrap()
        .expect("the package creates the user portcullis");
    use std::os::unix::fs::MetadataExt;
    let data = std::fs::metadata("/var/lib/portcullis").unwrap();
    assert_eq!(data.uid(), user.uid.as_raw());
    let config = std::fs::metadata("/etc/portcullis/portcullis.toml").unwrap();
    assert_eq!(config.mode() & 0o777, 0o640);
    assert_eq!(config.gid(), user.gid.as_raw());
    let conffiles = std::fs::read_to_string("/var/lib/dpkg/info/portcullis.conffiles").unwrap();
    assert!(conffiles.contains("/etc/portcullis/portcullis.toml"));
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/portcullis.service").unwrap();
    assert!(unit.contains("NoNewPrivileges=yes") && unit.contains("ProtectSystem=strict"));
    run(
        Command::new("/usr/bin/portcullis").args([
            "check-config",
            "--config",
            "/etc/portcullis/portcullis.toml",
        ]),
        "check-config of the packaged configuration",
    );

    // The next hop of the packaged configuration, then the service as its unit starts it.
    let sink = Sink::start_on("127.0.0.1:10025".parse().unwrap()).await;
    let exec: Vec<&str> = unit_value(&unit, "ExecStart").split_whitespace().collect();
    let (user_name, group) = (unit_value(&unit, "User"), unit_value(&unit, "Group"));
    assert_eq!(
        unit_value(&unit, "AmbientCapabilities"),
        "CAP_NET_BIND_SERVICE"
    );
    let log = dir.path().join("service.log");
    let child = Command::new("setpriv")
        .arg(format!("--reuid={user_name}"))
        .arg(format!("--regid={group}"))
        .args([
            "--init-groups",
            "--inh-caps=+net_bind_service",
            "--ambient-caps=+net_bind_service",
            "--",
        ])
        .args(&exec)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("setpriv (util-linux) starts the service as its unit does");
    let pid = child.id();
    installed.service = Some(child);
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect("127.0.0.1:25").is_err() {
        assert!(
            Instant::now() < deadline,
            "the packaged service did not listen on port 25:\n{}",
            read_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid_line
            .split_whitespace()
            .skip(1)
            .all(|v| v == user.uid.as_raw().to_string()),
        "{uid_line}"
    );

    let mut c = Client::connect("127.0.0.1:25".parse().unwrap()).await;
    let r = c
        .send_message(
            "a@ext.test",
            &["postmaster@example.test"],
            &message(
                "a@ext.test",
                "postmaster@example.test",
                "pkg@ext.test",
                "installed",
            ),
        )
        .await;
    assert_eq!(r.code, 250, "{}; log:\n{}", r.text, read_log());
    assert!(
        wait_until(20, || sink.count() == 1).await,
        "not delivered; log:\n{}",
        read_log()
    );
    assert_eq!(sink.all()[0].message_id().as_deref(), Some("pkg@ext.test"));
    drop(installed);
    assert!(!Path::new("/usr/bin/portcullis").exists(), "purged");
}
