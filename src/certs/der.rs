//! Just enough BER/DER for the CMS structures the engine reads and writes, and for the
//! certificate fields it needs (issuer and serial number, subject key id, basicConstraints).
//!
//! Why by hand: the `der` crate reads DER only, and real clients (Thunderbird, Outlook)
//! send BER with indefinite lengths and chunked OCTET STRINGs; re-encoding every inbound
//! blob through OpenSSL to get DER cost more than the RSA operation. The openssl crate has
//! no safe accessor for the fields (the workspace forbids `unsafe`). Reading is a walk over
//! slices of the input: nothing is copied except chunked strings.

use std::borrow::Cow;

/// Nesting deeper than this is refused (CMS needs about ten levels).
const MAX_DEPTH: usize = 40;

/// One TLV: (tag, contents, rest). BER: definite lengths (up to 4 length octets) and, for
/// constructed values, indefinite ones, whose contents end before the end-of-contents
/// octets. Single-byte tags only, which is all CMS and X.509 use.
pub fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    tlv_at(input, 0)
}

fn tlv_at(input: &[u8], depth: usize) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    if tag & 0x1f == 0x1f || depth > MAX_DEPTH {
        return None;
    }
    let (&first, rest) = rest.split_first()?;
    if first == 0x80 {
        // indefinite: only constructed values; the children end at 00 00
        if tag & CONSTRUCTED == 0 {
            return None;
        }
        let mut pos = rest;
        loop {
            if let [0, 0, after @ ..] = pos {
                let len = rest.len() - pos.len();
                return Some((tag, &rest[..len], after));
            }
            pos = tlv_at(pos, depth + 1)?.2;
        }
    }
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The elements of a constructed value's contents, as (tag, contents). Stops at the first
/// element that does not parse.
pub fn elements(contents: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    elements_whole(contents).map(|(tag, _, value)| (tag, value))
}

/// [`elements`] with each element's whole encoding: (tag, whole, contents).
pub fn elements_whole(mut contents: &[u8]) -> impl Iterator<Item = (u8, &[u8], &[u8])> {
    std::iter::from_fn(move || {
        let (tag, value, rest) = tlv(contents)?;
        let whole = &contents[..contents.len() - rest.len()];
        contents = rest;
        Some((tag, whole, value))
    })
}

/// An OBJECT IDENTIFIER's contents in dotted form ("2.16.840.1.101.3.4.1.42"). `None`
/// for an empty value, a truncated arc, a non-minimal arc or one past 64 bits.
pub fn oid_dotted(contents: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(contents.len() * 3);
    let mut arc: u64 = 0;
    let mut first = true;
    for (i, &b) in contents.iter().enumerate() {
        if arc == 0 && b == 0x80 {
            return None; // a leading 0x80 pads an arc: not DER
        }
        arc = arc.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 != 0 {
            if i + 1 == contents.len() {
                return None;
            }
            continue;
        }
        if first {
            // The first subidentifier holds the first two arcs: 40·x + y (x ≤ 2).
            let x = (arc / 40).min(2);
            push_decimal(&mut out, x);
            out.push('.');
            push_decimal(&mut out, arc - 40 * x);
            first = false;
        } else {
            out.push('.');
            push_decimal(&mut out, arc);
        }
        arc = 0;
    }
    (!first).then_some(out)
}

fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[i..].iter().map(|&d| d as char));
}

/// The octets of a string value, primitive or (BER) constructed from chunks.
pub fn octets(tag: u8, contents: &[u8]) -> Option<Cow<'_, [u8]>> {
    if tag & CONSTRUCTED == 0 {
        return Some(Cow::Borrowed(contents));
    }
    let mut all = Vec::with_capacity(contents.len());
    collect_chunks(contents, &mut all, 0)?;
    Some(Cow::Owned(all))
}

/// The chunks of a constructed string, in order; nesting is bounded (a crafted message of
/// strings inside strings must not exhaust the stack).
fn collect_chunks(mut contents: &[u8], all: &mut Vec<u8>, depth: usize) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    while !contents.is_empty() {
        let (tag, chunk, rest) = tlv(contents)?;
        if tag & CONSTRUCTED == 0 {
            all.extend_from_slice(chunk);
        } else {
            collect_chunks(chunk, all, depth + 1)?;
        }
        contents = rest;
    }
    Some(())
}

