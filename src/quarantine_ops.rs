//! What operators do with held messages: list, show, preview, release, delete, in bulk too,
//! and the retention that expires them. Storage is the `quarantine` crate's; what needs the
//! delivery queue — a release puts a copy into it — is here. The CLI and the admin API call
//! [`QuarantineService`], nothing else.
//!
//! A release is one transaction: the entries become `released` (audited) and a queue row for
//! exactly those recipients is inserted, so a crash leaves either both or neither. The
//! running gateway's scanner (or, inside the gateway, an immediate dispatch) delivers it
//! like any queued message: nothing bypasses the queue.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use filters::Direction;
use filters::bayes::SharedModel;
use filters::bayes::model::Class;
use quarantine::preview::Preview;
use quarantine::{Actor, AuditRow, Entry, Filter, Page, PageRequest, State, Store, Totals};
use serde::Serialize;

use crate::bayes::BayesStore;
use crate::config::{Config, QuarantineConfig};
use crate::metrics::Metrics;
use crate::queue::{
    Queue, QueuedMessage, Recipient, is_inline, new_queue_id, quarantine_dir, unix_now,
    write_body_file,
};
use crate::store::Database;

/// One message, or one recipient of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    /// The quarantine id (as `list` shows it).
    pub message: String,
    /// `None`: every held recipient of the message.
    pub recipient: Option<String>,
}

/// Release or delete, for [`QuarantineService::bulk`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Release,
    Delete,
}

/// What an action did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ActionReport {
    /// Entries that left the held state.
    pub touched: usize,
    /// Messages those entries belong to.
    pub messages: usize,
    /// Queue ids of the released copies.
    pub queued: Vec<String>,
    /// Messages the Bayes model learned (`learn`).
    pub learned: usize,
}

impl ActionReport {
    fn add(&mut self, other: ActionReport) {
        self.touched += other.touched;
        self.messages += other.messages;
        self.queued.extend(other.queued);
        self.learned += other.learned;
    }
}

/// A held message: its entries (every state), the audit of them, and whether its body is
/// still kept (it goes when no entry is held).
#[derive(Debug, Clone, Serialize)]
pub struct Shown {
    pub entries: Vec<Entry>,
    pub audit: Vec<AuditRow>,
    pub body_kept: bool,
}

/// The operations on the quarantine, for the CLI and the admin API.
#[derive(Clone)]
pub struct QuarantineService {
    store: Store,
    /// The queue's spool, for released copies too large to be inline.
    spool_dir: PathBuf,
    bayes: BayesStore,
    /// The running gateway's model, updated at once when an action learns.
    model: Option<SharedModel>,
    /// The running gateway's queue: a released copy is dispatched at once.
    queue: Option<Queue>,
    settings: QuarantineConfig,
    /// What an operator's "learn" counts as (`bayes.feedback_weight`).
    feedback_weight: u32,
}

impl QuarantineService {
    /// The quarantine of `config`'s data directory in the open database.
    pub fn new(config: &Config, db: &Database) -> QuarantineService {
        QuarantineService {
            store: Store::new(db.pool().clone(), quarantine_dir(&config.data_dir)),
            spool_dir: config.data_dir.join("spool"),
            bayes: BayesStore::new(db.pool().clone()),
            model: None,
            queue: None,
            settings: config.quarantine.clone(),
            feedback_weight: config.bayes.feedback_weight,
        }
    }

    /// Inside the gateway: dispatch released copies at once.
    pub fn with_queue(mut self, queue: Queue) -> QuarantineService {
        self.queue = Some(queue);
        self
    }

