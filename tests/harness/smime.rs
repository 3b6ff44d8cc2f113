//! S/MIME peers for the interop tests: a test PKI made with the `openssl` CLI at test time
//! (no committed keys), `openssl cms` and `gpgsm` (with its own temporary GNUPGHOME) as
//! independent implementations, and a little MIME cutting that does not use ours.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const PASSWORD: &str = "interop-secret";

/// Run `openssl ARGS` with `stdin`; its stdout, after asserting it succeeded.
pub fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let (ok, out, err) = run("openssl", args, stdin, &[]);
    assert!(
        ok,
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&err)
    );
    out
}

/// (success, stdout, stderr) of a command; a missing tool fails with its Debian package.
pub fn run(
    tool: &str,
    args: &[&str],
    stdin: &[u8],
    env: &[(&str, &Path)],
) -> (bool, Vec<u8>, Vec<u8>) {
    use std::io::Write;
    let mut cmd = Command::new(tool);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot run `{tool}` ({e}): install the Debian package `{tool}` (bash .ci/install-deps)"
        )
    });
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    (out.status.success(), out.stdout, out.stderr)
}

/// One certificate holder's files.
pub struct Holder {
    pub email: String,
    pub cert: PathBuf,
    pub key: PathBuf,
    /// PKCS#12 with key and certificate: 3DES-protected key, clear certificate bag (the
    /// format gpgsm 2.2 imports; OpenSSL 3's AES default it cannot read).
    pub p12: PathBuf,
    /// A file holding [`PASSWORD`].
    pub password_file: PathBuf,
}

pub struct TestPki {
    pub dir: tempfile::TempDir,
    serial: std::cell::Cell<u32>,
}

impl TestPki {
    pub fn new(name: &str) -> TestPki {
        let dir = tempfile::tempdir().unwrap();
        let p = |f: &str| dir.path().join(f).to_str().unwrap().to_string();
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &p("ca.key"),
                "-out",
                &p("ca.pem"),
                "-days",
                "30",
                "-subj",
                &format!("/O=Portcullis Interop/CN={name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
            b"",
        );
        std::fs::write(dir.path().join("password"), format!("{PASSWORD}\n")).unwrap();
        TestPki {
            dir,
            serial: std::cell::Cell::new(100),
        }
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    pub fn ca(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A user certificate (S/MIME key usages, the address in subjectAltName).
    pub fn holder(&self, email: &str) -> Holder {
        self.issue(email, "30")
    }

    /// A certificate that expired yesterday.
    pub fn expired_holder(&self, email: &str) -> Holder {
        self.issue(email, "-1")
    }

    fn issue(&self, email: &str, days: &str) -> Holder {
        let p = |f: &str| self.path(f).to_str().unwrap().to_string();
        let serial = self.serial.get();
        self.serial.set(serial + 1);
        let (key, csr, cert, ext, p12) = (
            p(&format!("{email}.key")),
            p(&format!("{email}.csr")),
            p(&format!("{email}.pem")),
            p(&format!("{email}.ext")),
            p(&format!("{email}.p12")),
        );
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &key,
                "-out",
                &csr,
                "-subj",
                &format!("/CN={email}"),
            ],
            b"",
        );
        std::fs::write(
            &ext,
            format!(
                "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
                 extendedKeyUsage=emailProtection\nsubjectAltName=email:{email}\n"
            ),
        )
        .unwrap();
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &p("ca.pem"),
                "-CAkey",
                &p("ca.key"),
                "-set_serial",
                &serial.to_string(),
                "-days",
                days,
                "-extfile",
                &ext,
                "-out",
                &cert,
            ],
            b"",
        );
        openssl(
            &[
                "pkcs12",
                "-export",
                "-certpbe",
                "NONE",
                "-keypbe",
                "PBE-SHA1-3DES",
                "-macalg",
                "sha1",
                "-inkey",
                &key,
                "-in",
                &cert,
                "-out",
                &p12,
                "-passout",
                &format!("pass:{PASSWORD}"),
            ],
            b"",
        );
        Holder {
            email: email.to_string(),
            cert: cert.into(),
            key: key.into(),
            p12: p12.into(),
            password_file: self.path("password"),
        }
    }
}

/// gpgsm with a private home: the test CA trusted, no CRL/OCSP lookups.
pub struct Gpgsm {
    pub home: tempfile::TempDir,
}

