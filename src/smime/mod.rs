//! S/MIME: the certificate and key store ([`store`]) that the S/MIME engine asks per message
//! which key decrypts, which identity signs and which certificate encrypts. All
//! cryptography is OpenSSL's (the `openssl` crate).
//!
//! - [`store`]: rows in SQLite, an in-memory index, the lookups, import/harvest/delete.
//! - [`keys`]: private keys sealed at rest with AES-256-GCM under a 0600 master key file.
//! - [`parse`]: reading PEM/DER/PKCS#7/PKCS#12 files (the legacy provider for RC2-40).
//! - [`trust`]: trust anchors (system roots, `certs.extra_ca`, `certs trust-ca`) and chains.
//! - [`info`]: facts read from a certificate and the usable-for-encryption/signing rules.

mod der;
pub mod info;
pub mod keys;
pub mod parse;
pub mod store;
#[cfg(test)]
pub(crate) mod testpki;
pub mod trust;

pub use store::{CertStore, EncryptionCert, Identity};
