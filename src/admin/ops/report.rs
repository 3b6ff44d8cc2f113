//! What a recipient does from a quarantine report's link, with the recipient as the audited
//! actor ("<recipient> via report"): only ever for that recipient's own entry.

use quarantine::{Actor, Entry};

use super::Ops;
use super::quarantine::address_in;
use crate::admin::error::ApiError;
use crate::admin::types::{
    DigestFrequencyChange, DigestRecipient, DigestReport, DigestSendRequest,
};
use crate::config::DigestFrequency;
use crate::digest::DigestService;
use crate::digest::token::LinkAction;
use crate::lists::{ListName, NewListEntry};
use crate::quarantine_ops::Target;

impl Ops {
    fn digest(&self) -> Result<DigestService, ApiError> {
        Ok(DigestService::new(
            self.inner.config.clone(),
            &self.inner.db,
            self.inner.live.queue.clone(),
        )?)
    }

    /// Send quarantine reports now (or show them, `dry_run`).
    pub async fn digest_send(
        &self,
        request: &DigestSendRequest,
    ) -> Result<Vec<DigestReport>, ApiError> {
        if let Some(r) = &request.recipient
            && !r.contains('@')
        {
            return Err(ApiError::field(
                "recipient",
                format!("{r:?} is not an address"),
            ));
        }
        let sent = self
            .digest()?
            .run(request.recipient.as_deref(), request.dry_run, false)
            .await?;
        Ok(sent
            .into_iter()
            .map(|s| DigestReport {
                recipient: s.recipient,
                new: s.new,
                listed: s.listed,
                queue_id: s.queue_id,
                message: s.message,
            })
            .collect())
    }

    /// Recipients with a frequency of their own.
    pub async fn digest_recipients(&self) -> Result<Vec<DigestRecipient>, ApiError> {
        let rows = quarantine::digest::frequencies(self.inner.db.pool())
            .await
            .map_err(anyhow::Error::from)?;
        Ok(rows
            .into_iter()
            .filter_map(|(recipient, f)| {
                Some(DigestRecipient {
                    recipient,
                    frequency: DigestFrequency::parse(&f)?,
                })
            })
            .collect())
    }

    /// Set a recipient's frequency (or return it to the schedule); the frequency in force.
    pub async fn digest_set(
        &self,
        recipient: &str,
        change: &DigestFrequencyChange,
    ) -> Result<DigestRecipient, ApiError> {
        let recipient = recipient.trim().to_ascii_lowercase();
        if !recipient.contains('@') || recipient.len() > 320 {
            return Err(ApiError::field(
                "recipient",
                format!("{recipient:?} is not an address"),
            ));
        }
        quarantine::digest::set_frequency(
            self.inner.db.pool(),
            &recipient,
            change.frequency.map(DigestFrequency::as_str),
            crate::queue::unix_now(),
        )
        .await
        .map_err(anyhow::Error::from)?;
        let frequency = self.digest()?.frequency_of(&recipient).await?;
        Ok(DigestRecipient {
            recipient,
            frequency,
        })
    }

    /// Do `action` on `entry` for its recipient.
    pub async fn report_action(&self, entry: &Entry, action: LinkAction) -> Result<(), ApiError> {
        let recipient = entry.recipient.clone();
        let actor = Actor {
            uid: -1,
            name: format!("{recipient} via report"),
        };
        let service = &self.inner.quarantine;
        let target = Target {
            message: entry.message.clone(),
            recipient: Some(recipient.clone()),
        };
        match action {
            LinkAction::Release => {
                service.release(&target, &actor, false).await?;
            }
            LinkAction::ReleaseLearn => {
                service.release(&target, &actor, true).await?;
            }
            LinkAction::Delete => {
                service.delete(&target, &actor, false).await?;
            }
            LinkAction::AllowSender => {
                let sender = address_in(&entry.from)
                    .or_else(|| {
                        (!entry.mail_from.is_empty()).then(|| entry.mail_from.to_ascii_lowercase())
                    })
                    .ok_or_else(|| ApiError::bad_request("the message names no sender"))?;
                let new = NewListEntry {
                    list: ListName::Allow,
                    sender,
                    recipient: Some(recipient.clone()),
                    comment: Some(format!("from quarantined message {}", entry.message)),
                    expires_at: None,
                };
                self.inner
                    .lists
                    .add(&new, &actor.name, crate::queue::unix_now())
                    .await?
                    .map_err(|e| ApiError::field(e.field, e.message))?;
                self.refresh_lists().await?;
                service.release(&target, &actor, false).await?;
            }
            LinkAction::RequestRelease => {
                quarantine::digest::request_release(
                    service.store().pool(),
                    entry.entry,
                    &actor,
                    crate::queue::unix_now(),
                )
                .await
                .map_err(anyhow::Error::from)?;
            }
        }
        Ok(())
    }
}
