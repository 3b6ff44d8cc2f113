//! Reloading the configuration while the gateway runs (`SIGHUP`, and the admin API's
//! reload): the file the gateway was started with is read again and checked as
//! `check-config` checks it; the pipeline, the recipient verifier and the policies are built
//! anew on the resources opened at start and put in force at once. Sessions already
//! connected finish under the configuration they started with.
//!
//! A few keys describe what was set up at start (sockets, the data directory, clients and
//! their pools): a new value for one of them is reported and the running value stays
//! ([`RESTART_KEYS`]); the rest applies.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;

use super::loaded::{Loaded, Opened};
use crate::config::Config;
use crate::live::Live;

/// What a reload put in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    /// The file that was read.
    pub path: PathBuf,
    /// Keys whose value in the file changed since the configuration in force was read, and
    /// that are in force now: dotted paths (`verdict.reject_score`,
    /// `symbols.HDR_MISSING_DATE`); an array of tables counts as one key (`listeners`).
    pub applied: Vec<String>,
    /// Keys with a new value that needs a restart: the running value stays.
    pub needs_restart: Vec<String>,
}

/// Why a reload was refused; the configuration in force stays.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("the gateway was started without --config: there is no file to reload")]
    NoConfigFile,
    /// The file cannot be read or is not a valid configuration (the message names the key).
    #[error("{0:#}")]
    Invalid(anyhow::Error),
    /// Valid, but what it names cannot be used (a DKIM key, the recipient list, resolv.conf).
    #[error("{0:#}")]
    Unusable(anyhow::Error),
}

/// Re-reads the configuration and puts it in force; one reload at a time.
pub struct Reloader {
    path: Option<PathBuf>,
    /// The configuration the gateway started with: the restart-only keys keep its values.
    started: Arc<Config>,
    live: Live,
    loaded: Arc<Loaded>,
    /// The file as it was when the configuration in force was read (for the summary).
    last: tokio::sync::Mutex<toml::Table>,
}

impl Reloader {
    pub(super) fn new(
        path: Option<PathBuf>,
        started: Arc<Config>,
        live: Live,
        loaded: Arc<Loaded>,
    ) -> Reloader {
        let last = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| t.parse::<toml::Table>().ok())
            .unwrap_or_default();
        Reloader {
            path,
            started,
            live,
            loaded,
            last: tokio::sync::Mutex::new(last),
        }
    }

    /// Read the config file again, check it, and put it in force. Every outcome is logged
    /// (each key that needs a restart as a warning; a refusal as an error naming the
    /// problem). On `Err` nothing changed.
    pub async fn reload(&self) -> Result<ReloadSummary, ReloadError> {
        let result = self.try_reload().await;
        match &result {
            Ok(s) => {
                for key in &s.needs_restart {
                    tracing::warn!(
                        key = %key,
                        "configuration reload: `{key}` changed, but it only takes effect after a restart; the running value stays"
                    );
                }
                tracing::info!(
                    path = %s.path.display(),
                    applied = %s.applied.join(","),
                    "configuration reloaded: new sessions use it, sessions in progress finish under the previous one"
                );
            }
            Err(e) => tracing::error!(
                error = %one_line(&e.to_string()),
                "configuration reload refused; the configuration in force stays"
            ),
        }
        result
    }

    async fn try_reload(&self) -> Result<ReloadSummary, ReloadError> {
        let mut last = self.last.lock().await;
        let path = self.path.clone().ok_or(ReloadError::NoConfigFile)?;
        let mut config = super::checked_config(&path).map_err(ReloadError::Invalid)?;
        let table = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .unwrap_or_default();
        let needs_restart = keep_started(&mut config, &self.started, &self.loaded);
        let current = self.live.snapshot();
        // The verifier keeps its callout cache and list while what it is made of stays.
        let reuse = (same(&current.config.recipients, &config.recipients)
            && current.config.inbound_next_hop == config.inbound_next_hop
            && current.config.hostname == config.hostname)
            .then(|| current.recipients.clone());
        let snapshot = self
            .loaded
            .snapshot(Arc::new(config), reuse)
            .map_err(ReloadError::Unusable)?;
        self.live.replace(snapshot);
        let mut applied = Vec::new();
        changed_keys(&last, &table, "", &mut applied);
        applied.retain(|k| !needs_restart.iter().any(|r| is_under(k, r)));
        *last = table;
        Ok(ReloadSummary {
            path,
            applied,
            needs_restart,
        })
    }
}

