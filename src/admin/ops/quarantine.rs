//! The quarantine's operations for the admin API and the CLI: over the gateway's
//! [`QuarantineService`](crate::quarantine_ops::QuarantineService), with the caller as the
//! audited actor.

use filters::bayes::model::Class;
use quarantine::{Actor, Cursor, Filter, PageRequest, State};

use super::{Caller, Ops};
use crate::admin::error::ApiError;
use crate::admin::types::*;
use crate::quarantine_ops::{Action, ActionReport, Target};
use crate::queue::is_valid_id;

impl Caller {
    /// The quarantine's audit names the caller by uid and user name.
    pub fn actor(&self) -> Actor {
        Actor {
            uid: i64::from(self.uid),
            name: self
                .user
                .clone()
                .unwrap_or_else(|| format!("uid {}", self.uid)),
        }
    }
}

fn state(s: State) -> HeldState {
    match s {
        State::Held => HeldState::Held,
        State::Released => HeldState::Released,
        State::Deleted => HeldState::Deleted,
        State::Expired => HeldState::Expired,
    }
}

fn direction(d: filters::Direction) -> Direction {
    match d {
        filters::Direction::Inbound => Direction::Inbound,
        filters::Direction::Outbound => Direction::Outbound,
    }
}

fn entry(e: quarantine::Entry) -> QuarantineEntry {
    QuarantineEntry {
        entry: e.entry,
        message: e.message,
        recipient: e.recipient,
        state: state(e.state),
        changed_at: e.changed_at,
        direction: direction(e.direction),
        mail_from: e.mail_from,
        from: e.from,
        to: e.to,
        subject: e.subject,
        date: e.date,
        message_id: e.message_id,
        size: e.size,
        client_ip: e.client_ip,
        helo: e.helo,
        tls: e.tls,
        score: e.score,
        symbols: e
            .symbols
            .into_iter()
            .map(|s| SymbolScore {
                name: s.name,
                points: s.points,
            })
            .collect(),
        reason: e.reason,
        received_at: e.received_at,
        expires_at: e.expires_at,
        release_requested_at: e.release_requested_at,
    }
}

fn report(r: ActionReport) -> HeldActionResult {
    HeldActionResult {
        touched: r.touched,
        messages: r.messages,
        queued: r.queued,
        learned: r.learned,
    }
}

/// The store's filter for an API filter; bad values name their field.
fn filter(f: &QuarantineFilter) -> Result<Filter, ApiError> {
    let (state, all_states) = match f.state.as_deref() {
        None => (None, false),
        Some("all") => (None, true),
        Some(s) => (
            Some(State::parse(s).ok_or_else(|| {
                ApiError::field(
                    "state",
                    format!("{s:?}: expected held, released, deleted, expired or all"),
                )
            })?),
            false,
        ),
    };
    if let Some(m) = &f.message {
        check_id("message", m)?;
    }
    Ok(Filter {
        state,
        all_states,
        recipient: f.recipient.clone(),
        sender: f.sender.clone(),
        subject: f.subject.clone(),
        message_id: f.message_id.clone(),
        symbol: f.symbol.clone(),
        reason: f.reason.clone(),
        min_score: f.min_score,
        max_score: f.max_score,
        since: f.since,
        until: f.until,
        direction: f.direction.map(|d| match d {
            Direction::Inbound => filters::Direction::Inbound,
            Direction::Outbound => filters::Direction::Outbound,
        }),
        message: f.message.clone(),
        release_requested: f.release_requested.unwrap_or(false),
    })
}

fn check_id(field: &str, id: &str) -> Result<(), ApiError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(ApiError::field(
            field,
            format!("{id:?} is not a quarantine id (hex digits, as the listing shows)"),
        ))
    }
}

fn no_message(id: &str) -> ApiError {
    ApiError::not_found(format!("no message {id} in the quarantine"))
}