impl Gpgsm {
    pub fn new(ca: &Path) -> Gpgsm {
        let home = tempfile::tempdir().unwrap();
        std::fs::write(
            home.path().join("gpg-agent.conf"),
            "allow-loopback-pinentry\n",
        )
        .unwrap();
        std::fs::write(
            home.path().join("gpgsm.conf"),
            "disable-crl-checks\ndisable-policy-checks\n",
        )
        .unwrap();
        let g = Gpgsm { home };
        g.ok(&["--import", ca.to_str().unwrap()], b"");
        let (_, listing, _) = g.run(&["--with-colons", "--list-keys"], b"");
        let fpr = String::from_utf8_lossy(&listing)
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9).map(str::to_string))
            .expect("gpgsm lists the imported CA");
        std::fs::write(
            g.home.path().join("trustlist.txt"),
            format!("{fpr} S relax\n"),
        )
        .unwrap();
        g
    }

    pub fn run(&self, args: &[&str], stdin: &[u8]) -> (bool, Vec<u8>, Vec<u8>) {
        let mut all = vec!["--batch", "--pinentry-mode", "loopback"];
        all.extend_from_slice(args);
        run("gpgsm", &all, stdin, &[("GNUPGHOME", self.home.path())])
    }

    pub fn ok(&self, args: &[&str], stdin: &[u8]) -> Vec<u8> {
        let (ok, out, err) = self.run(args, stdin);
        assert!(
            ok,
            "gpgsm {args:?} failed: {}",
            String::from_utf8_lossy(&err)
        );
        out
    }

    /// Import a PKCS#12 (the passphrase comes on stdin: gpgsm 2.2 ignores --passphrase
    /// for PKCS#12 imports).
    pub fn import_p12(&self, h: &Holder) {
        let out = self.ok(
            &["--passphrase-fd", "0", "--import", h.p12.to_str().unwrap()],
            format!("{PASSWORD}\n").as_bytes(),
        );
        let _ = out;
    }

    /// Decrypt (DER CMS); needs the key's passphrase (the PKCS#12's).
    pub fn decrypt(&self, der: &[u8]) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("in.p7m");
        std::fs::write(&f, der).unwrap();
        self.ok(
            &["--passphrase-fd", "0", "--decrypt", f.to_str().unwrap()],
            format!("{PASSWORD}\n").as_bytes(),
        )
    }

    /// Verify a detached signature over `content`; gpgsm's status text.
    pub fn verify_detached(&self, signature: &[u8], content: &[u8]) -> (bool, String) {
        let dir = tempfile::tempdir().unwrap();
        let (s, c) = (dir.path().join("sig.p7s"), dir.path().join("content"));
        std::fs::write(&s, signature).unwrap();
        std::fs::write(&c, content).unwrap();
        let (ok, _, err) = self.run(&["--verify", s.to_str().unwrap(), c.to_str().unwrap()], b"");
        (ok, String::from_utf8_lossy(&err).into_owned())
    }
}

impl Drop for Gpgsm {
    fn drop(&mut self) {
        // the agent this home started, and only that one
        let _ = Command::new("gpgconf")
            .args(["--kill", "gpg-agent"])
            .env("GNUPGHOME", self.home.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// === MIME cutting, independent of the gateway's own code ===

/// Header block and body of a message or entity (split at the first CRLF CRLF).
pub fn split(m: &[u8]) -> (&[u8], &[u8]) {
    let i = m
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    (&m[..i + 2], &m[i + 4..])
}

/// The base64 body of a single-part entity, decoded.
pub fn base64_body(m: &[u8]) -> Vec<u8> {
    let (_, body) = split(m);
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    openssl(&["base64", "-d", "-A"], text.as_bytes())
}

/// The boundary parameter of the top-level Content-Type.
pub fn boundary(m: &[u8]) -> String {
    let (head, _) = split(m);
    let head = String::from_utf8_lossy(head)
        .replace("\r\n\t", " ")
        .replace("\r\n ", " ");
    let i = head.find("boundary=\"").expect("a quoted boundary") + 10;
    head[i..].split('"').next().unwrap().to_string()
}

/// (signed content, signature DER) of a multipart/signed message.
pub fn signed_parts(m: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let b = boundary(m);
    let (_, body) = split(m);
    let text = body.to_vec();
    let delim = format!("--{b}\r\n");
    let start = find(&text, delim.as_bytes()).expect("first part") + delim.len();
    let mid = format!("\r\n--{b}\r\n");
    let end = start + find(&text[start..], mid.as_bytes()).expect("second part");
    let content = text[start..end].to_vec();
    let sig_start = end + mid.len();
    let close = format!("--{b}--");
    let sig_end = sig_start + find(&text[sig_start..], close.as_bytes()).expect("closing boundary");
    (content, base64_body(&text[sig_start..sig_end]))
}

pub fn find(h: &[u8], n: &[u8]) -> Option<usize> {
    h.windows(n.len()).position(|w| w == n)
}

/// Bare LF → CRLF (what the CLI peers print, made SMTP-ready).
pub use portcullis::smime::mime::to_crlf as crlf;
