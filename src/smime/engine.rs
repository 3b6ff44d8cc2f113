//! The S/MIME engine: pure functions over OpenSSL types, no I/O and no store.
//!
//! - [`unwrap`]: peel every S/MIME layer off an inbound message — decrypt enveloped-data
//!   and authEnveloped-data with the first of the given keys that fits, verify detached
//!   (`multipart/signed`) and opaque (signed-data) signatures, in any nesting — and return
//!   the plaintext entity with one result per signature.
//! - [`sign`] and [`encrypt`]: wrap an outbound entity (detached SHA-256 signature;
//!   AES-256-GCM or AES-256-CBC content encryption, RSA key transport).
//!
//! All cryptography is OpenSSL's. The CMS structures are read by [`super::cms_info`] and
//! written by [`super::cms_build`]; this module does the cryptography on them with
//! OpenSSL's primitives (RSA with PKCS#1 v1.5 and OAEP, ECDSA, SHA-1/2, AES-CBC/GCM,
//! 3DES). Why not OpenSSL's whole-message CMS functions: in OpenSSL 3.0 their machinery
//! (ASN.1 templates, BIO chains, algorithm fetches per operation) cost as much again as a
//! third of the RSA operation on every message (benches/smime_engine.rs). What this path
//! does not read — key agreement, RC2, other key types — still goes through `CMS_decrypt` /
//! `CMS_sign` / `CMS_encrypt`. Signatures are verified here only (RSA PKCS#1 v1.5 and PSS,
//! ECDSA, EdDSA): `CMS_verify` picks the signer's certificate by its own, looser name
//! comparison, and the certificate that verified a signature must be the one whose chain
//! is judged and whose address is reported. The MIME around the CMS
//! blobs is written by [`super::mime`]. Errors are values: malformed, truncated or
//! undecryptable input never panics.

use super::key_ops::{self, Setup};
use super::symmetric;
use der::asn1::ObjectIdentifier;
use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::error::ErrorStack;
use openssl::md::{Md, MdRef};
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::store::X509StoreRef;
use openssl::x509::{X509, X509StoreContext};
use std::time::{Duration, Instant};

use super::cms_info::{
    self, Kind, OID_AES128_CBC, OID_AES128_GCM, OID_AES192_CBC, OID_AES192_GCM, OID_AES256_CBC,
    OID_AES256_GCM, OID_DES_EDE3_CBC, OID_EC_PUBLIC_KEY, OID_ECDSA_SHA1, OID_ECDSA_SHA224,
    OID_ECDSA_SHA256, OID_ECDSA_SHA384, OID_ECDSA_SHA512, OID_ED448, OID_ED25519, OID_MGF1,
    OID_RSA_ENCRYPTION, OID_RSAES_OAEP, OID_RSASSA_PSS, OID_SHA1_RSA, OID_SHA224_RSA,
    OID_SHA256_RSA, OID_SHA384_RSA, OID_SHA512_RSA,
};
use super::{cms_build, mime, x509_cache};
use crate::certs::der as der_walk;

/// `[smime] max_layers` when not configured: nesting deeper than this is refused (real
/// clients use two layers; a bomb uses many).
pub const DEFAULT_MAX_LAYERS: usize = 6;

/// A certificate with its private key: something we can decrypt or sign with.
pub struct KeyPair<'a> {
    pub cert: &'a X509,
    pub key: &'a PKey<Private>,
}

/// Why S/MIME processing failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmimeError {
    /// The S/MIME structure is broken: truncated, garbled, not CMS, bad MIME.
    #[error("malformed S/MIME: {0}")]
    Malformed(String),
    /// Well-formed, but none of our keys opens it.
    #[error("cannot decrypt: {0}")]
    Undecryptable(String),
    /// Building outbound S/MIME failed (a key or certificate OpenSSL refuses).
    #[error("S/MIME {0}")]
    Build(String),
}

/// The verdict on one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureStatus {
    /// The signature verifies and the signer's chain leads to a trusted CA.
    Valid,
    /// The signature itself verifies, the signer's certificate does not (unknown CA,
    /// expired, wrong key usage...); the text says why.
    UntrustedChain(String),
    /// The signature does not verify (content changed, wrong key, unusable signer info).
    Invalid(String),
}

/// One signature found on the message.
#[derive(Debug, Clone)]
pub struct SignatureResult {
    pub status: SignatureStatus,
    /// The signer's certificate (DER), when the message carries it; [`Self::signer`].
    pub signer_der: Option<Vec<u8>>,
    /// The other certificates the message carries (the signer's chain, as sent; DER);
    /// [`Self::chain`].
    pub chain_der: Vec<Vec<u8>>,
    /// The signer certificate's e-mail address (subjectAltName, else subject emailAddress).
    pub signer_address: Option<String>,
    /// SMIMECapabilities the signer announced (dotted OIDs, preference order).
    pub capabilities: Vec<String>,
    /// Digest of the signature, e.g. "sha256" or "sha1".
    pub digest: String,
    /// Opaque signed-data rather than multipart/signed.
    pub opaque: bool,
}

impl SignatureResult {
    /// The signer's certificate as an OpenSSL object (see `x509_cache`).
    pub fn signer(&self) -> Option<X509> {
        self.signer_der
            .as_deref()
            .and_then(|d| x509_cache::parse(d).ok())
    }

    /// The chain as sent, as OpenSSL objects (unparseable ones left out).
    pub fn chain(&self) -> Vec<X509> {
        self.chain_der
            .iter()
            .filter_map(|d| x509_cache::parse(d).ok())
            .collect()
    }
}

/// One S/MIME layer, outermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    Encrypted { authenticated: bool },
    Signed { opaque: bool },
}

/// What [`unwrap`] found.
#[derive(Debug, Clone)]
pub struct Unwrapped {
    /// The innermost entity (content header fields + body), CRLF line ends.
    pub plaintext: Vec<u8>,
    /// The signed entity that directly wraps the plaintext (no encryption between them),
    /// for delivery with the signature kept.
    pub signed_entity: Option<Vec<u8>>,
    pub layers: Vec<Layer>,
    pub signatures: Vec<SignatureResult>,
    /// For each encrypted layer, outermost first: the indexes (in the keys given to
    /// [`unwrap`]) of the keys that open it.
    pub opened_with: Vec<Vec<usize>>,
    /// Why the innermost entity was not unwrapped further although it is S/MIME (a
    /// certs-only message, a signed receipt, content that is not a MIME entity): it is
    /// delivered as it came.
    pub left_as_sent: Option<String>,
}

impl Unwrapped {
    pub fn decrypted(&self) -> bool {
        self.layers
            .iter()
            .any(|l| matches!(l, Layer::Encrypted { .. }))
    }
}

/// How an entity is wrapped, from its Content-Type.
enum Wrapping<'a> {
    /// application/pkcs7-mime (or a .p7m octet-stream): a CMS blob in the body.
    Opaque(mime::ContentType),
    /// multipart/signed with a pkcs7-signature.
    Detached(mime::SignedParts<'a>),
    None,
}

fn wrapping<'a>(entity: &'a [u8]) -> Result<Wrapping<'a>, SmimeError> {
    let s = mime::split(entity);
    if !mime::may_be_smime(s.header) {
        return Ok(Wrapping::None);
    }
    wrapping_parsed(s)
}

