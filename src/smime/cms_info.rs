//! Reads of CMS structures (RFC 5652, RFC 5083): which kind of content a blob is; the
//! certificates, content and signer infos of a SignedData; the recipients and encrypted
//! content of an EnvelopedData or AuthEnvelopedData.
//!
//! Choice: the structures are walked over the bytes as received ([`crate::certs::der`]), BER or
//! DER, without a copy; the RustCrypto `cms` crate's types (x509-cert, spki) read the
//! values where a typed read is clearer — an issuer name for an error message, the
//! SMIMECapabilities list. The `cms` crate cannot read the
//! structures themselves here: it takes DER only (clients send BER) and version 0.2 has no
//! AuthEnvelopedData. The cryptography is in [`super::engine`].

use der::Decode;
use der::asn1::ObjectIdentifier;

use crate::certs::der::{
    self as ber, CONSTRUCTED, INTEGER, OCTET_STRING, OID, SEQUENCE, SET, elements, elements_whole,
    octets, tlv,
};

pub const OID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
pub const OID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
pub const OID_ENVELOPED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
pub const OID_AUTH_ENVELOPED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.16.1.23");
pub const OID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
pub const OID_MESSAGE_DIGEST: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");
pub const OID_SIGNING_TIME: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.5");
pub const OID_SMIME_CAPABILITIES: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.15");
pub const OID_COUNTERSIGNATURE: ObjectIdentifier = oid("1.2.840.113549.1.9.6");
/// id-ct-receipt (RFC 2634): a signed receipt.
pub const OID_RECEIPT: ObjectIdentifier = oid("1.2.840.113549.1.9.16.1.1");
/// id-aa-signingCertificateV2 (RFC 5035): which certificate signed, by its hash.
pub const OID_SIGNING_CERTIFICATE_V2: ObjectIdentifier = oid("1.2.840.113549.1.9.16.2.47");
pub const OID_RSASSA_PSS: ObjectIdentifier = oid("1.2.840.113549.1.1.10");
pub const OID_EC_PUBLIC_KEY: ObjectIdentifier = oid("1.2.840.10045.2.1");
pub const OID_ED25519: ObjectIdentifier = oid("1.3.101.112");
pub const OID_ED448: ObjectIdentifier = oid("1.3.101.113");
// The algorithms the engine does itself, compared as values (no formatting per message).
pub const OID_RSA_ENCRYPTION: ObjectIdentifier = oid("1.2.840.113549.1.1.1");
pub const OID_RSAES_OAEP: ObjectIdentifier = oid("1.2.840.113549.1.1.7");
pub const OID_MGF1: ObjectIdentifier = oid("1.2.840.113549.1.1.8");
pub const OID_SHA1_RSA: ObjectIdentifier = oid("1.2.840.113549.1.1.5");
pub const OID_SHA224_RSA: ObjectIdentifier = oid("1.2.840.113549.1.1.14");
pub const OID_SHA256_RSA: ObjectIdentifier = oid("1.2.840.113549.1.1.11");
pub const OID_SHA384_RSA: ObjectIdentifier = oid("1.2.840.113549.1.1.12");
pub const OID_SHA512_RSA: ObjectIdentifier = oid("1.2.840.113549.1.1.13");
pub const OID_ECDSA_SHA1: ObjectIdentifier = oid("1.2.840.10045.4.1");
pub const OID_ECDSA_SHA224: ObjectIdentifier = oid("1.2.840.10045.4.3.1");
pub const OID_ECDSA_SHA256: ObjectIdentifier = oid("1.2.840.10045.4.3.2");
pub const OID_ECDSA_SHA384: ObjectIdentifier = oid("1.2.840.10045.4.3.3");
pub const OID_ECDSA_SHA512: ObjectIdentifier = oid("1.2.840.10045.4.3.4");
pub const OID_AES128_CBC: ObjectIdentifier = oid("2.16.840.1.101.3.4.1.2");
pub const OID_AES192_CBC: ObjectIdentifier = oid("2.16.840.1.101.3.4.1.22");
pub const OID_AES256_CBC: ObjectIdentifier = oid("2.16.840.1.101.3.4.1.42");
pub const OID_DES_EDE3_CBC: ObjectIdentifier = oid("1.2.840.113549.3.7");
pub const OID_AES128_GCM: ObjectIdentifier = oid("2.16.840.1.101.3.4.1.6");
pub const OID_AES192_GCM: ObjectIdentifier = oid("2.16.840.1.101.3.4.1.26");
pub const OID_AES256_GCM: ObjectIdentifier = oid("2.16.840.1.101.3.4.1.46");
pub const OID_SHA1: ObjectIdentifier = oid("1.3.14.3.2.26");
pub const OID_SHA224: ObjectIdentifier = oid("2.16.840.1.101.3.4.2.4");
pub const OID_SHA256: ObjectIdentifier = oid("2.16.840.1.101.3.4.2.1");
pub const OID_SHA384: ObjectIdentifier = oid("2.16.840.1.101.3.4.2.2");
pub const OID_SHA512: ObjectIdentifier = oid("2.16.840.1.101.3.4.2.3");
const OID_MD5: ObjectIdentifier = oid("1.2.840.113549.2.5");

