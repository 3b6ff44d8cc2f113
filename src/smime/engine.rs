//! The S/MIME engine: pure functions over OpenSSL types, no I/O and no store.
//!
//! - [`unwrap`]: peel every S/MIME layer off an inbound message — decrypt enveloped-data
//!   and authEnveloped-data with the first of the given keys that fits, verify detached
//!   (`multipart/signed`) and opaque (signed-data) signatures, in any nesting — and return
//!   the plaintext entity with one result per signature.
//! - [`sign`] and [`encrypt`]: wrap an outbound entity (detached SHA-256 signature;
//!   AES-256-GCM or AES-256-CBC content encryption, RSA key transport).
//!
//! All cryptography is OpenSSL's CMS (`CMS_decrypt`, `CMS_verify`, `CMS_sign`,
//! `CMS_encrypt`); the `cms` crate only reads structures ([`super::cms_info`]). The MIME
//! around the CMS blobs is written by [`super::mime`]. Errors are values: malformed,
//! truncated or undecryptable input never panics.

use openssl::cms::{CMSOptions, CmsContentInfo};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::symm::Cipher;
use openssl::x509::store::X509StoreRef;
use openssl::x509::{X509, X509StoreContext};

use super::cms_info::{self, Kind};
use super::mime;
use super::x509_cache;

/// Nesting deeper than this is refused (real clients use two layers; a bomb uses many).
const MAX_LAYERS: usize = 6;

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
    unwrap_with(message, keys, trust, &[])
}

