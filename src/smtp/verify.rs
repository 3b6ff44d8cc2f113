//! Recipient verification at RCPT TO for our own domains (`[recipients]`).
//!
//! Without it every local part is accepted, and the internal server's refusal later turns
//! into a bounce to the envelope sender, who is often forged: backscatter. With
//! `verify = "list"` only the addresses (and `@domain` entries) of a list file are
//! accepted; with `verify = "callout"` the internal server is asked (MAIL FROM:<>, RCPT TO,
//! QUIT) as Postfix's `reject_unverified_recipient` does, and its answer is cached.
//! Unknown: 550 5.1.1. The list unreadable or the server unreachable: 450 4.1.1, so the
//! client tries again later and nothing is lost.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use mail_send::SmtpClient;

use super::address::smtp_path;
use crate::config::{Config, RecipientVerify, parse_host_port};

/// What verification says about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Exists,
    Unknown,
    /// Cannot tell now (the reason is for the log).
    TryLater(String),
}

/// How recipients of our domains are verified (`[recipients] verify`).
pub enum RecipientVerifier {
    Off,
    List(ListFile),
    Callout(Callout),
}

impl RecipientVerifier {
    /// Set up from `[recipients]`; with `verify = "list"` the file must be readable now
    /// (the config's validation makes sure `list_file` is given).
    pub fn new(config: &Config) -> anyhow::Result<RecipientVerifier> {
        let r = &config.recipients;
        Ok(match (r.verify, &r.list_file) {
            (RecipientVerify::Off, _) => RecipientVerifier::Off,
            (RecipientVerify::List, Some(path)) => RecipientVerifier::List(ListFile::open(
                path.clone(),
                Duration::from_secs(r.reload_secs),
            )?),
            (RecipientVerify::List, None) => {
                anyhow::bail!("key `recipients.list_file`: needed with verify = \"list\"")
            }
            (RecipientVerify::Callout, _) => RecipientVerifier::Callout(Callout {
                next_hop: config.inbound_next_hop.clone(),
                helo: config.hostname.clone(),
                timeout: Duration::from_secs(r.callout_timeout_secs),
                positive_ttl: Duration::from_secs(r.callout_positive_ttl_secs),
                negative_ttl: Duration::from_secs(r.callout_negative_ttl_secs),
                max_entries: r.callout_cache_entries,
                cache: Mutex::new(HashMap::new()),
                in_flight: tokio::sync::Semaphore::new(r.max_concurrent_callouts),
            }),
        })
    }

    pub fn is_on(&self) -> bool {
        !matches!(self, RecipientVerifier::Off)
    }

    /// Verify `address`, a recipient in one of our domains (domain already lowercased).
    pub async fn check(&self, address: &str) -> Verdict {
        match self {
            RecipientVerifier::Off => Verdict::Exists,
            RecipientVerifier::List(l) => l.check(address),
            RecipientVerifier::Callout(c) => c.check(address).await,
        }
    }
}

/// The recipient list: lowercased addresses and `@domain` entries, re-read when the file
/// changes (checked at most every `reload` interval).
pub struct ListFile {
    path: PathBuf,
    reload: Duration,
    state: Mutex<ListState>,
}

struct ListState {
    addresses: HashSet<String>,
    domains: HashSet<String>,
    modified: Option<SystemTime>,
    checked: Instant,
}

impl ListFile {
    fn open(path: PathBuf, reload: Duration) -> anyhow::Result<ListFile> {
        let (addresses, domains, modified) = read_list(&path).map_err(|e| {
            anyhow::anyhow!(
                "key `recipients.list_file`: {e} (one address or @domain per line is expected)"
            )
        })?;
        Ok(ListFile {
            path,
            reload,
            state: Mutex::new(ListState {
                addresses,
                domains,
                modified,
                checked: Instant::now(),
            }),
        })
    }

