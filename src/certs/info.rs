//! Facts read from one certificate (fingerprint, names, addresses, validity, key usage)
//! and the rules built on them: usable for encryption / for signing now.

use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::Id;
use openssl::x509::{X509ExtendedKeyUsage, X509KeyUsage, X509NameRef, X509Ref};
use serde::Serialize;

/// What the store keeps about a certificate, besides the certificate itself.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertFacts {
    /// SHA-256 of the DER, lowercase hex.
    pub fingerprint: String,
    pub subject: String,
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// rfc822Name entries of subjectAltName and the subject's emailAddress, lowercased,
    /// sorted, without duplicates.
    pub addresses: Vec<String>,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// keyUsage bits by name; `None` when the extension is absent (no restriction).
    pub key_usage: Option<Vec<String>>,
    /// extendedKeyUsage purposes by name; `None` when absent (no restriction).
    pub ext_key_usage: Option<Vec<String>>,
    pub is_ca: bool,
    /// The public key agrees keys (EC, X25519, X448) instead of transporting them (RSA).
    pub key_agreement: bool,
}

/// Whether the certificate is a CA (basicConstraints cA).
pub fn is_ca(cert: &X509Ref) -> bool {
    cert.to_der()
        .map(|d| super::der::is_ca(&d))
        .unwrap_or(false)
}

