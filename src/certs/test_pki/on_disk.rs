//! A throwaway PKI for unit tests: a CA and user certificates made at test time (no
//! committed keys, built by `testpki`), written to a temp dir for the `openssl` CLI, the
//! independent peer.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use openssl::x509::store::{X509Store, X509StoreBuilder};

use super::{self as testpki, UserSpec};

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: X509,
    pub ca_key: PKey<Private>,
    issuer: testpki::Pki,
}

pub struct User {
    pub cert: X509,
    pub key: PKey<Private>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

impl Pki {
    pub fn new(ca_name: &str) -> Pki {
        let issuer = testpki::Pki::named(ca_name);
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca: issuer.ca_cert.clone(),
            ca_key: issuer.ca_key.clone(),
            issuer,
        };
        std::fs::write(pki.ca_path(), pki.ca.to_pem().unwrap()).unwrap();
        pki
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A user certificate for `email`, valid from `from_days` to `to_days` (relative to now;
    /// a negative `to_days` makes an expired certificate).
    pub fn user_valid(&self, email: &str, from_days: i64, to_days: i64) -> User {
        self.issue(UserSpec {
            days: (from_days, to_days),
            ..UserSpec::email(email)
        })
    }

    /// A user certificate with an EC P-256 key.
    pub fn user_ec(&self, email: &str) -> User {
        self.issue(UserSpec {
            ec: true,
            ..UserSpec::email(email)
        })
    }

    /// A user certificate carrying one more extension (e.g. an unknown critical one).
    pub fn user_with(&self, email: &str, extra: openssl::x509::X509Extension) -> User {
        self.issue(UserSpec {
            extra: vec![extra],
            ..UserSpec::email(email)
        })
    }

    pub fn user(&self, email: &str) -> User {
        self.issue(UserSpec::email(email))
    }

    fn issue(&self, spec: UserSpec) -> User {
        let name = spec.cn.to_string();
        let issued = self.issuer.issue(spec);
        let cert_path = self.dir.path().join(format!("{name}.crt"));
        let key_path = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert_path, issued.cert.to_pem().unwrap()).unwrap();
        std::fs::write(&key_path, issued.key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        User {
            cert: issued.cert,
            key: issued.key,
            cert_path,
            key_path,
        }
    }

    pub fn store(&self) -> X509Store {
        let mut b = X509StoreBuilder::new().unwrap();
        b.add_cert(self.ca.clone()).unwrap();
        b.build()
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }
}

/// Run the `openssl` CLI with `stdin` fed from a thread (no deadlock on large output).
fn run_openssl(args: &[&dyn AsRef<std::ffi::OsStr>], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run `openssl` ({e}): install the Debian package `openssl`")
        });
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

/// Run the `openssl` CLI; its stdout, after asserting success.
pub fn openssl(args: &[&dyn AsRef<std::ffi::OsStr>], stdin: &[u8]) -> Vec<u8> {
    let out = run_openssl(args, stdin);
    assert!(
        out.status.success(),
        "openssl {:?} failed: {}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Like [`openssl`] but returns whether it succeeded (for "must fail" checks).
pub fn openssl_ok(args: &[&dyn AsRef<std::ffi::OsStr>], stdin: &[u8]) -> bool {
    run_openssl(args, stdin).status.success()
}
