//! `portcullis quarantine list|show|preview|raw|release|delete|learn`: through the running
//! gateway's admin API (a released copy is dispatched at once; the audit names the caller),
//! or on the data directory's database when it does not run (a released copy is then a
//! queue row the gateway delivers when it starts).

use clap::{Args, Subcommand};

use super::target::{Target, call, explain, or_exit};
use crate::admin::Caller;
use crate::admin::types::{
    BulkAction, BulkRequest, Direction, HeldAction, HeldActionResult, HeldState, LearnAs,
    LearnRequest, ListFromHeld, ListName, QuarantineFilter, QuarantineSearch,
};
use crate::config::Config;

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
    /// Teach Bayes a held message as spam or ham, leaving it held.
    Learn {
        id: String,
        /// `spam` or `ham`.
        #[arg(long = "as")]
        learn_as: String,
        #[arg(long)]
        json: bool,
    },
    /// Put the held message's sender on the allow or block list (its From: address, or
    /// with --domain its whole domain).
    ListSender {
        id: String,
        /// `allow` or `block`.
        list: String,
        #[arg(long)]
        domain: bool,
        /// Only for this recipient domain or address; default: everyone.
        #[arg(long = "for")]
        recipient: Option<String>,
        #[arg(long)]
        comment: Option<String>,
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
    /// Only entries whose recipient asked for a release from a quarantine report.
    #[arg(long)]
    release_requested: bool,
}

impl FilterArgs {
    /// The API's filter: times parsed here (UTC), the rest checked by the operations.
    fn to_filter(&self) -> anyhow::Result<QuarantineFilter> {
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
            Some("inbound") => Some(Direction::Inbound),
            Some("outbound") => Some(Direction::Outbound),
            Some(d) => anyhow::bail!("--direction {d:?}: expected inbound or outbound"),
        };
        Ok(QuarantineFilter {
            state: self.state.clone(),
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
            release_requested: self.release_requested.then_some(true),
        })
    }
}

fn state(s: HeldState) -> &'static str {
    match s {
        HeldState::Held => "held",
        HeldState::Released => "released",
        HeldState::Deleted => "deleted",
        HeldState::Expired => "expired",
    }
}

fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    }
}

pub async fn run(config: &Config, action: QuarantineAction) -> anyhow::Result<i32> {
    let target = Target::open(config, true).await?;
    let me = Caller::this_process();
    match action {
        QuarantineAction::List {
            filter,
            limit,
            after,
            oldest_first,
            json,
        } => {
            let f = filter.to_filter()?;
            let search = QuarantineSearch {
                state: f.state,
                recipient: f.recipient,
                sender: f.sender,
                subject: f.subject,
                message_id: f.message_id,
                symbol: f.symbol,
                reason: f.reason,
                min_score: f.min_score,
                max_score: f.max_score,
                since: f.since,
                until: f.until,
                direction: f.direction,
                message: None,
                release_requested: f.release_requested,
                limit: Some(limit),
                after,
                oldest_first: Some(oldest_first),
            };
            let page = call!(target, quarantine_list(&search)).map_err(explain)?;
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
                    state(e.state),
                    direction(e.direction),
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
            let shown = or_exit!(call!(target, quarantine_show(&id)));
            if json {
                println!("{}", serde_json::to_string_pretty(&shown)?);
                return Ok(0);
            }
            let m = &shown.entries[0];
            println!("id:          {}", m.message);
            println!("direction:   {}", direction(m.direction));
            println!("sender:      <{}>", m.mail_from);
            for e in &shown.entries {
                println!("recipient:   <{}> {}", e.recipient, state(e.state));
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
                    state(a.from_state),
                    state(a.to_state),
                    a.user_name,
                    a.uid,
                    a.detail
                );
            }
            Ok(0)
        }
        QuarantineAction::Preview { id, json } => {
            let p = or_exit!(call!(target, quarantine_preview(&id)));
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
            let raw = or_exit!(call!(target, quarantine_raw(&id)));
            use std::io::Write;
            std::io::stdout().write_all(&raw)?;
            Ok(0)
        }
        QuarantineAction::Release {
            id,
            filter,
            learn,
            json,
        } => act(&target, &me, BulkAction::Release, id, filter, learn, json).await,
        QuarantineAction::Delete {
            id,
            filter,
            learn,
            json,
        } => act(&target, &me, BulkAction::Delete, id, filter, learn, json).await,
        QuarantineAction::Learn { id, learn_as, json } => {
            let learn_as = match learn_as.to_ascii_lowercase().as_str() {
                "spam" => LearnAs::Spam,
                "ham" => LearnAs::Ham,
                _ => anyhow::bail!("--as {learn_as:?}: spam or ham"),
            };
            let request = LearnRequest { learn_as };
            let done = or_exit!(match &target {
                Target::Remote(c) => c.quarantine_learn(&id, &request).await,
                Target::Local(o) => o.quarantine_learn(&id, &request, &me).await,
            });
            print_report("learned", &done, json)
        }
        QuarantineAction::ListSender {
            id,
            list,
            domain,
            recipient,
            comment,
        } => {
            let list = match list.to_ascii_lowercase().as_str() {
                "allow" => ListName::Allow,
                "block" => ListName::Block,
                _ => anyhow::bail!("{list:?} is not a list: allow or block"),
            };
            let request = ListFromHeld {
                list,
                domain,
                recipient,
                comment,
                expires_at: None,
            };
            let added = or_exit!(match &target {
                Target::Remote(c) => c.quarantine_list_sender(&id, &request).await,
                Target::Local(o) => o.quarantine_list_sender(&id, &request, &me).await,
            });
            let e = &added.entry;
            println!(
                "{} {}: #{} {} for {}",
                added.change,
                e.list.as_str(),
                e.id,
                e.sender,
                e.recipient.as_deref().unwrap_or("everyone")
            );
            Ok(0)
        }
    }
}

