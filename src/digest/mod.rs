//! Quarantine reports for recipients (`[digest]`): who is due, what their report lists, and
//! its way out through the queue (DKIM-signed like any outbound mail). The action links are
//! served by [`web`]; tokens are [`token`]'s; the SQL is the quarantine crate's `digest`.

pub mod compose;
pub mod token;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use quarantine::digest as sql;
use serde::Serialize;
use sqlx::sqlite::SqlitePool;

use crate::config::{Config, DigestFrequency, HeldReason};
use crate::pipeline::dkim_sign::OutboundSigner;
use crate::queue::{Queue, QueuedMessage, new_queue_id, unix_now};
use crate::store::Database;
use compose::{Line, Report};
use token::{Claim, LinkAction, LinkKey};

/// What one report did (or, in a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    pub recipient: String,
    /// New entries since the last report, and how many of them are listed.
    pub new: usize,
    pub listed: usize,
    /// The queued report; `None` in a dry run or when nothing was to be reported.
    pub queue_id: Option<String>,
    /// The report itself in a dry run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Reports: who is due, composing, queueing.
#[derive(Clone)]
pub struct DigestService {
    config: Arc<Config>,
    pool: SqlitePool,
    /// The running gateway's queue: a report is dispatched at once.
    queue: Option<Queue>,
    signer: Option<Arc<OutboundSigner>>,
    /// Signs the action links; `None` without an endpoint (reports without links).
    links: Option<Arc<LinkKey>>,
}

impl DigestService {
    pub fn new(config: Arc<Config>, db: &Database, queue: Option<Queue>) -> anyhow::Result<Self> {
        let signer = if config.dkim_signing.is_empty() {
            None
        } else {
            Some(Arc::new(OutboundSigner::load(&config.dkim_signing)?))
        };
        let links = if config.digest.http_bind.is_empty() {
            None
        } else {
            Some(Arc::new(LinkKey::open(&config.data_dir)?))
        };
        Ok(DigestService {
            pool: db.pool().clone(),
            config,
            queue,
            signer,
            links,
        })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The report frequency of `recipient`: its own, else the schedule's.
    pub async fn frequency_of(&self, recipient: &str) -> anyhow::Result<DigestFrequency> {
        Ok(sql::frequency(&self.pool, recipient)
            .await?
            .and_then(|f| DigestFrequency::parse(&f))
            .unwrap_or(self.config.digest.schedule))
    }

    /// The start of the report slot `now` is in: the hour, the day's report time, the
    /// week's report day and time. A report is due when its slot began after both the last
    /// report and the oldest new entry.
    pub fn slot_start(&self, frequency: DigestFrequency, now: i64) -> Option<i64> {
        let (h, m) = self.config.digest.time_of_day();
        let at = i64::from(h) * 3600 + i64::from(m) * 60;
        let day = now.div_euclid(86_400) * 86_400;
        match frequency {
            DigestFrequency::Off => None,
            DigestFrequency::Hourly => Some(now - now.rem_euclid(3600)),
            DigestFrequency::Daily => {
                let today = day + at;
                Some(if today <= now { today } else { today - 86_400 })
            }
            DigestFrequency::Weekly => {
                // 1970-01-01 was a Thursday (index 3 with Monday 0).
                let weekday = (now.div_euclid(86_400) + 3).rem_euclid(7);
                let back = (weekday - i64::from(self.config.digest.weekday_index())).rem_euclid(7);
                let this_week = day - back * 86_400 + at;
                Some(if this_week <= now {
                    this_week
                } else {
                    this_week - 7 * 86_400
                })
            }
        }
    }

    /// Send the reports that are due (`on_schedule`), or every pending one now; `only`: just
    /// this recipient (sent even when its frequency is off). `dry_run`: compose, queue
    /// nothing, remember nothing.
    pub async fn run(
        &self,
        only: Option<&str>,
        dry_run: bool,
        on_schedule: bool,
    ) -> anyhow::Result<Vec<Sent>> {
        let now = unix_now();
        let only = only.map(|r| r.trim().to_ascii_lowercase());
        let mut out = Vec::new();
        for p in sql::pending(&self.pool).await? {
            if only.as_ref().is_some_and(|o| *o != p.recipient) {
                continue;
            }
            let frequency = self.frequency_of(&p.recipient).await?;
            if only.is_none() && frequency == DigestFrequency::Off {
                continue;
            }
            if on_schedule {
                let due = self
                    .slot_start(frequency, now)
                    .is_some_and(|slot| slot > p.last_sent_at.max(p.oldest_new_at));
                if !due {
                    continue;
                }
            }
            out.push(self.report(&p, now, dry_run).await?);
        }
        if !dry_run
            && out.iter().any(|s| s.queue_id.is_some())
            && let Some(queue) = &self.queue
        {
            queue.dispatch_due(out.len() as u32 + 100).await?;
        }
        Ok(out)
    }

    fn sender(&self) -> String {
        if self.config.digest.from.is_empty() {
            format!("postmaster@{}", self.config.hostname)
        } else {
            self.config.digest.from.clone()
        }
    }

    /// The start of the links: `base_url`, else the hostname and the endpoint's port.
    fn base_url(&self) -> String {
        let d = &self.config.digest;
        if !d.base_url.is_empty() {
            return d.base_url.trim_end_matches('/').to_string();
        }
        let port = d
            .http_bind
            .parse::<std::net::SocketAddr>()
            .map(|a| a.port())
            .unwrap_or(443);
        format!("https://{}:{port}", self.config.hostname)
    }

    /// The actions a recipient may take on an entry held for `reason`.
    pub fn actions_for(reason: HeldReason) -> &'static [LinkAction] {
        match reason {
            HeldReason::Virus => &[LinkAction::RequestRelease],
            _ => &[
                LinkAction::Release,
                LinkAction::ReleaseLearn,
                LinkAction::AllowSender,
                LinkAction::Delete,
            ],
        }
    }

