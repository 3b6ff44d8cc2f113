//! One outgoing SMTP connection (mail-send), with opportunistic STARTTLS and per-recipient
//! results.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mail_send::SmtpClient;
use smtp_proto::{EXT_PIPELINING, EXT_START_TLS, Response};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::smtp::address::smtp_path;

/// What happened to one recipient in one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RcptResult {
    Delivered(String),
    Deferred(String),
    Failed(String),
}

impl RcptResult {
    fn from_reply(r: &Response<String>) -> RcptResult {
        let text = reply_text(r);
        match r.code {
            200..=299 => RcptResult::Delivered(text),
            500..=599 => RcptResult::Failed(text),
            _ => RcptResult::Deferred(text),
        }
    }
}

pub fn reply_text(r: &Response<String>) -> String {
    let msg = r.message.replace(['\r', '\n'], " ");
    if r.esc[0] != 0 {
        format!("{} {}.{}.{} {}", r.code, r.esc[0], r.esc[1], r.esc[2], msg)
    } else {
        format!("{} {}", r.code, msg)
    }
}

enum Inner {
    Plain(SmtpClient<TcpStream>),
    Tls(Box<SmtpClient<TlsStream<TcpStream>>>),
}

/// An open session with a next hop, ready for MAIL FROM.
pub struct Connection {
    inner: Inner,
    pipelining: bool,
    pub peer: SocketAddr,
}

impl Connection {
    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// Send one message to `rcpts`. `Err` means the connection broke (every recipient of
    /// this attempt is then deferred and the connection must be dropped).
    pub async fn send(
        &mut self,
        from: &str,
        rcpts: &[String],
        body: &[u8],
    ) -> Result<Vec<RcptResult>, String> {
        let pipelining = self.pipelining;
        match &mut self.inner {
            Inner::Plain(c) => transaction(c, pipelining, from, rcpts, body).await,
            Inner::Tls(c) => transaction(c.as_mut(), pipelining, from, rcpts, body).await,
        }
    }

    pub async fn rset(&mut self) -> bool {
        let r = match &mut self.inner {
            Inner::Plain(c) => c.rset().await,
            Inner::Tls(c) => c.rset().await,
        };
        r.is_ok()
    }

    pub async fn quit(self) {
        let _ = match self.inner {
            Inner::Plain(c) => c.quit().await,
            Inner::Tls(c) => (*c).quit().await,
        };
    }
}

/// Why a recipient (or every recipient, for the sender) is failed without trying.
const UNWRITABLE_ADDRESS: &str = "553 5.1.3 address contains a control character";

