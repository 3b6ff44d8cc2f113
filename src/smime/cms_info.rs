//! Typed reads of CMS structures that the openssl crate cannot do: which kind of content a
//! CMS blob is, the certificates and signer infos of a SignedData (who signed, with which
//! digest, which SMIMECapabilities they announce) and the recipients of an EnvelopedData.
//!
//! Choice: the RustCrypto `cms` crate (pure Rust, read-only here). Every cryptographic
//! operation — verify, decrypt, sign, encrypt, chain checks — stays with OpenSSL in
//! [`super::engine`]; this module only parses. The openssl crate exposes no signer infos,
//! signed attributes or recipient infos, and `#![forbid(unsafe_code)]` rules out calling
//! `CMS_get0_SignerInfos` through FFI.

use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::enveloped_data::{EnvelopedData, RecipientIdentifier, RecipientInfo};
use cms::signed_data::{SignedData, SignerIdentifier};
use der::asn1::ObjectIdentifier;
use der::{Decode, Encode};

pub const OID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
pub const OID_ENVELOPED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
pub const OID_AUTH_ENVELOPED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.23");
const OID_SMIME_CAPABILITIES: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.15");
/// id-aes128-GCM and id-aes256-GCM (RFC 5084): a capability list naming one of them says
/// the owner's client reads AuthEnvelopedData with AES-GCM.
pub const OID_AES128_GCM: &str = "2.16.840.1.101.3.4.1.6";
pub const OID_AES256_GCM: &str = "2.16.840.1.101.3.4.1.46";

/// Re-encode a CMS blob as DER. Real clients (Thunderbird, Outlook) send BER with
/// indefinite lengths, which the `der`-based `cms` crate refuses; OpenSSL reads BER and
/// writes DER. Only the typed reads use the re-encoding: cryptography runs on the bytes
/// as received.
pub fn normalize(ber: &[u8]) -> Result<Vec<u8>, String> {
    openssl::cms::CmsContentInfo::from_der(ber)
        .and_then(|c| c.to_der())
        .map_err(|e| {
            format!(
                "not a CMS structure ({})",
                e.errors()
                    .first()
                    .and_then(|x| x.reason())
                    .unwrap_or("unreadable")
            )
        })
}

/// What a CMS ContentInfo holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Signed,
    Enveloped,
    AuthEnveloped,
    Other,
}

/// The content type of a CMS blob, DER or BER (the OID comes first, so the indefinite
/// lengths real clients use do not matter): `ContentInfo ::= SEQUENCE { contentType OID, ...`.
/// Whether the rest is sound is for the parse that follows.
pub fn kind(ber: &[u8]) -> Result<Kind, String> {
    let bad = || "not a CMS structure (no ContentInfo at the start)".to_string();
    if ber.first() != Some(&0x30) {
        return Err(bad());
    }
    // skip the SEQUENCE's length: short form, long form, or 0x80 (indefinite)
    let len = *ber.get(1).ok_or_else(bad)?;
    let mut i = 2;
    if len > 0x80 {
        i += (len & 0x7f) as usize;
    }
    if ber.get(i) != Some(&0x06) {
        return Err(bad());
    }
    let oid_len = *ber.get(i + 1).ok_or_else(bad)? as usize;
    let oid_bytes = ber.get(i + 2..i + 2 + oid_len).ok_or_else(bad)?;
    let content_type = ObjectIdentifier::from_bytes(oid_bytes).map_err(|_| bad())?;
    Ok(match content_type {
        OID_SIGNED_DATA => Kind::Signed,
        OID_ENVELOPED_DATA => Kind::Enveloped,
        OID_AUTH_ENVELOPED_DATA => Kind::AuthEnveloped,
        _ => Kind::Other,
    })
}

/// How a signer names its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerId {
    /// DER of the issuer name, serial number bytes without leading zeros.
    IssuerSerial(Vec<u8>, Vec<u8>),
    SubjectKeyId(Vec<u8>),
}