/// [`wrapping`] by the full parse of the content fields.
fn wrapping_parsed(s: mime::Split<'_>) -> Result<Wrapping<'_>, SmimeError> {
    let ct = mime::content_type(s.header);
    match ct.mime_type.as_str() {
        "application/pkcs7-mime" | "application/x-pkcs7-mime" => Ok(Wrapping::Opaque(ct)),
        "application/octet-stream"
            if ct
                .file_name
                .as_deref()
                .is_some_and(|f| f.to_ascii_lowercase().ends_with(".p7m")) =>
        {
            Ok(Wrapping::Opaque(ct))
        }
        "multipart/signed"
            if ct
                .param("protocol")
                .is_some_and(|p| p.to_ascii_lowercase().ends_with("pkcs7-signature")) =>
        {
            let boundary = ct.param("boundary").ok_or_else(|| {
                SmimeError::Malformed("multipart/signed without a boundary".into())
            })?;
            let parts = mime::signed_parts(s.body, boundary).map_err(SmimeError::Malformed)?;
            Ok(Wrapping::Detached(parts))
        }
        _ => Ok(Wrapping::None),
    }
}

/// Whether a message (or entity) is S/MIME at its top level.
pub fn is_smime(entity: &[u8]) -> bool {
    !matches!(wrapping(entity), Ok(Wrapping::None))
}

/// Peel all S/MIME layers off `message`. `Ok(None)`: not S/MIME at the top.
/// `keys` are tried in order for each encrypted layer; `trust` decides chain trust.
pub fn unwrap(
    message: &[u8],
    keys: &[KeyPair<'_>],
    trust: &X509StoreRef,
) -> Result<Option<Unwrapped>, SmimeError> {
    unwrap_with(message, keys, trust, &[], None)
}

/// [`unwrap`], with CA certificates we hold but do not trust (`intermediates`) to build a
/// signer's chain when the sender left them out of the message (many clients send only
/// their own certificate). They link a chain to an anchor; they never are one.
/// `verdicts` remembers chain verdicts between messages; it must belong to `trust` and
/// `intermediates` (see [`ChainVerdicts`]).
pub fn unwrap_with(
    message: &[u8],
    keys: &[KeyPair<'_>],
    trust: &X509StoreRef,
    intermediates: &[X509],
    verdicts: Option<&ChainVerdicts>,
) -> Result<Option<Unwrapped>, SmimeError> {
    unwrap_limited(
        message,
        keys,
        trust,
        intermediates,
        verdicts,
        &Limits::default(),
    )
}

/// [`unwrap_with`] within `limits` (signers per signature, a deadline).
pub fn unwrap_limited(
    message: &[u8],
    keys: &[KeyPair<'_>],
    trust: &X509StoreRef,
    intermediates: &[X509],
    verdicts: Option<&ChainVerdicts>,
    limits: &Limits,
) -> Result<Option<Unwrapped>, SmimeError> {
    let ctx = VerifyContext {
        trust,
        intermediates,
        verdicts,
        limits,
    };
    let mut out = Unwrapped {
        plaintext: Vec::new(),
        signed_entity: None,
        layers: Vec::new(),
        signatures: Vec::new(),
        opened_with: Vec::new(),
        left_as_sent: None,
    };
    // The top level is a whole message; only its content fields matter from here on (the
    // entity has the message's Content-Type, so the first round tells whether it is S/MIME).
    let mut current = mime::message_parts(message).entity;
    loop {
        limits.check_deadline()?;
        let found = wrapping(&current)?;
        if !matches!(found, Wrapping::None) && out.layers.len() >= limits.max_layers {
            return Err(SmimeError::Malformed(format!(
                "more than {} nested S/MIME layers ([smime] max_layers)",
                limits.max_layers
            )));
        }
        let next = match found {
            Wrapping::None if out.layers.is_empty() => return Ok(None),
            Wrapping::None => break,
            Wrapping::Detached(parts) => {
                let sig_entity = mime::split(parts.signature);
                let sig_ct = mime::content_type(sig_entity.header);
                let der = mime::decode_body(sig_entity.body, &sig_ct.transfer_encoding)
                    .map_err(|e| SmimeError::Malformed(format!("signature part: {e}")))?;
                let content = mime::to_crlf(parts.content);
                let v = verify(&der, Some(&content), &ctx, false)?;
                out.signatures.extend(v.results);
                out.layers.push(Layer::Signed { opaque: false });
                out.signed_entity = Some(current.clone());
                content
            }
            Wrapping::Opaque(ct) => {
                let body = mime::split(&current).body;
                let der = mime::decode_body(body, &ct.transfer_encoding)
                    .map_err(|e| SmimeError::Malformed(format!("pkcs7-mime body: {e}")))?;
                match cms_info::kind(&der).map_err(SmimeError::Malformed)? {
                    Kind::Signed => {
                        let v = verify(&der, None, &ctx, true)?;
                        if v.certs_only {
                            // Certificates only: nothing signed, nothing to unwrap. They
                            // vouch for nothing, so nothing is harvested from them.
                            out.left_as_sent =
                                Some("certificates only (certs-only), not a signed message".into());
                            break;
                        }
                        out.signatures.extend(v.results);
                        out.layers.push(Layer::Signed { opaque: true });
                        out.signed_entity = Some(current.clone());
                        if v.content_type != cms_info::OID_DATA {
                            // A signed receipt, or another content that is not a MIME
                            // entity: its bytes are not mail text. The signed entity
                            // (base64 MIME) is delivered as it came.
                            out.left_as_sent = Some(if v.content_type == cms_info::OID_RECEIPT {
                                "a signed receipt, delivered as sent".into()
                            } else {
                                format!(
                                    "signed content of type {}, not a MIME entity, delivered as sent",
                                    v.content_type
                                )
                            });
                            break;
                        }
                        mime::as_entity(mime::into_crlf(v.content))
                    }
                    k @ (Kind::Enveloped | Kind::AuthEnveloped) => {
                        let envelope =
                            cms_info::envelope_any(&der).map_err(SmimeError::Malformed)?;
                        if envelope.content_type != cms_info::OID_DATA {
                            // Not a MIME entity inside: its bytes are not mail text.
                            out.left_as_sent = Some(format!(
                                "encrypted content of type {}, not a MIME entity, delivered as sent",
                                envelope.content_type
                            ));
                            break;
                        }
                        let (plain, openers) = decrypt(&der, &envelope, keys)?;
                        out.layers.push(Layer::Encrypted {
                            authenticated: k == Kind::AuthEnveloped,
                        });
                        out.opened_with.push(openers);
                        // A signature outside the encryption does not sign the plaintext.
                        out.signed_entity = None;
                        mime::as_entity(mime::into_crlf(plain))
                    }
                    Kind::Other => {
                        return Err(SmimeError::Malformed(
                            "pkcs7-mime holding neither signed nor enveloped data".into(),
                        ));
                    }
                }
            }
        };
        current = next;
    }
    out.plaintext = current;
    Ok(Some(out))
}

/// Decrypt with the first key that fits.
///
/// RSA key transport (PKCS#1 v1.5 and OAEP) with AES-CBC, AES-GCM or 3DES content — what
/// S/MIME clients send — is opened here with OpenSSL's primitives (see `open_keyed`); anything
/// else (key agreement, RC2, a recipient our keys match only by a differently encoded
/// name) goes to OpenSSL's `CMS_decrypt`, which reads every kind.
/// Returns the plaintext and the indexes of every given key that opens it (the first
/// that did, then the others that hold the same content key): the plaintext is for their
/// owners only.
fn decrypt(
    der: &[u8],
    envelope: &cms_info::Envelope,
    keys: &[KeyPair<'_>],
) -> Result<(Vec<u8>, Vec<usize>), SmimeError> {
    let mut errors = Vec::new();
    let mut ask_openssl = false;
    for (i, k) in keys.iter().enumerate() {
        let Ok(cert_der) = k.cert.to_der() else {
            ask_openssl = true;
            continue;
        };
        let Some(recipient) = envelope.recipients.iter().find(|r| r.id.names(&cert_der)) else {
            continue;
        };
        match open_keyed(envelope, recipient, k.key) {
            (Opened::Plain(plain), cek) => {
                let mut openers = vec![i];
                // Only with several keys (several local recipients): one more key
                // operation for each later key the message is addressed to.
                for (j, other) in keys.iter().enumerate().skip(i + 1) {
                    let Ok(der) = other.cert.to_der() else {
                        continue;
                    };
                    let same = envelope.recipients.iter().filter(|r| r.id.names(&der)).any(
                        |r| matches!(unwrap_content_key(r, other.key), Some(Ok(k)) if k == cek),
                    );
                    if same {
                        openers.push(j);
                    }
                }
                return Ok((plain, openers));
            }
            (Opened::Failed(why), _) => errors.push(format!("{}: {why}", subject_of(k.cert))),
            (Opened::NotHere, _) => ask_openssl = true,
        }
    }
    if ask_openssl || (errors.is_empty() && !keys.is_empty()) {
        tracing::debug!(
            "S/MIME: decrypting with OpenSSL's CMS (an algorithm or recipient this path does not read)"
        );
        return openssl_decrypt(der, keys);
    }
    Err(undecryptable(der, keys.len(), &errors))
}

fn undecryptable(der: &[u8], keys: usize, errors: &[String]) -> SmimeError {
    let to = cms_info::recipients(der);
    let to = if to.is_empty() {
        String::new()
    } else {
        format!("; addressed to {}", to.join(", "))
    };
    if keys == 0 {
        return SmimeError::Undecryptable(format!("no private key for this recipient{to}"));
    }
    SmimeError::Undecryptable(format!(
        "none of our {keys} key(s) fits ({}){to}",
        errors.join("; ")
    ))
}

/// OpenSSL's `CMS_decrypt`, key by key, for what [`open`] does not read; as [`decrypt`],
/// the indexes of every key that opens it.
fn openssl_decrypt(der: &[u8], keys: &[KeyPair<'_>]) -> Result<(Vec<u8>, Vec<usize>), SmimeError> {
    let cms = CmsContentInfo::from_der(der)
        .map_err(|e| SmimeError::Malformed(format!("corrupt enveloped data: {e}")))?;
    let mut errors = Vec::new();
    for (i, k) in keys.iter().enumerate() {
        // With the certificate given, OpenSSL picks the matching RecipientInfo and fails
        // cleanly when there is none.
        match cms.decrypt(k.key, k.cert) {
            Ok(plain) => {
                let mut openers = vec![i];
                for (j, other) in keys.iter().enumerate().skip(i + 1) {
                    if cms.decrypt(other.key, other.cert).is_ok_and(|p| p == plain) {
                        openers.push(j);
                    }
                }
                return Ok((plain, openers));
            }
            Err(e) => errors.push(format!("{}: {}", subject_of(k.cert), first_error(&e))),
        }
    }
    Err(undecryptable(der, keys.len(), &errors))
}

/// What [`open`] made of one recipient info.
#[derive(Debug)]
pub(super) enum Opened {
    Plain(Vec<u8>),
    /// Ours, but it does not open: a wrong key, a changed message.
    Failed(String),
    /// An algorithm or key type left to OpenSSL's CMS.
    NotHere,
}

/// The digests S/MIME signatures and RSA-OAEP use (the values index [`ContentDigests`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Digest {
    Sha1 = 0,
    Sha224,
    Sha256,
    Sha384,
    Sha512,
}

impl Digest {
    fn of(oid: &ObjectIdentifier) -> Option<Digest> {
        Some(match *oid {
            cms_info::OID_SHA1 => Digest::Sha1,
            cms_info::OID_SHA224 => Digest::Sha224,
            cms_info::OID_SHA256 => Digest::Sha256,
            cms_info::OID_SHA384 => Digest::Sha384,
            cms_info::OID_SHA512 => Digest::Sha512,
            _ => return None,
        })
    }

    fn md(self) -> &'static MdRef {
        match self {
            Digest::Sha1 => Md::sha1(),
            Digest::Sha224 => Md::sha224(),
            Digest::Sha256 => Md::sha256(),
            Digest::Sha384 => Md::sha384(),
            Digest::Sha512 => Md::sha512(),
        }
    }

    /// OpenSSL's low-level SHA hashers: no algorithm fetch per call (in OpenSSL 3.0 a fetch
    /// takes a lock shared by every thread, and even the one-shot `SHA256()` fetches).
    fn hash(self, data: &[u8]) -> Vec<u8> {
        use openssl::sha::{Sha1, Sha224, Sha256, Sha384, Sha512};
        macro_rules! digest {
            ($hasher:ty) => {{
                let mut h = <$hasher>::new();
                h.update(data);
                h.finish().to_vec()
            }};
        }
        match self {
            Digest::Sha1 => digest!(Sha1),
            Digest::Sha224 => digest!(Sha224),
            Digest::Sha256 => digest!(Sha256),
            Digest::Sha384 => digest!(Sha384),
            Digest::Sha512 => digest!(Sha512),
        }
    }
}

/// The content key of `recipient`, decrypted with `key`: `None` for a key transport this
/// path does not do (OAEP with a label, other key types).
fn unwrap_content_key(
    recipient: &cms_info::KeyTransRecipient,
    key: &PKey<Private>,
) -> Option<Result<Vec<u8>, ErrorStack>> {
    if key.id() != Id::RSA {
        return None;
    }
    let alg = &recipient.key_cipher;
    let oaep = match alg.oid {
        OID_RSA_ENCRYPTION => None,
        OID_RSAES_OAEP => Some(oaep_digests(alg.params.as_ref())?),
        _ => return None,
    };
    let setup = match oaep {
        None => Setup::DecryptRsaPkcs1,
        Some((hash, mgf)) => Setup::DecryptRsaOaep {
            hash: hash.md(),
            mgf1: mgf.md(),
        },
    };
    Some(key_ops::with_private(key, setup, |ctx| {
        let mut cek = Vec::new();
        ctx.decrypt_to_vec(&recipient.encrypted_key, &mut cek)?;
        Ok(cek)
    }))
}

/// RSAES-OAEP-params (RFC 4055): the hash and the MGF1 hash, SHA-1 where absent. `None`
/// for what this path does not do (a label, another mask generation function).
fn oaep_digests(params: Option<&(u8, Vec<u8>)>) -> Option<(Digest, Digest)> {
    let mut hash = Digest::Sha1;
    let mut mgf = Digest::Sha1;
    let Some((tag, params)) = params else {
        return Some((hash, mgf));
    };
    if *tag != der_walk::SEQUENCE {
        return None;
    }
    let algorithm_oid = algorithm_identifier;
    for (tag, value) in der_walk::elements(params) {
        match tag {
            0xa0 => hash = Digest::of(&algorithm_oid(value)?.0)?,
            0xa1 => {
                let (oid, inner) = algorithm_oid(value)?;
                if oid != OID_MGF1 {
                    return None; // not MGF1
                }
                mgf = Digest::of(&algorithm_oid(&inner?)?.0)?;
            }
            _ => return None, // pSourceFunc: a label
        }
    }
    Some((hash, mgf))
}

/// A content cipher this path reads, with its IV or nonce and the GCM tag length.
struct ContentAlg<'a> {
    cipher: Cipher,
    iv: &'a [u8],
    gcm_tag_len: Option<usize>,
}

impl<'a> ContentAlg<'a> {
    fn of(alg: &'a cms_info::Algorithm) -> Option<ContentAlg<'a>> {
        let params = alg.params.as_ref();
        let cbc = |cipher: Cipher| -> Option<ContentAlg<'a>> {
            match params {
                Some((der_walk::OCTET_STRING, iv)) if Some(iv.len()) == cipher.iv_len() => {
                    Some(ContentAlg {
                        cipher,
                        iv,
                        gcm_tag_len: None,
                    })
                }
                _ => None,
            }
        };
        let gcm = |cipher: Cipher| -> Option<ContentAlg<'a>> {
            // GCMParameters ::= SEQUENCE { aes-nonce OCTET STRING, aes-ICVlen INTEGER DEFAULT 12 }
            let Some((der_walk::SEQUENCE, p)) = params else {
                return None;
            };
            let mut f = der_walk::elements(p);
            let (der_walk::OCTET_STRING, nonce) = f.next()? else {
                return None;
            };
            let tag_len = match f.next() {
                None => 12,
                Some((der_walk::INTEGER, [n])) => *n as usize,
                Some(_) => return None,
            };
            ((1..=64).contains(&nonce.len()) && (12..=16).contains(&tag_len)).then_some(
                ContentAlg {
                    cipher,
                    iv: nonce,
                    gcm_tag_len: Some(tag_len),
                },
            )
        };
        match alg.oid {
            OID_AES128_CBC => cbc(Cipher::aes_128_cbc()),
            OID_AES192_CBC => cbc(Cipher::aes_192_cbc()),
            OID_AES256_CBC => cbc(Cipher::aes_256_cbc()),
            OID_DES_EDE3_CBC => cbc(Cipher::des_ede3_cbc()),
            OID_AES128_GCM => gcm(Cipher::aes_128_gcm()),
            OID_AES192_GCM => gcm(Cipher::aes_192_gcm()),
            OID_AES256_GCM => gcm(Cipher::aes_256_gcm()),
            _ => None,
        }
    }
}

/// Open `envelope` through `recipient` with `key`: the content key with RSA (v1.5 or
/// OAEP), then the content.
#[cfg(test)]
pub(super) fn open(
    envelope: &cms_info::Envelope,
    recipient: &cms_info::KeyTransRecipient,
    key: &PKey<Private>,
) -> Opened {
    open_keyed(envelope, recipient, key).0
}

/// [`open`], with the content key that opened the content.
fn open_keyed(
    envelope: &cms_info::Envelope,
    recipient: &cms_info::KeyTransRecipient,
    key: &PKey<Private>,
) -> (Opened, Vec<u8>) {
    let Some(alg) = ContentAlg::of(&envelope.content_cipher) else {
        return (Opened::NotHere, Vec::new());
    };
    // GCM belongs in AuthEnvelopedData and CBC in EnvelopedData; a mix is OpenSSL's to judge.
    if alg.gcm_tag_len.is_some() != envelope.authenticated {
        return (Opened::NotHere, Vec::new());
    }
    let Some(cek) = unwrap_content_key(recipient, key) else {
        return (Opened::NotHere, Vec::new());
    };
    // A content key that does not unwrap (bad padding) or has the wrong length is replaced
    // by a random one, so the message fails the way a wrong key fails (RFC 3218 §2.3.2):
    // the answer to a forged message tells nothing about the padding.
    let cek = match cek {
        Ok(k) if k.len() == alg.cipher.key_len() => k,
        _ => {
            let mut k = vec![0u8; alg.cipher.key_len()];
            if openssl::rand::rand_bytes(&mut k).is_err() {
                return (Opened::Failed("no random numbers".into()), Vec::new());
            }
            k
        }
    };
    let plain = match alg.gcm_tag_len {
        None => symmetric::decrypt(alg.cipher, &cek, alg.iv, &envelope.ciphertext),
        Some(tag_len) => match envelope.mac.as_deref() {
            Some(tag) if tag.len() == tag_len => symmetric::decrypt_aead(
                alg.cipher,
                &cek,
                alg.iv,
                envelope.auth_attrs.as_deref().unwrap_or_default(),
                &envelope.ciphertext,
                tag,
            ),
            _ => {
                return (
                    Opened::Failed("the authentication tag is missing or mis-sized".into()),
                    Vec::new(),
                );
            }
        },
    };
    match plain {
        Ok(p) => (Opened::Plain(p), cek),
        Err(_) => (
            Opened::Failed(
                "the content does not decrypt with this key (wrong key or changed message)".into(),
            ),
            Vec::new(),
        ),
    }
}

/// One signature, checked.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Check {
    Valid,
    Invalid(String),
}

/// The content's digests, each made once however many signers use it: a message with many
/// signer infos costs one pass over the content per digest algorithm, not per signer.
pub(super) struct ContentDigests<'a> {
    content: &'a [u8],
    done: [Option<Vec<u8>>; 5],
}

