//! One clamd connection in IDSESSION mode: several INSTREAM scans, one after the other,
//! over the same socket.
//!
//! Why not a connection per scan (what clamav-client's `scan_buffer` does): each scan
//! then costs a socket, a connect, an accept in clamd and a close on both sides, and the
//! crate zeroes a 64 KiB buffer and copies the message through it. Here a request is one
//! vectored write straight from the message buffer.
//!
//! Protocol (clamd(8)): after `zIDSESSION\0`, each command's reply is `<n>: <reply>\0`, n
//! counting requests from 1. We keep one request outstanding per session, which is what
//! clamd requires of a client that does not poll for replies while it sends.

use std::io::{self, IoSlice};
use std::path::Path;
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// INSTREAM chunk size. clamd only limits the stream's total (StreamMaxLength); 64 KiB
/// keeps a typical message in one chunk.
pub const CHUNK: usize = 64 * 1024;

/// A reply longer than this is not clamd talking (a virus name is well under 1 KiB).
const MAX_REPLY: usize = 64 * 1024;

trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

pub struct Session {
    stream: Box<dyn Duplex>,
    /// Requests sent on this session; clamd numbers its replies the same way.
    requests: u64,
    pub last_used: Instant,
}

impl Session {
    pub async fn open_tcp(addr: &str) -> io::Result<Session> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        Session::start(Box::new(s)).await
    }

    pub async fn open_unix(path: &Path) -> io::Result<Session> {
        Session::start(Box::new(UnixStream::connect(path).await?)).await
    }

    async fn start(mut stream: Box<dyn Duplex>) -> io::Result<Session> {
        stream.write_all(b"zIDSESSION\0").await?;
        Ok(Session {
            stream,
            requests: 0,
            last_used: Instant::now(),
        })
    }

    /// Stream `data` with INSTREAM and return clamd's reply without the `<n>: ` prefix
    /// and the terminating NUL. An error leaves the session unusable.
    pub async fn instream(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        self.requests += 1;
        let lengths: Vec<[u8; 4]> = data
            .chunks(CHUNK)
            .map(|c| (c.len() as u32).to_be_bytes())
            .collect();
        let mut slices = Vec::with_capacity(2 * lengths.len() + 2);
        slices.push(IoSlice::new(b"zINSTREAM\0"));
        for (len, chunk) in lengths.iter().zip(data.chunks(CHUNK)) {
            slices.push(IoSlice::new(len));
            slices.push(IoSlice::new(chunk));
        }
        slices.push(IoSlice::new(&[0, 0, 0, 0]));
        write_all_vectored(&mut self.stream, &mut slices).await?;
        let reply = self.read_reply().await?;
        self.last_used = Instant::now();
        strip_request_id(&reply, self.requests)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "reply {:?} is not for request {}",
                        String::from_utf8_lossy(&reply),
                        self.requests
                    ),
                )
            })
    }

    /// Read up to the NUL that ends a reply (one request is outstanding, so nothing
    /// follows it).
    async fn read_reply(&mut self) -> io::Result<Vec<u8>> {
        let mut reply = Vec::with_capacity(64);
        let mut buf = [0u8; 512];
        loop {
            let n = self.stream.read(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "clamd closed the connection before answering",
                ));
            }
            reply.extend_from_slice(&buf[..n]);
            if let Some(end) = reply.iter().position(|&b| b == 0) {
                reply.truncate(end);
                return Ok(reply);
            }
            if reply.len() > MAX_REPLY {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "clamd's reply has no end",
                ));
            }
        }
    }
}

/// "3: stream: OK" → "stream: OK" when 3 is the request we sent.
fn strip_request_id(reply: &[u8], request: u64) -> Option<&[u8]> {
    let colon = reply.iter().position(|&b| b == b':')?;
    let id: u64 = std::str::from_utf8(&reply[..colon]).ok()?.parse().ok()?;
    (id == request).then(|| reply[colon + 1..].trim_ascii_start())
}

async fn write_all_vectored(
    w: &mut (impl AsyncWrite + Unpin + ?Sized),
    mut slices: &mut [IoSlice<'_>],
) -> io::Result<()> {
    while !slices.is_empty() {
        let n = w.write_vectored(slices).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut slices, n);
    }
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::UnixListener;

    #[test]
    fn reply_ids_must_match_the_request() {
        assert_eq!(
            strip_request_id(b"1: stream: OK", 1),
            Some(&b"stream: OK"[..])
        );
        assert_eq!(strip_request_id(b"2: stream: OK", 1), None);
        assert_eq!(strip_request_id(b"stream: OK", 1), None);
        assert_eq!(
            strip_request_id(b"12: INSTREAM size limit exceeded. ERROR", 12),
            Some(&b"INSTREAM size limit exceeded. ERROR"[..])
        );
    }

    /// An in-memory stand-in for clamd's IDSESSION framing: decodes the chunks it gets and
    /// answers with the stream's length, so the test sees exactly what arrived.
    async fn fake_clamd(listener: UnixListener) {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut cmd = [0u8; 11];
        s.read_exact(&mut cmd).await.unwrap();
        assert_eq!(&cmd, b"zIDSESSION\0");
        for n in 1.. {
            let mut cmd = [0u8; 10];
            if s.read_exact(&mut cmd).await.is_err() {
                return;
            }
            assert_eq!(&cmd, b"zINSTREAM\0");
            let mut total = Vec::new();
            loop {
                let len = s.read_u32().await.unwrap() as usize;
                assert!(len <= CHUNK);
                if len == 0 {
                    break;
                }
                let mut chunk = vec![0; len];
                s.read_exact(&mut chunk).await.unwrap();
                total.extend_from_slice(&chunk);
            }
            let sum: u64 = total.iter().map(|&b| b as u64).sum();
            let reply = format!("{n}: stream: {} {sum} FOUND\0", total.len());
            s.write_all(reply.as_bytes()).await.unwrap();
        }
    }

    #[tokio::test]
    async fn requests_are_framed_in_chunks_and_replies_numbered() {
        let dir = std::env::temp_dir().join(format!("pc-clamd-session-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let server = tokio::spawn(fake_clamd(UnixListener::bind(&path).unwrap()));
        let mut session = Session::open_unix(&path).await.unwrap();
        let big: Vec<u8> = (0..3 * CHUNK + 5).map(|i| (i % 251) as u8).collect();
        for data in [&b"hello"[..], &big[..], &[][..]] {
            let s: u64 = data.iter().map(|&b| b as u64).sum();
            let reply = session.instream(data).await.unwrap();
            assert_eq!(
                reply,
                format!("stream: {} {s} FOUND", data.len()).as_bytes()
            );
        }
        drop(session);
        server.await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