const fn oid(dotted: &str) -> ObjectIdentifier {
    ObjectIdentifier::new_unwrap(dotted)
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

/// The same CMS blob as OpenSSL re-encodes it: the second try for an encoding our walker
/// does not read (multi-byte tags, lengths over 4 GB...), which OpenSSL's BER reader may.
pub fn reencoded(ber: &[u8]) -> Option<Vec<u8>> {
    openssl::cms::CmsContentInfo::from_der(ber)
        .and_then(|c| c.to_der())
        .ok()
}

/// [`signed_info_capped`], with OpenSSL's re-encoding as the second try (not for a
/// structure refused for its number of signers: re-encoding does not change that).
pub fn signed_info_any(ber: &[u8], max_signers: usize) -> Result<SignedInfo, String> {
    signed_info_capped(ber, max_signers).or_else(|e| {
        if e.starts_with(TOO_MANY_SIGNERS) {
            return Err(e);
        }
        reencoded(ber)
            .and_then(|der| signed_info_capped(&der, max_signers).ok())
            .ok_or(e)
    })
}

/// How the error of a SignedData with more signer infos than allowed begins.
pub const TOO_MANY_SIGNERS: &str = "too many signers";

/// [`envelope`], with OpenSSL's re-encoding as the second try.
pub fn envelope_any(ber: &[u8]) -> Result<Envelope, String> {
    envelope(ber).or_else(|e| reencoded(ber).and_then(|der| envelope(&der).ok()).ok_or(e))
}

/// How a signer (or a recipient) names its certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignerId {
    /// DER of the issuer name, contents of the serial number INTEGER, both as sent.
    IssuerSerial(Vec<u8>, Vec<u8>),
    SubjectKeyId(Vec<u8>),
}

impl SignerId {
    /// Whether this names the certificate `cert_der`: byte for byte, as RFC 5652 §5.3
    /// compares them. No normalisation (letter case, spaces, string types, leading zeros
    /// of the serial): a look-alike certificate must never stand in for the real one.
    pub fn names(&self, cert_der: &[u8]) -> bool {
        match self {
            SignerId::IssuerSerial(issuer, serial) => ber::cert_ids(cert_der).is_some_and(|c| {
                c.issuer == issuer.as_slice()
                    && tlv(c.serial).is_some_and(|(_, s, _)| s == serial.as_slice())
            }),
            SignerId::SubjectKeyId(id) => ber::subject_key_id(cert_der) == Some(id.as_slice()),
        }
    }