impl<'a> ContentDigests<'a> {
    pub(super) fn new(content: &'a [u8]) -> ContentDigests<'a> {
        ContentDigests {
            content,
            done: Default::default(),
        }
    }

    fn get(&mut self, digest: Digest) -> &[u8] {
        let content = self.content;
        self.done[digest as usize].get_or_insert_with(|| digest.hash(content))
    }
}

/// A signature scheme this path verifies.
enum Scheme {
    RsaPkcs1(Digest),
    RsaPss {
        hash: Digest,
        mgf1: Digest,
        salt: i32,
    },
    Ecdsa(Digest),
    /// Pure EdDSA (RFC 8419): the signature is over the data itself, not a digest.
    EdDsa(Id),
}

impl Scheme {
    /// The scheme of a signature algorithm; `digest` is the signer info's digest
    /// algorithm (what `rsaEncryption` and `ecPublicKey` sign with). `Err`: why not.
    fn of(alg: &cms_info::Algorithm, digest: Digest) -> Result<Scheme, String> {
        let no_params = |scheme: Scheme| {
            if alg.params.is_some() {
                Err(format!(
                    "unexpected parameters for the signature algorithm {}",
                    alg.oid
                ))
            } else {
                Ok(scheme)
            }
        };
        match alg.oid {
            OID_RSA_ENCRYPTION => no_params(Scheme::RsaPkcs1(digest)),
            OID_SHA1_RSA => no_params(Scheme::RsaPkcs1(Digest::Sha1)),
            OID_SHA224_RSA => no_params(Scheme::RsaPkcs1(Digest::Sha224)),
            OID_SHA256_RSA => no_params(Scheme::RsaPkcs1(Digest::Sha256)),
            OID_SHA384_RSA => no_params(Scheme::RsaPkcs1(Digest::Sha384)),
            OID_SHA512_RSA => no_params(Scheme::RsaPkcs1(Digest::Sha512)),
            OID_RSASSA_PSS => pss_params(alg.params.as_ref())
                .ok_or_else(|| "RSA-PSS parameters this gateway does not read".to_string()),
            OID_EC_PUBLIC_KEY => no_params(Scheme::Ecdsa(digest)),
            OID_ECDSA_SHA1 => no_params(Scheme::Ecdsa(Digest::Sha1)),
            OID_ECDSA_SHA224 => no_params(Scheme::Ecdsa(Digest::Sha224)),
            OID_ECDSA_SHA256 => no_params(Scheme::Ecdsa(Digest::Sha256)),
            OID_ECDSA_SHA384 => no_params(Scheme::Ecdsa(Digest::Sha384)),
            OID_ECDSA_SHA512 => no_params(Scheme::Ecdsa(Digest::Sha512)),
            OID_ED25519 => no_params(Scheme::EdDsa(Id::ED25519)),
            OID_ED448 => no_params(Scheme::EdDsa(Id::ED448)),
            other => Err(format!("unsupported signature algorithm {other}")),
        }
    }

