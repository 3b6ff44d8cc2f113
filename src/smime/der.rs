//! Just enough DER to read a certificate's basicConstraints: the openssl crate has no safe
//! accessor for it (X509_check_ca needs `unsafe`, which the workspace forbids), and pulling
//! in a full X.509 parser for one boolean is not worth the dependency.

/// One TLV: (tag, contents, rest). Single-byte tags and definite lengths only, which is
/// all DER allows for the structures walked here.
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
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

/// The elements of a constructed value's contents.
fn elements(mut contents: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, value, rest) = tlv(contents)?;
        contents = rest;
        Some((tag, value))
    })
}

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const EXTENSIONS: u8 = 0xa3; // [3] EXPLICIT in TBSCertificate
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13]; // 2.5.29.19

/// Whether the certificate (DER) says `cA: TRUE` in basicConstraints. `false` when the
/// extension is absent (an end-entity certificate) or the DER cannot be walked (openssl
/// parsed it already, so that means an unusual encoding: treat as not a CA).
pub fn is_ca(cert_der: &[u8]) -> bool {
    basic_constraints_ca(cert_der).unwrap_or(false)
}

fn basic_constraints_ca(cert_der: &[u8]) -> Option<bool> {
    let (SEQUENCE, cert, _) = tlv(cert_der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = tlv(cert)? else {
        return None;
    };
    let (_, extensions) = elements(tbs).find(|(tag, _)| *tag == EXTENSIONS)?;
    let (SEQUENCE, extensions, _) = tlv(extensions)? else {
        return None;
    };
    for (tag, extension) in elements(extensions) {
        if tag != SEQUENCE {
            return None;
        }
        let mut parts = elements(extension);
        match parts.next()? {
            (OID, oid) if oid == BASIC_CONSTRAINTS => {}
            _ => continue,
        }
        let value = parts.find(|(tag, _)| *tag == OCTET_STRING)?.1;
        let (SEQUENCE, constraints, _) = tlv(value)? else {
            return None;
        };
        return Some(matches!(
            elements(constraints).next(),
            Some((BOOLEAN, [v])) if *v != 0
        ));
    }
    Some(false)
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
