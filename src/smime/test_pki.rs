//! A throwaway PKI for unit tests: a CA and user certificates made at test time (no
//! committed keys), written to a temp dir for the `openssl` CLI, the independent peer.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::{X509, X509NameBuilder};

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: X509,
    pub ca_key: PKey<Private>,
    serial: std::cell::Cell<u32>,
}

pub struct User {
    pub cert: X509,
    pub key: PKey<Private>,
    pub cert_path: PathBuf,
    pub key_path: PathBuf,
}

fn rsa() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

fn name(cn: &str) -> openssl::x509::X509Name {
    let mut n = X509NameBuilder::new().unwrap();
    n.append_entry_by_text("O", "Portcullis Test").unwrap();
    n.append_entry_by_text("CN", cn).unwrap();
    n.build()
}

impl Pki {
    pub fn new(ca_name: &str) -> Pki {
        let key = rsa();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&Asn1Integer::from_bn(&BigNum::from_u32(1).unwrap()).unwrap())
            .unwrap();
        b.set_subject_name(&name(ca_name)).unwrap();
        b.set_issuer_name(&name(ca_name)).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(365).unwrap())
            .unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .critical()
                .key_cert_sign()
                .crl_sign()
                .build()
                .unwrap(),
        )
        .unwrap();
        let ski = SubjectKeyIdentifier::new()
            .build(&b.x509v3_context(None, None))
            .unwrap();
        b.append_extension(ski).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca: b.build(),
            ca_key: key,
            serial: std::cell::Cell::new(2),
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
        self.issue(email, from_days, to_days, None)
    }

    /// A user certificate carrying one more extension (e.g. an unknown critical one).
    pub fn user_with(&self, email: &str, extra: openssl::x509::X509Extension) -> User {
        self.issue(email, -1, 365, Some(extra))
    }

    fn issue(
        &self,
        email: &str,
        from_days: i64,
        to_days: i64,
        extra: Option<openssl::x509::X509Extension>,
    ) -> User {
        let key = rsa();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        let serial = self.serial.get();
        self.serial.set(serial + 1);
        b.set_serial_number(&Asn1Integer::from_bn(&BigNum::from_u32(serial).unwrap()).unwrap())
            .unwrap();
        b.set_subject_name(&name(email)).unwrap();
        b.set_issuer_name(self.ca.subject_name()).unwrap();
        b.set_pubkey(&key).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        b.set_not_before(&Asn1Time::from_unix(now + from_days * 86400).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::from_unix(now + to_days * 86400).unwrap())
            .unwrap();
        b.append_extension(
            KeyUsage::new()
                .critical()
                .digital_signature()
                .key_encipherment()
                .build()
                .unwrap(),
        )
        .unwrap();
        b.append_extension(ExtendedKeyUsage::new().email_protection().build().unwrap())
            .unwrap();
        let san = SubjectAlternativeName::new()
            .email(email)
            .build(&b.x509v3_context(Some(&self.ca), None))
            .unwrap();
        b.append_extension(san).unwrap();
        if let Some(e) = extra {
            b.append_extension(e).unwrap();
        }
        b.sign(&self.ca_key, MessageDigest::sha256()).unwrap();
        let cert = b.build();
        let cert_path = self.dir.path().join(format!("{email}.crt"));
        let key_path = self.dir.path().join(format!("{email}.key"));
        std::fs::write(&cert_path, cert.to_pem().unwrap()).unwrap();
        std::fs::write(&key_path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        User {
            cert,
            key,
            cert_path,
            key_path,
        }
    }

    pub fn user(&self, email: &str) -> User {
        self.user_valid(email, -1, 365)
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

/// Run the `openssl` CLI; its stdout, after asserting success.
pub fn openssl(args: &[&dyn AsRef<std::ffi::OsStr>], stdin: &[u8]) -> Vec<u8> {
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
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("install the Debian package `openssl`");
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait().unwrap().success()
}