/// [`unwrap`], with CA certificates we hold but do not trust (`intermediates`) to build a
/// signer's chain when the sender left them out of the message (many clients send only
/// their own certificate). They link a chain to an anchor; they never are one.
pub fn unwrap_with(
    message: &[u8],
    keys: &[KeyPair<'_>],
    trust: &X509StoreRef,
    intermediates: &[X509],
) -> Result<Option<Unwrapped>, SmimeError> {
    if !is_smime(message) {
        return Ok(None);
    }
    let mut out = Unwrapped {
        plaintext: Vec::new(),
        signed_entity: None,
        layers: Vec::new(),
        signatures: Vec::new(),
    };
    // The top level is a whole message; only its content fields matter from here on.
    let mut current = mime::message_parts(message).entity;
    loop {
        if out.layers.len() >= MAX_LAYERS {
            return Err(SmimeError::Malformed(format!(
                "more than {MAX_LAYERS} nested S/MIME layers"
            )));
        }
        let next = match wrapping(&current)? {
            Wrapping::None => break,
            Wrapping::Detached(parts) => {
                let sig_entity = mime::split(parts.signature);
                let sig_ct = mime::content_type(sig_entity.header);
                let der = mime::decode_body(sig_entity.body, &sig_ct.transfer_encoding)
                    .map_err(|e| SmimeError::Malformed(format!("signature part: {e}")))?;
                let content = mime::to_crlf(parts.content);
                let (_, results) = verify(&der, Some(&content), trust, intermediates, false)?;
                out.signatures.extend(results);
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
                        let (content, results) = verify(&der, None, trust, intermediates, true)?;
                        out.signatures.extend(results);
                        out.layers.push(Layer::Signed { opaque: true });
                        out.signed_entity = Some(current.clone());
                        mime::to_crlf(&content)
                    }
                    k @ (Kind::Enveloped | Kind::AuthEnveloped) => {
                        let plain = decrypt(&der, keys)?;
                        out.layers.push(Layer::Encrypted {
                            authenticated: k == Kind::AuthEnveloped,
                        });
                        // A signature outside the encryption does not sign the plaintext.
                        out.signed_entity = None;
                        mime::to_crlf(&plain)
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
fn decrypt(der: &[u8], keys: &[KeyPair<'_>]) -> Result<Vec<u8>, SmimeError> {
    let cms = CmsContentInfo::from_der(der)
        .map_err(|e| SmimeError::Malformed(format!("corrupt enveloped data: {e}")))?;
    let mut errors = Vec::new();
    for k in keys {
        // With the certificate given, OpenSSL picks the matching RecipientInfo (RSA v1.5 or
        // OAEP, as the sender chose) and fails cleanly when there is none.
        match cms.decrypt(k.key, k.cert) {
            Ok(plain) => return Ok(plain),
            Err(e) => errors.push(format!("{}: {}", subject_of(k.cert), first_error(&e))),
        }
    }
    let to = cms_info::normalize(der)
        .map(|d| cms_info::recipients(&d))
        .unwrap_or_default();
    let to = if to.is_empty() {
        String::new()
    } else {
        format!("; addressed to {}", to.join(", "))
    };
    if keys.is_empty() {
        return Err(SmimeError::Undecryptable(format!(
            "no private key for this recipient{to}"
        )));
    }
    Err(SmimeError::Undecryptable(format!(
        "none of our {} key(s) fits ({}){to}",
        keys.len(),
        errors.join("; ")
    )))
}

/// Verify a SignedData (with its detached content, or opaque). Returns the signed content
/// and one result per signer; `Err` only when the structure is unusable.
///
/// Two steps, both OpenSSL's: the signatures and content digest (`CMS_verify` without the
/// chain), then each signer's chain against the trust store plus our purpose check. The
/// certificates reach OpenSSL already parsed (`x509_cache`) beside a copy of the CMS
/// without them: parsing them anew for every message cost more than the RSA operation.
/// The chain step is ours rather than `CMS_verify`'s because OpenSSL 3.0 builds chains
/// from the message's own certificates only; ours also uses the store's intermediates.
fn verify(
    der: &[u8],
    detached: Option<&[u8]>,
    trust: &X509StoreRef,
    intermediates: &[X509],
    opaque: bool,
) -> Result<(Vec<u8>, Vec<SignatureResult>), SmimeError> {
    let malformed = |e: String| SmimeError::Malformed(format!("corrupt signed data: {e}"));
    // The typed read needs DER; real clients send BER, which OpenSSL re-encodes.
    let info = match cms_info::signed_info(der) {
        Ok(info) => info,
        Err(_) => cms_info::normalize(der)
            .and_then(|d| cms_info::signed_info(&d))
            .map_err(malformed)?,
    };
    if info.signers.is_empty() {
        return Err(SmimeError::Malformed("signed-data without a signer".into()));
    }
    // Certificates that do not parse are left out: a signer without its certificate fails
    // the signature step below, with OpenSSL's reason.
    let certs: Vec<Option<X509>> = info
        .certificates
        .iter()
        .map(|c| x509_cache::parse(&c.der).ok())
        .collect();
    let stack = stack_of(certs.iter().flatten()).map_err(|e| malformed(e.to_string()))?;
    let parse = || {
        CmsContentInfo::from_der(&info.without_certificates).map_err(|e| malformed(e.to_string()))
    };
    let mut content = Vec::new();
    let signatures = parse()?.verify(
        Some(&stack),
        None,
        detached,
        Some(&mut content),
        CMSOptions::BINARY | CMSOptions::NOVERIFY,
    );
    let invalid = match signatures {
        Ok(()) => None,
        Err(e) => {
            // The content is still wanted (an opaque signature wraps it): read it without
            // checking anything.
            content.clear();
            let _ = parse()?.verify(
                Some(&stack),
                None,
                detached,
                Some(&mut content),
                CMSOptions::BINARY | CMSOptions::NOVERIFY | CMSOptions::NOSIGS,
            );
            Some(first_error(&e))
        }
    };
    if opaque && content.is_empty() {
        return Err(SmimeError::Malformed(
            "signed-data without content (a detached signature sent as opaque)".into(),
        ));
    }
    // Chain material for every signer: what the message carries (a signer's own
    // certificate among it does no harm) and the CA certificates the store holds.
    let untrusted: Vec<X509> = certs
        .iter()
        .flatten()
        .chain(intermediates)
        .cloned()
        .collect();
    let results = info
        .signers
        .iter()
        .map(|s| {
            let signer = s.cert.map(|i| &info.certificates[i]);
            let status = match (&invalid, s.cert.and_then(|i| certs[i].as_ref())) {
                (Some(why), _) => SignatureStatus::Invalid(why.clone()),
                (None, None) => SignatureStatus::UntrustedChain(
                    "the signer's certificate is not in the message".into(),
                ),
                (None, Some(cert)) => {
                    match chain_error(cert, &untrusted, trust)
                        .or_else(|| smime_signing_problems(cert))
                    {
                        None => SignatureStatus::Valid,
                        Some(reason) => SignatureStatus::UntrustedChain(reason),
                    }
                }
            };
            SignatureResult {
                status,
                signer_address: signer.and_then(|c| c.email.clone()),
                signer_der: signer.map(|c| c.der.clone()),
                chain_der: info
                    .certificates
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| Some(*i) != s.cert)
                    .map(|(_, c)| c.der.clone())
                    .collect(),
                capabilities: s.capabilities.clone(),
                digest: cms_info::digest_name(&s.digest_oid).to_string(),
                opaque,
            }
        })
        .collect();
    Ok((content, results))
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
    let facts = match super::info::CertFacts::of(cert) {
        Ok(f) => f,
        Err(e) => return Some(format!("unreadable certificate: {e}")),
    };
    let problems = facts.signing_problems(super::info::now());
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
    let entity = mime::to_crlf(entity);
    let extra = stack_of(chain).map_err(|e| SmimeError::Build(e.to_string()))?;
    // BINARY: the entity is already canonical CRLF; OpenSSL must not re-canonicalise it.
    // The default signed attributes include SMIMECapabilities (so partners learn we read
    // AES-GCM) and the digest is SHA-256 for RSA keys.
    let cms = CmsContentInfo::sign(
        Some(signer.cert),
        Some(signer.key),
        Some(&extra),
        Some(&entity),
        CMSOptions::DETACHED | CMSOptions::BINARY,
    )
    .map_err(|e| SmimeError::Build(format!("signing failed: {}", first_error(&e))))?;
    let der = cms.to_der().map_err(|e| SmimeError::Build(e.to_string()))?;
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
    out.extend_from_slice(mime::base64_lines(&der).as_bytes());
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
    let entity = mime::to_crlf(entity);
    let certs = stack_of(recipients).map_err(|e| SmimeError::Build(e.to_string()))?;
    let (c, smime_type) = match cipher {
        ContentCipher::Aes256Gcm => (Cipher::aes_256_gcm(), "authEnveloped-data"),
        ContentCipher::Aes256Cbc => (Cipher::aes_256_cbc(), "enveloped-data"),
    };
    let cms = CmsContentInfo::encrypt(&certs, &entity, c, CMSOptions::BINARY)
        .map_err(|e| SmimeError::Build(format!("encryption failed: {}", first_error(&e))))?;
    let der = cms.to_der().map_err(|e| SmimeError::Build(e.to_string()))?;
    let mut out = format!(
        "Content-Type: application/pkcs7-mime; smime-type={smime_type};\r\n\tname=\"smime.p7m\"\r\n\
         Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7m\"\r\n\
         Content-Description: S/MIME Encrypted Message\r\n\r\n"
    )
    .into_bytes();
    out.extend_from_slice(mime::base64_lines(&der).as_bytes());
    Ok(out)
}

/// The content cipher for a set of recipients: GCM only when every one is known to read it.
pub fn cipher_for(all_gcm_capable: bool) -> ContentCipher {
    if all_gcm_capable {
        ContentCipher::Aes256Gcm
    } else {
        ContentCipher::Aes256Cbc
    }
}

/// Whether an announced capability list includes AES-GCM.
pub fn announces_gcm(capabilities: &[String]) -> bool {
    capabilities
        .iter()
        .any(|c| c == cms_info::OID_AES256_GCM || c == cms_info::OID_AES128_GCM)
}
