//! STARTTLS on the listener (openssl, RFC 3207).
//!
//! Clients are *asked* for a certificate and any answer is accepted: the certificate is a
//! reputation signal (`filters::tls`), never a requirement for the handshake.

use std::path::{Path, PathBuf};

use anyhow::Context;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;
use openssl::ssl::{SslAcceptor, SslMethod, SslVerifyMode};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder, X509Ref, X509VerifyResult};

use filters::TlsFacts;

/// Build the acceptor for one listener from PEM files.
pub fn acceptor(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<SslAcceptor> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.set_certificate_chain_file(cert)
        .with_context(|| format!("cannot load TLS certificate chain {}", cert.display()))?;
    b.set_private_key_file(key, openssl::ssl::SslFiletype::PEM)
        .with_context(|| format!("cannot load TLS private key {}", key.display()))?;
    b.check_private_key().with_context(|| {
        format!(
            "TLS key {} does not match certificate {}",
            key.display(),
            cert.display()
        )
    })?;
    // Client certificates are checked against the system roots plus `client_ca`; the
    // result is recorded (verify_result), never enforced in the handshake.
    b.set_default_verify_paths()?;
    if let Some(ca) = client_ca {
        b.set_ca_file(ca)
            .with_context(|| format!("cannot load client CA file {}", ca.display()))?;
    }
    // Ask for a client certificate, accept any (or none): reputation, not access control.
    b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
    Ok(b.build())
}

/// Paths of the self-signed certificate used when a listener has none configured; created
/// on first use with the key readable only by the service user.
pub fn ensure_self_signed(data_dir: &Path, hostname: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = data_dir.join("tls");
    let cert_path = dir.join("selfsigned-cert.pem");
    let key_path = dir.join("selfsigned-key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    crate::store::create_private_dir(&dir)?;
    let (cert, key) = self_signed(hostname)?;
    write_private(&key_path, &key)?;
    std::fs::write(&cert_path, cert)
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

/// A self-signed RSA-2048 certificate for `hostname`, valid 10 years. PEM (cert, key).
pub fn self_signed(hostname: &str) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let key = PKey::from_rsa(Rsa::generate(2048)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", hostname)?;
    let name = name.build();
    let mut b = X509::builder()?;
    b.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    let not_before = Asn1Time::days_from_now(0)?;
    let not_after = Asn1Time::days_from_now(3650)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let san = SubjectAlternativeName::new()
        .dns(hostname)
        .build(&b.x509v3_context(None, None))?;
    b.append_extension(san)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok((b.build().to_pem()?, key.private_key_to_pem_pkcs8()?))
}

/// What the session records of a finished handshake.
pub fn facts(ssl: &openssl::ssl::SslRef) -> TlsFacts {
    let peer = ssl.peer_certificate();
    TlsFacts {
        version: ssl.version_str().to_string(),
        cipher: ssl
            .current_cipher()
            .map(|c| c.name().to_string())
            .unwrap_or_default(),
        peer_cert_sha256: peer
            .as_ref()
            .and_then(|c| c.digest(MessageDigest::sha256()).ok())
            .map(|d| d.iter().map(|b| format!("{b:02x}")).collect()),
        peer_cert_verified: peer.is_some() && ssl.verify_result() == X509VerifyResult::OK,
        peer_cert_names: peer.as_deref().map(dns_names).unwrap_or_default(),
    }
}

/// subjectAltName dNSNames, else the CN (RFC 6125), lowercase.
fn dns_names(cert: &X509Ref) -> Vec<String> {
    let sans: Vec<String> = cert
        .subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.dnsname().map(str::to_ascii_lowercase))
                .collect()
        })
        .unwrap_or_default();
    if !sans.is_empty() {
        return sans;
    }
    cert.subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .filter_map(|e| e.data().to_string().ok().map(|s| s.to_ascii_lowercase()))
        .collect()
}