    fn check(&self, address: &str) -> Verdict {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.checked.elapsed() >= self.reload {
            st.checked = Instant::now();
            let modified = std::fs::metadata(&self.path)
                .and_then(|m| m.modified())
                .ok();
            if modified != st.modified {
                // A small file read while holding the lock: at most once per reload
                // interval. On error the old list stays in force.
                match read_list(&self.path) {
                    Ok((a, d, m)) => {
                        tracing::info!(file = %self.path.display(), addresses = a.len(), domains = d.len(), "recipient list reloaded");
                        st.addresses = a;
                        st.domains = d;
                        st.modified = m;
                    }
                    Err(e) => {
                        tracing::warn!(file = %self.path.display(), error = %e, "cannot reload the recipient list; keeping the previous one")
                    }
                }
            }
        }
        let lower = address.to_lowercase();
        let domain = lower.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
        if st.addresses.contains(&lower) || st.domains.contains(domain) {
            Verdict::Exists
        } else {
            Verdict::Unknown
        }
    }
}

type ListContent = (HashSet<String>, HashSet<String>, Option<SystemTime>);

fn read_list(path: &std::path::Path) -> Result<ListContent, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut addresses = HashSet::new();
    let mut domains = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        let entry = entry.to_lowercase();
        match entry.strip_prefix('@') {
            Some(d) if !d.is_empty() && !d.contains('@') => {
                domains.insert(d.trim_end_matches('.').to_string());
            }
            None if entry.contains('@') && !entry.ends_with('@') => {
                addresses.insert(entry);
            }
            _ => {
                return Err(format!(
                    "{} line {}: {entry:?} is neither an address nor @domain",
                    path.display(),
                    n + 1
                ));
            }
        }
    }
    Ok((addresses, domains, meta.modified().ok()))
}

/// Asking the internal server, with a cache of its answers.
pub struct Callout {
    next_hop: String,
    helo: String,
    timeout: Duration,
    positive_ttl: Duration,
    negative_ttl: Duration,
    max_entries: usize,
    /// Lowercased address → (exists, valid until).
    cache: Mutex<HashMap<String, (bool, Instant)>>,
    /// Callouts at once: each is a connection to the internal server, and the recipients
    /// asked about are the client's choice.
    in_flight: tokio::sync::Semaphore,
}

impl Callout {
    async fn check(&self, address: &str) -> Verdict {
        let key = address.to_lowercase();
        if let Some(&(exists, until)) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && until > Instant::now()
        {
            return if exists {
                Verdict::Exists
            } else {
                Verdict::Unknown
            };
        }
        // Waiting for a turn counts against the timeout too: past it, the client retries.
        let turn_and_ask = async {
            let _turn = self.in_flight.acquire().await;
            self.ask(address).await
        };
        let verdict = match tokio::time::timeout(self.timeout, turn_and_ask).await {
            Ok(v) => v,
            Err(_) => Verdict::TryLater(format!(
                "no answer from {} within {:?} (recipients.max_concurrent_callouts busy or the server slow)",
                self.next_hop, self.timeout
            )),
        };
        let ttl = match verdict {
            Verdict::Exists => Some((true, self.positive_ttl)),
            Verdict::Unknown => Some((false, self.negative_ttl)),
            Verdict::TryLater(_) => None,
        };
        if let Some((exists, ttl)) = ttl {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.len() >= self.max_entries {
                let now = Instant::now();
                cache.retain(|_, (_, until)| *until > now);
                if cache.len() >= self.max_entries {
                    // Still full of live answers: start over rather than grow.
                    cache.clear();
                }
            }
            cache.insert(key, (exists, Instant::now() + ttl));
        }
        verdict
    }

