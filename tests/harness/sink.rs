//! The project's own SMTP sink: a real SMTP server on 127.0.0.1 that records every
//! message it accepts, and can be told to defer or reject. With a certificate it offers
//! STARTTLS (openssl), for the outbound TLS policy tests.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use openssl::ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_openssl::SslStream;

#[derive(Debug, Clone)]
pub struct Received {
    pub mail_from: String,
    pub rcpts: Vec<String>,
    pub data: String,
    /// The DATA payload exactly as it arrived, dot-stuffing removed (bare CR and LF kept).
    pub raw: Vec<u8>,
    /// The MAIL and RCPT command lines exactly as they arrived, without their CRLF.
    pub mail_line: String,
    pub rcpt_lines: Vec<String>,
    /// The message came over STARTTLS.
    pub tls: bool,
}

impl Received {
    pub fn message_id(&self) -> Option<String> {
        self.data.lines().find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("message-id:")
                .then(|| l[11..].trim().trim_matches(['<', '>']).to_string())
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkMode {
    Accept,
    /// 451 to every RCPT.
    Defer,
    /// 550 to RCPTs whose local part starts with "bad".
    RejectBad,
}

pub struct Sink {
    pub addr: SocketAddr,
    pub messages: Arc<Mutex<Vec<Received>>>,
    pub mode: Arc<Mutex<SinkMode>>,
    task: Option<JoinHandle<()>>,
}

impl Sink {
    pub async fn start() -> Sink {
        Self::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(addr: SocketAddr) -> Sink {
        Self::start_with(addr, None).await
    }

    /// A sink offering STARTTLS with this PEM certificate (chain) and key.
    pub async fn start_tls(cert: &Path, key: &Path) -> Sink {
        let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
        b.set_certificate_chain_file(cert)
            .expect("sink certificate");
        b.set_private_key_file(key, SslFiletype::PEM)
            .expect("sink key");
        Self::start_with("127.0.0.1:0".parse().unwrap(), Some(Arc::new(b.build()))).await
    }

    async fn start_with(addr: SocketAddr, tls: Option<Arc<SslAcceptor>>) -> Sink {
        let listener = TcpListener::bind(addr).await.expect("bind sink");
        let addr = listener.local_addr().unwrap();
        let messages = Arc::new(Mutex::new(Vec::new()));
        let mode = Arc::new(Mutex::new(SinkMode::Accept));
        let (m, md) = (messages.clone(), mode.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((s, _)) = listener.accept().await else {
                    return;
                };
                let (m, md, tls) = (m.clone(), md.clone(), tls.clone());
                tokio::spawn(async move {
                    let offer = tls.is_some();
                    let Ok(Some(plain)) = session(s, m.clone(), md.clone(), offer, false).await
                    else {
                        return;
                    };
                    // STARTTLS: handshake, then the session starts over (RFC 3207).
                    let acceptor = tls.unwrap();
                    let Ok(ssl) = Ssl::new(acceptor.context()) else {
                        return;
                    };
                    let Ok(mut stream) = SslStream::new(ssl, plain) else {
                        return;
                    };
                    if Pin::new(&mut stream).accept().await.is_ok() {
                        let _ = session(stream, m, md, false, true).await;
                    }
                });
            }
        });
        Sink {
            addr,
            messages,
            mode,
            task: Some(task),
        }
    }

    /// An address nobody listens on (for "downstream down").
    pub fn dead_addr() -> SocketAddr {
        format!("127.0.0.1:{}", super::free_port()).parse().unwrap()
    }

    pub fn set_mode(&self, mode: SinkMode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn count(&self) -> usize {
        self.messages.lock().unwrap().len()
    }

    pub fn all(&self) -> Vec<Received> {
        self.messages.lock().unwrap().clone()
    }

    pub fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One SMTP session; returns the stream when the client asked for STARTTLS.
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    s: S,
    messages: Arc<Mutex<Vec<Received>>>,
    mode: Arc<Mutex<SinkMode>>,
    offer_tls: bool,
    is_tls: bool,
) -> std::io::Result<Option<S>> {
    let (r, mut w) = tokio::io::split(s);
    let mut r = BufReader::new(r);
    if !is_tls {
        w.write_all(b"220 sink.test ESMTP test sink\r\n").await?;
    }
    let mut from = String::new();
    let mut rcpts: Vec<String> = Vec::new();
    let mut mail_line = String::new();
    let mut rcpt_lines: Vec<String> = Vec::new();
    loop {
        let mut bytes = Vec::new();
        if r.read_until(b'\n', &mut bytes).await? == 0 {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(&bytes).into_owned();
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") {
            let starttls = if offer_tls { "250-STARTTLS\r\n" } else { "" };
            format!("250-sink.test\r\n{starttls}250-PIPELINING\r\n250 8BITMIME\r\n")
        } else if offer_tls && upper.starts_with("STARTTLS") {
            w.write_all(b"220 2.0.0 go ahead\r\n").await?;
            return Ok(Some(r.into_inner().unsplit(w)));
        } else if upper.starts_with("HELO") || upper.starts_with("NOOP") {
            "250 ok\r\n".into()
        } else if upper.starts_with("RSET") {
            from.clear();
            rcpts.clear();
            "250 ok\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            from = addr(&line[10..]);
            mail_line = line.trim_end_matches(['\r', '\n']).to_string();
            rcpts.clear();
            rcpt_lines.clear();
            "250 2.1.0 ok\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let a = addr(&line[8..]);
            rcpt_lines.push(line.trim_end_matches(['\r', '\n']).to_string());
            let m = *mode.lock().unwrap();
            match m {
                SinkMode::Defer => "451 4.3.0 try later\r\n".into(),
                SinkMode::RejectBad if a.starts_with("bad") => "550 5.1.1 no such user\r\n".into(),
                _ => {
                    rcpts.push(a);
                    "250 2.1.5 ok\r\n".into()
                }
            }
        } else if upper.starts_with("DATA") {
            if rcpts.is_empty() {
                "554 5.5.1 no valid recipients\r\n".into()
            } else {
                w.write_all(b"354 go ahead\r\n").await?;
                // Lenient on purpose: a "." line after a bare LF ends the data here, as it
                // does in some servers, so a smuggled end of data shows as a second message.
                let mut raw = Vec::new();
                loop {
                    let mut l = Vec::new();
                    if r.read_until(b'\n', &mut l).await? == 0 {
                        return Ok(None);
                    }
                    if l == b".\r\n" {
                        break;
                    }
                    raw.extend_from_slice(l.strip_prefix(b".").unwrap_or(&l));
                }
                messages.lock().unwrap().push(Received {
                    mail_from: from.clone(),
                    rcpts: std::mem::take(&mut rcpts),
                    data: String::from_utf8_lossy(&raw).into_owned(),
                    raw,
                    mail_line: mail_line.clone(),
                    rcpt_lines: std::mem::take(&mut rcpt_lines),
                    tls: is_tls,
                });
                "250 2.0.0 stored\r\n".into()
            }
        } else if upper.starts_with("QUIT") {
            w.write_all(b"221 bye\r\n").await?;
            return Ok(None);
        } else {
            "500 unknown\r\n".into()
        };
        w.write_all(reply.as_bytes()).await?;
    }
}

fn addr(s: &str) -> String {
    let s = s.trim();
    let start = s.find('<').map(|i| i + 1).unwrap_or(0);
    let end = s[start..].find('>').map(|i| i + start).unwrap_or(s.len());
    s[start..end].to_string()
}