async fn transaction<T: AsyncRead + AsyncWrite + Unpin>(
    c: &mut SmtpClient<T>,
    pipelining: bool,
    from: &str,
    rcpts: &[String],
    body: &[u8],
) -> Result<Vec<RcptResult>, String> {
    // Addresses are quoted again as the next hop must read them; one with a control
    // character cannot be written at all (the listener refuses those; this guards what an
    // older queue may hold).
    let Some(from_path) = smtp_path(from) else {
        let failed = RcptResult::Failed(UNWRITABLE_ADDRESS.into());
        return Ok(rcpts.iter().map(|_| failed.clone()).collect());
    };
    let paths: Vec<Option<String>> = rcpts.iter().map(|r| smtp_path(r)).collect();
    let sendable: Vec<&String> = paths.iter().flatten().collect();
    if sendable.is_empty() {
        return Ok(rcpts
            .iter()
            .map(|_| RcptResult::Failed(UNWRITABLE_ADDRESS.into()))
            .collect());
    }
    let mut cmds = Vec::with_capacity(sendable.len() + 2);
    cmds.push(format!("MAIL FROM:<{from_path}>\r\n"));
    for r in &sendable {
        cmds.push(format!("RCPT TO:<{r}>\r\n"));
    }
    cmds.push("DATA\r\n".to_string());
    // RFC 2920: with PIPELINING the envelope goes in one round trip.
    let replies = if pipelining {
        // One write for the whole envelope (mail-send's `cmds` writes each command alone).
        let timeout = c.timeout;
        tokio::time::timeout(timeout, async {
            c.stream
                .write_all(cmds.concat().as_bytes())
                .await
                .map_err(|e| format!("{e}"))?;
            c.stream.flush().await.map_err(|e| format!("{e}"))?;
            c.read_many(cmds.len()).await.map_err(|e| format!("{e}"))
        })
        .await
        .map_err(|_| "timeout waiting for the envelope replies".to_string())??
    } else {
        let mut replies = Vec::new();
        for (i, cmd) in cmds.iter().enumerate() {
            let r = c.cmd(cmd).await.map_err(|e| format!("{e}"))?;
            let stop = !(200..300).contains(&r.code) && (i == 0 || i == cmds.len() - 1);
            replies.push(r);
            if stop {
                break;
            }
        }
        replies
    };
    let mail = &replies[0];
    if !(200..300).contains(&mail.code) {
        let failed = RcptResult::from_reply(mail);
        return Ok(rcpts.iter().map(|_| failed.clone()).collect());
    }
    let mut sent = 0;
    let mut results: Vec<RcptResult> = paths
        .iter()
        .map(|path| {
            if path.is_none() {
                return RcptResult::Failed(UNWRITABLE_ADDRESS.into());
            }
            sent += 1;
            match replies.get(sent) {
                Some(r) => RcptResult::from_reply(r),
                None => RcptResult::Deferred("no reply to RCPT".into()),
            }
        })
        .collect();
    let data_reply = replies.get(sendable.len() + 1);
    let accepted = results
        .iter()
        .any(|r| matches!(r, RcptResult::Delivered(_)));
    match data_reply {
        Some(r) if r.code == 354 => {
            if !accepted {
                // A server that answers 354 with no accepted recipient (RFC 2920 §3.1)
                // gets an empty body; it has nobody to deliver it to.
                c.write_message(b"").await.map_err(|e| format!("{e}"))?;
                let _ = tokio::time::timeout(c.timeout, c.read()).await;
                return Ok(results);
            }
            let final_reply = tokio::time::timeout(c.timeout, async {
                for piece in dot_stuffed_pieces(body, DATA_PIECE_BYTES) {
                    c.stream
                        .write_all(&piece)
                        .await
                        .map_err(|e| format!("{e}"))?;
                }
                c.stream.flush().await.map_err(|e| format!("{e}"))?;
                c.read().await.map_err(|e| format!("{e}"))
            })
            .await
            .map_err(|_| "timeout waiting for the reply to the end of DATA".to_string())??;
            let outcome = RcptResult::from_reply(&final_reply);
            for r in results.iter_mut() {
                if matches!(r, RcptResult::Delivered(_)) {
                    *r = outcome.clone();
                }
            }
        }
        Some(r) => {
            let outcome = RcptResult::from_reply(r);
            for res in results.iter_mut() {
                if matches!(res, RcptResult::Delivered(_)) {
                    *res = match &outcome {
                        RcptResult::Delivered(t) => {
                            RcptResult::Deferred(format!("unexpected reply to DATA: {t}"))
                        }
                        o => o.clone(),
                    };
                }
            }
        }
        None => {}
    }
    Ok(results)
}

/// Bytes of the body stuffed and written at a time.
const DATA_PIECE_BYTES: usize = 256 * 1024;

/// The DATA payload in one buffer (one write): lines starting with "." get another ".",
/// a missing final CRLF is added, and the terminating ".\r\n" follows (RFC 5321 §4.5.2).
pub fn dot_stuffed(body: &[u8]) -> Vec<u8> {
    dot_stuffed_pieces(body, usize::MAX).flatten().collect()
}