/// Prints what an action did; exit code 1 when it touched nothing.
fn print_report(verb: &str, report: &HeldActionResult, json: bool) -> anyhow::Result<i32> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!(
            "{verb}: {} entr(ies) of {} message(s){}{}",
            report.touched,
            report.messages,
            if report.queued.is_empty() {
                String::new()
            } else {
                format!(", queued as {}", report.queued.join(" "))
            },
            if report.learned > 0 {
                format!(", {} learned", report.learned)
            } else {
                String::new()
            }
        );
    }
    Ok(if report.touched == 0 && report.learned == 0 {
        1
    } else {
        0
    })
}

async fn act(
    target: &Target,
    me: &Caller,
    action: BulkAction,
    id: Option<String>,
    filter: FilterArgs,
    learn: bool,
    json: bool,
) -> anyhow::Result<i32> {
    let report = match id {
        Some(id) => {
            let request = HeldAction {
                recipient: filter.recipient.clone(),
                learn,
            };
            or_exit!(match (target, action) {
                (Target::Remote(c), BulkAction::Release) =>
                    c.quarantine_release(&id, &request).await,
                (Target::Remote(c), BulkAction::Delete) => c.quarantine_delete(&id, &request).await,
                (Target::Local(o), BulkAction::Release) =>
                    o.quarantine_release(&id, &request, me).await,
                (Target::Local(o), BulkAction::Delete) =>
                    o.quarantine_delete(&id, &request, me).await,
            })
        }
        None => {
            let request = BulkRequest {
                action,
                filter: filter.to_filter()?,
                learn,
            };
            match target {
                Target::Remote(c) => c.quarantine_bulk(&request).await,
                Target::Local(o) => o.quarantine_bulk(&request, me).await,
            }
            .map_err(|e| {
                if e.detail.field.as_deref() == Some("filter") {
                    anyhow::anyhow!(
                        "name a message ID or at least one filter (--recipient, --sender, --subject, --message-id, --symbol, --reason, --min-score, --max-score, --since, --until, --direction)"
                    )
                } else {
                    explain(e)
                }
            })?
        }
    };
    let verb = match action {
        BulkAction::Release => "released",
        BulkAction::Delete => "deleted",
    };
    print_report(verb, &report, json)
}