    /// `rid`/`sid`: IssuerAndSerialNumber or [0] SubjectKeyIdentifier.
    fn read(tag: u8, contents: &[u8]) -> Option<SignerId> {
        match tag {
            SEQUENCE => {
                let mut f = elements_whole(contents);
                let (SEQUENCE, issuer, _) = f.next()? else {
                    return None;
                };
                let (INTEGER, _, serial) = f.next()? else {
                    return None;
                };
                Some(SignerId::IssuerSerial(issuer.to_vec(), serial.to_vec()))
            }
            0x80 | 0xa0 => Some(SignerId::SubjectKeyId(
                octets(tag & CONSTRUCTED, contents)?.into_owned(),
            )),
            _ => None,
        }
    }
}

/// An AlgorithmIdentifier: the OID and its parameters (tag and contents), if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Algorithm {
    pub oid: ObjectIdentifier,
    pub params: Option<(u8, Vec<u8>)>,
}

impl Algorithm {
    fn read(contents: &[u8]) -> Option<Algorithm> {
        let mut f = elements(contents);
        let (OID, oid) = f.next()? else {
            return None;
        };
        Some(Algorithm {
            oid: ObjectIdentifier::from_bytes(oid).ok()?,
            params: f
                .next()
                .filter(|(tag, _)| *tag != ber::NULL)
                .map(|(t, c)| (t, c.to_vec())),
        })
    }
}

/// One SignerInfo, as far as we need it.
#[derive(Debug, Clone)]
pub struct SignerMeta {
    pub id: SignerId,
    /// Index of the signer's certificate in [`SignedInfo::certificates`]: the one
    /// certificate [`SignerId::names`] exactly. `None` when none does, or when several
    /// different ones do ([`Self::ambiguous`]).
    pub cert: Option<usize>,
    /// Several different certificates of the message carry the signer's identifier (a
    /// duplicate serial number or key identifier): which one signed cannot be told.
    pub ambiguous: bool,
    /// Digest algorithm.
    pub digest: ObjectIdentifier,
    /// SMIMECapabilities (RFC 8551 §2.5.2) announced in the signed attributes: the
    /// capability OIDs in the signer's order of preference, dotted.
    pub capabilities: Vec<String>,
    /// The signed attributes as the DER `SET OF` the signature covers; `None`: the
    /// signature is over the content itself.
    pub signed_attrs: Option<Vec<u8>>,
    /// The messageDigest and contentType attributes.
    pub message_digest: Option<Vec<u8>>,
    pub content_type: Option<ObjectIdentifier>,
    /// Why the attributes break RFC 5652 §5.3/§11 (a duplicated or multi-valued
    /// contentType/messageDigest/signingTime, one of them unsigned, a signed
    /// countersignature): such a signature is invalid whatever its cryptography says.
    pub attr_problem: Option<String>,
    pub signature_algorithm: Algorithm,
    pub signature: Vec<u8>,
}

/// One embedded certificate, kept as DER: OpenSSL 3 parses a certificate slowly (as long as
/// half an RSA signature: the public key goes through its decoder framework), so an
/// `X509` is made only where one is needed (see `super::x509_cache`).
#[derive(Debug, Clone)]
pub struct CertDer {
    pub der: Vec<u8>,
}

/// The certificates, content and signers of a SignedData.
#[derive(Debug, Clone)]
pub struct SignedInfo {
    pub certificates: Vec<CertDer>,
    pub signers: Vec<SignerMeta>,
    /// eContentType.
    pub content_type: ObjectIdentifier,
    /// The encapsulated content (opaque signing); `None` for a detached signature.
    pub content: Option<Vec<u8>>,
}