    /// Inside the gateway: learn into the running model too.
    pub fn with_model(mut self, model: SharedModel) -> QuarantineService {
        self.model = Some(model);
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A page of entries (`page.limit` capped at `quarantine.max_page`).
    pub async fn list(&self, filter: &Filter, mut page: PageRequest) -> anyhow::Result<Page> {
        page.limit = page.limit.clamp(1, self.settings.max_page);
        self.store.list(filter, page).await
    }

    /// A message's entries and audit; `None`: no such message.
    pub async fn show(&self, message: &str) -> anyhow::Result<Option<Shown>> {
        let entries = self.store.entries_of(message).await?;
        if entries.is_empty() {
            return Ok(None);
        }
        let body_kept = entries.iter().any(|e| e.state == State::Held);
        Ok(Some(Shown {
            entries,
            audit: self.store.audit(Some(message)).await?,
            body_kept,
        }))
    }

    /// The safe rendering of a held message; `None`: no such message, or its body is gone.
    pub async fn preview(&self, message: &str) -> anyhow::Result<Option<Preview>> {
        let max = self.settings.preview_max_bytes.as_u64() as usize;
        Ok(self
            .store
            .body(message)
            .await?
            .map(|body| quarantine::preview::preview(&body, max)))
    }

    /// The message as stored (for download); `None` as for [`Self::preview`].
    pub async fn raw(&self, message: &str) -> anyhow::Result<Option<Vec<u8>>> {
        self.store.body(message).await
    }

    /// Release a message (or one recipient of it) into the delivery queue; `learn`: teach
    /// Bayes it is ham.
    pub async fn release(
        &self,
        target: &Target,
        actor: &Actor,
        learn: bool,
    ) -> anyhow::Result<ActionReport> {
        let filter = target_filter(target);
        self.bulk(Action::Release, &filter, actor, learn).await
    }

    /// Delete a message (or one recipient of it); `learn`: teach Bayes it is spam.
    pub async fn delete(
        &self,
        target: &Target,
        actor: &Actor,
        learn: bool,
    ) -> anyhow::Result<ActionReport> {
        let filter = target_filter(target);
        self.bulk(Action::Delete, &filter, actor, learn).await
    }

    /// Release or delete every held entry `filter` selects; reports how many it touched.
    pub async fn bulk(
        &self,
        action: Action,
        filter: &Filter,
        actor: &Actor,
        learn: bool,
    ) -> anyhow::Result<ActionReport> {
        let mut filter = filter.clone();
        filter.state = Some(State::Held);
        filter.all_states = false;
        // Entries grouped by message, in the order found.
        let mut groups: Vec<(String, Vec<(i64, String)>)> = Vec::new();
        let mut group_of = std::collections::HashMap::new();
        for (entry, message, recipient) in self.store.select(&filter).await? {
            let i = *group_of.entry(message.clone()).or_insert_with(|| {
                groups.push((message, Vec::new()));
                groups.len() - 1
            });
            groups[i].1.push((entry, recipient));
        }
        let mut report = ActionReport::default();
        for (message, entries) in groups {
            let done = match action {
                Action::Release => self.release_entries(&message, &entries, actor, learn).await,
                Action::Delete => self.delete_entries(&message, &entries, actor, learn).await,
            }
            .with_context(|| format!("quarantined message {message}"))?;
            report.add(done);
        }
        if !report.queued.is_empty()
            && let Some(queue) = &self.queue
        {
            queue.dispatch_due(report.queued.len() as u32 + 100).await?;
        }
        Ok(report)
    }

    async fn release_entries(
        &self,
        message: &str,
        entries: &[(i64, String)],
        actor: &Actor,
        learn: bool,
    ) -> anyhow::Result<ActionReport> {
        let Some(meta) = self.store.entries_of(message).await?.into_iter().next() else {
            return Ok(ActionReport::default());
        };
        let body = self
            .store
            .body(message)
            .await?
            .with_context(|| format!("the body of {message} is missing"))?;
        let now = unix_now();
        let released = released_copy(
            &body,
            meta.direction == Direction::Inbound,
            actor,
            SystemTime::now(),
        );
        let id = new_queue_id();
        let spooled = !is_inline(released.len() as u64);
        let released = Arc::new(released);
        let path = crate::queue::body_path(&self.spool_dir, &id);
        if spooled {
            write_body_file(path.clone(), released.clone()).await?;
            let dir = self.spool_dir.clone();
            tokio::task::spawn_blocking(move || std::fs::File::open(&dir)?.sync_all()).await??;
        }
        let result: anyhow::Result<Vec<i64>> = async {
            let mut tx = self
                .store
                .pool()
                .begin_with(crate::store::BEGIN_WRITE)
                .await?;
            let ids: Vec<i64> = entries.iter().map(|(e, _)| *e).collect();
            let changed = quarantine::store::transition(
                &mut tx,
                &ids,
                State::Released,
                actor,
                now,
                &format!("queued as {id}"),
            )
            .await?;
            if changed.is_empty() {
                // Another operator was quicker: nothing to queue.
                tx.rollback().await?;
                return Ok(changed);
            }
            let recipients = entries
                .iter()
                .filter(|(e, _)| changed.contains(e))
                .map(|(_, r)| Recipient::pending(r.clone()))
                .collect();
            let queued = QueuedMessage {
                id: id.clone(),
                direction: meta.direction,
                mail_from: meta.mail_from.clone(),
                recipients,
                received_at: now,
                size: released.len() as u64,
                attempts: 0,
                next_attempt: 0,
                last_error: None,
                client_ip: meta.client_ip.clone(),
                helo: meta.helo.clone(),
                score: meta.score,
                symbols: summary(&meta.symbols),
            };
            crate::queue::store::insert(&mut tx, &queued).await?;
            if !spooled {
                crate::queue::store::insert_body(&mut tx, &id, &released).await?;
            }
            tx.commit().await?;
            Ok(changed)
        }
        .await;
        let changed = match result {
            Ok(c) if !c.is_empty() => c,
            other => {
                if spooled {
                    let _ = std::fs::remove_file(&path);
                }
                other?;
                return Ok(ActionReport::default());
            }
        };
        let learned = if learn {
            self.learn(&body, Class::Ham).await?
        } else {
            0
        };
        self.store.drop_body_if_done(message).await?;
        tracing::info!(
            message,
            queue_id = %id,
            recipients = changed.len(),
            by = %actor.name,
            "quarantined message released"
        );
        Ok(ActionReport {
            touched: changed.len(),
            messages: 1,
            queued: vec![id],
            learned,
        })
    }

    async fn delete_entries(
        &self,
        message: &str,
        entries: &[(i64, String)],
        actor: &Actor,
        learn: bool,
    ) -> anyhow::Result<ActionReport> {
        // Read before the body may go with the last held entry.
        let body = if learn {
            self.store.body(message).await?
        } else {
            None
        };
        let mut tx = self
            .store
            .pool()
            .begin_with(crate::store::BEGIN_WRITE)
            .await?;
        let ids: Vec<i64> = entries.iter().map(|(e, _)| *e).collect();
        let changed =
            quarantine::store::transition(&mut tx, &ids, State::Deleted, actor, unix_now(), "")
                .await?;
        tx.commit().await?;
        if changed.is_empty() {
            return Ok(ActionReport::default());
        }
        let learned = match body {
            Some(body) => self.learn(&body, Class::Spam).await?,
            None => 0,
        };
        self.store.drop_body_if_done(message).await?;
        tracing::info!(
            message,
            recipients = changed.len(),
            by = %actor.name,
            "quarantined message deleted"
        );
        Ok(ActionReport {
            touched: changed.len(),
            messages: 1,
            queued: Vec::new(),
            learned,
        })
    }

    /// Teach Bayes (the one learning entry point) what the message was, without our
    /// verdict fields.
    async fn learn(&self, body: &[u8], class: Class) -> anyhow::Result<usize> {
        let stripped = filters::result_fields::strip_fields(
            body,
            filters::result_fields::is_our_verdict_field,
        );
        let raw = stripped.as_deref().unwrap_or(body);
        let weight = crate::bayes::Weight::Operator(self.feedback_weight);
        crate::bayes::learn(&self.bayes, self.model.as_ref(), raw, class, weight).await?;
        Ok(1)
    }

    /// Expire what is due (age, then the size cap). Returns the entries expired.
    /// Teach Bayes a held message without changing its state; `None`: no such message, or
    /// its body is gone.
    pub async fn learn_message(
        &self,
        message: &str,
        class: Class,
        actor: &Actor,
    ) -> anyhow::Result<Option<usize>> {
        let Some(body) = self.store.body(message).await? else {
            return Ok(None);
        };
        let learned = self.learn(&body, class).await?;
        tracing::info!(message, ?class, by = %actor.name, "quarantined message learned");
        Ok(Some(learned))
    }

    pub async fn expire(&self, actor: &Actor) -> anyhow::Result<usize> {
        self.store
            .expire(unix_now(), self.settings.max_total_size.as_u64(), actor)
            .await
    }

    pub async fn totals(&self) -> anyhow::Result<Totals> {
        self.store.totals().await
    }

    /// Inside the gateway: expire what is due every `expiry_interval_secs`, and refresh the
    /// quarantine metrics every [`METRICS_SECS`] (or at that interval when shorter).
    pub fn spawn_retention(&self, metrics: Metrics) {
        let service = self.clone();
        let expiry_every = Duration::from_secs(self.settings.expiry_interval_secs);
        let tick_every = expiry_every.min(METRICS_SECS);
        tokio::spawn(async move {
            let system = Actor {
                uid: rustix::process::getuid().as_raw() as i64,
                name: "retention".into(),
            };
            let mut tick = tokio::time::interval(tick_every);
            let mut last_expiry: Option<tokio::time::Instant> = None;
            let mut expiries: u64 = 0;
            loop {
                tick.tick().await;
                if last_expiry.is_none_or(|t| t.elapsed() >= expiry_every) {
                    last_expiry = Some(tokio::time::Instant::now());
                    match service.expire(&system).await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(entries = n, "quarantined messages expired"),
                        Err(e) => {
                            tracing::error!(error = %format!("{e:#}"), "quarantine expiry failed")
                        }
                    }
                    // Statistics for the search planner, now and then.
                    if expiries.is_multiple_of(12) {
                        let _ = service.store.optimize().await;
                    }
                    expiries += 1;
                }
                match service.totals().await {
                    Ok(t) => metrics.quarantine(&t),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "quarantine totals failed")
                    }
                }
            }
        });
    }
}

