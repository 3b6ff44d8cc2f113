//! Writing the CMS structures the gateway sends, as DER (RFC 5652, RFC 5083/5084): a
//! detached SignedData, and an EnvelopedData or AuthEnvelopedData to RSA recipients.
//!
//! Encoding only: the digests, signatures, keys and ciphertexts come from
//! [`super::engine`], which uses OpenSSL's primitives for them. Why not `CMS_sign` /
//! `CMS_encrypt`: in OpenSSL 3.0 their ASN.1 machinery (templates, BIO chains, algorithm
//! fetches per operation) cost a third as much as the RSA operation itself
//! (benches/smime_engine.rs), and they announce the SMIMECapabilities OpenSSL chooses
//! (with RC2-40 and DES, without AES-GCM) rather than ours.

use der::asn1::ObjectIdentifier;

use super::cms_info::{
    OID_AES128_CBC, OID_AES128_GCM, OID_AES192_CBC, OID_AES256_CBC, OID_AES256_GCM,
    OID_AUTH_ENVELOPED_DATA, OID_CONTENT_TYPE, OID_DATA, OID_ECDSA_SHA256, OID_ENVELOPED_DATA,
    OID_MESSAGE_DIGEST, OID_RSA_ENCRYPTION, OID_SHA256, OID_SIGNED_DATA,
    OID_SIGNING_CERTIFICATE_V2, OID_SIGNING_TIME, OID_SMIME_CAPABILITIES,
};
use crate::certs::der::{
    CertIds, INTEGER, NULL, OCTET_STRING, OID, SEQUENCE, SET, header, put_header, tlv_of,
};

/// What we announce we read, in our order of preference (RFC 8551 §2.5.2): AES-GCM first
/// (authenticated), then AES-CBC. Nothing weaker: we read 3DES only to open old mail.
const OUR_CAPABILITIES: [ObjectIdentifier; 5] = [
    OID_AES256_GCM,
    OID_AES128_GCM,
    OID_AES256_CBC,
    OID_AES192_CBC,
    OID_AES128_CBC,
];

fn oid(o: ObjectIdentifier) -> Vec<u8> {
    tlv_of(OID, &[o.as_bytes()])
}

/// AlgorithmIdentifier with NULL parameters (rsaEncryption) or none (SHA-2, RFC 5754).
fn algorithm(o: ObjectIdentifier, null_params: bool) -> Vec<u8> {
    let params: &[u8] = if null_params { &[NULL, 0] } else { &[] };
    tlv_of(SEQUENCE, &[&oid(o), params])
}

fn attribute(o: ObjectIdentifier, value: &[u8]) -> Vec<u8> {
    tlv_of(SEQUENCE, &[&oid(o), &tlv_of(SET, &[value])])
}

/// DER `SET OF`: the elements sorted by their encodings (X.690 §11.6). OpenSSL re-encodes
/// signed attributes this way before it checks a signature over them.
fn set_of(mut elements: Vec<Vec<u8>>) -> Vec<u8> {
    elements.sort();
    let parts: Vec<&[u8]> = elements.iter().map(Vec::as_slice).collect();
    tlv_of(SET, &parts)
}

