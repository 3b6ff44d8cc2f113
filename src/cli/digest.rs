//! `portcullis digest`: send quarantine reports now, show what would go out, and set a
//! recipient's own frequency.

use clap::Subcommand;

use super::target::{Target, call, explain};
use crate::admin::types::{DigestFrequencyChange, DigestSendRequest};
use crate::config::{Config, DigestFrequency};

#[derive(Subcommand, Debug)]
pub enum DigestAction {
    /// Send a report now to every recipient with new held messages (whose frequency is not
    /// off), or to one.
    Send {
        #[arg(long)]
        recipient: Option<String>,
        /// Print the reports instead of sending them; nothing is remembered.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Set a recipient's report frequency: off, hourly, daily, weekly, or default (the
    /// `[digest] schedule`).
    Set {
        recipient: String,
        frequency: String,
        #[arg(long)]
        json: bool,
    },
    /// Recipients with a frequency of their own.
    Show {
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Config, action: DigestAction) -> anyhow::Result<i32> {
    let target = Target::open(config, false).await?;
    match action {
        DigestAction::Send {
            recipient,
            dry_run,
            json,
        } => {
            let request = DigestSendRequest { recipient, dry_run };
            let reports = call!(target, digest_send(&request)).map_err(explain)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
                return Ok(0);
            }
            if reports.is_empty() {
                println!("no recipient has new held messages to report");
            }
            for r in &reports {
                match (&r.message, &r.queue_id) {
                    (Some(m), _) => {
                        println!(
                            "--- report to {} ({} new, {} listed)",
                            r.recipient, r.new, r.listed
                        );
                        println!("{m}");
                    }
                    (None, Some(id)) => println!(
                        "{}: {} new, {} listed, queued as {id}",
                        r.recipient, r.new, r.listed
                    ),
                    (None, None) => println!(
                        "{}: {} new, none of a reported reason; nothing sent",
                        r.recipient, r.new
                    ),
                }
            }
            Ok(0)
        }
        DigestAction::Set {
            recipient,
            frequency,
            json,
        } => {
            let frequency = match frequency.as_str() {
                "default" => None,
                f => Some(DigestFrequency::parse(f).ok_or_else(|| {
                    anyhow::anyhow!("{f:?}: expected off, hourly, daily, weekly or default")
                })?),
            };
            let change = DigestFrequencyChange { frequency };
            let set = call!(target, digest_set(&recipient, &change)).map_err(explain)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&set)?);
            } else {
                println!("{}: {}", set.recipient, set.frequency.as_str());
            }
            Ok(0)
        }
        DigestAction::Show { json } => {
            let all = call!(target, digest_recipients()).map_err(explain)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for r in &all {
                    println!("{:<40} {}", r.recipient, r.frequency.as_str());
                }
            }
            Ok(0)
        }
    }
}
