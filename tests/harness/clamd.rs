//! A real clamd for the tests (Debian package `clamav-daemon`), with a tiny signature
//! database that knows only the EICAR test file. No freshclam, no network.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The EICAR test string, built from two pieces so no file of ours is itself "infected".
pub fn eicar() -> String {
    let a = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$";
    let b = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
    format!("{a}{b}")
}

pub struct Clamd {
    pub dir: tempfile::TempDir,
    _tmp: tempfile::TempDir,
    pub port: u16,
    pub socket: PathBuf,
    child: Option<Child>,
}

impl Clamd {
    pub fn start() -> Clamd {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db");
        std::fs::create_dir(&db).unwrap();
        let body_hex: String = "EICAR-STANDARD-ANTIVIRUS-TEST-FILE!"
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        std::fs::write(
            db.join("eicar.ndb"),
            format!("Eicar-Test-Body:0:*:{body_hex}\n"),
        )
        .unwrap();
        // tmpfs for clamd's temporary files: INSTREAM is ~2.7x faster than on disk
        let tmp = tempfile::Builder::new()
            .prefix("clamd-tmp")
            .tempdir_in("/dev/shm")
            .unwrap();
        let port = super::free_port();
        let socket = dir.path().join("clamd.sock");
        let conf = dir.path().join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "Foreground yes\nDatabaseDirectory {}\nTemporaryDirectory {}\nLocalSocket {}\nFixStaleSocket yes\n\
                 TCPSocket {port}\nTCPAddr 127.0.0.1\nLogFile {}\nScanMail yes\nScanArchive yes\nScanHTML yes\n\
                 StreamMaxLength 10M\nMaxScanSize 100M\nMaxFileSize 50M\nSelfCheck 0\nBytecode no\nMaxThreads 4\n",
                db.display(),
                tmp.path().display(),
                socket.display(),
                dir.path().join("clamd.log").display()
            ),
        )
        .unwrap();
        let child = Command::new("clamd")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start clamd ({e}); install it: apt-get install clamav-daemon")
            });
        let mut c = Clamd {
            dir,
            _tmp: tmp,
            port,
            socket,
            child: Some(child),
        };
        c.wait_ready();
        c
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn wait_ready(&mut self) {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"zPING\0");
                let mut buf = [0u8; 5];
                if s.read_exact(&mut buf).is_ok() && &buf == b"PONG\0" {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                let log =
                    std::fs::read_to_string(self.dir.path().join("clamd.log")).unwrap_or_default();
                panic!("clamd exited with {status}; its log:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "clamd did not answer PING within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stop clamd now (kill), as if it crashed.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `[clamav]` config for the gateway, over TCP (or the Unix socket).
    pub fn config(&self, unix: bool) -> String {
        let endpoint = if unix {
            format!("socket = \"{}\"", self.socket.display())
        } else {
            format!("address = \"{}\"", self.address())
        };
        format!(
            "[clamav]\nenabled = true\n{endpoint}\nscan_timeout_secs = 5\nconnect_timeout_ms = 500\nhealth_interval_secs = 1\n"
        )
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.stop();
    }
}