/// The content of a ContentInfo of type `want`: the contents of its `[0] EXPLICIT` value.
fn content_of(ber: &[u8], want: ObjectIdentifier) -> Result<(u8, &[u8]), String> {
    let bad = |what: &str| format!("not a CMS structure ({what})");
    let (SEQUENCE, info, _) = tlv(ber).ok_or_else(|| bad("truncated or garbled"))? else {
        return Err(bad("no ContentInfo"));
    };
    let mut f = elements(info);
    let Some((OID, oid)) = f.next() else {
        return Err(bad("no content type"));
    };
    let oid = ObjectIdentifier::from_bytes(oid).map_err(|_| bad("bad content type"))?;
    if oid != want {
        return Err(format!("expected {want}, found {oid}"));
    }
    let Some((0xa0, explicit)) = f.next() else {
        return Err(bad("no content"));
    };
    let (tag, content, _) = tlv(explicit).ok_or_else(|| bad("truncated content"))?;
    Ok((tag, content))
}

/// Read a SignedData (BER or DER).
pub fn signed_info(ber: &[u8]) -> Result<SignedInfo, String> {
    signed_info_capped(ber, usize::MAX)
}

/// [`signed_info`], refusing more than `max_signers` signer infos before reading any: each
/// costs a pass over the content and a public-key operation.
pub fn signed_info_capped(ber: &[u8], max_signers: usize) -> Result<SignedInfo, String> {
    let bad = |what: &str| format!("corrupt signed-data: {what}");
    let (SEQUENCE, sd) = content_of(ber, OID_SIGNED_DATA)? else {
        return Err(bad("not a SEQUENCE"));
    };
    let mut f = elements(sd);
    let (Some((INTEGER, _)), Some((SET, _)), Some((SEQUENCE, encap))) =
        (f.next(), f.next(), f.next())
    else {
        return Err(bad("version, digest algorithms or content missing"));
    };
    let mut next = f.next();
    let mut certs = None;
    if let Some((0xa0, c)) = next {
        certs = Some(c);
        next = f.next();
    }
    if let Some((0xa1, _crls)) = next {
        next = f.next();
    }
    let Some((SET, signer_infos)) = next else {
        return Err(bad("no signer infos"));
    };
    let mut encap = elements(encap);
    let Some((OID, content_type)) = encap.next() else {
        return Err(bad("no content type"));
    };
    let content_type =
        ObjectIdentifier::from_bytes(content_type).map_err(|_| bad("bad content type"))?;
    let content = match encap.next() {
        Some((0xa0, explicit)) => {
            let (tag, value, _) = tlv(explicit).ok_or_else(|| bad("truncated content"))?;
            if tag & !CONSTRUCTED != OCTET_STRING {
                return Err(bad("content is not an OCTET STRING"));
            }
            Some(
                octets(tag, value)
                    .ok_or_else(|| bad("garbled content"))?
                    .into_owned(),
            )
        }
        _ => None,
    };
    let certificates: Vec<CertDer> = certs
        .map(elements_whole)
        .into_iter()
        .flatten()
        // other CertificateChoices (attribute certificates...) are tagged: not ours to read
        .filter(|(tag, _, _)| *tag == SEQUENCE)
        .map(|(_, der, _)| CertDer { der: der.to_vec() })
        .collect();
    let count = elements(signer_infos).count();
    if count > max_signers {
        return Err(format!(
            "{TOO_MANY_SIGNERS}: {count} signer infos, more than the {max_signers} allowed \
             ([smime] max_signers)"
        ));
    }
    let mut signers = Vec::with_capacity(count);
    for (tag, si) in elements(signer_infos) {
        if tag != SEQUENCE {
            return Err(bad("a signer info is not a SEQUENCE"));
        }
        let signer = read_signer(si, &certificates).ok_or_else(|| bad("unreadable signer info"))?;
        signers.push(signer?);
    }
    Ok(SignedInfo {
        certificates,
        signers,
        content_type,
        content,
    })
}

/// The version and the certificate identifier that open a SignerInfo (`sid`) and a
/// KeyTransRecipientInfo (`rid`); the fields after them.
fn versioned_id(contents: &[u8]) -> Option<(SignerId, impl Iterator<Item = (u8, &[u8])>)> {
    let mut f = elements(contents);
    let (INTEGER, _version) = f.next()? else {
        return None;
    };
    let (tag, id) = f.next()?;
    Some((SignerId::read(tag, id)?, f))
}