/// Append one definite-length TLV (DER) to `out`.
pub fn put(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    put_header(out, tag, contents.len());
    out.extend_from_slice(contents);
}

/// Append the tag and definite length of a value whose `len` content bytes follow.
pub fn put_header(out: &mut Vec<u8>, tag: u8, len: usize) {
    out.push(tag);
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len() - 1);
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// The tag and definite length of a value of `len` content bytes.
pub fn header(tag: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(6);
    put_header(&mut out, tag, len);
    out
}

/// One definite-length TLV (DER) made of the concatenated `parts`.
pub fn tlv_of(tag: u8, parts: &[&[u8]]) -> Vec<u8> {
    let len = parts.iter().map(|p| p.len()).sum::<usize>();
    let mut contents = Vec::with_capacity(len);
    for p in parts {
        contents.extend_from_slice(p);
    }
    let mut out = Vec::with_capacity(len + 6);
    put(&mut out, tag, &contents);
    out
}

pub const CONSTRUCTED: u8 = 0x20;
pub const INTEGER: u8 = 0x02;
pub const SEQUENCE: u8 = 0x30;
pub const SET: u8 = 0x31;
pub const OID: u8 = 0x06;
pub const NULL: u8 = 0x05;
pub const BOOLEAN: u8 = 0x01;
pub const OCTET_STRING: u8 = 0x04;
pub const UTC_TIME: u8 = 0x17;
const EXTENSIONS: u8 = 0xa3; // [3] EXPLICIT in TBSCertificate
const VERSION: u8 = 0xa0; // [0] EXPLICIT in TBSCertificate
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13]; // 2.5.29.19
const SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e]; // 2.5.29.14

/// How a certificate is named in CMS (signer and recipient identifiers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertIds<'a> {
    /// The issuer Name, whole DER.
    pub issuer: &'a [u8],
    /// The serialNumber INTEGER, whole DER.
    pub serial: &'a [u8],
}

/// Issuer and serial number of a certificate (DER).
pub fn cert_ids(cert_der: &[u8]) -> Option<CertIds<'_>> {
    let mut fields = elements_whole(tbs(cert_der)?);
    let mut next = fields.next()?;
    if next.0 == VERSION {
        next = fields.next()?;
    }
    let (INTEGER, serial, _) = next else {
        return None;
    };
    let _signature = fields.next()?;
    let (SEQUENCE, issuer, _) = fields.next()? else {
        return None;
    };
    Some(CertIds { issuer, serial })
}

/// The subjectKeyIdentifier of a certificate (DER), if it has one.
pub fn subject_key_id(cert_der: &[u8]) -> Option<&[u8]> {
    let value = extension(cert_der, SUBJECT_KEY_ID)?;
    let (tag, id, _) = tlv(value)?;
    (tag == OCTET_STRING).then_some(id)
}

fn tbs(cert_der: &[u8]) -> Option<&[u8]> {
    let (SEQUENCE, cert, _) = tlv(cert_der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = tlv(cert)? else {
        return None;
    };
    Some(tbs)
}

/// The extnValue contents of the extension `oid` (content bytes of the OID).
fn extension<'a>(cert_der: &'a [u8], oid: &[u8]) -> Option<&'a [u8]> {
    let (_, extensions) = elements(tbs(cert_der)?).find(|(tag, _)| *tag == EXTENSIONS)?;
    let (SEQUENCE, extensions, _) = tlv(extensions)? else {
        return None;
    };
    for (tag, extension) in elements(extensions) {
        if tag != SEQUENCE {
            return None;
        }
        let mut parts = elements(extension);
        match parts.next()? {
            (OID, o) if o == oid => {}
            _ => continue,
        }
        return Some(parts.find(|(tag, _)| *tag == OCTET_STRING)?.1);
    }
    None
}

/// Whether the certificate (DER) says `cA: TRUE` in basicConstraints. `false` when the
/// extension is absent (an end-entity certificate) or the DER cannot be walked (openssl
/// parsed it already, so that means an unusual encoding: treat as not a CA).
pub fn is_ca(cert_der: &[u8]) -> bool {
    basic_constraints_ca(cert_der).unwrap_or(false)
}