    /// Whether `key` is a key of this scheme.
    fn fits(&self, key: Id) -> bool {
        match self {
            Scheme::RsaPkcs1(_) => key == Id::RSA,
            Scheme::RsaPss { .. } => key == Id::RSA || key == Id::RSA_PSS,
            Scheme::Ecdsa(_) => key == Id::EC,
            Scheme::EdDsa(id) => key == *id,
        }
    }
}

/// RSASSA-PSS-params (RFC 4055 §3.1): hash [0], mask generation [1] (MGF1 only), salt
/// length [2], trailer field [3] (1 only); SHA-1, MGF1 with SHA-1 and 20 where absent.
/// The parameters must be there: a PSS signature names them (RFC 4055 §3.1).
fn pss_params(params: Option<&(u8, Vec<u8>)>) -> Option<Scheme> {
    let Some((der_walk::SEQUENCE, params)) = params else {
        return None;
    };
    let mut hash = Digest::Sha1;
    let mut mgf1 = Digest::Sha1;
    let mut salt: i32 = 20;
    let algorithm = algorithm_identifier;
    let small_int = |explicit: &[u8]| -> Option<i32> {
        let (der_walk::INTEGER, n, _) = der_walk::tlv(explicit)? else {
            return None;
        };
        // non-negative, at most two bytes (a salt longer than any RSA key is nonsense)
        if n.is_empty() || n.len() > 3 || n[0] & 0x80 != 0 {
            return None;
        }
        Some(n.iter().fold(0i32, |a, b| (a << 8) | i32::from(*b)))
    };
    for (tag, value) in der_walk::elements(params) {
        match tag {
            0xa0 => hash = Digest::of(&algorithm(value)?.0)?,
            0xa1 => {
                let (oid, inner) = algorithm(value)?;
                if oid != OID_MGF1 {
                    return None;
                }
                mgf1 = Digest::of(&algorithm(&inner?)?.0)?;
            }
            0xa2 => salt = small_int(value)?,
            0xa3 if small_int(value)? == 1 => {}
            _ => return None,
        }
    }
    Some(Scheme::RsaPss { hash, mgf1, salt })
}

/// Check one signature with OpenSSL's primitives (RFC 5652 §5.3–5.6) against the one
/// certificate `cert` — the certificate that is then judged and reported: the attribute
/// rules, the message digest attribute against the content, the content type attribute,
/// and the signature over the signed attributes (or over the content when there are none).
pub(super) fn check_signature(
    signer: &cms_info::SignerMeta,
    cert: &X509,
    content_type: der::asn1::ObjectIdentifier,
    content: &mut ContentDigests<'_>,
) -> Check {
    if let Some(why) = &signer.attr_problem {
        return Check::Invalid(format!("signed attributes break RFC 5652: {why}"));
    }
    let Some(digest) = Digest::of(&signer.digest) else {
        return Check::Invalid(format!(
            "unsupported digest algorithm {}",
            cms_info::digest_name(&signer.digest)
        ));
    };
    let scheme = match Scheme::of(&signer.signature_algorithm, digest) {
        Ok(s) => s,
        Err(why) => return Check::Invalid(why),
    };
    let mut run = || -> Result<Check, ErrorStack> {
        let key = cert.public_key()?;
        if !scheme.fits(key.id()) {
            return Ok(Check::Invalid(
                "the signature algorithm does not fit the signer's key".into(),
            ));
        }
        // What the signature covers: the DER signed attributes, else the content.
        let signed: Option<&[u8]> = match &signer.signed_attrs {
            Some(attrs) => {
                let Some(claimed) = &signer.message_digest else {
                    return Ok(Check::Invalid(
                        "signed attributes without a message digest".into(),
                    ));
                };
                if content.get(digest) != claimed.as_slice() {
                    return Ok(Check::Invalid(
                        "content and signature do not match (message digest mismatch)".into(),
                    ));
                }
                if signer.content_type != Some(content_type) {
                    return Ok(Check::Invalid(
                        "the signed content type attribute is missing or differs".into(),
                    ));
                }
                Some(attrs)
            }
            // RFC 5652 §5.3: signed attributes are mandatory unless the content is data.
            None if content_type != cms_info::OID_DATA => {
                return Ok(Check::Invalid(
                    "no signed attributes over content that is not data".into(),
                ));
            }
            None => None,
        };
        let verified = |setup: Setup, hash: Digest, content: &mut ContentDigests<'_>| {
            let to_verify = match signed {
                Some(attrs) => hash.hash(attrs),
                None => content.get(hash).to_vec(),
            };
            key_ops::with_public(&key, setup, |ctx| {
                Ok(ctx.verify(&to_verify, &signer.signature).unwrap_or(false))
            })
        };
        let ok = match scheme {
            Scheme::RsaPkcs1(hash) => verified(Setup::VerifyRsaPkcs1(hash.md()), hash, content)?,
            Scheme::RsaPss { hash, mgf1, salt } => verified(
                Setup::VerifyRsaPss {
                    hash: hash.md(),
                    mgf1: mgf1.md(),
                    salt,
                },
                hash,
                content,
            )?,
            Scheme::Ecdsa(hash) => verified(Setup::VerifyEcdsa, hash, content)?,
            Scheme::EdDsa(_) => {
                let data = signed.unwrap_or(content.content);
                openssl::sign::Verifier::new_without_digest(&key)?
                    .verify_oneshot(&signer.signature, data)
                    .unwrap_or(false)
            }
        };
        Ok(if ok {
            Check::Valid
        } else {
            Check::Invalid("the signature does not verify (signature failure)".into())
        })
    };
    run().unwrap_or_else(|e| Check::Invalid(first_error(&e)))
}

