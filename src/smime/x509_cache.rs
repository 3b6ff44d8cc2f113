//! Parsed certificates by their DER bytes, kept between messages.
//!
//! OpenSSL 3.0 parses a certificate slowly: its public key goes through the decoder
//! framework, about 0.3 ms — more than half an RSA-2048 signature (measured with
//! benches/smime_engine.rs). A partner signs every message with the same certificate, so
//! each distinct certificate is parsed once and shared (`X509` clones are reference counts).
//! The key is the whole DER, so a cached object is exactly the certificate asked for.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use openssl::x509::X509;

/// Bound of the cache; past it the memory starts over (partners' certificates come back
/// with their next message).
const MAX_ENTRIES: usize = 4096;

fn cache() -> &'static Mutex<HashMap<Vec<u8>, X509>> {
    static CACHE: OnceLock<Mutex<HashMap<Vec<u8>, X509>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The certificate `der` as an OpenSSL object, parsed at most once while cached.
pub fn parse(der: &[u8]) -> Result<X509, openssl::error::ErrorStack> {
    if let Some(hit) = cache().lock().ok().and_then(|c| c.get(der).cloned()) {
        return Ok(hit);
    }
    // Parsed outside the lock: the slow part must not hold up other workers.
    let cert = X509::from_der(der)?;
    if let Ok(mut c) = cache().lock() {
        if c.len() >= MAX_ENTRIES {
            c.clear();
        }
        c.insert(der.to_vec(), cert.clone());
    }
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use openssl::x509::X509;

    #[test]
    fn returns_the_certificate_asked_for_and_refuses_garbage() {
        let pki = crate::certs::test_pki::on_disk::Pki::new("Cache CA");
        let a = pki.user("a@example.test").cert.to_der().unwrap();
        let b = pki.user("b@example.test").cert.to_der().unwrap();
        for _ in 0..2 {
            assert_eq!(super::parse(&a).unwrap().to_der().unwrap(), a);
            assert_eq!(super::parse(&b).unwrap().to_der().unwrap(), b);
        }
        assert!(super::parse(b"not a certificate").is_err());
        let _: X509 = super::parse(&a).unwrap();
    }
}
