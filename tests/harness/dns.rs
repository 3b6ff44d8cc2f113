//! A real DNS server on loopback for the tests: dnsmasq (Debian package `dnsmasq-base`).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Dns {
    pub addr: SocketAddr,
    child: Child,
}

impl Dns {
    /// Serve `args` (dnsmasq record options such as `--mx-host=...`) authoritatively for
    /// `.test`; every other `.test` name is NXDOMAIN.
    pub fn start(records: &[String]) -> Dns {
        Dns::start_on(super::free_port(), records)
    }

    /// The same on a given port (a server that comes back where it was).
    pub fn start_on(port: u16, records: &[String]) -> Dns {
        let child = Command::new("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                "--local=/test/",
                "--user=root",
                "--pid-file=",
                &format!("--port={port}"),
            ])
            .args(records)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start dnsmasq ({e}); install it: apt-get install dnsmasq-base")
            });
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut dns = Dns { addr, child };
        dns.wait_ready();
        dns
    }

    /// dnsmasq serves TCP too: ready once the port accepts connections.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.addr).is_err() {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("dnsmasq exited with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "dnsmasq did not start within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A dnsmasq option serving `text` as the TXT record of `name`, split into the 255-byte
/// character-strings DNS needs (a DKIM RSA-2048 key is longer); resolvers join them.
/// dnsmasq separates the strings at commas (quotes are literal outside its config file),
/// so `text` must not contain one.
pub fn txt(name: &str, text: &str) -> String {
    assert!(
        !text.contains(','),
        "dnsmasq TXT text cannot hold a comma: {text}"
    );
    let chunks: Vec<&str> = text
        .as_bytes()
        .chunks(255)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!("--txt-record={name},{}", chunks.join(","))
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
