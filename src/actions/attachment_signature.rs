//! `sign_attachments`: each chosen attachment gets a detached CMS signature next to it —
//! `invoice.pdf` is followed by `invoice.pdf.p7s` (`application/pkcs7-signature`) — so the
//! recipient can check the file itself, long after the mail is gone:
//!
//! ```sh
//! openssl cms -verify -binary -inform DER -content invoice.pdf -in invoice.pdf.p7s -CAfile ca.pem
//! ```
//!
//! The signature is CAdES-BES (ETSI EN 319 122-1): SHA-256, an RSA or ECDSA key, signed
//! attributes contentType, messageDigest, signingTime and the ESS signingCertificateV2 with
//! the signer certificate's SHA-256 hash; it carries the signer's certificate and chain. It
//! is made by the S/MIME engine ([`crate::smime::engine::detached_signature`]) over the
//! attachment's decoded bytes (the file, not its base64).
//!
//! Never inside content the user signed or encrypted (a new part would break the user's
//! signature), never inside an attached message; an attachment that has its `.p7s` next to
//! it already (mail that passes twice) is not signed again.

use filters::Symbol;
use openssl::x509::X509;

use super::mime_tree::{self, Edits, Entity, MimeLimits};
use super::text::{self, TransferEncoding};
use crate::smime::engine::{self, KeyPair, SignedAttributes};
use crate::smime::mime;

/// The certificate, key and chain that sign (an identity of the certificate store).
pub struct Signer<'a> {
    pub cert: &'a X509,
    pub key: &'a openssl::pkey::PKey<openssl::pkey::Private>,
    pub chain: &'a [X509],
}

/// What [`sign_attachments`] did.
#[derive(Debug)]
pub enum AttachmentSigning {
    /// The new message; `names` are the signed attachments' file names.
    Signed {
        message: Vec<u8>,
        names: Vec<String>,
    },
    /// No attachment was chosen (or every chosen one has its signature already).
    NoneChosen,
    /// Chosen attachments could not be signed (why); the message is left as it is.
    NotSigned(String),
}

impl AttachmentSigning {
    pub fn symbol(&self) -> Option<Symbol> {
        match self {
            AttachmentSigning::Signed { names, .. } => {
                Some(Symbol::new("ATTACHMENT_SIGNED", names.join(", ")))
            }
            AttachmentSigning::NoneChosen => None,
            AttachmentSigning::NotSigned(why) => {
                Some(Symbol::new("ATTACHMENT_NOT_SIGNED", why.clone()))
            }
        }
    }
}

/// Sign the attachments of `message` that `chooses` picks (given the decoded bytes and the
/// file name) with `signer`. CPU work (a private-key operation per attachment): run it off
/// the reactor.
pub fn sign_attachments(
    message: &[u8],
    chooses: &dyn Fn(&[u8], Option<&str>) -> bool,
    signer: &Signer<'_>,
    limits: MimeLimits,
) -> AttachmentSigning {
    let tree = match mime_tree::parse(message, limits) {
        Ok(tree) => tree,
        Err(e) => return AttachmentSigning::NotSigned(e.to_string()),
    };
    let mut found = Vec::new();
    let mut protected = None;
    attachments(&tree, None, &mut found, &mut protected);
    let mut chosen = Vec::new();
    for (part, parent) in found {
        let Some(te) = TransferEncoding::parse(&part.ct.transfer_encoding) else {
            continue;
        };
        let Ok(data) = text::decode(part.body(message), te) else {
            continue;
        };
        if !chooses(&data, part.ct.file_name.as_deref()) {
            continue;
        }
        let name = signature_name(part.ct.file_name.as_deref());
        let signed_already = parent.is_some_and(|p| {
            p.parts
                .iter()
                .any(|s| s.ct.file_name.as_deref() == Some(name.as_str()))
        });
        if !signed_already {
            chosen.push((part, parent, data, name));
        }
    }
    if chosen.is_empty() {
        return match protected {
            Some(why) => AttachmentSigning::NotSigned(why),
            None => AttachmentSigning::NoneChosen,
        };
    }
    let key_pair = KeyPair {
        cert: signer.cert,
        key: signer.key,
    };
    let mut edits = Edits::default();
    let mut names = Vec::new();
    for (part, parent, data, name) in chosen {
        let der = match engine::detached_signature(
            &data,
            &key_pair,
            signer.chain,
            SignedAttributes::CadesBes,
        ) {
            Ok(der) => der,
            Err(e) => return AttachmentSigning::NotSigned(e.to_string()),
        };
        let signature_part = signature_entity(&name, &der);
        match parent.and_then(|p| p.boundary.as_deref()) {
            Some(boundary) => {
                let mut insert = format!("\r\n--{boundary}\r\n").into_bytes();
                insert.extend_from_slice(&signature_part);
                edits.replace(part.end, part.end, insert);
            }
            // The whole message is the attachment: it becomes a multipart/mixed of the
            // attachment and its signature.
            None => return wrap(message, &signature_part, part.ct.file_name.as_deref()),
        }
        names.push(
            part.ct
                .file_name
                .clone()
                .unwrap_or_else(|| "attachment".into()),
        );
    }
    AttachmentSigning::Signed {
        message: edits.apply(message),
        names,
    }
}

