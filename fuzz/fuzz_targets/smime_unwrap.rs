//! The S/MIME layer as inbound mail meets it: MIME recognition, then every layer peeled
//! with a test key (made once) and an empty trust store, within the default limits.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use portcullis::smime::engine::{self, KeyPair, Limits};

struct Keyring {
    cert: X509,
    key: PKey<Private>,
    trust: X509Store,
}

fn keyring() -> &'static Keyring {
    static KEYRING: OnceLock<Keyring> = OnceLock::new();
    KEYRING.get_or_init(|| {
        let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "fuzz@example.test")
            .unwrap();
        let name = name.build();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(30).unwrap())
            .unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256())
            .unwrap();
        Keyring {
            cert: b.build(),
            key,
            trust: X509StoreBuilder::new().unwrap().build(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let k = keyring();
    let _ = engine::is_smime(data);
    let keys = [KeyPair {
        cert: &k.cert,
        key: &k.key,
    }];
    let _ = engine::unwrap_limited(data, &keys, &k.trust, &[], None, &Limits::default());
});
