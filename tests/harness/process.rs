//! The gateway as an operating-system process: pid and memory use (Linux /proc).

use super::Gateway;

impl Gateway {
    /// Process id of the running gateway.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("gateway is running").id()
    }

    /// A field of /proc/PID/status in KiB, e.g. "VmRSS" or "VmHWM" (peak resident set).
    pub fn proc_status_kib(&self, field: &str) -> u64 {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        status
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{field}:")))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in {path}:\n{status}"))
    }
}

impl Gateway {
    /// The `portcullis_smtp_connections_active` gauge from the metrics endpoint.
    pub fn active_connections(&self) -> i64 {
        let text = self.metrics_text();
        text.lines()
            .find_map(|l| {
                let mut it = l.split_whitespace();
                (it.next() == Some("portcullis_smtp_connections_active"))
                    .then(|| it.next().and_then(|v| v.parse::<f64>().ok()))
                    .flatten()
            })
            .unwrap_or_else(|| panic!("no portcullis_smtp_connections_active in metrics:\n{text}"))
            as i64
    }

    /// Wait until no SMTP session is open: `Gateway::start` makes a connection to see
    /// that the gateway listens, and that session may still count against connection
    /// limits for a moment.
    pub async fn wait_no_sessions(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while self.active_connections() != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "sessions still open 10 s after start:\n{}",
                self.log()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Gateway {
    /// SIGTERM, as an init system stops the service.
    pub fn send_sigterm(&self) {
        let pid = self.pid().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -TERM {pid} failed");
    }

    /// SIGHUP, as `systemctl reload` does: the gateway re-reads its config file.
    pub fn send_sighup(&self) {
        let pid = self.pid().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(sent.success(), "kill -HUP {pid} failed");
    }

    /// SIGTERM (again), then wait for the exit and return its status.
    pub fn terminate_and_wait(&mut self, secs: u64) -> std::process::ExitStatus {
        self.send_sigterm();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "gateway did not exit within {secs} s of SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