/// An error on one log line: a TOML error's drawing of the bad line (`9 | [verdict]`,
/// `|  ^^^`) is left out, its words kept.
fn one_line(error: &str) -> String {
    error
        .lines()
        .map(str::trim)
        .filter(|l| {
            let drawing = l.starts_with('|')
                || l.split_once(" |")
                    .is_some_and(|(n, _)| n.chars().all(|c| c.is_ascii_digit()));
            !l.is_empty() && !drawing
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// A key the running gateway cannot change.
pub struct RestartKey {
    pub key: &'static str,
    /// The new configuration asks for what the running gateway cannot do.
    differs: fn(started: &Config, new: &Config, loaded: &Loaded) -> bool,
    /// Put the running value back.
    keep: fn(new: &mut Config, started: &Config),
}

/// A key fixed at start: any new value needs a restart.
macro_rules! fixed {
    ($key:literal, $($field:ident).+) => {
        RestartKey {
            key: $key,
            differs: |s, n, _| !same(&s.$($field).+, &n.$($field).+),
            keep: |n, s| n.$($field).+ = s.$($field).+.clone(),
        }
    };
}

/// An `enabled` key: turning it off applies; turning on what was not opened at start
/// needs a restart.
macro_rules! opened {
    ($key:literal, $($field:ident).+, $what:expr) => {
        RestartKey {
            key: $key,
            differs: |_, n, l| n.$($field).+ && !l.has($what),
            keep: |n, s| n.$($field).+ = s.$($field).+,
        }
    };
}

/// The keys that need a restart, and why: sockets bound at start (`listeners`,
/// `metrics_bind`); the data directory and what was opened in it (the database, the spool,
/// the certificate store with its master key, the Bayes model and trust memory with their
/// background tasks); the clients built once (delivery's connector and resolver, clamd's
/// connection pool, the log format); the delivery workers and queue scanner. `[auth]`'s
/// resolver is rebuilt when its own settings change, but its servers are `dns_servers`,
/// shared with delivery.
pub const RESTART_KEYS: &[RestartKey] = &[
    fixed!("listeners", listeners),
    fixed!("data_dir", data_dir),
    fixed!("metrics_bind", metrics_bind),
    fixed!("log_format", log_format),
    fixed!("hostname", hostname),
    fixed!("dns_servers", dns_servers),
    fixed!("dns_health_interval_secs", dns_health_interval_secs),
    fixed!("outbound_tls_ca", outbound_tls_ca),
    fixed!("limits.max_connections", limits.max_connections),
    fixed!("limits.spool_threshold_bytes", limits.spool_threshold_bytes),
    fixed!(
        "limits.max_large_messages_in_memory",
        limits.max_large_messages_in_memory
    ),
    fixed!("queue.delivery_concurrency", queue.delivery_concurrency),
    fixed!("queue.scan_interval_secs", queue.scan_interval_secs),
    fixed!("queue.connect_timeout_secs", queue.connect_timeout_secs),
    fixed!("queue.reply_timeout_secs", queue.reply_timeout_secs),
    fixed!("queue.idle_connection_secs", queue.idle_connection_secs),
    fixed!("queue.dispatch_memory_bytes", queue.dispatch_memory_bytes),
    opened!("clamav.enabled", clamav.enabled, Opened::Clamd),
    fixed!("clamav.address", clamav.address),
    fixed!("clamav.socket", clamav.socket),
    fixed!("clamav.connect_timeout_ms", clamav.connect_timeout_ms),
    fixed!("clamav.scan_timeout_secs", clamav.scan_timeout_secs),
    fixed!("clamav.max_connections", clamav.max_connections),
    fixed!("clamav.health_interval_secs", clamav.health_interval_secs),
    opened!("bayes.enabled", bayes.enabled, Opened::Bayes),
    fixed!("bayes.reload_secs", bayes.reload_secs),
    opened!("trust.enabled", trust.enabled, Opened::Trust),
    fixed!("trust.half_life_days", trust.half_life_days),
    fixed!("trust.pin_reload_secs", trust.pin_reload_secs),
    opened!("smime.enabled", smime.enabled, Opened::Keyring),
    fixed!("certs", certs),
    // The admin socket, its groups and bounds are set up at start.
    fixed!("admin", admin),
    // The quarantine's service and the queue's hold settings are built at start.
    fixed!("quarantine", quarantine),
];

/// Give every restart-only key of `new` its value from the start; the keys that differed.
fn keep_started(new: &mut Config, started: &Config, loaded: &Loaded) -> Vec<String> {
    let mut kept = Vec::new();
    for k in RESTART_KEYS {
        if (k.differs)(started, new, loaded) {
            (k.keep)(new, started);
            kept.push(k.key.to_string());
        }
    }
    kept
}

/// Equal values. The config types have no `PartialEq` (floats, paths, nested sections);
/// their derived `Debug` text shows every field, so equal text is equal values.
fn same<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

/// `key` is `parent` or inside it (`limits.max_connections` is under `limits`; `listeners`
/// is under `listeners`).
fn is_under(key: &str, parent: &str) -> bool {
    key == parent
        || key
            .strip_prefix(parent)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The dotted keys whose values differ between two parsed files (added and removed keys
/// included); arrays count as one key.
fn changed_keys(old: &toml::Table, new: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let empty = toml::Table::new();
        match (old.get(k), new.get(k)) {
            (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
                changed_keys(a, b, &path, out)
            }
            // A section added or removed: the keys in it.
            (Some(toml::Value::Table(a)), None) => changed_keys(a, &empty, &path, out),
            (None, Some(toml::Value::Table(b))) => changed_keys(&empty, b, &path, out),
            (a, b) if a == b => {}
            _ => out.push(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_are_dotted_leaves() {
        let old: toml::Table = "a = 1\n[verdict]\ntag_score = 5.0\n[[listeners]]\nbind = \"x\"\n"
            .parse()
            .unwrap();
        let new: toml::Table = "a = 1\nb = 2\n[verdict]\ntag_score = 6.0\n[[listeners]]\nbind = \"y\"\n[symbols]\nHDR_MISSING_DATE = 3.0\n"
            .parse()
            .unwrap();
        let mut out = Vec::new();
        changed_keys(&old, &new, "", &mut out);
        assert_eq!(
            out,
            [
                "b",
                "listeners",
                "symbols.HDR_MISSING_DATE",
                "verdict.tag_score"
            ]
        );
        assert!(is_under("limits.max_connections", "limits"));
        let toml_error = "config file g.toml: TOML parse error at line 9, column 2\n  |\n9 | [verdict]\n  |  ^^^^^^^\nduplicate key\n";
        assert_eq!(
            one_line(toml_error),
            "config file g.toml: TOML parse error at line 9, column 2: duplicate key"
        );
        assert!(!is_under("limits_x", "limits"));
    }

    #[tokio::test]
    async fn restart_keys_keep_their_started_values_and_the_rest_applies() {
        let dir = tempfile::tempdir().unwrap();
        let started = Config::parse(&format!(
            "data_dir = {:?}\n[clamav]\nenabled = false\n[verdict]\nreject_score = 12.0\n",
            dir.path().join("data")
        ))
        .unwrap();
        let db = crate::store::Database::open(&started.data_dir)
            .await
            .unwrap();
        let loaded = Loaded::open(
            &started,
            &db,
            super::super::loaded::Purpose::Explain,
            crate::metrics::Metrics::new(),
        )
        .await
        .unwrap();
        let mut new = Config::parse(
            "data_dir = \"/elsewhere\"\nmetrics_bind = \"127.0.0.1:1\"\n[clamav]\nenabled = true\n[verdict]\nreject_score = 20.0\n[bayes]\nenabled = false\n[[listeners]]\nbind = \"127.0.0.1:2\"\n",
        )
        .unwrap();
        let kept = keep_started(&mut new, &started, &loaded);
        assert_eq!(
            kept,
            ["listeners", "data_dir", "metrics_bind", "clamav.enabled"]
        );
        assert_eq!(new.data_dir, started.data_dir);
        assert_eq!(new.metrics_bind, started.metrics_bind);
        assert_eq!(new.listeners[0].bind, started.listeners[0].bind);
        assert!(!new.clamav.enabled, "clamd was not opened at start");
        // applied: thresholds, and turning off what was opened
        assert_eq!(new.verdict.reject_score, 20.0);
        assert!(!new.bayes.enabled);
    }
}
