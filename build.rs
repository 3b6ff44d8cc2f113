// Re-embed the SQL migrations when they change (sqlx::migrate! reads them at compile time),
// and record what `portcullis --version` reports: the git revision and the versions of the
// main crates as Cargo.lock pins them.
use std::process::Command;

/// The crates a bug report should name.
const CRATES: &[&str] = &[
    "tokio",
    "mail-auth",
    "mail-parser",
    "mail-send",
    "cms",
    "openssl",
    "sqlx",
    "hickory-resolver",
    "axum",
    "ratatui",
];

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=Cargo.lock");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let revision = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PORTCULLIS_GIT_REVISION={revision}");

    let lock = std::fs::read_to_string("Cargo.lock").unwrap_or_default();
    let mut versions = Vec::new();
    let mut name = None;
    for line in lock.lines() {
        if let Some(n) = line.strip_prefix("name = ") {
            name = Some(n.trim_matches('"').to_string());
        } else if let Some(v) = line.strip_prefix("version = ")
            && let Some(n) = name.take().filter(|n| CRATES.contains(&n.as_str()))
        {
            versions.push(format!("{n} {}", v.trim_matches('"')));
        }
    }
    versions.sort();
    versions.dedup();
    println!(
        "cargo:rustc-env=PORTCULLIS_CRATE_VERSIONS={}",
        versions.join(", ")
    );
}
