//! Reading what an administrator imports: PEM or DER certificates (one, or a bundle /
//! chain, also PKCS#7 `.p7b`), PEM private keys next to their certificate, and PKCS#12
//! files (certificate, private key, chain). Errors name the file and say what to do.

use std::sync::OnceLock;

use anyhow::bail;
use openssl::error::ErrorStack;
use openssl::pkcs7::Pkcs7;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::provider::Provider;
use openssl::x509::X509;

/// What one file holds: end-entity certificates (with their key when the file has it)
/// and CA certificates (the chain).
#[derive(Default)]
pub struct Bundle {
    pub leaves: Vec<Leaf>,
    pub cas: Vec<X509>,
}

pub struct Leaf {
    pub cert: X509,
    pub key: Option<PKey<Private>>,
}

impl Bundle {
    fn from_certs(certs: Vec<X509>) -> Bundle {
        let mut b = Bundle::default();
        for cert in certs {
            if super::info::is_ca(&cert) {
                b.cas.push(cert);
            } else {
                b.leaves.push(Leaf { cert, key: None });
            }
        }
        b
    }
}

/// Parse an import file. `name` is how errors name it; `password` opens PKCS#12 files and
/// encrypted PEM keys (PKCS#12 without one is tried with the empty password).
pub fn read_import(bytes: &[u8], name: &str, password: Option<&str>) -> anyhow::Result<Bundle> {
    if is_pem(bytes) {
        return read_pem(bytes, name, password);
    }
    if let Ok(cert) = X509::from_der(bytes) {
        return Ok(Bundle::from_certs(vec![cert]));
    }
    if let Ok(p7) = Pkcs7::from_der(bytes) {
        return Ok(Bundle::from_certs(pkcs7_certs(&p7, name)?));
    }
    if let Ok(p12) = Pkcs12::from_der(bytes) {
        return read_pkcs12(&p12, name, password);
    }
    if openssl::x509::X509Crl::from_der(bytes).is_ok() {
        bail!("{name} is a certificate revocation list: import it with `certs import-crl`");
    }
    bail!("{name} is not a certificate (PEM or DER), a PKCS#7 bundle or a PKCS#12 file")
}

/// Certificates only (for trust anchors and `certs.extra_ca`): PEM (one or many), DER or
/// PKCS#7. A private key in the file is an error: trust anchors have no business with keys.
pub fn read_certificates(bytes: &[u8], name: &str) -> anyhow::Result<Vec<X509>> {
    if is_pem(bytes) {
        if contains(bytes, b"PRIVATE KEY-----") {
            bail!("{name} contains a private key; give only the CA certificate(s)");
        }
        let certs = pem_certs(bytes, name)?;
        if certs.is_empty() {
            bail!("{name} contains no certificate");
        }
        return Ok(certs);
    }
    if let Ok(cert) = X509::from_der(bytes) {
        return Ok(vec![cert]);
    }
    if let Ok(p7) = Pkcs7::from_der(bytes) {
        return pkcs7_certs(&p7, name);
    }
    bail!("{name} is not a certificate (PEM, DER or PKCS#7)")
}