/// What [`verify`] found in a SignedData.
struct Verified {
    /// The encapsulated content (opaque signatures only; empty otherwise).
    content: Vec<u8>,
    /// eContentType.
    content_type: ObjectIdentifier,
    results: Vec<SignatureResult>,
    /// A degenerate SignedData without signers and content: certificates only (RFC 8551
    /// §3.6).
    certs_only: bool,
}

/// Verify a SignedData (with its detached content, or opaque): one result per signer;
/// `Err` only when the structure is unusable (or has more signers than allowed).
///
/// Per signer, one certificate object does everything: it is the certificate of the
/// message that the signer identifier names exactly (`cms_info::SignerId::names`), its
/// key checks the signature ([`check_signature`]), its chain is judged against the trust
/// store plus our purpose check, and its address is reported. There is no second lookup
/// and no other verifier: a signature algorithm this path does not do is an invalid
/// signature. The certificates are parsed once per distinct DER (`x509_cache`): parsing
/// them anew for every message cost more than the RSA operation. The chain step is ours
/// rather than `CMS_verify`'s because OpenSSL 3.0 builds chains from the message's own
/// certificates only; ours also uses the store's intermediates.
fn verify(
    der: &[u8],
    detached: Option<&[u8]>,
    ctx: &VerifyContext<'_>,
    opaque: bool,
) -> Result<Verified, SmimeError> {
    let malformed = |e: String| SmimeError::Malformed(format!("corrupt signed data: {e}"));
    let info = cms_info::signed_info_any(der, ctx.limits.max_signers).map_err(|e| {
        if e.starts_with(cms_info::TOO_MANY_SIGNERS) {
            SmimeError::Malformed(e)
        } else {
            malformed(e)
        }
    })?;
    if info.signers.is_empty() {
        if detached.is_none() && info.content.is_none() {
            return Ok(Verified {
                content: Vec::new(),
                content_type: info.content_type,
                results: Vec::new(),
                certs_only: true,
            });
        }
        return Err(SmimeError::Malformed("signed-data without a signer".into()));
    }
    let content: &[u8] = detached.or(info.content.as_deref()).unwrap_or_default();
    if opaque && content.is_empty() {
        return Err(SmimeError::Malformed(
            "signed-data without content (a detached signature sent as opaque)".into(),
        ));
    }
    // Certificates that do not parse are left out: a signer without its certificate fails.
    let certs: Vec<Option<X509>> = info
        .certificates
        .iter()
        .map(|c| x509_cache::parse(&c.der).ok())
        .collect();
    // Chain material for every signer: what the message carries (a signer's own
    // certificate among it does no harm) and the CA certificates the store holds. Made
    // only when a chain is checked (a remembered verdict needs none).
    let untrusted = || -> Vec<X509> {
        certs
            .iter()
            .flatten()
            .chain(ctx.intermediates)
            .cloned()
            .collect()
    };
    let mut digests = ContentDigests::new(content);
    let mut results = Vec::with_capacity(info.signers.len());
    for s in &info.signers {
        ctx.limits.check_deadline()?;
        // The one certificate of this signer, named exactly by its identifier.
        let signer = s
            .cert
            .and_then(|i| Some((&info.certificates[i], certs[i].as_ref()?)));
        let status = match signer {
            None if s.ambiguous => SignatureStatus::Invalid(
                "several different certificates in the message carry the signer's identifier"
                    .into(),
            ),
            None if s.cert.is_some() => {
                SignatureStatus::Invalid("the signer's certificate does not parse".into())
            }
            None => SignatureStatus::Invalid(
                "the signer's certificate is not in the message (none matches its identifier exactly)"
                    .into(),
            ),
            Some((signer_der, cert)) => {
                match check_signature(s, cert, info.content_type, &mut digests) {
                    Check::Invalid(why) => SignatureStatus::Invalid(why),
                    Check::Valid => {
                        let judge = || {
                            chain_error(cert, &untrusted(), ctx.trust)
                                .or_else(|| smime_signing_problems(cert))
                        };
                        let verdict = match ctx.verdicts {
                            Some(v) => v.verdict(&signer_der.der, &info.certificates, judge),
                            None => judge(),
                        };
                        match verdict {
                            None => SignatureStatus::Valid,
                            Some(reason) => SignatureStatus::UntrustedChain(reason),
                        }
                    }
                }
            }
        };
        results.push(SignatureResult {
            status,
            // from the very certificate object that was checked (x509_cache), not parsed again
            signer_address: signer.and_then(|(_, cert)| email_of(cert)),
            signer_der: signer.map(|(c, _)| c.der.clone()),
            chain_der: info
                .certificates
                .iter()
                .enumerate()
                .filter(|(i, _)| signer.is_none() || Some(*i) != s.cert)
                .map(|(_, c)| c.der.clone())
                .collect(),
            capabilities: s.capabilities.clone(),
            digest: cms_info::digest_name(&s.digest),
            opaque,
        });
    }
    // The caller needs the content only from an opaque signature (it wraps it).
    let content = if opaque { content.to_vec() } else { Vec::new() };
    Ok(Verified {
        content,
        content_type: info.content_type,
        results,
        certs_only: false,
    })
}