    /// One callout: greeting, EHLO, MAIL FROM:<>, RCPT TO, QUIT. 2xx: exists; 5xx: unknown;
    /// anything else, or a broken connection: try later.
    async fn ask(&self, address: &str) -> Verdict {
        let Some(path) = smtp_path(address) else {
            return Verdict::Unknown;
        };
        let later = |what: &str, e: &dyn std::fmt::Display| {
            Verdict::TryLater(format!("callout to {}: {what}: {e}", self.next_hop))
        };
        let (host, port) = match parse_host_port(&self.next_hop) {
            Ok(hp) => hp,
            Err(e) => return later("next hop", &e),
        };
        let tcp = match tokio::net::TcpStream::connect((host.as_str(), port)).await {
            Ok(t) => t,
            Err(e) => return later("connect", &e),
        };
        let mut c = SmtpClient {
            stream: tcp,
            timeout: self.timeout,
        };
        match c.read().await {
            Ok(r) if (200..300).contains(&r.code) => {}
            Ok(r) => return later("greeting", &r.code),
            Err(e) => return later("greeting", &e),
        }
        if let Err(e) = c.ehlo(&self.helo).await {
            return later("EHLO", &e);
        }
        match c.cmd("MAIL FROM:<>\r\n").await {
            Ok(r) if (200..300).contains(&r.code) => {}
            Ok(r) => return later("MAIL FROM:<>", &r.code),
            Err(e) => return later("MAIL FROM:<>", &e),
        }
        let verdict = match c.cmd(format!("RCPT TO:<{path}>\r\n")).await {
            Ok(r) if (200..300).contains(&r.code) => Verdict::Exists,
            Ok(r) if (500..600).contains(&r.code) => Verdict::Unknown,
            Ok(r) => later("RCPT TO", &r.code),
            Err(e) => later("RCPT TO", &e),
        };
        let _ = c.quit().await;
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_entries_are_addresses_or_domains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rcpts");
        std::fs::write(
            &path,
            "# staff\nAlice@Example.test\n  bob@example.test  # desk\n@Lists.Example.test\n\n",
        )
        .unwrap();
        let l = ListFile::open(path.clone(), Duration::ZERO).unwrap();
        assert_eq!(l.check("alice@example.test"), Verdict::Exists);
        assert_eq!(l.check("ALICE@example.test"), Verdict::Exists);
        assert_eq!(l.check("bob@example.test"), Verdict::Exists);
        assert_eq!(l.check("any@lists.example.test"), Verdict::Exists);
        assert_eq!(l.check("carol@example.test"), Verdict::Unknown);
        // reloaded when the file changes
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "carol@example.test\n").unwrap();
        let later = SystemTime::now() + Duration::from_secs(2);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later)
            .unwrap();
        assert_eq!(l.check("carol@example.test"), Verdict::Exists);
        assert_eq!(l.check("alice@example.test"), Verdict::Unknown);
        // a broken file keeps the previous list
        std::fs::write(&path, "not an address\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(later + Duration::from_secs(2))
            .unwrap();
        assert_eq!(l.check("carol@example.test"), Verdict::Exists);
        assert!(ListFile::open(dir.path().join("missing"), Duration::ZERO).is_err());
    }

    /// A server that accepts connections and never answers.
    async fn silent_server() -> (tokio::net::TcpListener, String) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        (l, addr)
    }

    #[tokio::test]
    async fn callouts_wait_for_a_turn_within_the_timeout() {
        let (_server, next_hop) = silent_server().await;
        let callout = Callout {
            next_hop,
            helo: "gw.test".into(),
            timeout: Duration::from_millis(300),
            positive_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(60),
            max_entries: 10,
            cache: Mutex::new(HashMap::new()),
            in_flight: tokio::sync::Semaphore::new(1),
        };
        // Every turn taken: the callout does not connect, it answers "try later" in time.
        let held = callout.in_flight.acquire().await.unwrap();
        let started = Instant::now();
        let v = callout.check("u@example.test").await;
        assert!(
            matches!(&v, Verdict::TryLater(why) if why.contains("max_concurrent_callouts")),
            "{v:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        drop(held);
        // A temporary failure is not remembered.
        assert!(callout.cache.lock().unwrap().is_empty());
    }
}
