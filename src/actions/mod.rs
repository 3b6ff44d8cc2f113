//! The message actions of the rules: changes to what is stored, made in the store phase
//! after the verdict and before S/MIME protection and DKIM signing.
//!
//! - [`disclaimer`]: a text appended to the body text (text and HTML), once, never into
//!   content the user signed or encrypted.
//! - [`attachment_signature`]: a detached CMS signature (CAdES-BES) next to each chosen
//!   attachment (`invoice.pdf` → `invoice.pdf.p7s`).
//! - [`archive`]: a journal copy, to an address through the queue or as a file.
//!
//! Each is a function over the message's bytes with a narrow interface; [`mime_tree`]
//! finds the parts, [`text`] decodes and encodes their text.

pub mod archive;
pub mod attachment_signature;
pub mod disclaimer;
pub mod mime_tree;
pub mod text;

pub use mime_tree::MimeLimits;

#[cfg(test)]
pub(crate) mod test_support;