fn basic_constraints_ca(cert_der: &[u8]) -> Option<bool> {
    tbs(cert_der)?;
    let Some(value) = extension(cert_der, BASIC_CONSTRAINTS) else {
        return Some(false);
    };
    let (SEQUENCE, constraints, _) = tlv(value)? else {
        return None;
    };
    Some(matches!(
        elements(constraints).next(),
        Some((BOOLEAN, [v])) if *v != 0
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::X509;
    use openssl::x509::extension::{BasicConstraints, KeyUsage};

    #[test]
    fn oids_are_written_as_the_der_crate_writes_them() {
        use ::der::asn1::ObjectIdentifier;
        for dotted in [
            "1.2.840.113549.1.9.16.1.23",
            "2.16.840.1.101.3.4.1.42",
            "1.3.14.3.2.26",
            "0.9.2342.19200300.100.1.1",
            "1.2.840.113549.3.7",
            "2.5.4.3",
        ] {
            let oid = ObjectIdentifier::new(dotted).unwrap();
            assert_eq!(oid_dotted(oid.as_bytes()).as_deref(), Some(dotted));
        }
        // X.660's example of a first subidentifier past 80 (the der crate refuses it)
        assert_eq!(oid_dotted(&[0x88, 0x37, 0x03]).as_deref(), Some("2.999.3"));
        // empty, truncated, padded
        for bad in [&[][..], &[0x2a, 0x86], &[0x2a, 0x80, 0x01]] {
            assert_eq!(oid_dotted(bad), None, "{bad:?}");
        }
    }

    fn cert(extension: Option<BasicConstraints>) -> Vec<u8> {
        let key = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        b.append_extension(KeyUsage::new().digital_signature().build().unwrap())
            .unwrap();
        if let Some(bc) = extension {
            b.append_extension(bc.build().unwrap()).unwrap();
        }
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build().to_der().unwrap()
    }

    #[test]
    fn reads_ca_flag_of_basic_constraints() {
        let mut ca = BasicConstraints::new();
        ca.critical().ca();
        assert!(is_ca(&cert(Some(ca))));
        let mut ca_with_pathlen = BasicConstraints::new();
        ca_with_pathlen.ca().pathlen(0);
        assert!(is_ca(&cert(Some(ca_with_pathlen))));
        assert!(!is_ca(&cert(Some(BasicConstraints::new()))));
        assert!(!is_ca(&cert(None)));
    }

    #[test]
    fn reads_ber_indefinite_lengths_and_chunked_strings() {
        // SEQUENCE (indefinite) { OCTET STRING (constructed, indefinite) { "ab", "c" }, NULL }
        let ber = [
            0x30, 0x80, 0x24, 0x80, 0x04, 0x02, b'a', b'b', 0x04, 0x01, b'c', 0, 0, 0x05, 0, 0, 0,
            0xff,
        ];
        let (tag, contents, rest) = tlv(&ber).unwrap();
        assert_eq!((tag, rest), (SEQUENCE, &[0xff][..]));
        let parts: Vec<_> = elements(contents).collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(octets(parts[0].0, parts[0].1).unwrap().as_ref(), b"abc");
        assert_eq!(parts[1], (NULL, &[][..]));
        // an indefinite length on a primitive, a missing end-of-contents: refused
        assert!(tlv(&[0x04, 0x80, 1, 0, 0]).is_none());
        assert!(tlv(&[0x30, 0x80, 0x05, 0x00]).is_none());
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        // constructed strings inside each other: 100,000 indefinite, 2,000 definite
        let depth = 100_000;
        let mut indefinite = Vec::new();
        for _ in 0..depth {
            indefinite.extend_from_slice(&[0x24, 0x80]);
        }
        indefinite.extend(std::iter::repeat_n(0u8, 2 * depth));
        assert!(tlv(&indefinite).is_none());
        let mut definite = vec![0x04, 0x01, b'x'];
        for _ in 0..2_000 {
            let mut outer = Vec::new();
            put(&mut outer, 0x24, &definite);
            definite = outer;
        }
        let (tag, contents, _) = tlv(&definite).unwrap();
        assert!(octets(tag, contents).is_none());
    }

    #[test]
    fn garbage_is_not_a_ca_and_does_not_panic() {
        assert!(!is_ca(b""));
        assert!(!is_ca(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]));
        let mut der = cert(Some({
            let mut b = BasicConstraints::new();
            b.ca();
            b
        }));
        for cut in [1, 10, der.len() / 2, der.len() - 1] {
            let _ = is_ca(&der[..cut]);
        }
        der.truncate(der.len() - 1);
        let _ = is_ca(&der);
    }
}
