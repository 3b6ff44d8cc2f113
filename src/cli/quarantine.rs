//! `portcullis quarantine list|show|preview|raw|release|delete`: thin over
//! [`QuarantineService`], on the data directory's database (also while the gateway runs: a
//! released copy is a queue row the gateway's scanner delivers within `queue.scan_interval_secs`).

use clap::{Args, Subcommand};
use quarantine::{Actor, Cursor, Filter, PageRequest, State};

use crate::config::Config;
use crate::quarantine_ops::{Action, ActionReport, QuarantineService, Target};
use crate::queue::is_valid_id;

#[derive(Subcommand, Debug)]
pub enum QuarantineAction {
    /// One line per held recipient, newest first (or a JSON page with the next cursor).
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Entries per page.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// The cursor printed with the previous page.
        #[arg(long)]
        after: Option<String>,
        #[arg(long)]
        oldest_first: bool,
        #[arg(long)]
        json: bool,
    },
    /// A message's entries, fields, symbols and audit.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// A safe plain-text rendering: header, text, attachments.
    Preview {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// The message as stored, to standard output.
    Raw { id: String },
    /// Into the delivery queue: one message (ID, optionally one --recipient), or with no ID
    /// every held entry the filter selects.
    Release {
        id: Option<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Teach Bayes the message is ham.
        #[arg(long)]
        learn: bool,
        #[arg(long)]
        json: bool,
    },
    /// Drop without delivering: as release, selects by ID or by filter.
    Delete {
        id: Option<String>,
        #[command(flatten)]
        filter: FilterArgs,
        /// Teach Bayes the message is spam.
        #[arg(long)]
        learn: bool,
        #[arg(long)]
        json: bool,
    },
}

/// The search filters (all narrow; times in UTC: unix seconds, HH:MM today, YYYY-MM-DD or
/// YYYY-MM-DDTHH:MM).
#[derive(Args, Debug, Default)]
pub struct FilterArgs {
    /// A recipient address, or @domain.
    #[arg(long)]
    recipient: Option<String>,
    /// The envelope sender, or @domain.
    #[arg(long)]
    sender: Option<String>,
    /// Words that must all be in the subject.
    #[arg(long)]
    subject: Option<String>,
    #[arg(long)]
    message_id: Option<String>,
    #[arg(long)]
    symbol: Option<String>,
    /// What held it: the symbol that forced the verdict, or "score".
    #[arg(long)]
    reason: Option<String>,
    #[arg(long)]
    min_score: Option<f64>,
    #[arg(long)]
    max_score: Option<f64>,
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
    /// inbound or outbound.
    #[arg(long)]
    direction: Option<String>,
    /// held (default), released, deleted, expired, or all.
    #[arg(long)]
    state: Option<String>,
}

impl FilterArgs {
    fn to_filter(&self) -> anyhow::Result<Filter> {
        let now = crate::clock::unix_now();
        let time = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<i64>> {
            v.as_deref()
                .map(|s| {
                    crate::clock::parse_utc_time(s, now).ok_or_else(|| {
                        anyhow::anyhow!(
                            "--{flag} {s:?}: expected unix seconds, HH:MM, YYYY-MM-DD or YYYY-MM-DDTHH:MM (UTC)"
                        )
                    })
                })
                .transpose()
        };
        let direction = match self.direction.as_deref() {
            None => None,
            Some("inbound") => Some(filters::Direction::Inbound),
            Some("outbound") => Some(filters::Direction::Outbound),
            Some(d) => anyhow::bail!("--direction {d:?}: expected inbound or outbound"),
        };
        let (state, all_states) = match self.state.as_deref() {
            None => (None, false),
            Some("all") => (None, true),
            Some(s) => (
                Some(State::parse(s).ok_or_else(|| {
                    anyhow::anyhow!(
                        "--state {s:?}: expected held, released, deleted, expired or all"
                    )
                })?),
                false,
            ),
        };
        Ok(Filter {
            state,
            all_states,
            recipient: self.recipient.clone(),
            sender: self.sender.clone(),
            subject: self.subject.clone(),
            message_id: self.message_id.clone(),
            symbol: self.symbol.clone(),
            reason: self.reason.clone(),
            min_score: self.min_score,
            max_score: self.max_score,
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            direction,
            message: None,
        })
    }
}

/// Who runs the command: the process's uid and the login name the environment gives.
fn actor() -> Actor {
    let uid = rustix::process::getuid().as_raw() as i64;
    let name = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|n| !n.is_empty()))
        .unwrap_or_else(|| format!("uid {uid}"));
    Actor { uid, name }
}