/// signingTime: UTCTime through 2049, GeneralizedTime after (RFC 5652 §11.3).
fn signing_time(unix: i64) -> Vec<u8> {
    let (y, m, d) = crate::clock::civil_from_days(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    let (tag, year) = if (1950..2050).contains(&y) {
        (0x17, format!("{:02}", y % 100))
    } else {
        (0x18, format!("{y:04}"))
    };
    let text = format!(
        "{year}{m:02}{d:02}{:02}{:02}{:02}Z",
        s / 3600,
        s % 3600 / 60,
        s % 60
    );
    tlv_of(tag, &[text.as_bytes()])
}

/// The signed attributes of an outbound signature, as the DER `SET OF` the signature is
/// computed over: contentType (data), signingTime, messageDigest, SMIMECapabilities.
pub fn signed_attributes(message_digest: &[u8], unix_now: i64) -> Vec<u8> {
    let capabilities: Vec<u8> = OUR_CAPABILITIES
        .iter()
        .flat_map(|&c| tlv_of(SEQUENCE, &[&oid(c)]))
        .collect();
    set_of(vec![
        attribute(OID_CONTENT_TYPE, &oid(OID_DATA)),
        attribute(OID_SIGNING_TIME, &signing_time(unix_now)),
        attribute(OID_MESSAGE_DIGEST, &tlv_of(OCTET_STRING, &[message_digest])),
        attribute(OID_SMIME_CAPABILITIES, &tlv_of(SEQUENCE, &[&capabilities])),
    ])
}

/// The signed attributes of a CAdES-BES signature (ETSI EN 319 122-1 §5.2), as the DER
/// `SET OF` the signature is computed over: contentType (data), signingTime,
/// messageDigest, and signingCertificateV2 (RFC 5035) naming the signer's certificate by its
/// SHA-256 hash (`cert_sha256`) and its issuer and serial number.
pub fn cades_signed_attributes(
    message_digest: &[u8],
    unix_now: i64,
    signer: &CertIds<'_>,
    cert_sha256: &[u8],
) -> Vec<u8> {
    // ESSCertIDv2: hashAlgorithm left out (its DEFAULT is SHA-256, which DER omits),
    // certHash, issuerSerial { GeneralNames { directoryName [4] EXPLICIT Name }, serial }.
    let general_names = tlv_of(SEQUENCE, &[&tlv_of(0xa4, &[signer.issuer])]);
    let issuer_serial = tlv_of(SEQUENCE, &[&general_names, signer.serial]);
    let cert_id = tlv_of(
        SEQUENCE,
        &[&tlv_of(OCTET_STRING, &[cert_sha256]), &issuer_serial],
    );
    let signing_certificate = tlv_of(SEQUENCE, &[&tlv_of(SEQUENCE, &[&cert_id])]);
    set_of(vec![
        attribute(OID_CONTENT_TYPE, &oid(OID_DATA)),
        attribute(OID_SIGNING_TIME, &signing_time(unix_now)),
        attribute(OID_MESSAGE_DIGEST, &tlv_of(OCTET_STRING, &[message_digest])),
        attribute(OID_SIGNING_CERTIFICATE_V2, &signing_certificate),
    ])
}

/// The signature algorithm of a SignerInfo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// RSA PKCS#1 v1.5 (rsaEncryption, as RFC 5754 §3.2 and every client write it).
    Rsa,
    /// ECDSA with SHA-256 (RFC 5753 §2.1.1, RFC 5758).
    EcdsaSha256,
}

fn issuer_and_serial(ids: &CertIds<'_>) -> Vec<u8> {
    tlv_of(SEQUENCE, &[ids.issuer, ids.serial])
}

fn content_info(content_type: ObjectIdentifier, content: &[u8]) -> Vec<u8> {
    tlv_of(SEQUENCE, &[&oid(content_type), &tlv_of(0xa0, &[content])])
}

/// A detached SignedData (SHA-256) by the certificate `signer`, carrying `certificates`
/// (the signer's own and its chain, DER). `signed_attrs` is what [`signed_attributes`] or
/// [`cades_signed_attributes`] returned; `signature` the signature over it made with
/// `algorithm`.
pub fn detached_signed_data(
    signer: &CertIds<'_>,
    signed_attrs: &[u8],
    signature_algorithm: SignatureAlgorithm,
    signature: &[u8],
    certificates: &[&[u8]],
) -> Vec<u8> {
    let sha256 = algorithm(OID_SHA256, false);
    // [0] IMPLICIT: the SET OF's contents under the context tag
    let mut attrs = signed_attrs.to_vec();
    attrs[0] = 0xa0;
    let signer_info = tlv_of(
        SEQUENCE,
        &[
            &[INTEGER, 1, 1],
            &issuer_and_serial(signer),
            &sha256,
            &attrs,
            &match signature_algorithm {
                SignatureAlgorithm::Rsa => algorithm(OID_RSA_ENCRYPTION, true),
                SignatureAlgorithm::EcdsaSha256 => algorithm(OID_ECDSA_SHA256, false),
            },
            &tlv_of(OCTET_STRING, &[signature]),
        ],
    );
    let mut certs = set_of(certificates.iter().map(|c| c.to_vec()).collect());
    certs[0] = 0xa0;
    let signed_data = tlv_of(
        SEQUENCE,
        &[
            &[INTEGER, 1, 1],
            &tlv_of(SET, &[&sha256]),
            &tlv_of(SEQUENCE, &[&oid(OID_DATA)]),
            &certs,
            &tlv_of(SET, &[&signer_info]),
        ],
    );
    content_info(OID_SIGNED_DATA, &signed_data)
}