fn no_body(id: &str) -> ApiError {
    ApiError::not_found(format!(
        "no message {id} with a kept body in the quarantine"
    ))
}

/// The address in a From: field as displayed (`Name <a@b>` or `a@b`).
pub(super) fn address_in(from: &str) -> Option<String> {
    let inner = match (from.rfind('<'), from.rfind('>')) {
        (Some(l), Some(r)) if l < r => &from[l + 1..r],
        _ => from,
    };
    let a = inner.trim();
    (a.contains('@') && !a.contains(char::is_whitespace)).then(|| a.to_ascii_lowercase())
}

impl Ops {
    pub async fn quarantine_list(
        &self,
        search: &QuarantineSearch,
    ) -> Result<QuarantinePage, ApiError> {
        let after = search
            .after
            .as_deref()
            .map(|a| {
                Cursor::decode(a)
                    .ok_or_else(|| ApiError::field("after", "not the `next` of a listing"))
            })
            .transpose()?;
        let page = PageRequest {
            limit: search.limit.unwrap_or(PageRequest::default().limit),
            after,
            oldest_first: search.oldest_first.unwrap_or(false),
        };
        let found = self
            .inner
            .quarantine
            .list(&filter(&search.filter())?, page)
            .await?;
        Ok(QuarantinePage {
            entries: found.entries.into_iter().map(entry).collect(),
            next: found.next,
        })
    }

    pub async fn quarantine_show(&self, id: &str) -> Result<QuarantineMessage, ApiError> {
        check_id("id", id)?;
        let shown = self
            .inner
            .quarantine
            .show(id)
            .await?
            .ok_or_else(|| no_message(id))?;
        Ok(QuarantineMessage {
            entries: shown.entries.into_iter().map(entry).collect(),
            audit: shown
                .audit
                .into_iter()
                .map(|a| QuarantineAudit {
                    id: a.id,
                    entry: a.entry,
                    message: a.message,
                    recipient: a.recipient,
                    action: a.action,
                    from_state: state(a.from_state),
                    to_state: state(a.to_state),
                    uid: a.uid,
                    user_name: a.user_name,
                    at: a.at,
                    detail: a.detail,
                })
                .collect(),
            body_kept: shown.body_kept,
        })
    }

    pub async fn quarantine_preview(&self, id: &str) -> Result<QuarantinePreview, ApiError> {
        check_id("id", id)?;
        let p = self
            .inner
            .quarantine
            .preview(id)
            .await?
            .ok_or_else(|| no_body(id))?;
        Ok(QuarantinePreview {
            headers: p
                .headers
                .into_iter()
                .map(|h| PreviewHeader {
                    name: h.name,
                    value: h.value,
                })
                .collect(),
            text: p.text,
            from_html: p.from_html,
            attachments: p
                .attachments
                .into_iter()
                .map(|a| PreviewAttachment {
                    name: a.name,
                    content_type: a.content_type,
                    size: a.size,
                })
                .collect(),
            truncated: p.truncated,
        })
    }

    /// The message as stored.
    pub async fn quarantine_raw(&self, id: &str) -> Result<Vec<u8>, ApiError> {
        check_id("id", id)?;
        self.inner
            .quarantine
            .raw(id)
            .await?
            .ok_or_else(|| no_body(id))
    }

    async fn held_action(
        &self,
        action: Action,
        id: &str,
        request: &HeldAction,
        caller: &Caller,
    ) -> Result<HeldActionResult, ApiError> {
        check_id("id", id)?;
        let shown = self
            .inner
            .quarantine
            .show(id)
            .await?
            .ok_or_else(|| no_message(id))?;
        if let Some(r) = &request.recipient
            && !shown
                .entries
                .iter()
                .any(|e| e.recipient.eq_ignore_ascii_case(r))
        {
            return Err(ApiError::field(
                "recipient",
                format!("{r} is not a recipient of {id}"),
            ));
        }
        let target = Target {
            message: id.to_string(),
            recipient: request.recipient.clone(),
        };
        let service = &self.inner.quarantine;
        let actor = caller.actor();
        let done = match action {
            Action::Release => service.release(&target, &actor, request.learn).await?,
            Action::Delete => service.delete(&target, &actor, request.learn).await?,
        };
        Ok(report(done))
    }