pub async fn run(config: &Config, action: QuarantineAction) -> anyhow::Result<i32> {
    if !config.data_dir.join("queue.db").exists() {
        anyhow::bail!(
            "no database in {} (wrong --config, or the gateway never ran there)",
            config.data_dir.display()
        );
    }
    let db = crate::store::Database::open(&config.data_dir).await?;
    let service = QuarantineService::new(config, &db);
    let check = |id: &str| -> anyhow::Result<()> {
        if is_valid_id(id) {
            Ok(())
        } else {
            anyhow::bail!("{id:?} is not a quarantine id (hex digits, as `quarantine list` shows)")
        }
    };
    match action {
        QuarantineAction::List {
            filter,
            limit,
            after,
            oldest_first,
            json,
        } => {
            let after = after
                .map(|a| {
                    Cursor::decode(&a)
                        .ok_or_else(|| anyhow::anyhow!("--after {a:?}: not a cursor of a listing"))
                })
                .transpose()?;
            let page = service
                .list(
                    &filter.to_filter()?,
                    PageRequest {
                        limit,
                        after,
                        oldest_first,
                    },
                )
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(0);
            }
            println!(
                "{:<18} {:<8} {:<9} {:>7} {:<20} {:<28} {:<28} SUBJECT",
                "ID", "STATE", "DIRECTION", "SCORE", "REASON", "SENDER", "RECIPIENT"
            );
            for e in &page.entries {
                println!(
                    "{:<18} {:<8} {:<9} {:>7.2} {:<20} {:<28} {:<28} {}",
                    e.message,
                    e.state.as_str(),
                    e.direction.as_str(),
                    e.score,
                    e.reason,
                    if e.mail_from.is_empty() {
                        "<>"
                    } else {
                        &e.mail_from
                    },
                    e.recipient,
                    e.subject
                );
            }
            println!("{} entr(ies)", page.entries.len());
            if let Some(next) = page.next {
                println!("more: --after {next}");
            }
            Ok(0)
        }
        QuarantineAction::Show { id, json } => {
            check(&id)?;
            let Some(shown) = service.show(&id).await? else {
                eprintln!("no message {id} in the quarantine");
                return Ok(1);
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&shown)?);
                return Ok(0);
            }
            let m = &shown.entries[0];
            println!("id:          {}", m.message);
            println!("direction:   {}", m.direction.as_str());
            println!("sender:      <{}>", m.mail_from);
            for e in &shown.entries {
                println!("recipient:   <{}> {}", e.recipient, e.state.as_str());
            }
            println!("from:        {}", m.from);
            println!("to:          {}", m.to);
            println!("subject:     {}", m.subject);
            println!("date:        {}", m.date);
            println!("message-id:  {}", m.message_id);
            println!("size:        {}", m.size);
            println!("client:      {} ({})", m.client_ip, m.helo);
            println!("tls:         {}", m.tls.as_deref().unwrap_or("none"));
            println!("score:       {:.2}", m.score);
            for s in &m.symbols {
                println!("symbol:      {} {:.2}", s.name, s.points);
            }
            println!("reason:      {}", m.reason);
            println!("received_at: {}", m.received_at);
            println!("expires_at:  {}", m.expires_at);
            println!(
                "body:        {}",
                if shown.body_kept {
                    "kept"
                } else {
                    "removed (no recipient held)"
                }
            );
            for a in &shown.audit {
                println!(
                    "audit:       {} {} <{}> {} -> {} by {} (uid {}) {}",
                    a.at,
                    a.action,
                    a.recipient,
                    a.from_state.as_str(),
                    a.to_state.as_str(),
                    a.user_name,
                    a.uid,
                    a.detail
                );
            }
            Ok(0)
        }
        QuarantineAction::Preview { id, json } => {
            check(&id)?;
            let Some(p) = service.preview(&id).await? else {
                eprintln!("no message {id} with a kept body in the quarantine");
                return Ok(1);
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&p)?);
                return Ok(0);
            }
            for h in &p.headers {
                println!("{}: {}", h.name, h.value);
            }
            println!();
            println!("{}", p.text);
            for a in &p.attachments {
                println!(
                    "[attachment] {} ({}, {} bytes)",
                    a.name, a.content_type, a.size
                );
            }
            if p.truncated {
                println!("[preview cut at quarantine.preview_max_bytes]");
            }
            Ok(0)
        }
        QuarantineAction::Raw { id } => {
            check(&id)?;
            let Some(raw) = service.raw(&id).await? else {
                eprintln!("no message {id} with a kept body in the quarantine");
                return Ok(1);
            };
            use std::io::Write;
            std::io::stdout().write_all(&raw)?;
            Ok(0)
        }
        QuarantineAction::Release {
            id,
            filter,
            learn,
            json,
        } => act(&service, Action::Release, id, filter, learn, json).await,
        QuarantineAction::Delete {
            id,
            filter,
            learn,
            json,
        } => act(&service, Action::Delete, id, filter, learn, json).await,
    }
}

async fn act(
    service: &QuarantineService,
    action: Action,
    id: Option<String>,
    filter: FilterArgs,
    learn: bool,
    json: bool,
) -> anyhow::Result<i32> {
    let actor = actor();
    let report: ActionReport = match id {
        Some(id) => {
            if !is_valid_id(&id) {
                anyhow::bail!(
                    "{id:?} is not a quarantine id (hex digits, as `quarantine list` shows)"
                );
            }
            let target = Target {
                message: id,
                recipient: filter.recipient.clone(),
            };
            match action {
                Action::Release => service.release(&target, &actor, learn).await?,
                Action::Delete => service.delete(&target, &actor, learn).await?,
            }
        }
        None => {
            let f = filter.to_filter()?;
            let unfiltered = Filter {
                state: f.state,
                all_states: f.all_states,
                ..Filter::default()
            };
            if f == unfiltered {
                anyhow::bail!(
                    "name a message ID or at least one filter (--recipient, --sender, --subject, --message-id, --symbol, --reason, --min-score, --max-score, --since, --until, --direction)"
                );
            }
            service.bulk(action, &f, &actor, learn).await?
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let verb = match action {
            Action::Release => "released",
            Action::Delete => "deleted",
        };
        println!(
            "{verb}: {} entr(ies) of {} message(s){}{}",
            report.touched,
            report.messages,
            if report.queued.is_empty() {
                String::new()
            } else {
                format!(", queued as {}", report.queued.join(" "))
            },
            if learn {
                format!(", {} learned", report.learned)
            } else {
                String::new()
            }
        );
    }
    Ok(if report.touched == 0 { 1 } else { 0 })
}