/// One SignerInfo: `None` when its structure is garbled, `Err` for a bad attribute.
fn read_signer(si: &[u8], certificates: &[CertDer]) -> Option<Result<SignerMeta, String>> {
    let (id, mut f) = versioned_id(si)?;
    let (SEQUENCE, digest) = f.next()? else {
        return None;
    };
    let digest = Algorithm::read(digest)?.oid;
    let mut next = f.next()?;
    let mut attrs = None;
    if next.0 == 0xa0 {
        attrs = Some(next.1);
        next = f.next()?;
    }
    let (SEQUENCE, signature_algorithm) = next else {
        return None;
    };
    let signature_algorithm = Algorithm::read(signature_algorithm)?;
    let (tag, signature) = f.next()?;
    if tag & !CONSTRUCTED != OCTET_STRING {
        return None;
    }
    let signature = octets(tag, signature)?.into_owned();
    let unsigned = match f.next() {
        Some((0xa1, u)) => Some(u),
        None => None,
        Some(_) => return None,
    };
    // The certificate the identifier names exactly; the same certificate sent twice is one.
    let mut cert = None;
    let mut ambiguous = false;
    for (i, c) in certificates.iter().enumerate() {
        if id.names(&c.der) {
            match cert {
                None => cert = Some(i),
                Some(first) if certificates[first].der == c.der => {}
                Some(_) => ambiguous = true,
            }
        }
    }
    if ambiguous {
        cert = None;
    }
    let mut meta = SignerMeta {
        cert,
        ambiguous,
        id,
        digest,
        capabilities: Vec::new(),
        // The signature covers the DER of the attributes with the SET OF tag (RFC 5652
        // §5.4); a DER sender's bytes are that with the [0] tag swapped.
        signed_attrs: attrs.map(|a| ber::tlv_of(SET, &[a])),
        message_digest: None,
        content_type: None,
        attr_problem: None,
        signature_algorithm,
        signature,
    };
    let mut problem = |p: String| {
        meta_problem(&mut meta.attr_problem, p);
    };
    // RFC 5652 §11: contentType, messageDigest and signingTime once each, single-valued,
    // and signed; a countersignature unsigned. (Counts: contentType, messageDigest,
    // signingTime.)
    let mut seen = [0usize; 3];
    let mut found_digest = None;
    let mut found_type = None;
    let mut found_caps = None;
    if attrs.is_some_and(<[u8]>::is_empty) {
        problem("an empty set of signed attributes".into());
    }
    for (tag, attr) in elements(attrs.unwrap_or_default()) {
        if tag != SEQUENCE {
            return None;
        }
        let mut a = elements(attr);
        let (OID, oid) = a.next()? else {
            return None;
        };
        let (SET, values) = a.next()? else {
            return None;
        };
        let oid = ObjectIdentifier::from_bytes(oid).ok()?;
        let count = elements(values).count();
        let Some((vtag, value)) = elements(values).next() else {
            continue;
        };
        let slot = match oid {
            OID_CONTENT_TYPE => Some((0, "contentType")),
            OID_MESSAGE_DIGEST => Some((1, "messageDigest")),
            OID_SIGNING_TIME => Some((2, "signingTime")),
            _ => None,
        };
        if let Some((i, name)) = slot {
            seen[i] += 1;
            if seen[i] == 2 {
                problem(format!("the {name} attribute is there more than once"));
            }
            if count != 1 {
                problem(format!("the {name} attribute has {count} values, not one"));
            }
        }
        match oid {
            OID_MESSAGE_DIGEST if vtag & !CONSTRUCTED == OCTET_STRING => {
                found_digest = Some(octets(vtag, value)?.into_owned());
            }
            OID_CONTENT_TYPE if vtag == OID => {
                found_type = ObjectIdentifier::from_bytes(value).ok();
            }
            OID_COUNTERSIGNATURE => {
                problem("a countersignature among the signed attributes".into());
            }
            OID_SMIME_CAPABILITIES => match capabilities(vtag, value) {
                Some(caps) => found_caps = Some(caps),
                None => return Some(Err("corrupt SMIMECapabilities".into())),
            },
            _ => {}
        }
    }
    for (tag, attr) in elements(unsigned.unwrap_or_default()) {
        if tag != SEQUENCE {
            return None;
        }
        let (OID, oid) = elements(attr).next()? else {
            return None;
        };
        let name = match ObjectIdentifier::from_bytes(oid).ok()? {
            OID_CONTENT_TYPE => "contentType",
            OID_MESSAGE_DIGEST => "messageDigest",
            OID_SIGNING_TIME => "signingTime",
            _ => continue,
        };
        problem(format!(
            "the {name} attribute is among the unsigned attributes"
        ));
    }
    meta.message_digest = found_digest;
    meta.content_type = found_type;
    if let Some(caps) = found_caps {
        meta.capabilities = caps;
    }
    Some(Ok(meta))
}