    /// Release a held message (or one recipient of it) into the delivery queue.
    pub async fn quarantine_release(
        &self,
        id: &str,
        request: &HeldAction,
        caller: &Caller,
    ) -> Result<HeldActionResult, ApiError> {
        self.held_action(Action::Release, id, request, caller).await
    }

    /// Delete a held message (or one recipient of it) without delivering it.
    pub async fn quarantine_delete(
        &self,
        id: &str,
        request: &HeldAction,
        caller: &Caller,
    ) -> Result<HeldActionResult, ApiError> {
        self.held_action(Action::Delete, id, request, caller).await
    }

    /// Release or delete every held entry a filter selects; a filter that selects
    /// everything is refused.
    pub async fn quarantine_bulk(
        &self,
        request: &BulkRequest,
        caller: &Caller,
    ) -> Result<HeldActionResult, ApiError> {
        let f = filter(&request.filter)?;
        let unfiltered = Filter {
            state: f.state,
            all_states: f.all_states,
            ..Filter::default()
        };
        if f == unfiltered {
            return Err(ApiError::field(
                "filter",
                "give at least one filter (recipient, sender, subject, message_id, symbol, \
                 reason, min_score, max_score, since, until, direction, message)",
            ));
        }
        let action = match request.action {
            BulkAction::Release => Action::Release,
            BulkAction::Delete => Action::Delete,
        };
        let done = self
            .inner
            .quarantine
            .bulk(action, &f, &caller.actor(), request.learn)
            .await?;
        Ok(report(done))
    }

    /// Teach Bayes a held message as spam or ham; its state does not change.
    pub async fn quarantine_learn(
        &self,
        id: &str,
        request: &LearnRequest,
        caller: &Caller,
    ) -> Result<HeldActionResult, ApiError> {
        check_id("id", id)?;
        let class = match request.learn_as {
            LearnAs::Spam => Class::Spam,
            LearnAs::Ham => Class::Ham,
        };
        let learned = self
            .inner
            .quarantine
            .learn_message(id, class, &caller.actor())
            .await?
            .ok_or_else(|| no_body(id))?;
        Ok(HeldActionResult {
            learned,
            ..HeldActionResult::default()
        })
    }

    /// An allow or block entry for a held message's sender: its From: address (or the
    /// envelope sender's when From: has none), or that address's domain.
    pub async fn quarantine_list_sender(
        &self,
        id: &str,
        request: &ListFromHeld,
        caller: &Caller,
    ) -> Result<ListAdded, ApiError> {
        let shown = self.quarantine_show(id).await?;
        let m = &shown.entries[0];
        let address = address_in(&m.from)
            .or_else(|| (!m.mail_from.is_empty()).then(|| m.mail_from.to_ascii_lowercase()))
            .ok_or_else(|| {
                ApiError::bad_request(format!("{id} names no sender address (null sender)"))
            })?;
        let sender = if request.domain {
            format!("@{}", filters::domain_of(&address))
        } else {
            address
        };
        let comment = request
            .comment
            .clone()
            .or_else(|| Some(format!("from quarantined message {id}")));
        self.lists_add(
            &NewListEntry {
                list: request.list,
                sender,
                recipient: request.recipient.clone(),
                comment,
                expires_at: request.expires_at,
            },
            caller,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_of_a_from_field() {
        assert_eq!(
            address_in("Bob <Bob@Partner.Test>").as_deref(),
            Some("bob@partner.test")
        );
        assert_eq!(
            address_in("bob@partner.test").as_deref(),
            Some("bob@partner.test")
        );
        assert_eq!(address_in("undisclosed"), None);
    }
}