/// What [`verify`] judges with.
struct VerifyContext<'a> {
    trust: &'a X509StoreRef,
    intermediates: &'a [X509],
    verdicts: Option<&'a ChainVerdicts>,
    limits: &'a Limits,
}

/// Bounds on the work one message may cause.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Signer infos per SignedData; more makes the message malformed.
    pub max_signers: usize,
    /// Nested S/MIME layers (signed, encrypted, compressed) one message may carry.
    pub max_layers: usize,
    /// When the work must stop (checked between layers and signers).
    pub deadline: Option<Instant>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_signers: DEFAULT_MAX_SIGNERS,
            max_layers: DEFAULT_MAX_LAYERS,
            deadline: None,
        }
    }
}

/// `[smime] max_signers` when not configured: real mail has one signer, rarely two.
pub const DEFAULT_MAX_SIGNERS: usize = 8;

impl Limits {
    fn check_deadline(&self) -> Result<(), SmimeError> {
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(SmimeError::Malformed(
                "processing took longer than [smime] job_timeout_secs allows".into(),
            )),
            _ => Ok(()),
        }
    }
}

/// Chain verdicts of signer certificates (trusted, or why not), remembered between
/// messages: a partner signs every message with the same certificate and chain, and
/// checking them again (chain building, the issuer's signature, key usage) cost about a
/// tenth of an inbound message (benches/smime_engine.rs). A verdict is kept for a minute,
/// so a certificate that expires is judged expired within a minute. It is only valid for
/// the trust anchors and intermediates it was made with: whoever holds one makes a new one
/// when those change (see `super::inbound`).
#[derive(Default)]
pub struct ChainVerdicts {
    memory: std::sync::Mutex<std::collections::HashMap<[u8; 32], Remembered>>,
}

/// A verdict (`None`: trusted) and when it was made.
type Remembered = (Option<String>, Instant);

/// How long a chain verdict is reused.
const VERDICT_TTL: Duration = Duration::from_secs(60);
/// Bound of [`ChainVerdicts`]; past it the memory starts over.
const VERDICTS_MAX: usize = 4096;

impl ChainVerdicts {
    /// The verdict on `signer` with the certificates the message carried, from memory or
    /// from `judge`.
    fn verdict(
        &self,
        signer: &[u8],
        sent: &[cms_info::CertDer],
        judge: impl FnOnce() -> Option<String>,
    ) -> Option<String> {
        let mut h = openssl::sha::Sha256::new();
        for der in std::iter::once(signer).chain(sent.iter().map(|c| c.der.as_slice())) {
            h.update(&(der.len() as u64).to_be_bytes());
            h.update(der);
        }
        let key = h.finish();
        if let Ok(memory) = self.memory.lock()
            && let Some((verdict, at)) = memory.get(&key)
            && at.elapsed() < VERDICT_TTL
        {
            return verdict.clone();
        }
        // Judged outside the lock: the chain check must not hold up other workers.
        let verdict = judge();
        if let Ok(mut memory) = self.memory.lock() {
            if memory.len() >= VERDICTS_MAX {
                memory.clear();
            }
            memory.insert(key, (verdict.clone(), Instant::now()));
        }
        verdict
    }
}

/// An OpenSSL stack of (shared references to) `certs`, as the CMS and chain APIs take them.
fn stack_of<'a>(
    certs: impl IntoIterator<Item = &'a X509>,
) -> Result<Stack<X509>, openssl::error::ErrorStack> {
    let mut stack = Stack::new()?;
    for c in certs {
        stack.push(c.clone())?;
    }
    Ok(stack)
}

/// Why a (chain-verified) signer certificate may not sign S/MIME mail: validity, key usage,
/// extended key usage; `None` when it may.
fn smime_signing_problems(cert: &X509) -> Option<String> {
    let facts = match crate::certs::info::CertFacts::of(cert) {
        Ok(f) => f,
        Err(e) => return Some(format!("unreadable certificate: {e}")),
    };
    let problems = facts.signing_problems(crate::certs::info::now());
    (!problems.is_empty()).then(|| problems.join(", "))
}