/// Keep the first attribute problem (the one the report names).
fn meta_problem(slot: &mut Option<String>, p: String) {
    if slot.is_none() {
        *slot = Some(p);
    }
}

/// SMIMECapabilities ::= SEQUENCE OF SMIMECapability { capabilityID OID, parameters ANY
/// OPTIONAL }, as dotted OIDs. Read with the walker and formatted by hand: this runs on
/// every signed message, and the generic DER decoder plus `Display` cost more than the
/// rest of reading the signer. `None` when the structure is garbled.
fn capabilities(tag: u8, value: &[u8]) -> Option<Vec<String>> {
    if tag != SEQUENCE {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = value;
    while !rest.is_empty() {
        let (SEQUENCE, capability, after) = ber::tlv(rest)? else {
            return None;
        };
        let (OID, id) = elements(capability).next()? else {
            return None;
        };
        out.push(ber::oid_dotted(id)?);
        rest = after;
    }
    Some(out)
}

/// One KeyTransRecipientInfo (RSA key transport).
#[derive(Debug, Clone)]
pub struct KeyTransRecipient {
    pub id: SignerId,
    pub key_cipher: Algorithm,
    pub encrypted_key: Vec<u8>,
}

/// An EnvelopedData or AuthEnvelopedData.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub authenticated: bool,
    pub recipients: Vec<KeyTransRecipient>,
    /// Recipients of other kinds (key agreement, KEK, password): OpenSSL's to read.
    pub other_recipients: usize,
    /// The type of the encrypted content (id-data: a MIME entity).
    pub content_type: ObjectIdentifier,
    pub content_cipher: Algorithm,
    pub ciphertext: Vec<u8>,
    /// AuthEnvelopedData: the authenticated attributes as DER `SET OF` (the AAD), and the
    /// MAC (GCM tag).
    pub auth_attrs: Option<Vec<u8>>,
    pub mac: Option<Vec<u8>>,
}