pub fn fingerprint(cert: &X509Ref) -> anyhow::Result<String> {
    Ok(hex(&cert.digest(MessageDigest::sha256())?))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Unix seconds of an ASN.1 time.
pub fn unix_time(t: &Asn1TimeRef) -> anyhow::Result<i64> {
    let epoch = Asn1Time::from_unix(0)?;
    let d = epoch.diff(t)?;
    Ok(d.days as i64 * 86_400 + d.secs as i64)
}

/// "CN=Alice, O=Example, emailAddress=alice@example.test" (in certificate order).
pub fn name_text(name: &X509NameRef) -> String {
    name.entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?").to_string();
            let value = e.data().to_string().unwrap_or_else(|_| "?".into());
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The domain of an address ("User@Example.TEST" → "example.test"), if it has one.
pub fn domain_of(address: &str) -> Option<String> {
    Some(filters::domain_of(address)).filter(|d| !d.is_empty())
}

/// An envelope address as the store keys it: no angle brackets, lowercase.
pub fn normalize_address(address: &str) -> String {
    address
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .to_lowercase()
}

const KEY_USAGE_NAMES: &[(X509KeyUsage, &str)] = &[
    (X509KeyUsage::DIGITAL_SIGNATURE, "digitalSignature"),
    (X509KeyUsage::NON_REPUDIATION, "nonRepudiation"),
    (X509KeyUsage::KEY_ENCIPHERMENT, "keyEncipherment"),
    (X509KeyUsage::DATA_ENCIPHERMENT, "dataEncipherment"),
    (X509KeyUsage::KEY_AGREEMENT, "keyAgreement"),
    (X509KeyUsage::KEY_CERT_SIGN, "keyCertSign"),
    (X509KeyUsage::CRL_SIGN, "cRLSign"),
    (X509KeyUsage::ENCIPHER_ONLY, "encipherOnly"),
    (X509KeyUsage::DECIPHER_ONLY, "decipherOnly"),
];

const EKU_NAMES: &[(X509ExtendedKeyUsage, &str)] = &[
    (X509ExtendedKeyUsage::SMIME, "emailProtection"),
    (X509ExtendedKeyUsage::SSL_SERVER, "serverAuth"),
    (X509ExtendedKeyUsage::SSL_CLIENT, "clientAuth"),
    (X509ExtendedKeyUsage::CODE_SIGN, "codeSigning"),
    (X509ExtendedKeyUsage::OCSP_SIGN, "OCSPSigning"),
    (X509ExtendedKeyUsage::TIMESTAMP, "timeStamping"),
    (X509ExtendedKeyUsage::ANYEKU, "anyExtendedKeyUsage"),
];

impl CertFacts {
    pub fn of(cert: &X509Ref) -> anyhow::Result<CertFacts> {
        let mut addresses: Vec<String> = cert
            .subject_alt_names()
            .map(|names| {
                names
                    .iter()
                    .filter_map(|n| n.email().map(str::to_lowercase))
                    .collect()
            })
            .unwrap_or_default();
        addresses.extend(
            cert.subject_name()
                .entries_by_nid(Nid::PKCS9_EMAILADDRESS)
                .filter_map(|e| e.data().to_string().ok().map(|s| s.to_lowercase())),
        );
        addresses.retain(|a| a.contains('@'));
        addresses.sort();
        addresses.dedup();
        let key_usage = cert.key_usage().map(|bits| {
            KEY_USAGE_NAMES
                .iter()
                .filter(|(b, _)| bits.contains(*b))
                .map(|(_, n)| n.to_string())
                .collect()
        });
        let ext_key_usage = cert.extended_key_usage().map(|bits| {
            EKU_NAMES
                .iter()
                .filter(|(b, _)| bits.contains(*b))
                .map(|(_, n)| n.to_string())
                .collect()
        });
        let key_agreement = matches!(
            cert.public_key()?.id(),
            Id::EC | Id::X25519 | Id::X448 | Id::DH
        );
        Ok(CertFacts {
            fingerprint: fingerprint(cert)?,
            subject: name_text(cert.subject_name()),
            issuer: name_text(cert.issuer_name()),
            serial: cert.serial_number().to_bn()?.to_hex_str()?.to_lowercase(),
            addresses,
            not_before: unix_time(cert.not_before())?,
            not_after: unix_time(cert.not_after())?,
            key_usage,
            ext_key_usage,
            is_ca: is_ca(cert),
            key_agreement,
        })
    }

    /// Domains of the certificate's addresses, sorted, without duplicates.
    pub fn address_domains(&self) -> Vec<String> {
        let mut d: Vec<String> = self.addresses.iter().filter_map(|a| domain_of(a)).collect();
        d.sort();
        d.dedup();
        d
    }

    fn has_usage(&self, wanted: &[&str]) -> bool {
        self.key_usage
            .as_ref()
            .is_none_or(|ku| ku.iter().any(|u| wanted.contains(&u.as_str())))
    }

    fn allows_email(&self) -> bool {
        self.ext_key_usage.as_ref().is_none_or(|eku| {
            eku.iter()
                .any(|u| u == "emailProtection" || u == "anyExtendedKeyUsage")
        })
    }

    /// Why the certificate is not usable at `now` apart from its chain; empty = fine.
    fn common_problems(&self, now: i64) -> Vec<String> {
        let mut p = Vec::new();
        if now < self.not_before {
            p.push(format!("not valid before {}", date_text(self.not_before)));
        }
        if now > self.not_after {
            p.push(format!("expired {}", date_text(self.not_after)));
        }
        if self.is_ca {
            p.push("a CA certificate".into());
        }
        if !self.allows_email() {
            p.push("extended key usage lacks emailProtection".into());
        }
        p
    }

    /// Why mail cannot be encrypted to this certificate at `now` (chain aside); empty =
    /// it can.
    pub fn encryption_problems(&self, now: i64) -> Vec<String> {
        let mut p = self.common_problems(now);
        let (wanted, name) = if self.key_agreement {
            ("keyAgreement", "key usage lacks keyAgreement")
        } else {
            ("keyEncipherment", "key usage lacks keyEncipherment")
        };
        if !self.has_usage(&[wanted]) {
            p.push(name.into());
        }
        p
    }

    /// Why this certificate cannot sign mail at `now` (chain and key aside); empty = it can.
    pub fn signing_problems(&self, now: i64) -> Vec<String> {
        let mut p = self.common_problems(now);
        if !self.has_usage(&["digitalSignature", "nonRepudiation"]) {
            p.push("key usage lacks digitalSignature".into());
        }
        p
    }
}

/// "2027-03-01" for unix seconds (UTC).
pub fn date_text(unix: i64) -> String {
    let (y, m, d) = crate::clock::civil_from_days(unix.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Now, unix seconds.
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Whether an owner's SMIMECapabilities (OIDs or cipher names, as harvesting passes them)
/// announce AES-GCM (RFC 5084: id-aes128-GCM .6, id-aes192-GCM .26, id-aes256-GCM .46).
pub fn capabilities_list_gcm(capabilities: &[String]) -> bool {
    capabilities.iter().any(|c| {
        let c = c.trim().to_ascii_lowercase();
        matches!(
            c.as_str(),
            "2.16.840.1.101.3.4.1.6" | "2.16.840.1.101.3.4.1.26" | "2.16.840.1.101.3.4.1.46"
        ) || c.contains("gcm")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::test_pki::{Pki, UserSpec};

    #[test]
    fn facts_of_a_user_certificate() {
        let pki = Pki::new();
        let u = pki.user("Alice@Example.TEST");
        let f = CertFacts::of(&u.cert).unwrap();
        assert_eq!(f.addresses, vec!["alice@example.test"]);
        assert_eq!(f.address_domains(), vec!["example.test"]);
        assert_eq!(f.fingerprint.len(), 64);
        assert!(f.subject.contains("CN=Alice@Example.TEST"), "{}", f.subject);
        assert!(f.issuer.contains("Test CA"), "{}", f.issuer);
        assert!(!f.is_ca);
        assert!(f.not_after > f.not_before);
        assert_eq!(
            f.ext_key_usage.as_deref(),
            Some(&["emailProtection".to_string()][..])
        );
        assert!(f.encryption_problems(now()).is_empty());
        assert!(f.signing_problems(now()).is_empty());
        assert!(CertFacts::of(&pki.ca_cert).unwrap().is_ca);
    }

    #[test]
    fn subject_email_address_counts_too() {
        let pki = Pki::new();
        let u = pki.issue(UserSpec {
            subject_email: Some("Bob@Example.test"),
            san_email: Some("bob.alias@example.test"),
            ..UserSpec::new("Bob")
        });
        let f = CertFacts::of(&u.cert).unwrap();
        assert_eq!(
            f.addresses,
            vec!["bob.alias@example.test", "bob@example.test"]
        );
    }

    #[test]
    fn encryption_rules_name_each_problem() {
        let pki = Pki::new();
        let expired = pki.issue(UserSpec {
            days: (-30, -1),
            ..UserSpec::email("old@example.test")
        });
        let p = CertFacts::of(&expired.cert)
            .unwrap()
            .encryption_problems(now());
        assert!(p.iter().any(|x| x.starts_with("expired")), "{p:?}");

        let tls_only = pki.issue(UserSpec {
            eku_email: false,
            ..UserSpec::email("tls@example.test")
        });
        let p = CertFacts::of(&tls_only.cert)
            .unwrap()
            .encryption_problems(now());
        assert_eq!(p, vec!["extended key usage lacks emailProtection"]);

        let sign_only = pki.issue(UserSpec {
            key_encipherment: false,
            ..UserSpec::email("sig@example.test")
        });
        let f = CertFacts::of(&sign_only.cert).unwrap();
        assert_eq!(
            f.encryption_problems(now()),
            vec!["key usage lacks keyEncipherment"]
        );
        assert!(f.signing_problems(now()).is_empty());
        let p = CertFacts::of(&pki.ca_cert)
            .unwrap()
            .encryption_problems(now());
        assert!(p.contains(&"a CA certificate".to_string()), "{p:?}");
    }

    #[test]
    fn addresses_and_dates() {
        assert_eq!(domain_of("A@B.Example."), Some("b.example".into()));
        assert_eq!(domain_of("nodomain"), None);
        assert_eq!(normalize_address(" <Bob@X.TEST> "), "bob@x.test");
        assert_eq!(date_text(0), "1970-01-01");
        assert_eq!(date_text(1_795_829_037), "2026-11-28");
    }

    #[test]
    fn gcm_capability_by_oid_or_name() {
        assert!(capabilities_list_gcm(&["2.16.840.1.101.3.4.1.46".into()]));
        assert!(capabilities_list_gcm(&["AES-256-GCM".into()]));
        assert!(!capabilities_list_gcm(&[
            "2.16.840.1.101.3.4.1.42".into(),
            "aes-128-cbc".into()
        ]));
        assert!(!capabilities_list_gcm(&[]));
    }
}
