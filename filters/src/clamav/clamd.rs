//! A clamd client: INSTREAM over TCP or a Unix socket, with connect and scan timeouts and a
//! cap on concurrent connections. Scans go over a small pool of IDSESSION connections
//! ([`super::session`]), reused from scan to scan; the health probe (VERSION) uses
//! clamav-client.
//!
//! clamd's replies are read here, not with the crate's `clean()` helper: "infected",
//! "clean" and "error" are three different outcomes, and only the first is a virus.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::session::Session;

use clamav_client::tokio::TransportProtocol;
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::Semaphore;

/// Where clamd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// host:port
    Tcp(String),
    Unix(PathBuf),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Tcp(a) => write!(f, "tcp:{a}"),
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What clamd said about one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Clean,
    /// The signature name, e.g. "Eicar-Test-Signature.UNOFFICIAL".
    Infected(String),
    /// clamd answered, but with an error (e.g. "INSTREAM size limit exceeded. ERROR").
    Error(String),
}

/// Parse an INSTREAM reply: "stream: OK", "stream: NAME FOUND", "... ERROR".
pub fn parse_reply(reply: &[u8]) -> Verdict {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\0', '\n', '\r', ' ']).trim();
    let body = text.strip_prefix("stream:").map(str::trim).unwrap_or(text);
    if body == "OK" {
        Verdict::Clean
    } else if let Some(name) = body.strip_suffix(" FOUND") {
        Verdict::Infected(name.trim().to_string())
    } else if text.is_empty() {
        Verdict::Error("empty reply".into())
    } else {
        Verdict::Error(text.to_string())
    }
}

/// Health of clamd as seen by a `VERSION` probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// e.g. "ClamAV 1.4.6"
    pub version: String,
    /// Signature database version, when clamd reports it.
    pub signatures: Option<String>,
    /// Signature date as clamd prints it, e.g. "Thu Nov 27 08:38:19 2026".
    pub signature_date: Option<String>,
    pub latency: Duration,
}

/// "ClamAV 1.4.6/27460/Thu Nov 27 08:38:19 2026" → parts.
pub fn parse_version(reply: &[u8], latency: Duration) -> Health {
    let text = String::from_utf8_lossy(reply);
    let text = text.trim_end_matches(['\0', '\n', '\r', ' ']);
    let mut parts = text.splitn(3, '/');
    Health {
        version: parts.next().unwrap_or_default().to_string(),
        signatures: parts.next().map(str::to_string),
        signature_date: parts.next().map(str::to_string),
        latency,
    }
}

/// TCP transport whose connect has its own timeout (a dead host must not eat the whole
/// scan timeout).
struct TimedTcp<'a>(&'a str, Duration);

impl TransportProtocol for TimedTcp<'_> {
    type Stream = TcpStream;

    async fn connect(&self) -> std::io::Result<TcpStream> {
        tokio::time::timeout(self.1, TcpStream::connect(self.0))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
    }
}

struct TimedUnix<'a>(&'a std::path::Path, Duration);

impl TransportProtocol for TimedUnix<'_> {
    type Stream = UnixStream;

    async fn connect(&self) -> std::io::Result<UnixStream> {
        tokio::time::timeout(self.1, UnixStream::connect(self.0))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))?
    }
}

pub struct Clamd {
    endpoint: Endpoint,
    connect_timeout: Duration,
    scan_timeout: Duration,
    /// One permit per connection in use: at most `max_connections` scans at once.
    slots: Arc<Semaphore>,
    /// Sessions between scans (at most `max_connections`), most recently used last.
    idle: Mutex<Vec<Session>>,
}

/// Why a scan did not produce a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClamdError(pub String);

impl std::fmt::Display for ClamdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A session idle longer than this is closed rather than reused: clamd drops idle
/// sessions after its IdleTimeout (30 s by default).
const SESSION_IDLE_MAX: Duration = Duration::from_secs(10);

