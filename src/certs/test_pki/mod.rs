//! Unit-test certificates made in process with the openssl crate: a CA, sub-CAs and user
//! certificates with chosen addresses, validity, key usages and extra extensions. The one
//! certificate builder of the unit tests; `test_pki` writes these to files for the openssl
//! CLI. (The integration tests in tests/certs.rs make theirs with the openssl command line.)

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Extension, X509NameBuilder, X509Ref};

pub struct Pki {
    pub ca_cert: X509,
    pub ca_key: PKey<Private>,
}

pub struct Issued {
    pub cert: X509,
    pub key: PKey<Private>,
}

pub struct UserSpec<'a> {
    pub cn: &'a str,
    pub san_email: Option<&'a str>,
    pub subject_email: Option<&'a str>,
    /// not_before, not_after in days from now.
    pub days: (i64, i64),
    pub eku_email: bool,
    pub key_encipherment: bool,
    /// More extensions (e.g. an unknown critical one).
    pub extra: Vec<X509Extension>,
    /// An EC P-256 key instead of RSA.
    pub ec: bool,
}

impl<'a> UserSpec<'a> {
    pub fn new(cn: &'a str) -> Self {
        UserSpec {
            cn,
            san_email: None,
            subject_email: None,
            days: (-1, 365),
            eku_email: true,
            key_encipherment: true,
            extra: Vec::new(),
            ec: false,
        }
    }

    pub fn email(address: &'a str) -> Self {
        UserSpec {
            san_email: Some(address),
            ..UserSpec::new(address)
        }
    }
}

/// RSA-1024: weak, but fine for tests (OpenSSL's default security level accepts it) and
/// several times quicker to generate than 2048 bits.
fn key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap()
}

fn ec_key() -> PKey<Private> {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap()
}

fn time(days: i64) -> Asn1Time {
    Asn1Time::from_unix(crate::certs::info::now() + days * 86_400).unwrap()
}

fn serial() -> Asn1Integer {
    let mut bn = BigNum::new().unwrap();
    bn.rand(64, openssl::bn::MsbOption::MAYBE_ZERO, false)
        .unwrap();
    bn.to_asn1_integer().unwrap()
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        Self::named("Test CA")
    }

    /// A self-signed root CA.
    pub fn named(cn: &str) -> Pki {
        let ca_key = key();
        let ca_cert = build_ca(cn, &ca_key, None);
        Pki { ca_cert, ca_key }
    }

    /// A sub-CA issued by this CA.
    pub fn sub_ca(&self, cn: &str) -> Pki {
        let ca_key = key();
        let ca_cert = build_ca(cn, &ca_key, Some(self));
        Pki { ca_cert, ca_key }
    }

    pub fn user(&self, address: &str) -> Issued {
        self.issue(UserSpec::email(address))
    }

    pub fn issue(&self, spec: UserSpec) -> Issued {
        let key = if spec.ec { ec_key() } else { key() };
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", spec.cn).unwrap();
        if let Some(e) = spec.subject_email {
            name.append_entry_by_text("emailAddress", e).unwrap();
        }
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&serial()).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(self.ca_cert.subject_name()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&time(spec.days.0)).unwrap();
        b.set_not_after(&time(spec.days.1)).unwrap();
        b.append_extension(BasicConstraints::new().build().unwrap())
            .unwrap();
        let mut ku = KeyUsage::new();
        ku.critical().digital_signature();
        if spec.key_encipherment {
            ku.key_encipherment();
        }
        b.append_extension(ku.build().unwrap()).unwrap();
        let mut eku = ExtendedKeyUsage::new();
        if spec.eku_email {
            eku.email_protection();
        } else {
            eku.server_auth();
        }
        b.append_extension(eku.build().unwrap()).unwrap();
        if let Some(e) = spec.san_email {
            let san = SubjectAlternativeName::new()
                .email(e)
                .build(&b.x509v3_context(Some(&self.ca_cert), None))
                .unwrap();
            b.append_extension(san).unwrap();
        }
        add_key_id(&mut b, Some(self.ca_cert.as_ref()));
        for e in spec.extra {
            b.append_extension(e).unwrap();
        }
        b.sign(&self.ca_key, MessageDigest::sha256()).unwrap();
        Issued {
            cert: b.build(),
            key,
        }
    }
}

fn build_ca(cn: &str, key: &PKey<Private>, issuer: Option<&Pki>) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&serial()).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map(|i| i.ca_cert.subject_name()).unwrap_or(&name))
        .unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&time(-1)).unwrap();
    b.set_not_after(&time(3650)).unwrap();
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
    add_key_id(&mut b, issuer.map(|i| i.ca_cert.as_ref()));
    let signer = issuer.map(|i| &i.ca_key).unwrap_or(key);
    b.sign(signer, MessageDigest::sha256()).unwrap();
    b.build()
}

/// Subject key identifier (signers named by key id, `openssl cms -keyid`, need one).
fn add_key_id(b: &mut X509Builder, issuer: Option<&X509Ref>) {
    let ski = SubjectKeyIdentifier::new()
        .build(&b.x509v3_context(issuer, None))
        .unwrap();
    b.append_extension(ski).unwrap();
}

#[cfg(test)]
pub mod on_disk;