fn is_pem(bytes: &[u8]) -> bool {
    contains(bytes, b"-----BEGIN ")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn pem_certs(bytes: &[u8], name: &str) -> anyhow::Result<Vec<X509>> {
    let mut certs = if contains(bytes, b"-----BEGIN CERTIFICATE-----")
        || contains(bytes, b"-----BEGIN X509 CERTIFICATE-----")
        || contains(bytes, b"-----BEGIN TRUSTED CERTIFICATE-----")
    {
        X509::stack_from_pem(bytes)
            .map_err(|e| anyhow::anyhow!("{name}: a PEM certificate does not parse: {e}"))?
    } else {
        Vec::new()
    };
    if contains(bytes, b"-----BEGIN PKCS7-----") {
        let p7 = Pkcs7::from_pem(bytes)
            .map_err(|e| anyhow::anyhow!("{name}: the PKCS#7 bundle does not parse: {e}"))?;
        certs.extend(pkcs7_certs(&p7, name)?);
    }
    Ok(certs)
}

fn pkcs7_certs(p7: &Pkcs7, name: &str) -> anyhow::Result<Vec<X509>> {
    let certs: Vec<X509> = p7
        .signed()
        .and_then(|s| s.certificates())
        .map(|st| st.iter().map(|c| c.to_owned()).collect())
        .unwrap_or_default();
    if certs.is_empty() {
        bail!("{name}: the PKCS#7 bundle holds no certificate");
    }
    Ok(certs)
}

fn read_pem(bytes: &[u8], name: &str, password: Option<&str>) -> anyhow::Result<Bundle> {
    let certs = pem_certs(bytes, name)?;
    if certs.is_empty() && contains(bytes, b"-----BEGIN X509 CRL-----") {
        bail!("{name} is a certificate revocation list: import it with `certs import-crl`");
    }
    if certs.is_empty() {
        bail!("{name} contains no certificate (a private key alone cannot be imported)");
    }
    let mut bundle = Bundle::from_certs(certs);
    if contains(bytes, b"PRIVATE KEY-----") {
        let encrypted = contains(bytes, b"ENCRYPTED");
        if encrypted && password.is_none() {
            bail!("{name}: the private key is encrypted; give its password with --password-file");
        }
        let key = PKey::private_key_from_pem_passphrase(bytes, password.unwrap_or("").as_bytes())
            .map_err(|e| {
            if encrypted {
                anyhow::anyhow!("{name}: wrong password for the private key ({e})")
            } else {
                anyhow::anyhow!("{name}: the private key does not parse: {e}")
            }
        })?;
        let matches = |c: &X509| c.public_key().map(|p| p.public_eq(&key)).unwrap_or(false);
        if let Some(leaf) = bundle.leaves.iter_mut().find(|l| matches(&l.cert)) {
            leaf.key = Some(key);
        } else if let Some(i) = bundle.cas.iter().position(matches) {
            // A self-made certificate (`openssl req -x509` marks it CA:TRUE by default) with
            // its own key: what many users have as their S/MIME identity. It becomes an
            // identity; the import says it is a CA certificate (see `CertStore::import`).
            let cert = bundle.cas.remove(i);
            bundle.leaves.push(Leaf {
                cert,
                key: Some(key),
            });
        } else {
            bail!("{name}: the private key belongs to none of the file's certificates");
        }
    }
    Ok(bundle)
}

/// The legacy provider (RC2-40, as in many users' PKCS#12 files) plus the default one,
/// loaded once into the process. Only PKCS#12 import needs it, so the gateway itself never
/// loads it. Err: why it is unavailable.
fn legacy_provider() -> Result<(), String> {
    static DEFAULT: OnceLock<Option<Provider>> = OnceLock::new();
    static LEGACY: OnceLock<Result<Provider, String>> = OnceLock::new();
    // Loading a provider explicitly can end the implicit default: load it too, and keep it
    // loaded whether or not the legacy one is there (modern files need only the default).
    DEFAULT.get_or_init(|| Provider::try_load(None, "default", true).ok());
    LEGACY
        .get_or_init(|| Provider::try_load(None, "legacy", true).map_err(|e| e.to_string()))
        .as_ref()
        .map(|_| ())
        .map_err(|e| e.clone())
}

fn read_pkcs12(p12: &Pkcs12, name: &str, password: Option<&str>) -> anyhow::Result<Bundle> {
    let legacy = legacy_provider();
    let parsed = p12
        .parse2(password.unwrap_or(""))
        .map_err(|e| pkcs12_error(&e, name, password.is_some(), &legacy))?;
    let Some(cert) = parsed.cert else {
        bail!("{name}: the PKCS#12 file holds no certificate");
    };
    if let Some(key) = &parsed.pkey
        && !cert.public_key()?.public_eq(key)
    {
        bail!("{name}: the PKCS#12 file's private key does not belong to its certificate");
    }
    let mut bundle = Bundle::default();
    for ca in parsed.ca.into_iter().flatten() {
        if super::info::is_ca(&ca) {
            bundle.cas.push(ca);
        } else {
            bundle.leaves.push(Leaf {
                cert: ca,
                key: None,
            });
        }
    }
    bundle.leaves.insert(
        0,
        Leaf {
            cert,
            key: parsed.pkey,
        },
    );
    Ok(bundle)
}

fn pkcs12_error(
    e: &ErrorStack,
    name: &str,
    had_password: bool,
    legacy: &Result<(), String>,
) -> anyhow::Error {
    let reasons: Vec<String> = e
        .errors()
        .iter()
        .filter_map(|x| x.reason().map(str::to_lowercase))
        .collect();
    let any = |s: &str| reasons.iter().any(|r| r.contains(s));
    if any("mac verify failure") || any("invalid password") {
        if had_password {
            anyhow::anyhow!("{name}: wrong password for the PKCS#12 file")
        } else {
            anyhow::anyhow!(
                "{name}: the PKCS#12 file is password-protected; give the password with --password-file"
            )
        }
    } else if any("unsupported") {
        match legacy {
            Err(why) => anyhow::anyhow!(
                "{name}: the PKCS#12 file uses a legacy algorithm (e.g. RC2-40) and the OpenSSL \
                 legacy provider is unavailable ({why}); install OpenSSL's legacy module (ossl-modules/legacy.so) \
                 or set OPENSSL_MODULES, or re-export the file with modern encryption \
                 (`openssl pkcs12 -legacy -in old.p12 -nodes | openssl pkcs12 -export -out new.p12`)"
            ),
            Ok(()) => anyhow::anyhow!(
                "{name}: the PKCS#12 file uses an algorithm this OpenSSL does not support: {e}"
            ),
        }
    } else {
        anyhow::anyhow!("{name}: cannot read the PKCS#12 file: {e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::test_pki::Pki;
    use openssl::nid::Nid;
    use openssl::stack::Stack;

    #[test]
    fn pem_bundle_splits_leaves_and_cas_and_der_reads_one() {
        let pki = Pki::new();
        let user = pki.user("a@example.test");
        let mut pem = user.cert.to_pem().unwrap();
        pem.extend(pki.ca_cert.to_pem().unwrap());
        let b = read_import(&pem, "f", None).unwrap();
        assert_eq!(b.leaves.len(), 1);
        assert_eq!(b.cas.len(), 1);
        assert!(b.leaves[0].key.is_none());
        let b = read_import(&user.cert.to_der().unwrap(), "f", None).unwrap();
        assert_eq!(b.leaves.len(), 1);
    }

    #[test]
    fn pem_key_is_matched_to_its_certificate() {
        let pki = Pki::new();
        let user = pki.user("a@example.test");
        let mut pem = user.cert.to_pem().unwrap();
        pem.extend(user.key.private_key_to_pem_pkcs8().unwrap());
        let b = read_import(&pem, "f", None).unwrap();
        assert!(b.leaves[0].key.as_ref().unwrap().public_eq(&user.key));
        let other = pki.user("b@example.test");
        let mut wrong = user.cert.to_pem().unwrap();
        wrong.extend(other.key.private_key_to_pem_pkcs8().unwrap());
        let e = read_import(&wrong, "f", None).err().unwrap().to_string();
        assert!(e.contains("belongs to none"), "{e}");
        // a CA certificate with its own key is an identity, not "no match"
        let mut own_ca = pki.ca_cert.to_pem().unwrap();
        own_ca.extend(pki.ca_key.private_key_to_pem_pkcs8().unwrap());
        let b = read_import(&own_ca, "f", None).unwrap();
        assert!(b.cas.is_empty());
        assert!(b.leaves[0].key.as_ref().unwrap().public_eq(&pki.ca_key));
    }

    #[test]
    fn pkcs12_modern_and_legacy_rc2_open_with_the_right_password_only() {
        let pki = Pki::new();
        let user = pki.user("a@example.test");
        let mut chain = Stack::new().unwrap();
        chain.push(pki.ca_cert.clone()).unwrap();
        let mut builder = Pkcs12::builder();
        builder.name("a").pkey(&user.key).cert(&user.cert).ca(chain);
        let modern = builder.build2("pw").unwrap().to_der().unwrap();
        legacy_provider().expect("OpenSSL legacy provider (needed for the RC2-40 fixture)");
        builder
            .cert_algorithm(Nid::PBE_WITHSHA1AND40BITRC2_CBC)
            .key_algorithm(Nid::PBE_WITHSHA1AND3_KEY_TRIPLEDES_CBC);
        let legacy = builder.build2("pw").unwrap().to_der().unwrap();
        for der in [&modern, &legacy] {
            let b = read_import(der, "u.p12", Some("pw")).unwrap();
            assert_eq!(b.leaves.len(), 1);
            assert!(b.leaves[0].key.as_ref().unwrap().public_eq(&user.key));
            assert_eq!(b.cas.len(), 1);
            let e = read_import(der, "u.p12", Some("nope"))
                .err()
                .unwrap()
                .to_string();
            assert!(e.contains("wrong password"), "{e}");
            let e = read_import(der, "u.p12", None).err().unwrap().to_string();
            assert!(e.contains("--password-file"), "{e}");
        }
    }

    #[test]
    fn garbage_is_named_not_a_certificate() {
        let e = read_import(b"hello world", "x.bin", None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("x.bin is not a certificate"), "{e}");
        let e = read_import(
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            "x.pem",
            None,
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("x.pem"), "{e}");
        assert!(read_certificates(b"\x30\x03\x02\x01\x00", "d").is_err());
    }
}
