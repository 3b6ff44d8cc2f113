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

use std::sync::Arc;

use filters::Symbol;

use crate::queue::MessageCopy;
use crate::rules::{ArchiveTarget, MessageAction};
use crate::smime::keyring::Keyring;
use archive::JournalFile;
use attachment_signature::{AttachmentSigning, Signer};
use disclaimer::{Disclaimer, DisclaimerOutcome};

/// The message actions as the store phase applies them (`Step::Act`).
pub struct MessageActions {
    /// The certificate store, for `sign_attachments` identities; `None`: not open.
    keyring: Option<Arc<dyn Keyring>>,
    limits: MimeLimits,
}

/// What applying the actions made beside the changed copies.
#[derive(Debug, Default)]
pub struct Applied {
    pub symbols: Vec<Symbol>,
    /// Journal copies for archive addresses: stored with the message's copies, never
    /// protected, signed or held.
    pub archive_copies: Vec<MessageCopy>,
    /// Journal files, written by `queue::admit` once the message has its queue id.
    pub journal: Vec<JournalFile>,
}

impl MessageActions {
    pub fn new(keyring: Option<Arc<dyn Keyring>>, limits: MimeLimits) -> MessageActions {
        MessageActions { keyring, limits }
    }

    /// Apply `actions`, in their order, to `copies` (one group of recipients' copies, before
    /// S/MIME protection and DKIM signing; `raw`: the message as received, for a copy
    /// without a body of its own). A journal copy is taken of the first copy (inbound the
    /// plaintext), once per target for the whole message: `archived` holds the targets
    /// archived to already. `Err`: the certificate store could not be read.
    pub async fn apply(
        &self,
        actions: &[MessageAction],
        copies: &mut [MessageCopy],
        raw: &[u8],
        archived: &mut Vec<ArchiveTarget>,
    ) -> anyhow::Result<Applied> {
        let mut applied = Applied::default();
        for (i, copy) in copies.iter_mut().enumerate() {
            let mut changed: Option<Vec<u8>> = None;
            for action in actions {
                let current = changed.as_deref().or(copy.body.as_deref()).unwrap_or(raw);
                match action {
                    MessageAction::Disclaimer { text, html, .. } => {
                        let d = Disclaimer {
                            text: text.clone(),
                            html: html.clone(),
                        };
                        let outcome = disclaimer::add(current, &d, self.limits);
                        applied.symbols.extend(outcome.symbol());
                        if let DisclaimerOutcome::Added { message, .. } = outcome {
                            changed = Some(message);
                        }
                    }
                    MessageAction::SignAttachments {
                        select, identity, ..
                    } => {
                        let outcome = self.sign(current, select, identity).await?;
                        applied.symbols.extend(outcome.symbol());
                        if let AttachmentSigning::Signed { message, .. } = outcome {
                            changed = Some(message);
                        }
                    }
                    MessageAction::Archive { target, .. } => {
                        if i > 0 || archived.contains(target) {
                            continue;
                        }
                        archived.push(target.clone());
                        let shown = match target {
                            ArchiveTarget::To(address) => {
                                applied
                                    .archive_copies
                                    .push(archive::journal_copy(address, current));
                                address.clone()
                            }
                            ArchiveTarget::Dir(dir) => {
                                applied.journal.push(JournalFile {
                                    dir: dir.clone(),
                                    body: current.to_vec(),
                                });
                                dir.display().to_string()
                            }
                        };
                        applied.symbols.push(archive::archived_symbol(&shown));
                    }
                }
            }
            if let Some(message) = changed {
                copy.body = Some(message);
            }
        }
        Ok(applied)
    }

    /// `sign_attachments` with `identity`'s certificate and key, on an S/MIME worker thread.
    async fn sign(
        &self,
        message: &[u8],
        select: &crate::rules::AttachmentSelector,
        identity: &str,
    ) -> anyhow::Result<AttachmentSigning> {
        let Some(keyring) = &self.keyring else {
            return Ok(AttachmentSigning::NotSigned(
                "the certificate store is not open".into(),
            ));
        };
        let Some(id) = keyring.signing_identity(identity).await? else {
            tracing::warn!(
                identity,
                "sign_attachments: no usable signing certificate with its key in the certificate store (portcullis certs import)"
            );
            return Ok(AttachmentSigning::NotSigned(format!(
                "no signing identity for {identity} in the certificate store"
            )));
        };
        let message = message.to_vec();
        let select = select.clone();
        let limits = self.limits;
        crate::smime::cpu::run(move || {
            let signer = Signer {
                cert: &id.cert,
                key: &id.key,
                chain: &id.chain,
            };
            attachment_signature::sign_attachments(
                &message,
                &|data, name| select.selects(data, name),
                &signer,
                limits,
            )
        })
        .await
    }
}