    pub fn link_key(&self) -> Option<&Arc<LinkKey>> {
        self.links.as_ref()
    }

    async fn report(&self, p: &sql::Pending, now: i64, dry_run: bool) -> anyhow::Result<Sent> {
        let d = &self.config.digest;
        let (entries, new) =
            sql::new_entries(&self.pool, &p.recipient, p.last_entry, d.max_entries as u32).await?;
        let base = self.base_url();
        let lines: Vec<Line> = entries
            .iter()
            .filter_map(|e| {
                let reason = HeldReason::of_rule(&quarantine::rule_of(&e.reason));
                d.reasons.contains(&reason).then_some((e, reason))
            })
            .map(|(e, reason)| Line {
                entry: e,
                reason,
                links: match &self.links {
                    None => Vec::new(),
                    Some(key) => Self::actions_for(reason)
                        .iter()
                        .map(|&action| {
                            let token = key.token(&Claim {
                                entry: e.entry,
                                action,
                                expires_at: e.expires_at,
                                recipient: p.recipient.clone(),
                            });
                            (action, format!("{base}/a/{token}"))
                        })
                        .collect(),
                },
            })
            .collect();
        let listed = lines.len();
        let mut sent = Sent {
            recipient: p.recipient.clone(),
            new,
            listed,
            queue_id: None,
            message: None,
        };
        let id = new_queue_id();
        let (from, hostname) = (self.sender(), self.config.hostname.clone());
        let report = Report {
            from: &from,
            to: &p.recipient,
            hostname: &hostname,
            total_held: sql::held_count(&self.pool, &p.recipient).await?,
            not_listed: new.saturating_sub(entries.len()),
            lines,
            now,
            id: &id,
        };
        let mut body = report.message();
        if dry_run {
            sent.message = Some(String::from_utf8_lossy(&body).into_owned());
            return Ok(sent);
        }
        if let Some(signer) = &self.signer {
            let mut signed = Vec::with_capacity(body.len() + 1024);
            for field in signer.sign(&body) {
                signed.extend_from_slice(field.as_bytes());
                signed.extend_from_slice(b"\r\n");
            }
            signed.extend_from_slice(&body);
            body = signed;
        }
        let mut tx = self.pool.begin_with(crate::store::BEGIN_WRITE).await?;
        if listed > 0 {
            let queued = QueuedMessage::made_here(
                id.clone(),
                filters::Direction::Outbound,
                p.recipient.clone(),
                body.len() as u64,
            );
            crate::queue::store::insert(&mut tx, &queued).await?;
            crate::queue::store::insert_body(&mut tx, &id, &body).await?;
            sent.queue_id = Some(id);
        }
        // Entries of reasons not reported are passed over too.
        sql::mark_sent(&mut tx, &p.recipient, p.newest_entry, now).await?;
        tx.commit().await?;
        tracing::info!(
            recipient = %p.recipient,
            new,
            listed,
            queue_id = sent.queue_id.as_deref().unwrap_or("-"),
            "quarantine report queued"
        );
        Ok(sent)
    }

    /// Check every minute for due reports while `[digest] enabled`.
    pub fn spawn_schedule(self) {
        if !self.config.digest.enabled {
            return;
        }
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                if let Err(e) = self.run(None, false, true).await {
                    tracing::warn!(error = %format!("{e:#}"), "quarantine reports not sent; next try in a minute");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn service(extra: &str) -> (DigestService, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::parse(extra).unwrap();
        config.data_dir = dir.path().to_path_buf();
        let db = Database::open(&config.data_dir).await.unwrap();
        (
            DigestService::new(Arc::new(config), &db, None).unwrap(),
            dir,
        )
    }

    #[tokio::test]
    async fn report_slots_follow_the_schedule() {
        let (s, _d) = service("[digest]\ntime = \"07:30\"\nweekday = \"wed\"\n").await;
        // Thursday 2026-12-03 10:15:20 UTC.
        let now = 1_796_292_920;
        assert_eq!(
            s.slot_start(DigestFrequency::Hourly, now),
            Some(now - 15 * 60 - 20)
        );
        let today_0730 = now - (10 * 3600 + 15 * 60 + 20) + 7 * 3600 + 30 * 60;
        assert_eq!(s.slot_start(DigestFrequency::Daily, now), Some(today_0730));
        // Before 07:30 the slot is yesterday's.
        assert_eq!(
            s.slot_start(DigestFrequency::Daily, today_0730 - 1),
            Some(today_0730 - 86_400)
        );
        // Wednesday is the day before.
        assert_eq!(
            s.slot_start(DigestFrequency::Weekly, now),
            Some(today_0730 - 86_400)
        );
        assert_eq!(s.slot_start(DigestFrequency::Off, now), None);
    }
}
