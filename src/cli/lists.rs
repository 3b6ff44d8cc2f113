//! `portcullis lists add|remove|show`: operators' allow and block lists — through the
//! running gateway's admin API (a change applies to the next message), or on the database
//! when it does not run.

use clap::Subcommand;

use super::target::{Target, call, explain, or_exit};
use crate::admin::Caller;
use crate::admin::types::{ListEntry, ListName, NewListEntry};
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum ListsAction {
    /// Add an entry (or update the comment and expiry of the same one).
    Add {
        /// `allow` or `block`.
        list: String,
        /// `bob@partner.example`, `@partner.example` or a network (`192.0.2.0/24`).
        sender: String,
        /// Only for this recipient domain (`example.test`) or address; default: everyone.
        #[arg(long = "for")]
        recipient: Option<String>,
        #[arg(long)]
        comment: Option<String>,
        /// The entry ends after this long: `3600`, `90m`, `12h`, `30d`.
        #[arg(long)]
        expires_in: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Remove an entry by its id (as `lists show` prints it).
    Remove {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Every entry (or one by id), expired ones marked.
    Show {
        id: Option<i64>,
        #[arg(long)]
        json: bool,
    },
}

/// `90m` → 5400 seconds.
fn duration_secs(text: &str) -> anyhow::Result<i64> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: i64 = number
        .parse()
        .map_err(|_| anyhow::anyhow!("--expires-in {text:?}: a number with s, m, h or d"))?;
    let factor = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => anyhow::bail!("--expires-in {text:?}: the unit is s, m, h or d"),
    };
    n.checked_mul(factor)
        .filter(|s| *s > 0)
        .ok_or_else(|| anyhow::anyhow!("--expires-in {text:?}: must be more than 0"))
}

fn print_entries(entries: &[ListEntry]) {
    println!(
        "{:>5} {:<6} {:<32} {:<28} {:<20} COMMENT",
        "ID", "LIST", "SENDER", "FOR", "EXPIRES"
    );
    for e in entries {
        let expires = match e.expires_at {
            None => "never".to_string(),
            Some(t) if e.expired => format!("expired {}", crate::certs::info::date_text(t)),
            Some(t) => crate::certs::info::date_text(t),
        };
        println!(
            "{:>5} {:<6} {:<32} {:<28} {:<20} {}",
            e.id,
            e.list.as_str(),
            e.sender,
            e.recipient.as_deref().unwrap_or("everyone"),
            expires,
            e.comment.as_deref().unwrap_or("")
        );
    }
    println!(
        "{} entr{}",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" }
    );
}

pub async fn run(config: &Config, action: ListsAction) -> anyhow::Result<i32> {
    let target = Target::open(config, false).await?;
    match action {
        ListsAction::Add {
            list,
            sender,
            recipient,
            comment,
            expires_in,
            json,
        } => {
            let list = match list.to_ascii_lowercase().as_str() {
                "allow" => ListName::Allow,
                "block" => ListName::Block,
                _ => anyhow::bail!("{list:?} is not a list: allow or block"),
            };
            let expires_at = expires_in
                .as_deref()
                .map(duration_secs)
                .transpose()?
                .map(|s| crate::clock::unix_now() + s);
            let new = NewListEntry {
                list,
                sender,
                recipient,
                comment,
                expires_at,
            };
            let added = match &target {
                Target::Remote(c) => c.lists_add(&new).await,
                Target::Local(o) => o.lists_add(&new, &Caller::this_process()).await,
            }
            .map_err(explain)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&added)?);
            } else {
                let e = &added.entry;
                println!(
                    "{} {}: #{} {} for {}",
                    added.change,
                    e.list.as_str(),
                    e.id,
                    e.sender,
                    e.recipient.as_deref().unwrap_or("everyone")
                );
            }
            Ok(0)
        }
        ListsAction::Remove { id, json } => {
            let e = or_exit!(call!(target, lists_remove(id)));
            if json {
                println!("{}", serde_json::to_string_pretty(&e)?);
            } else {
                println!("removed {}: #{} {}", e.list.as_str(), e.id, e.sender);
            }
            Ok(0)
        }
        ListsAction::Show { id, json } => {
            let entries = match id {
                Some(id) => vec![or_exit!(call!(target, lists_show(id)))],
                None => or_exit!(call!(target, lists_all())),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&entries)?);
            } else {
                print_entries(&entries);
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration_secs("90m").unwrap(), 5400);
        assert_eq!(duration_secs("30d").unwrap(), 30 * 86_400);
        assert_eq!(duration_secs("15").unwrap(), 15);
        assert!(duration_secs("0").is_err());
        assert!(duration_secs("3w").is_err());
        assert!(duration_secs("h").is_err());
    }
}
