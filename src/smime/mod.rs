//! S/MIME: the gateway holds the keys, so no desktop needs any S/MIME set-up and the
//! filters see plaintext. All cryptography is OpenSSL's (the `openssl` crate).
//!
//! The certificate and key store the engine asks per message is `crate::certs`.
//!
//! The engine and its pipeline steps:
//! - [`engine`]: the CMS engine — pure functions over OpenSSL types (decrypt, verify, sign,
//!   encrypt), no I/O.
//! - [`mime`]: the MIME around the CMS blobs (split, base64, multipart/signed).
//! - [`inbound`]: the first inbound step (unwrap before the filters, harvest after the
//!   verdict).
//! - [`outbound`]: signing and encryption by policy (RCPT check, precheck, copies).
//! - [`policy`]: which sign/encrypt rules apply to a sender (`[[smime.policy]]`).
//! - [`keyring`]: what the steps need from the certificate store, as one trait.
//! - [`cpu`]: the crypto runs on a few worker threads, one per core.
//! - `key_ops`: RSA/ECDSA operations through OpenSSL contexts each worker thread keeps.
//! - `symmetric`: AES/3DES content encryption with ciphers fetched once.
//! - `x509_cache`: certificates parsed once per distinct DER (OpenSSL 3.0 parses slowly).
//! - [`cms_info`] and [`cms_build`]: reading and writing the CMS structures (signed data,
//!   enveloped and authEnveloped data) over `certs::der`, a BER/DER walker.

pub mod cms_build;
pub mod cms_info;
pub mod cpu;
pub mod engine;
pub mod inbound;
mod key_ops;
pub mod keyring;
pub mod mime;
pub mod outbound;
pub mod policy;
mod symmetric;
mod x509_cache;

#[cfg(test)]
mod tests;
