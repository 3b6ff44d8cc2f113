//! A clamd client: INSTREAM over TCP or a Unix socket (clamav-client), with connect and
//! scan timeouts and a cap on concurrent connections.
//!
//! clamd's replies are read here, not with the crate's `clean()` helper: "infected",
//! "clean" and "error" are three different outcomes, and only the first is a virus.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    slots: Arc<Semaphore>,
}

/// Why a scan did not produce a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClamdError(pub String);

impl std::fmt::Display for ClamdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Chunk size for INSTREAM: one chunk for a typical message (the crate's default is 4 KiB).
const CHUNK: usize = 64 * 1024;

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
        let reply = match &self.endpoint {
            Endpoint::Tcp(addr) => {
                let t = TimedTcp(addr, self.connect_timeout);
                self.run(
                    deadline,
                    clamav_client::tokio::scan_buffer(data, t, Some(CHUNK)),
                )
                .await?
            }
            Endpoint::Unix(path) => {
                let u = TimedUnix(path, self.connect_timeout);
                self.run(
                    deadline,
                    clamav_client::tokio::scan_buffer(data, u, Some(CHUNK)),
                )
                .await?
            }
        };
        Ok(parse_reply(&reply))
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
