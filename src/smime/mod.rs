//! S/MIME: the gateway holds the keys, so no desktop needs any S/MIME set-up and the
//! filters see plaintext.
//!
//! - [`engine`]: the CMS engine — pure functions over OpenSSL types (decrypt, verify, sign,
//!   encrypt), no I/O.
//! - [`mime`]: the MIME around the CMS blobs (split, base64, multipart/signed).
//! - [`inbound`]: the first inbound step (unwrap before the filters, harvest after the
//!   verdict).
//! - [`keyring`]: what the steps need from the certificate store, as one trait.
//! - [`cms_info`]: typed reads of CMS structures with the `cms` crate (signers,
//!   SMIMECapabilities, recipients); all cryptography stays with OpenSSL.

pub mod cms_info;
pub mod engine;
pub mod inbound;
pub mod keyring;
pub mod mime;

#[cfg(test)]
pub mod test_pki;
#[cfg(test)]
mod tests;
