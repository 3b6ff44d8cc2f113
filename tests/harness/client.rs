//! An SMTP client DSL for tests: `c.cmd("EHLO x", 250).await`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream};

pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Client {
    pub stream: BufReader<Box<dyn Io>>,
}

/// One reply: code and all its lines joined.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let s = TcpStream::connect(addr).await.expect("connect to gateway");
        Client {
            stream: BufReader::new(Box::new(s)),
        }
    }

    pub async fn connect_from(addr: SocketAddr, from: IpAddr) -> Client {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(SocketAddr::new(from, 0)).unwrap();
        let s = sock.connect(addr).await.expect("connect to gateway");
        Client {
            stream: BufReader::new(Box::new(s)),
        }
    }

    /// Connect and read the 220 greeting.
    pub async fn greeted(addr: SocketAddr) -> Client {
        let mut c = Client::connect(addr).await;
        c.expect(220).await;
        c
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream
            .get_mut()
            .write_all(bytes)
            .await
            .expect("write to gateway");
        self.stream.get_mut().flush().await.unwrap();
    }

    /// Read one (possibly multi-line) reply; None on EOF.
    pub async fn read_reply(&mut self) -> Option<Reply> {
        let mut text = String::new();
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(Duration::from_secs(30), self.stream.read_line(&mut line))
                .await
                .expect("reply within 30 s")
                .ok()?;
            if n == 0 {
                return None;
            }
            assert!(line.len() >= 4, "short reply line {line:?}");
            text.push_str(&line);
            if line.as_bytes()[3] == b' ' {
                let code = line[..3].parse().expect("numeric reply code");
                return Some(Reply { code, text });
            }
        }
    }

    pub async fn expect(&mut self, code: u16) -> Reply {
        let r = self.read_reply().await.expect("a reply, got EOF");
        assert_eq!(r.code, code, "expected {code}, got {:?}", r.text);
        r
    }

    /// Send a command line and expect a reply code.
    pub async fn cmd(&mut self, line: &str, code: u16) -> Reply {
        self.send_raw(format!("{line}\r\n").as_bytes()).await;
        self.expect(code).await
    }

    /// EHLO + MAIL + RCPTs, each expected to succeed.
    pub async fn envelope(&mut self, from: &str, rcpts: &[&str]) {
        self.cmd("EHLO client.test", 250).await;
        self.cmd(&format!("MAIL FROM:<{from}>"), 250).await;
        for r in rcpts {
            self.cmd(&format!("RCPT TO:<{r}>"), 250).await;
        }
    }

    /// DATA with a message (dot-stuffed here); returns the final reply.
    pub async fn data(&mut self, message: &str) -> Reply {
        self.cmd("DATA", 354).await;
        let mut stuffed = String::new();
        for line in message.split_inclusive("\r\n") {
            if line.starts_with('.') {
                stuffed.push('.');
            }
            stuffed.push_str(line);
        }
        if !stuffed.ends_with("\r\n") {
            stuffed.push_str("\r\n");
        }
        stuffed.push_str(".\r\n");
        self.send_raw(stuffed.as_bytes()).await;
        self.read_reply().await.expect("reply to end of DATA")
    }

    /// A whole transaction on a fresh greeting; returns the final reply.
    pub async fn send_message(&mut self, from: &str, rcpts: &[&str], message: &str) -> Reply {
        self.expect(220).await;
        self.envelope(from, rcpts).await;
        self.data(message).await
    }

    /// True when the server closed the connection.
    pub async fn closed(&mut self) -> bool {
        let mut line = String::new();
        matches!(
            tokio::time::timeout(Duration::from_secs(10), self.stream.read_line(&mut line)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}