/// Why `cert` does not verify against `trust` with the help of the untrusted `chain`
/// (e.g. "certificate has expired"); `None` when it does.
fn chain_error(cert: &X509, chain: &[X509], trust: &X509StoreRef) -> Option<String> {
    // Anything that keeps the check from running is a reason, never a pass: a `None` here
    // makes a signature valid (see `verify`).
    let check = || -> Result<(bool, openssl::x509::X509VerifyResult), String> {
        let stack = stack_of(chain).map_err(|e| e.to_string())?;
        let mut ctx = X509StoreContext::new().map_err(|e| e.to_string())?;
        ctx.init(trust, cert, &stack, |c| {
            let ok = c.verify_cert()?;
            Ok((ok, c.error()))
        })
        .map_err(|e| format!("chain check failed: {e}"))
    };
    match check() {
        Ok((true, _)) => None,
        Ok((false, err)) => Some(err.error_string().to_string()),
        Err(e) => Some(e),
    }
}

/// The e-mail address a certificate is issued to.
pub fn email_of(cert: &X509) -> Option<String> {
    if let Some(names) = cert.subject_alt_names() {
        for n in names.iter() {
            if let Some(e) = n.email() {
                return Some(e.to_ascii_lowercase());
            }
        }
    }
    cert.subject_name()
        .entries_by_nid(Nid::PKCS9_EMAILADDRESS)
        .next()
        .and_then(|e| e.data().to_string().ok())
        .map(|s| s.to_ascii_lowercase())
}