/// The same payload in pieces of about `piece` bytes, each ending at a line end (a longer
/// line is one piece), so that sending a large body never copies it whole.
pub fn dot_stuffed_pieces(body: &[u8], piece: usize) -> impl Iterator<Item = Vec<u8>> + '_ {
    let mut start: usize = 0;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let end = match body.get(start.saturating_add(piece)..) {
            Some(after) if !after.is_empty() => memchr::memchr(b'\n', after)
                .map_or(body.len(), |i| start.saturating_add(piece) + i + 1),
            _ => body.len(),
        };
        let lines = &body[start..end];
        let mut out = Vec::with_capacity(lines.len() + 16);
        // Every piece begins at a line start.
        let mut rest = lines;
        if rest.first() == Some(&b'.') {
            out.push(b'.');
        }
        // Copy up to and including each "\n" that is followed by a dot, then add the stuffing.
        while let Some(i) = memchr::memmem::find(rest, b"\n.") {
            out.extend_from_slice(&rest[..=i]);
            out.push(b'.');
            rest = &rest[i + 1..];
        }
        out.extend_from_slice(rest);
        start = end;
        if start == body.len() {
            done = true;
            if !body.is_empty() && !body.ends_with(b"\r\n") {
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b".\r\n");
        }
        Some(out)
    })
}

/// How much TLS a delivery needs (`[[tls_policy]]` of the recipient domain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsNeed {
    /// RFC 7435: STARTTLS when offered, any certificate; plaintext when the handshake fails.
    Opportunistic,
    /// STARTTLS or nothing (any certificate).
    Required,
    /// STARTTLS with a certificate that verifies and names the host.
    Verified,
}

impl TlsNeed {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsNeed::Opportunistic => "opportunistic",
            TlsNeed::Required => "tls",
            TlsNeed::Verified => "verified-tls",
        }
    }
}

/// Opens connections to next hops.
pub struct Connector {
    pub helo: String,
    pub connect_timeout: Duration,
    pub reply_timeout: Duration,
    /// Accepts any certificate: opportunistic TLS (refusing a certificate would only mean
    /// sending in clear) and `require_tls` without `require_verified_cert`.
    pub tls_any: TlsConnector,
    /// Verifies the server's chain (system roots + `outbound_tls_ca`) and name.
    pub tls_verified: TlsConnector,
}

/// System roots plus the PEM certificates of `extra_ca`.
fn verifying_connector(extra_ca: Option<&std::path::Path>) -> anyhow::Result<TlsConnector> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        // A system store may hold certificates rustls cannot use; skip those, as browsers do.
        let _ = roots.add(cert);
    }
    if let Some(path) = extra_ca {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| {
                anyhow::anyhow!("key `outbound_tls_ca`: cannot read {}: {e}", path.display())
            })?
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("key `outbound_tls_ca`: {}: {e}", path.display()))?;
        if certs.is_empty() {
            anyhow::bail!(
                "key `outbound_tls_ca`: no PEM certificate in {}",
                path.display()
            );
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| anyhow::anyhow!("key `outbound_tls_ca`: {}: {e}", path.display()))?;
        }
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