impl Clamd {
    pub fn new(
        endpoint: Endpoint,
        connect_timeout: Duration,
        scan_timeout: Duration,
        max_connections: usize,
    ) -> Clamd {
        Clamd {
            endpoint,
            connect_timeout,
            scan_timeout,
            slots: Arc::new(Semaphore::new(max_connections.max(1))),
            idle: Mutex::new(Vec::new()),
        }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Scan `data` with INSTREAM. Waiting for a free connection counts against the scan
    /// timeout, so a clamd that is slow for everyone tempfails instead of piling up.
    pub async fn scan(&self, data: &[u8]) -> Result<Verdict, ClamdError> {
        let deadline = Instant::now() + self.scan_timeout;
        let _slot = tokio::time::timeout_at(deadline.into(), self.slots.acquire())
            .await
            .map_err(|_| {
                ClamdError(format!(
                    "no free clamd connection within {:?}",
                    self.scan_timeout
                ))
            })?
            .map_err(|_| ClamdError("clamd client closed".into()))?;
        let reply = tokio::time::timeout_at(deadline.into(), self.scan_on_a_session(data))
            .await
            .map_err(|_| {
                ClamdError(format!("clamd at {} did not answer in time", self.endpoint))
            })??;
        Ok(parse_reply(&reply))
    }

    /// INSTREAM on an idle session, or on a new one. A reused session that fails may
    /// simply have been closed by clamd while idle, so the scan is tried once more on a
    /// new connection; a failure there is clamd's.
    async fn scan_on_a_session(&self, data: &[u8]) -> Result<Vec<u8>, ClamdError> {
        let mut session = match self.take_idle() {
            Some(mut reused) => match reused.instream(data).await {
                Ok(reply) => return Ok(self.keep(reused, reply)),
                Err(_) => self.open().await?,
            },
            None => self.open().await?,
        };
        let reply = session
            .instream(data)
            .await
            .map_err(|e| ClamdError(format!("clamd at {}: {e}", self.endpoint)))?;
        Ok(self.keep(session, reply))
    }

    /// Put the session back for the next scan, unless clamd answered an error (it may
    /// close the session after one).
    fn keep(&self, session: Session, reply: Vec<u8>) -> Vec<u8> {
        if !matches!(parse_reply(&reply), Verdict::Error(_)) {
            self.idle.lock().unwrap().push(session);
        }
        reply
    }

    fn take_idle(&self) -> Option<Session> {
        let mut idle = self.idle.lock().unwrap();
        // sessions at the front have waited longest: drop those clamd may have closed
        idle.retain(|s| s.last_used.elapsed() < SESSION_IDLE_MAX);
        idle.pop()
    }

    async fn open(&self) -> Result<Session, ClamdError> {
        let opening = async {
            match &self.endpoint {
                Endpoint::Tcp(addr) => Session::open_tcp(addr).await,
                Endpoint::Unix(path) => Session::open_unix(path).await,
            }
        };
        match tokio::time::timeout(self.connect_timeout, opening).await {
            Ok(Ok(session)) => Ok(session),
            Ok(Err(e)) => Err(ClamdError(format!("clamd at {}: {e}", self.endpoint))),
            Err(_) => Err(ClamdError(format!(
                "clamd at {}: connect timed out",
                self.endpoint
            ))),
        }
    }

    /// Ask clamd for its version and signature date; the time it took is the latency.
    pub async fn health(&self) -> Result<Health, ClamdError> {
        let started = Instant::now();
        let deadline = started + self.connect_timeout + Duration::from_secs(5);
        let reply = match &self.endpoint {
            Endpoint::Tcp(addr) => {
                let t = TimedTcp(addr, self.connect_timeout);
                self.run(deadline, clamav_client::tokio::get_version(t))
                    .await?
            }
            Endpoint::Unix(path) => {
                let u = TimedUnix(path, self.connect_timeout);
                self.run(deadline, clamav_client::tokio::get_version(u))
                    .await?
            }
        };
        Ok(parse_version(&reply, started.elapsed()))
    }

    async fn run(
        &self,
        deadline: Instant,
        fut: impl std::future::Future<Output = clamav_client::IoResult>,
    ) -> Result<Vec<u8>, ClamdError> {
        match tokio::time::timeout_at(deadline.into(), fut).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(ClamdError(format!("clamd at {}: {e}", self.endpoint))),
            Err(_) => Err(ClamdError(format!(
                "clamd at {} did not answer in time",
                self.endpoint
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_three_different_outcomes() {
        assert_eq!(parse_reply(b"stream: OK\0"), Verdict::Clean);
        assert_eq!(
            parse_reply(b"stream: Eicar-Test-Signature.UNOFFICIAL FOUND\0"),
            Verdict::Infected("Eicar-Test-Signature.UNOFFICIAL".into())
        );
        assert_eq!(
            parse_reply(b"INSTREAM size limit exceeded. ERROR\0"),
            Verdict::Error("INSTREAM size limit exceeded. ERROR".into())
        );
        // the crate's clean() would call this infected-free text "clean"; it is an error
        assert!(matches!(
            parse_reply(b"stream: OK? no. ERROR\0"),
            Verdict::Error(_)
        ));
        assert!(matches!(parse_reply(b""), Verdict::Error(_)));
    }

    #[test]
    fn version_reply_is_split() {
        let h = parse_version(
            b"ClamAV 1.4.6/27460/Thu Nov 27 08:38:19 2026\0",
            Duration::from_millis(2),
        );
        assert_eq!(h.version, "ClamAV 1.4.6");
        assert_eq!(h.signatures.as_deref(), Some("27460"));
        assert_eq!(
            h.signature_date.as_deref(),
            Some("Thu Nov 27 08:38:19 2026")
        );
        let h = parse_version(b"ClamAV 1.4.6\0", Duration::ZERO);
        assert_eq!(h.signatures, None);
    }

    /// An in-memory stand-in for clamd speaking IDSESSION: answers "OK" to every
    /// INSTREAM after `delay`, closes a session after `per_session` requests (as clamd's
    /// IdleTimeout would), and counts the connections it accepted.
    async fn fake_clamd(
        path: &std::path::Path,
        per_session: u64,
        delay: Duration,
    ) -> Arc<std::sync::atomic::AtomicUsize> {
        use std::sync::atomic::Ordering;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::UnixListener::bind(path).unwrap();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut cmd = [0u8; 11];
                    s.read_exact(&mut cmd).await.unwrap();
                    for n in 1..=per_session {
                        let mut cmd = [0u8; 10];
                        if s.read_exact(&mut cmd).await.is_err() {
                            return;
                        }
                        loop {
                            let len = s.read_u32().await.unwrap() as usize;
                            if len == 0 {
                                break;
                            }
                            s.read_exact(&mut vec![0; len]).await.unwrap();
                        }
                        tokio::time::sleep(delay).await;
                        s.write_all(format!("{n}: stream: OK\0").as_bytes())
                            .await
                            .unwrap();
                    }
                });
            }
        });
        accepted
    }