/// The signature's file name: the attachment's with `.p7s` added.
fn signature_name(file_name: Option<&str>) -> String {
    format!("{}.p7s", file_name.unwrap_or("attachment"))
}

/// The signature part: header fields, empty line, base64 (without a final line end: the
/// CRLF before the next delimiter belongs to the delimiter).
fn signature_entity(name: &str, der: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "Content-Type: application/pkcs7-signature; {}\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; {}\r\n\
         Content-Description: Signature of {}\r\n\r\n",
        mime_tree::parameter("name", name),
        mime_tree::parameter("filename", name),
        // a description is unstructured text: no line ends in it
        name.replace(['\r', '\n'], " ").trim_end_matches(".p7s"),
    )
    .into_bytes();
    mime::put_base64_lines(&mut out, der);
    if out.ends_with(b"\r\n") {
        out.truncate(out.len() - 2);
    }
    out
}

/// The attachments (leaves with a file name or `Content-Disposition: attachment`) with the
/// multipart they are in; not inside protected content (noted in `protected`) nor inside
/// an attached message (a leaf), and not signatures themselves.
fn attachments<'a>(
    e: &'a Entity,
    parent: Option<&'a Entity>,
    out: &mut Vec<(&'a Entity, Option<&'a Entity>)>,
    protected: &mut Option<String>,
) {
    if e.is_protected() {
        protected.get_or_insert_with(|| {
            format!(
                "the attachments are inside content the user protected ({})",
                e.ct.mime_type
            )
        });
        return;
    }
    if e.is_multipart() {
        for p in &e.parts {
            attachments(p, Some(e), out, protected);
        }
        return;
    }
    let is_signature = matches!(
        e.ct.mime_type.as_str(),
        "application/pkcs7-signature" | "application/x-pkcs7-signature"
    ) || e
        .ct
        .file_name
        .as_deref()
        .is_some_and(|n| n.to_ascii_lowercase().ends_with(".p7s"));
    if e.is_attachment() && !is_signature {
        out.push((e, parent));
    }
}

/// A message that is one attachment, made a multipart/mixed of it and its signature.
fn wrap(message: &[u8], signature_part: &[u8], file_name: Option<&str>) -> AttachmentSigning {
    let parts = mime::message_parts(message);
    let boundary = mime::boundary_for(message);
    let mut entity =
        format!("Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n--{boundary}\r\n")
            .into_bytes();
    entity.extend_from_slice(&parts.entity);
    if !entity.ends_with(b"\r\n") {
        entity.extend_from_slice(b"\r\n");
    }
    entity.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
    entity.extend_from_slice(signature_part);
    entity.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    AttachmentSigning::Signed {
        message: mime::assemble(&parts.outer, &[], &entity),
        names: vec![file_name.unwrap_or("attachment").to_string()],
    }
}

#[cfg(test)]
mod tests;