/// One SignerInfo, as far as we need it.
#[derive(Debug, Clone)]
pub struct SignerMeta {
    pub id: SignerId,
    /// Index of the signer's certificate in [`SignedInfo::certificates`], if it is there.
    pub cert: Option<usize>,
    /// Digest algorithm OID, dotted.
    pub digest_oid: String,
    /// SMIMECapabilities (RFC 8551 §2.5.2) announced in the signed attributes: the
    /// capability OIDs in the signer's order of preference, dotted.
    pub capabilities: Vec<String>,
}

/// One embedded certificate, kept as DER: OpenSSL 3 parses a certificate slowly (as long as
/// half an RSA signature: the public key goes through its decoder framework), so an
/// `X509` is made only where one is needed (harvest, chain diagnosis).
#[derive(Debug, Clone)]
pub struct CertDer {
    pub der: Vec<u8>,
    /// subjectAltName rfc822Name, else the subject's emailAddress; lowercase.
    pub email: Option<String>,
}

/// The certificates and signers of a SignedData.
#[derive(Debug, Clone, Default)]
pub struct SignedInfo {
    pub certificates: Vec<CertDer>,
    pub signers: Vec<SignerMeta>,
    /// The same ContentInfo as DER without its certificates, for OpenSSL to verify with the
    /// certificates handed over already parsed (see `super::x509_cache`). Nothing signed
    /// changes: the certificates set is outside the signatures.
    pub without_certificates: Vec<u8>,
}

const OID_SUBJECT_KEY_ID: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.14");
const OID_SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");
const OID_EMAIL_ADDRESS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.1");

/// The e-mail address a certificate is issued to (see [`CertDer::email`]).
fn email_of(cert: &cms::cert::x509::Certificate) -> Option<String> {
    use cms::cert::x509::ext::pkix::SubjectAltName;
    use cms::cert::x509::ext::pkix::name::GeneralName;
    let exts = cert
        .tbs_certificate
        .extensions
        .as_deref()
        .unwrap_or_default();
    for e in exts.iter().filter(|e| e.extn_id == OID_SUBJECT_ALT_NAME) {
        if let Ok(san) = SubjectAltName::from_der(e.extn_value.as_bytes()) {
            for n in san.0 {
                if let GeneralName::Rfc822Name(m) = n {
                    return Some(m.to_string().to_ascii_lowercase());
                }
            }
        }
    }
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter().filter(|a| a.oid == OID_EMAIL_ADDRESS) {
            if let Ok(v) = atv.value.decode_as::<der::asn1::Ia5StringRef<'_>>() {
                return Some(v.to_string().to_ascii_lowercase());
            }
        }
    }
    None
}

fn subject_key_id(cert: &cms::cert::x509::Certificate) -> Option<Vec<u8>> {
    let exts = cert.tbs_certificate.extensions.as_deref()?;
    let e = exts.iter().find(|e| e.extn_id == OID_SUBJECT_KEY_ID)?;
    let ski = der::asn1::OctetString::from_der(e.extn_value.as_bytes()).ok()?;
    Some(ski.as_bytes().to_vec())
}

fn strip_zeros(b: &[u8]) -> Vec<u8> {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[i..].to_vec()
}

