//! The certificate and key store: which key decrypts, which identity signs, which
//! certificate encrypts — for the S/MIME engine (`crate::smime`, through its `Keyring`
//! trait) and for the `portcullis certs` commands.
//!
//! - [`store`]: rows in SQLite, an in-memory index, the lookups, import/harvest/delete.
//! - [`keys`]: private keys sealed at rest with AES-256-GCM under a 0600 master key file.
//! - [`parse`]: reading PEM/DER/PKCS#7/PKCS#12 files (the legacy provider for RC2-40).
//! - [`anchors`]: trust anchors (system roots, `certs.extra_ca`, `certs trust-ca`) and chains.
//! - [`crl`]: revocation lists (read, checked against a verified chain, fetched over http).
//! - [`info`]: facts read from a certificate and the usable-for-encryption/signing rules.
//! - [`der`]: a BER/DER walker (certificates and the CMS structures are written in it).

pub mod anchors;
pub mod crl;
pub mod der;
pub mod info;
pub mod keys;
pub mod parse;
pub mod store;
#[cfg(test)]
pub mod test_pki;

pub use store::{CertStore, EncryptionCert, Identity};