fn subject_of(cert: &X509) -> String {
    cert.subject_name()
        .entries()
        .map(|e| {
            format!(
                "{}={}",
                e.object().nid().short_name().unwrap_or("?"),
                e.data().to_string().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The first OpenSSL reason, without the library's file/line noise.
fn first_error(e: &openssl::error::ErrorStack) -> String {
    e.errors()
        .iter()
        .rev()
        .find_map(|x| x.reason().map(str::to_string))
        .unwrap_or_else(|| e.to_string())
}

// === outbound ===

/// Sign `entity` (content fields + body) with a detached SHA-256 signature: the result is
/// a `multipart/signed` entity whose first part is `entity` byte for byte.
pub fn sign(entity: &[u8], signer: &KeyPair<'_>, chain: &[X509]) -> Result<Vec<u8>, SmimeError> {
    let entity = mime::as_crlf(entity);
    let der = if signer.key.id() == Id::RSA {
        own_signed_data(&entity, signer, chain, SignedAttributes::Smime)
    } else {
        openssl_signed_data(&entity, signer, chain)
    }
    .map_err(|e| SmimeError::Build(format!("signing failed: {e}")))?;
    let boundary = mime::boundary_for(&entity);
    let mut out = Vec::with_capacity(entity.len() + der.len() * 4 / 3 + 512);
    out.extend_from_slice(
        format!(
            "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\";\r\n\tmicalg=sha-256; boundary=\"{boundary}\"\r\n\r\n\
             This is a cryptographically signed message in MIME format.\r\n\r\n--{boundary}\r\n"
        )
        .as_bytes(),
    );
    out.extend_from_slice(&entity);
    out.extend_from_slice(
        format!(
            "\r\n--{boundary}\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\n\
             Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7s\"\r\n\
             Content-Description: S/MIME Cryptographic Signature\r\n\r\n"
        )
        .as_bytes(),
    );
    mime::put_base64_lines(&mut out, &der);
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    Ok(out)
}

/// Content encryption for [`encrypt`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentCipher {
    /// AuthEnvelopedData (RFC 5083/5084), for recipients known to read it.
    Aes256Gcm,
    /// EnvelopedData, readable by every S/MIME client of the last 15 years.
    Aes256Cbc,
}

/// Encrypt `entity` to every certificate in `recipients` (RSA key transport): the result is
/// an `application/pkcs7-mime` entity.
pub fn encrypt(
    entity: &[u8],
    recipients: &[X509],
    cipher: ContentCipher,
) -> Result<Vec<u8>, SmimeError> {
    if recipients.is_empty() {
        return Err(SmimeError::Build("encryption without a recipient".into()));
    }
    let entity = mime::as_crlf(entity);
    let smime_type = match cipher {
        ContentCipher::Aes256Gcm => "authEnveloped-data",
        ContentCipher::Aes256Cbc => "enveloped-data",
    };
    let all_rsa = recipients
        .iter()
        .all(|c| c.public_key().is_ok_and(|k| k.id() == Id::RSA));
    let der = if all_rsa {
        rsa_enveloped_data(&entity, recipients, cipher)
    } else {
        openssl_enveloped_data(&entity, recipients, cipher)
    }
    .map_err(|e| SmimeError::Build(format!("encryption failed: {e}")))?;
    let mut out = format!(
        "Content-Type: application/pkcs7-mime; smime-type={smime_type};\r\n\tname=\"smime.p7m\"\r\n\
         Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7m\"\r\n\
         Content-Description: S/MIME Encrypted Message\r\n\r\n"
    )
    .into_bytes();
    mime::put_base64_lines(&mut out, &der);
    Ok(out)
}

/// Which signed attributes a signature carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedAttributes {
    /// S/MIME (RFC 8551): contentType, signingTime, messageDigest, SMIMECapabilities.
    Smime,
    /// CAdES-BES (ETSI EN 319 122-1): contentType, signingTime, messageDigest and the
    /// ESS signingCertificateV2 with the signer certificate's SHA-256 hash, which binds the
    /// signature to that one certificate.
    CadesBes,
}

/// A detached SHA-256 CMS SignedData (DER) over `content` (the bytes as they are: a file,
/// not a MIME entity) by an RSA or ECDSA key, carrying the signer's certificate and
/// `chain`; for attachments' `.p7s` files.
pub fn detached_signature(
    content: &[u8],
    signer: &KeyPair<'_>,
    chain: &[X509],
    attributes: SignedAttributes,
) -> Result<Vec<u8>, SmimeError> {
    own_signed_data(content, signer, chain, attributes)
        .map_err(|e| SmimeError::Build(format!("signing failed: {e}")))
}

/// A detached SHA-256 SignedData by an RSA or ECDSA key: the signed attributes and the
/// structure written by [`cms_build`], the signature by OpenSSL.
fn own_signed_data(
    content: &[u8],
    signer: &KeyPair<'_>,
    chain: &[X509],
    attributes: SignedAttributes,
) -> Result<Vec<u8>, String> {
    let ssl = |e: ErrorStack| first_error(&e);
    // CMS_sign refuses a key that is not the certificate's; so do we.
    if !signer.cert.public_key().map_err(ssl)?.public_eq(signer.key) {
        return Err("the private key does not belong to the certificate".into());
    }
    let (algorithm, setup) = match signer.key.id() {
        Id::RSA => (
            cms_build::SignatureAlgorithm::Rsa,
            Setup::SignRsaPkcs1(Md::sha256()),
        ),
        Id::EC => (cms_build::SignatureAlgorithm::EcdsaSha256, Setup::SignEcdsa),
        other => {
            return Err(format!(
                "keys of type {other:?} cannot sign here (RSA or ECDSA)"
            ));
        }
    };
    let cert_der = signer.cert.to_der().map_err(ssl)?;
    let ids = der_walk::cert_ids(&cert_der).ok_or("the signing certificate is unreadable")?;
    let mut chain_der = Vec::with_capacity(chain.len());
    for c in chain {
        let der = c.to_der().map_err(ssl)?;
        if der != cert_der && !chain_der.contains(&der) {
            chain_der.push(der);
        }
    }
    let digest = Digest::Sha256.hash(content);
    let now = crate::certs::info::now();
    let attrs = match attributes {
        SignedAttributes::Smime => cms_build::signed_attributes(&digest, now),
        SignedAttributes::CadesBes => {
            let cert_hash = Digest::Sha256.hash(&cert_der);
            cms_build::cades_signed_attributes(&digest, now, &ids, &cert_hash)
        }
    };
    let signature = key_ops::with_private(signer.key, setup, |ctx| {
        let mut signature = Vec::new();
        ctx.sign_to_vec(&Digest::Sha256.hash(&attrs), &mut signature)?;
        Ok(signature)
    })
    .map_err(ssl)?;
    let mut certs = vec![cert_der.as_slice()];
    certs.extend(chain_der.iter().map(Vec::as_slice));
    Ok(cms_build::detached_signed_data(
        &ids, &attrs, algorithm, &signature, &certs,
    ))
}

/// OpenSSL's `CMS_sign`, for signing keys other than RSA (EC, EdDSA).
fn openssl_signed_data(
    entity: &[u8],
    signer: &KeyPair<'_>,
    chain: &[X509],
) -> Result<Vec<u8>, String> {
    let extra = stack_of(chain).map_err(|e| e.to_string())?;
    // BINARY: the entity is already canonical CRLF; OpenSSL must not re-canonicalise it.
    CmsContentInfo::sign(
        Some(signer.cert),
        Some(signer.key),
        Some(&extra),
        Some(entity),
        CMSOptions::DETACHED | CMSOptions::BINARY,
    )
    .and_then(|cms| cms.to_der())
    .map_err(|e| first_error(&e))
}

/// AES-256 content encryption with a fresh key, sent to every recipient with RSA PKCS#1
/// v1.5 key transport; the structure written by [`cms_build`].
fn rsa_enveloped_data(
    entity: &[u8],
    recipients: &[X509],
    cipher: ContentCipher,
) -> Result<Vec<u8>, String> {
    let ssl = |e: ErrorStack| first_error(&e);
    let mut cek = [0u8; 32];
    openssl::rand::rand_bytes(&mut cek).map_err(ssl)?;
    let ders = recipients
        .iter()
        .map(|c| c.to_der())
        .collect::<Result<Vec<_>, _>>()
        .map_err(ssl)?;
    let mut sealed_to = Vec::with_capacity(recipients.len());
    for (cert, der) in recipients.iter().zip(&ders) {
        let ids = der_walk::cert_ids(der).ok_or("a recipient certificate is unreadable")?;
        let key = cert.public_key().map_err(ssl)?;
        let encrypted_key = key_ops::with_public(&key, Setup::EncryptRsaPkcs1, |ctx| {
            let mut encrypted_key = Vec::new();
            ctx.encrypt_to_vec(&cek, &mut encrypted_key)?;
            Ok(encrypted_key)
        })
        .map_err(ssl)?;
        sealed_to.push(cms_build::Recipient { ids, encrypted_key });
    }
    Ok(match cipher {
        ContentCipher::Aes256Cbc => {
            let mut iv = [0u8; 16];
            openssl::rand::rand_bytes(&mut iv).map_err(ssl)?;
            let ciphertext =
                symmetric::encrypt(Cipher::aes_256_cbc(), &cek, &iv, entity).map_err(ssl)?;
            cms_build::enveloped_data(&sealed_to, cms_build::Sealed::Cbc { iv: &iv }, &ciphertext)
        }
        ContentCipher::Aes256Gcm => {
            let mut nonce = [0u8; 12];
            openssl::rand::rand_bytes(&mut nonce).map_err(ssl)?;
            let mut tag = [0u8; 16];
            let ciphertext =
                symmetric::encrypt_aead(Cipher::aes_256_gcm(), &cek, &nonce, entity, &mut tag)
                    .map_err(ssl)?;
            cms_build::enveloped_data(
                &sealed_to,
                cms_build::Sealed::Gcm {
                    nonce: &nonce,
                    tag: &tag,
                },
                &ciphertext,
            )
        }
    })
}

/// OpenSSL's `CMS_encrypt`, for recipients with keys other than RSA (key agreement).
fn openssl_enveloped_data(
    entity: &[u8],
    recipients: &[X509],
    cipher: ContentCipher,
) -> Result<Vec<u8>, String> {
    let certs = stack_of(recipients).map_err(|e| e.to_string())?;
    let c = match cipher {
        ContentCipher::Aes256Gcm => Cipher::aes_256_gcm(),
        ContentCipher::Aes256Cbc => Cipher::aes_256_cbc(),
    };
    CmsContentInfo::encrypt(&certs, entity, c, CMSOptions::BINARY)
        .and_then(|cms| cms.to_der())
        .map_err(|e| first_error(&e))
}

/// The content cipher for a set of recipients: GCM only when every one is known to read it.
pub fn cipher_for(all_gcm_capable: bool) -> ContentCipher {
    if all_gcm_capable {
        ContentCipher::Aes256Gcm
    } else {
        ContentCipher::Aes256Cbc
    }
}

/// An AlgorithmIdentifier inside an explicit tag: its OID and its parameters (whole TLV).
fn algorithm_identifier(explicit: &[u8]) -> Option<(ObjectIdentifier, Option<Vec<u8>>)> {
    let (der_walk::SEQUENCE, alg, _) = der_walk::tlv(explicit)? else {
        return None;
    };
    let mut f = der_walk::elements_whole(alg);
    let (der_walk::OID, _, oid) = f.next()? else {
        return None;
    };
    let oid = ObjectIdentifier::from_bytes(oid).ok()?;
    Some((oid, f.next().map(|(_, whole, _)| whole.to_vec())))
}

#[cfg(test)]
mod wrapping_tests {
    use super::{Wrapping, mime, wrapping, wrapping_parsed};

    /// The cheap look never calls S/MIME "not S/MIME": for each header, the shortcut and
    /// the full parse agree, whatever spelling the parameters use.
    #[test]
    fn the_cheap_look_agrees_with_the_full_parse() {
        let headers = [
            "Content-Type: text/plain; charset=utf-8",
            "Content-Type: multipart/mixed; boundary=\"b1\"",
            "Content-Type: application/pkcs7-mime; smime-type=enveloped-data; name=smime.p7m",
            "content-type: APPLICATION/X-PKCS7-MIME; name=\"smime.p7m\"",
            "Content-Type: application/octet-stream; name=\"mail.P7M\"",
            "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=smime.p7m",
            "Content-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n filename*=''mail%2Ep7m",
            "Content-Type: application/octet-stream;\r\n name*0=\"mail.p\"; name*1=\"7m\"",
            "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; boundary=b",
            "Content-Type: multipart/signed;\r\n protocol*0=\"application/pk\";\r\n protocol*1=\"cs7-signature\"; boundary=b",
            "Content-Type: multipart/signed; protocol=\"application/pk\\cs7-signature\"; boundary=b",
            "Content-Type: multipart/signed; protocol=\"application/pgp-signature\"; boundary=b",
            "Content-Type: application/pkcs7-mime (a comment); name=x",
            "Subject: pkcs7\r\nContent-Type: text/plain",
            "Content-Type: text/plain; name==?utf-8?q?x=2Ep7m?=",
            "",
        ];
        let mut smime = 0;
        for h in headers {
            let entity = format!("{h}\r\n\r\nbody\r\n--b\r\nx\r\n--b\r\ny\r\n--b--\r\n");
            let split = mime::split(entity.as_bytes());
            let full = !matches!(wrapping_parsed(split), Ok(Wrapping::None));
            let cheap = !matches!(wrapping(entity.as_bytes()), Ok(Wrapping::None));
            assert_eq!(cheap, full, "{h:?}");
            smime += full as usize;
        }
        assert!(smime >= 6, "{smime}");
    }
}