pub fn signed_info(der: &[u8]) -> Result<SignedInfo, String> {
    let ci = ContentInfo::from_der(der).map_err(|e| format!("not a CMS structure: {e}"))?;
    if ci.content_type != OID_SIGNED_DATA {
        return Err(format!("expected signed-data, found {}", ci.content_type));
    }
    let mut sd: SignedData = ci
        .content
        .decode_as()
        .map_err(|e| format!("corrupt signed-data: {e}"))?;
    let mut out = SignedInfo::default();
    let mut parsed = Vec::new();
    for c in sd.certificates.iter().flat_map(|s| s.0.iter()) {
        if let CertificateChoices::Certificate(x) = c {
            let der = x
                .to_der()
                .map_err(|e| format!("embedded certificate: {e}"))?;
            out.certificates.push(CertDer {
                der,
                email: email_of(x),
            });
            parsed.push(x);
        }
    }
    for si in sd.signer_infos.0.iter() {
        let id = match &si.sid {
            SignerIdentifier::IssuerAndSerialNumber(ias) => SignerId::IssuerSerial(
                ias.issuer.to_der().map_err(|e| e.to_string())?,
                strip_zeros(ias.serial_number.as_bytes()),
            ),
            SignerIdentifier::SubjectKeyIdentifier(ski) => {
                SignerId::SubjectKeyId(ski.0.as_bytes().to_vec())
            }
        };
        let mut capabilities = Vec::new();
        for attr in si.signed_attrs.iter().flat_map(|a| a.iter()) {
            if attr.oid != OID_SMIME_CAPABILITIES {
                continue;
            }
            for v in attr.values.iter() {
                // SMIMECapabilities ::= SEQUENCE OF SMIMECapability — the same shape as a
                // list of AlgorithmIdentifiers (OID + optional parameters).
                let caps: Vec<cms::cert::x509::spki::AlgorithmIdentifierOwned> = v
                    .decode_as()
                    .map_err(|e| format!("corrupt SMIMECapabilities: {e}"))?;
                capabilities.extend(caps.iter().map(|c| c.oid.to_string()));
            }
        }
        let cert = parsed.iter().position(|c| match &id {
            SignerId::IssuerSerial(issuer, serial) => {
                c.tbs_certificate.issuer.to_der().ok().as_ref() == Some(issuer)
                    && strip_zeros(c.tbs_certificate.serial_number.as_bytes()) == *serial
            }
            SignerId::SubjectKeyId(ski) => subject_key_id(c).as_ref() == Some(ski),
        });
        out.signers.push(SignerMeta {
            id,
            cert,
            digest_oid: si.digest_alg.oid.to_string(),
            capabilities,
        });
    }
    out.without_certificates = if sd.certificates.is_some() {
        sd.certificates = None;
        let content = der::Any::encode_from(&sd).map_err(|e| format!("re-encoding: {e}"))?;
        ContentInfo {
            content_type: OID_SIGNED_DATA,
            content,
        }
        .to_der()
        .map_err(|e| format!("re-encoding: {e}"))?
    } else {
        der.to_vec()
    };
    Ok(out)
}

/// Who an EnvelopedData is addressed to, for an error message ("issuer / serial" or
/// "key id"); empty for other kinds (AuthEnvelopedData has no type in the `cms` crate 0.2).
pub fn recipients(der: &[u8]) -> Vec<String> {
    let Ok(ci) = ContentInfo::from_der(der) else {
        return Vec::new();
    };
    if ci.content_type != OID_ENVELOPED_DATA {
        return Vec::new();
    }
    let Ok(ed) = ci.content.decode_as::<EnvelopedData>() else {
        return Vec::new();
    };
    ed.recip_infos
        .0
        .iter()
        .map(|ri| match ri {
            RecipientInfo::Ktri(k) => match &k.rid {
                RecipientIdentifier::IssuerAndSerialNumber(ias) => format!(
                    "{} serial {}",
                    ias.issuer,
                    hex(&strip_zeros(ias.serial_number.as_bytes()))
                ),
                RecipientIdentifier::SubjectKeyIdentifier(s) => {
                    format!("key id {}", hex(s.0.as_bytes()))
                }
            },
            _ => "a non-RSA recipient".to_string(),
        })
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A readable name for the digest OIDs S/MIME uses.
pub fn digest_name(oid: &str) -> &str {
    match oid {
        "1.3.14.3.2.26" => "sha1",
        "2.16.840.1.101.3.4.2.1" => "sha256",
        "2.16.840.1.101.3.4.2.2" => "sha384",
        "2.16.840.1.101.3.4.2.3" => "sha512",
        "1.2.840.113549.2.5" => "md5",
        other => other,
    }
}