/// How often the quarantine gauges are refreshed (a few indexed counts).
const METRICS_SECS: Duration = Duration::from_secs(15);

fn target_filter(target: &Target) -> Filter {
    Filter {
        message: Some(target.message.clone()),
        recipient: target.recipient.clone(),
        ..Filter::default()
    }
}

/// The queue's one-line summary of symbols.
fn summary(symbols: &[quarantine::SymbolPoints]) -> String {
    symbols
        .iter()
        .map(|s| format!("{}({:.2})", s.name, s.points))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The copy a release queues: our spam tags removed on inbound mail (`X-Spam-Flag`,
/// `X-Portcullis-Score`; Authentication-Results and the S/MIME result stay), so the user's
/// client does not file it as junk, and `X-Portcullis-Released: by <user> at <date>` on top.
pub fn released_copy(body: &[u8], inbound: bool, actor: &Actor, at: SystemTime) -> Vec<u8> {
    let stripped = inbound
        .then(|| {
            filters::result_fields::strip_fields(body, |field| {
                let name = filters::result_fields::field_name(field);
                name.eq_ignore_ascii_case(b"X-Spam-Flag")
                    || name.eq_ignore_ascii_case(b"X-Portcullis-Score")
            })
        })
        .flatten();
    let body = stripped.as_deref().unwrap_or(body);
    let user: String = actor
        .name
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(64)
        .collect();
    let field = format!(
        "X-Portcullis-Released: by {} at {}\r\n",
        user.trim(),
        crate::clock::rfc5322_date(at)
    );
    let mut out = Vec::with_capacity(field.len() + body.len());
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_copy_loses_our_tags_only() {
        let stored = b"Received: from x\r\n\
Authentication-Results: gw.test; spf=pass\r\n\
X-Portcullis-Score: 9.00 (quarantine)\r\n\
X-Spam-Flag: YES\r\n\
X-Portcullis-SMIME: signed\r\n\
Subject: hi\r\n\
\r\n\
X-Spam-Flag: YES in the body stays\r\n";
        let actor = Actor {
            uid: 1000,
            name: "Jane\r\nBcc: x@evil.test".into(),
        };
        let out = released_copy(stored, true, &actor, SystemTime::UNIX_EPOCH);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("X-Portcullis-Released: by JaneBcc: x@evil.test at Thu, 1 Jan 1970"),
            "{text}"
        );
        assert_eq!(text.matches("\r\nBcc").count(), 0, "no header injection");
        assert!(!text.contains("X-Portcullis-Score"));
        assert!(text.contains("Authentication-Results: gw.test; spf=pass\r\n"));
        assert!(text.contains("X-Portcullis-SMIME: signed\r\n"));
        assert!(text.ends_with("\r\n\r\nX-Spam-Flag: YES in the body stays\r\n"));
        // Outbound mail carries no verdict fields of ours: nothing is removed.
        let user_field = b"X-Spam-Flag: NO\r\nSubject: s\r\n\r\nb\r\n";
        let out = released_copy(user_field, false, &actor, SystemTime::UNIX_EPOCH);
        assert!(out.ends_with(user_field));
    }
}