/// One RSA recipient: its certificate's ids and the content key encrypted to its public
/// key with RSA PKCS#1 v1.5 (what every S/MIME client reads).
pub struct Recipient<'a> {
    pub ids: CertIds<'a>,
    pub encrypted_key: Vec<u8>,
}

/// How the content was encrypted.
pub enum Sealed<'a> {
    /// AES-256-CBC: EnvelopedData.
    Cbc { iv: &'a [u8] },
    /// AES-256-GCM: AuthEnvelopedData with the 16-byte tag (RFC 5084).
    Gcm { nonce: &'a [u8], tag: &'a [u8] },
}

/// An EnvelopedData (CBC) or AuthEnvelopedData (GCM) to `recipients`.
pub fn enveloped_data(
    recipients: &[Recipient<'_>],
    sealed: Sealed<'_>,
    ciphertext: &[u8],
) -> Vec<u8> {
    let infos = set_of(
        recipients
            .iter()
            .map(|r| {
                tlv_of(
                    SEQUENCE,
                    &[
                        &[INTEGER, 1, 0],
                        &issuer_and_serial(&r.ids),
                        &algorithm(OID_RSA_ENCRYPTION, true),
                        &tlv_of(OCTET_STRING, &[&r.encrypted_key]),
                    ],
                )
            })
            .collect(),
    );
    let (cipher, content_type, mac) = match sealed {
        Sealed::Cbc { iv } => (
            tlv_of(
                SEQUENCE,
                &[&oid(OID_AES256_CBC), &tlv_of(OCTET_STRING, &[iv])],
            ),
            OID_ENVELOPED_DATA,
            None,
        ),
        Sealed::Gcm { nonce, tag } => (
            tlv_of(
                SEQUENCE,
                &[
                    &oid(OID_AES256_GCM),
                    // GCMParameters: the ICV length defaults to 12, so 16 is written out
                    &tlv_of(
                        SEQUENCE,
                        &[
                            &tlv_of(OCTET_STRING, &[nonce]),
                            &[INTEGER, 1, tag.len() as u8],
                        ],
                    ),
                ],
            ),
            OID_AUTH_ENVELOPED_DATA,
            Some(tlv_of(OCTET_STRING, &[tag])),
        ),
    };
    // Written outside in with each length computed first, so the ciphertext (the whole
    // message) is copied once rather than once per nesting level.
    let data = oid(OID_DATA);
    let encrypted = header(0x80, ciphertext.len());
    let content_len = data.len() + cipher.len() + encrypted.len() + ciphertext.len();
    let content = header(SEQUENCE, content_len);
    let version: &[u8] = &[INTEGER, 1, 0];
    let mac = mac.unwrap_or_default();
    let body_len = version.len() + infos.len() + content.len() + content_len + mac.len();
    let body = header(SEQUENCE, body_len);
    let explicit = header(0xa0, body.len() + body_len);
    let kind = oid(content_type);
    let info_len = kind.len() + explicit.len() + body.len() + body_len;
    let mut out = Vec::with_capacity(info_len + 6);
    put_header(&mut out, SEQUENCE, info_len);
    for part in [
        &kind[..],
        &explicit,
        &body,
        version,
        &infos,
        &content,
        &data,
        &cipher,
        &encrypted,
        ciphertext,
        &mac,
    ] {
        out.extend_from_slice(part);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_time_is_utc_time_until_2049_then_generalized() {
        // 2026-11-28 07:54:59 UTC
        assert_eq!(&signing_time(1_795_852_499)[2..], b"261128075459Z");
        assert_eq!(signing_time(1_795_852_499)[0], 0x17);
        // 2050-01-01 00:00:00 UTC
        let t = signing_time(2_524_608_000);
        assert_eq!((t[0], &t[2..]), (0x18, &b"20500101000000Z"[..]));
    }

    #[test]
    fn set_of_is_sorted_by_encoding() {
        let s = set_of(vec![vec![0x30, 2, 6, 1], vec![0x30, 1, 5], vec![0x04, 0]]);
        assert_eq!(s, vec![0x31, 9, 0x04, 0, 0x30, 1, 5, 0x30, 2, 6, 1]);
    }
}
