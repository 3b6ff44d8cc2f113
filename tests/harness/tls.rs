//! TLS for tests: the client side of STARTTLS (openssl, any server certificate accepted),
//! gateways with a chosen listener TLS mode, and locating external tools such as swaks.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::Pin;

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use tokio::io::BufReader;

use super::{Client, Gateway, client::Io, config_text, free_port};

/// What the client saw of a finished handshake.
#[derive(Debug, Clone)]
pub struct TlsInfo {
    /// e.g. "TLSv1.3"
    pub version: String,
    pub cipher: String,
    /// The server certificate's subject CN, if any.
    pub peer_cn: Option<String>,
}

impl Client {
    /// Run the TLS handshake on the connection as it is now (the caller has sent STARTTLS
    /// and read its 220). Panics when the handshake fails, or when the server sent bytes
    /// after the 220 that the client already buffered (they would be plaintext injected
    /// ahead of TLS).
    pub async fn start_tls(&mut self) -> TlsInfo {
        self.try_start_tls()
            .await
            .unwrap_or_else(|e| panic!("TLS handshake with the gateway failed: {e}"))
    }

    /// As [`Client::start_tls`], but a failed handshake is an error, not a panic.
    pub async fn try_start_tls(&mut self) -> Result<TlsInfo, String> {
        let placeholder: Box<dyn Io> = Box::new(tokio::io::duplex(1).0);
        let old = std::mem::replace(&mut self.stream, BufReader::new(placeholder));
        assert!(
            old.buffer().is_empty(),
            "server sent plaintext after the STARTTLS reply: {:?}",
            String::from_utf8_lossy(old.buffer())
        );
        let inner = old.into_inner();
        let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
        // The gateway's certificate is self-signed: accept it, as opportunistic SMTP does.
        b.set_verify(SslVerifyMode::NONE);
        let ssl = b
            .build()
            .configure()
            .map_err(|e| e.to_string())?
            .verify_hostname(false)
            .into_ssl("gw.portcullis.test")
            .map_err(|e| e.to_string())?;
        let mut s = tokio_openssl::SslStream::new(ssl, inner).map_err(|e| e.to_string())?;
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            Pin::new(&mut s).connect(),
        )
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| e.to_string())?;
        let ssl = s.ssl();
        let info = TlsInfo {
            version: ssl.version_str().to_string(),
            cipher: ssl
                .current_cipher()
                .map(|c| c.name().to_string())
                .unwrap_or_default(),
            peer_cn: ssl.peer_certificate().and_then(|c| {
                c.subject_name()
                    .entries_by_nid(openssl::nid::Nid::COMMONNAME)
                    .next()
                    .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
            }),
        };
        self.stream = BufReader::new(Box::new(s));
        Ok(info)
    }

    /// STARTTLS (expecting 220) and the handshake.
    pub async fn starttls(&mut self) -> TlsInfo {
        let r = self.cmd("STARTTLS", 220).await;
        assert!(r.text.contains("2.0.0"), "{}", r.text);
        self.start_tls().await
    }
}

impl Gateway {
    /// Start with a config made by `make(data dir, smtp port, metrics port)`.
    pub fn start_custom(make: impl FnOnce(&Path, u16, u16) -> String) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let smtp_port = free_port();
        let metrics_port = free_port();
        let config_path = dir.path().join("portcullis.toml");
        std::fs::write(&config_path, make(dir.path(), smtp_port, metrics_port)).unwrap();
        let mut gw = Gateway {
            dir,
            smtp: format!("127.0.0.1:{smtp_port}").parse().unwrap(),
            metrics: format!("127.0.0.1:{metrics_port}").parse().unwrap(),
            config_path,
            child: None,
        };
        gw.spawn();
        gw
    }

    /// The base config (see [`config_text`]) with the listener's `tls` set to `tls_mode`
    /// ("none", "starttls" or "required").
    pub fn start_with_tls_mode(next_hop: SocketAddr, tls_mode: &str, extra: &str) -> Gateway {
        let mode = tls_mode.to_string();
        let extra = extra.to_string();
        Gateway::start_custom(move |dir, smtp, metrics| {
            let text = config_text(dir, smtp, metrics, next_hop, &extra);
            let from = "tls = \"starttls\"\n";
            assert_eq!(text.matches(from).count(), 1, "config_text changed shape");
            text.replacen(from, &format!("tls = \"{mode}\"\n"), 1)
        })
    }

    /// The self-signed certificate the gateway made for its listener (PEM).
    pub fn self_signed_cert_path(&self) -> std::path::PathBuf {
        self.data_dir().join("tls").join("selfsigned-cert.pem")
    }
}

/// Path of an external tool, or a panic saying how to install it.
pub fn require_tool(name: &str, package: &str) -> std::path::PathBuf {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .expect("run sh");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && !path.is_empty(),
        "`{name}` is required by this test but is not installed: run `apt-get install {package}`"
    );
    path.into()
}

/// Run swaks (an independent SMTP client) with `args`; (exit code, stdout + stderr).
pub async fn swaks(args: Vec<String>) -> (i32, String) {
    let swaks = require_tool("swaks", "swaks");
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(swaks)
            .args(&args)
            .output()
            .expect("run swaks");
        (
            out.status.code().unwrap_or(-1),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    })
    .await
    .unwrap()
}

/// swaks arguments for one message to u@example.test through `gw`, plus `extra`.
pub fn swaks_args(gw: &Gateway, helo: &str, from: &str, extra: &[&str]) -> Vec<String> {
    let server = gw.smtp.to_string();
    let base = [
        "--server",
        &server,
        "--helo",
        helo,
        "--from",
        from,
        "--to",
        "u@example.test",
        "--timeout",
        "10",
    ];
    base.iter().chain(extra).map(|s| s.to_string()).collect()
}

/// Certificates made with the openssl command line in `dir`: a test CA `ca.crt`/`ca.key`
/// (CN `ca_cn`), a certificate it signed `{leaf}.crt`/`{leaf}.key` (CN `cn`, the given
/// subjectAltName and extendedKeyUsage, e.g. "DNS:mx.partner.test" and "clientAuth"), and a
/// self-signed one with the same names, `self.crt`/`self.key`.
pub fn make_certs(dir: &Path, ca_cn: &str, leaf: &str, cn: &str, san: &str, eku: &str) {
    let openssl = require_tool("openssl", "openssl");
    // `args` split at spaces; `subj` separately (it may hold spaces)
    let run = |args: &str, subj: Option<&str>| {
        let mut cmd = std::process::Command::new(&openssl);
        cmd.args(args.split_whitespace()).current_dir(dir);
        if let Some(subj) = subj {
            cmd.args(["-subj", subj]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let new_key = "-newkey rsa:2048 -nodes -days 2";
    let subj = format!("/CN={cn}");
    run(
        &format!("req -x509 {new_key} -keyout ca.key -out ca.crt"),
        Some(&format!("/CN={ca_cn}")),
    );
    run(
        &format!("req -newkey rsa:2048 -nodes -keyout {leaf}.key -out {leaf}.csr"),
        Some(&subj),
    );
    std::fs::write(
        dir.join("ext.cnf"),
        format!("subjectAltName={san}\nextendedKeyUsage={eku}\n"),
    )
    .unwrap();
    run(
        &format!(
            "x509 -req -in {leaf}.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out {leaf}.crt -days 2 -extfile ext.cnf"
        ),
        None,
    );
    run(
        &format!("req -x509 {new_key} -keyout self.key -out self.crt -addext subjectAltName={san}"),
        Some(&subj),
    );
}
