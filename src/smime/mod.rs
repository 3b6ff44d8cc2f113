//! S/MIME: the gateway holds the keys, so no desktop needs any S/MIME set-up and the
//! filters see plaintext. All cryptography is OpenSSL's (the `openssl` crate).
//!
//! The certificate and key store, which the engine asks per message which key decrypts,
//! which identity signs and which certificate encrypts:
//! - [`store`]: rows in SQLite, an in-memory index, the lookups, import/harvest/delete.
//! - [`keys`]: private keys sealed at rest with AES-256-GCM under a 0600 master key file.
//! - [`parse`]: reading PEM/DER/PKCS#7/PKCS#12 files (the legacy provider for RC2-40).
//! - [`trust`]: trust anchors (system roots, `certs.extra_ca`, `certs trust-ca`) and chains.
//! - [`crl`]: revocation lists (read, checked against a verified chain, fetched over http).
//! - [`info`]: facts read from a certificate and the usable-for-encryption/signing rules.
//!
//! The engine and its pipeline steps:
//! - [`engine`]: the CMS engine — pure functions over OpenSSL types (decrypt, verify, sign,
//!   encrypt), no I/O.
//! - [`mime`]: the MIME around the CMS blobs (split, base64, multipart/signed).
//! - [`inbound`]: the first inbound step (unwrap before the filters, harvest after the
//!   verdict).
//! - [`outbound`]: signing and encryption by policy (RCPT check, precheck, copies).
//! - [`keyring`]: what the steps need from the certificate store, as one trait.
//! - [`cpu`]: the crypto runs on a few worker threads, one per core.
//! - `key_ops`: RSA/ECDSA operations through OpenSSL contexts each worker thread keeps.
//! - `symmetric`: AES/3DES content encryption with ciphers fetched once.
//! - `x509_cache`: certificates parsed once per distinct DER (OpenSSL 3.0 parses slowly).
//! - [`cms_info`] and [`cms_build`]: reading and writing the CMS structures (signed data,
//!   enveloped and authEnveloped data) over [`der`], a BER/DER walker.

// the store
pub mod crl;
pub mod der;
pub mod info;
pub mod keys;
pub mod parse;
pub mod store;
#[cfg(test)]
pub(crate) mod testpki;
pub mod trust;

pub use store::{CertStore, EncryptionCert, Identity};

// the engine
pub mod cms_build;
pub mod cms_info;
pub mod cpu;
pub mod engine;
pub mod inbound;
mod key_ops;
pub mod keyring;
pub mod mime;
pub mod outbound;
mod symmetric;
mod x509_cache;

#[cfg(test)]
pub mod test_pki;
#[cfg(test)]
mod tests;