impl Connector {
    pub fn new(
        helo: String,
        connect_timeout: Duration,
        reply_timeout: Duration,
        extra_ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Connector> {
        let tls_any = mail_send::smtp::tls::build_tls_connector(true)
            .map_err(|e| anyhow::anyhow!("TLS client setup: {e}"))?;
        Ok(Connector {
            helo,
            connect_timeout,
            reply_timeout,
            tls_any,
            tls_verified: verifying_connector(extra_ca)?,
        })
    }

    /// Connect, read the greeting, EHLO, and upgrade with STARTTLS as `need` says.
    /// Opportunistic: when the handshake fails the connection is retried in clear. Required
    /// or verified: no STARTTLS, or a failed handshake or verification, is an error whose
    /// text names the policy (the recipients are deferred with it, and bounced with it
    /// after the queue's max age).
    pub async fn connect(
        &self,
        addr: SocketAddr,
        tls_name: &str,
        need: TlsNeed,
    ) -> Result<Connection, String> {
        match self.connect_once(addr, tls_name, need, true).await {
            Err(e) if e.starts_with("TLS") && need == TlsNeed::Opportunistic => {
                tracing::info!(peer = %addr, error = %e, "STARTTLS failed; retrying without TLS");
                self.connect_once(addr, tls_name, need, false).await
            }
            r => r,
        }
    }

    async fn connect_once(
        &self,
        addr: SocketAddr,
        tls_name: &str,
        need: TlsNeed,
        try_tls: bool,
    ) -> Result<Connection, String> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| format!("connect to {addr} timed out"))?
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let mut client = SmtpClient {
            stream: tcp,
            timeout: self.reply_timeout,
        };
        let greeting = client
            .read()
            .await
            .map_err(|e| format!("greeting from {addr}: {e}"))?;
        if !(200..300).contains(&greeting.code) {
            return Err(format!("{addr} greeted with {}", reply_text(&greeting)));
        }
        let ehlo = client
            .ehlo(&self.helo)
            .await
            .map_err(|e| format!("EHLO to {addr}: {e}"))?;
        if need != TlsNeed::Opportunistic && !ehlo.has_capability(EXT_START_TLS) {
            return Err(format!(
                "policy requires TLS ({}), but {tls_name} ({addr}) does not offer STARTTLS",
                need.as_str()
            ));
        }
        if try_tls && ehlo.has_capability(EXT_START_TLS) {
            let (connector, name) = match need {
                // The name checked is the host we meant to reach (MX or next hop name; an
                // IP literal must be in the certificate's IP addresses).
                TlsNeed::Verified => (&self.tls_verified, tls_name),
                _ if tls_name.parse::<std::net::IpAddr>().is_ok() => (&self.tls_any, "localhost"),
                _ => (&self.tls_any, tls_name),
            };
            let mut tls = client.start_tls(connector, name).await.map_err(|e| {
                if need == TlsNeed::Opportunistic {
                    format!("TLS with {addr}: {e}")
                } else {
                    format!(
                        "policy requires {}, but TLS with {tls_name} ({addr}) failed: {e}",
                        need.as_str()
                    )
                }
            })?;
            let ehlo = tls
                .ehlo(&self.helo)
                .await
                .map_err(|e| format!("EHLO after TLS to {addr}: {e}"))?;
            return Ok(Connection {
                pipelining: ehlo.has_capability(EXT_PIPELINING),
                inner: Inner::Tls(Box::new(tls)),
                peer: addr,
            });
        }
        debug_assert_eq!(
            need,
            TlsNeed::Opportunistic,
            "plaintext only when opportunistic"
        );
        Ok(Connection {
            pipelining: ehlo.has_capability(EXT_PIPELINING),
            inner: Inner::Plain(client),
            peer: addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::dot_stuffed;

    #[test]
    fn dot_stuffing_and_termination() {
        assert_eq!(
            dot_stuffed(b"a\r\n.b\r\n..c\r\n"),
            b"a\r\n..b\r\n...c\r\n.\r\n"
        );
        assert_eq!(dot_stuffed(b".x"), b"..x\r\n.\r\n");
        assert_eq!(dot_stuffed(b"no crlf"), b"no crlf\r\n.\r\n");
        assert_eq!(dot_stuffed(b""), b".\r\n");
    }

    #[test]
    fn pieces_make_the_same_payload_whatever_their_size() {
        let bodies: [&[u8]; 6] = [
            b"a\r\n.b\r\n..c\r\n",
            b".x\r\n.\r\n.\r\nend",
            b"no crlf",
            b"",
            b"\r\n.\r\n\r\n.",
            b"long line without breaks and then\r\n.dot\r\n",
        ];
        for body in bodies {
            let whole = dot_stuffed(body);
            for piece in [0, 1, 2, 3, 5, 8, 1000] {
                let pieces: Vec<Vec<u8>> = super::dot_stuffed_pieces(body, piece).collect();
                assert_eq!(pieces.concat(), whole, "{body:?} in pieces of {piece}");
                assert!(pieces.len() <= body.len() + 1);
            }
        }
    }
}