    fn socket_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("pc-clamd-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("clamd.sock")
    }

    #[tokio::test]
    async fn sessions_are_reused_and_a_closed_one_is_replaced() {
        let path = socket_path("reuse");
        let accepted = fake_clamd(&path, 2, Duration::ZERO).await;
        let c = Clamd::new(
            Endpoint::Unix(path.clone()),
            Duration::from_secs(1),
            Duration::from_secs(5),
            4,
        );
        for _ in 0..5 {
            assert_eq!(c.scan(b"message").await, Ok(Verdict::Clean));
        }
        // 2 scans per session before the fake closes it: the 3rd and 5th scan find their
        // session closed and are sent again on a new one
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 3);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn concurrent_scans_stay_within_the_connection_cap() {
        let path = socket_path("cap");
        let accepted = fake_clamd(&path, u64::MAX, Duration::from_millis(20)).await;
        let c = Arc::new(Clamd::new(
            Endpoint::Unix(path.clone()),
            Duration::from_secs(1),
            Duration::from_secs(5),
            2,
        ));
        let scans: Vec<_> = (0..10)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { c.scan(b"message").await })
            })
            .collect();
        for s in scans {
            assert_eq!(s.await.unwrap(), Ok(Verdict::Clean));
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
        let _ = std::fs::remove_dir_all(path.parent().unwrap());
    }

    #[tokio::test]
    async fn unreachable_clamd_is_an_error_not_a_verdict() {
        let c = Clamd::new(
            Endpoint::Unix("/nonexistent/clamd.sock".into()),
            Duration::from_millis(200),
            Duration::from_secs(1),
            2,
        );
        assert!(c.scan(b"hello").await.is_err());
        assert!(c.health().await.is_err());
    }
}