/// Read an EnvelopedData or AuthEnvelopedData (BER or DER).
pub fn envelope(ber: &[u8]) -> Result<Envelope, String> {
    let authenticated = kind(ber)? == Kind::AuthEnveloped;
    let what = if authenticated {
        "authEnveloped-data"
    } else {
        "enveloped-data"
    };
    let bad = |why: &str| format!("corrupt {what}: {why}");
    let want = if authenticated {
        OID_AUTH_ENVELOPED_DATA
    } else {
        OID_ENVELOPED_DATA
    };
    let (SEQUENCE, env) = content_of(ber, want)? else {
        return Err(bad("not a SEQUENCE"));
    };
    let mut f = elements(env);
    let Some((INTEGER, _version)) = f.next() else {
        return Err(bad("no version"));
    };
    let mut next = f.next();
    if let Some((0xa0, _originator)) = next {
        next = f.next();
    }
    let Some((SET, infos)) = next else {
        return Err(bad("no recipient infos"));
    };
    let Some((SEQUENCE, content)) = f.next() else {
        return Err(bad("no encrypted content info"));
    };
    let mut auth_attrs = None;
    let mut mac = None;
    if authenticated {
        let mut next = f.next();
        if let Some((0xa1, attrs)) = next {
            auth_attrs = Some(ber::tlv_of(SET, &[attrs]));
            next = f.next();
        }
        match next {
            Some((tag, m)) if tag & !CONSTRUCTED == OCTET_STRING => {
                mac = Some(
                    octets(tag, m)
                        .ok_or_else(|| bad("garbled MAC"))?
                        .into_owned(),
                );
            }
            _ => return Err(bad("no MAC")),
        }
    }
    let mut recipients = Vec::new();
    let mut other_recipients = 0;
    for (tag, ri) in elements(infos) {
        if tag != SEQUENCE {
            other_recipients += 1;
            continue;
        }
        recipients.push(read_ktri(ri).ok_or_else(|| bad("unreadable recipient info"))?);
    }
    let mut c = elements(content);
    let (Some((OID, content_type)), Some((SEQUENCE, cipher))) = (c.next(), c.next()) else {
        return Err(bad("no content type or cipher"));
    };
    let content_type =
        ObjectIdentifier::from_bytes(content_type).map_err(|_| bad("bad content type"))?;
    let content_cipher = Algorithm::read(cipher).ok_or_else(|| bad("unreadable cipher"))?;
    let ciphertext = match c.next() {
        Some((tag @ (0x80 | 0xa0), ct)) => octets(tag & CONSTRUCTED, ct)
            .ok_or_else(|| bad("garbled content"))?
            .into_owned(),
        _ => return Err(bad("no encrypted content")),
    };
    Ok(Envelope {
        authenticated,
        recipients,
        other_recipients,
        content_type,
        content_cipher,
        ciphertext,
        auth_attrs,
        mac,
    })
}

fn read_ktri(ri: &[u8]) -> Option<KeyTransRecipient> {
    let (id, mut f) = versioned_id(ri)?;
    let (SEQUENCE, alg) = f.next()? else {
        return None;
    };
    let (tag, key) = f.next()?;
    if tag & !CONSTRUCTED != OCTET_STRING {
        return None;
    }
    Some(KeyTransRecipient {
        id,
        key_cipher: Algorithm::read(alg)?,
        encrypted_key: octets(tag, key)?.into_owned(),
    })
}

/// Who an EnvelopedData or AuthEnvelopedData is addressed to, for an error message
/// ("issuer serial N" or "key id"); empty when it cannot be read.
pub fn recipients(ber: &[u8]) -> Vec<String> {
    let Ok(env) = envelope(ber) else {
        return Vec::new();
    };
    let mut out: Vec<String> = env
        .recipients
        .iter()
        .map(|r| match &r.id {
            SignerId::IssuerSerial(issuer, serial) => format!(
                "{} serial {}",
                cms::cert::x509::name::Name::from_der(issuer)
                    .map(|n| n.to_string())
                    .unwrap_or_else(|_| "(unreadable issuer)".into()),
                hex(serial)
            ),
            SignerId::SubjectKeyId(id) => format!("key id {}", hex(id)),
        })
        .collect();
    out.extend((0..env.other_recipients).map(|_| "a non-RSA recipient".to_string()));
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A readable name for the digest OIDs S/MIME uses; others dotted.
pub fn digest_name(oid: &ObjectIdentifier) -> String {
    match *oid {
        OID_SHA1 => "sha1",
        OID_SHA224 => "sha224",
        OID_SHA256 => "sha256",
        OID_SHA384 => "sha384",
        OID_SHA512 => "sha512",
        OID_MD5 => "md5",
        _ => return oid.to_string(),
    }
    .to_string()
}
