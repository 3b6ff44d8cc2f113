//! `portcullis queue list|show|retry|delete`: through the running gateway's admin API, or
//! on the queue database in `data_dir` when it does not run. The queue holds only what it
//! delivers; held messages are `portcullis quarantine`'s.

use clap::Subcommand;

use super::target::{Target, call, or_exit};
use crate::admin::types::QueueMessage;
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum QueueAction {
    /// One line per message (or a JSON array).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Everything about one message (or JSON).
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Make a queued message due for delivery now.
    Retry { id: String },
    /// Remove a message from the queue without delivering it.
    Delete { id: String },
}

fn direction(m: &QueueMessage) -> &'static str {
    match m.direction {
        crate::admin::types::Direction::Inbound => "inbound",
        crate::admin::types::Direction::Outbound => "outbound",
    }
}

pub async fn run(config: &Config, action: QueueAction) -> anyhow::Result<i32> {
    let target = Target::open(config, true).await?;
    match action {
        QueueAction::List { json } => {
            let all = or_exit!(call!(target, queue_list()));
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!(
                    "{:<18} {:<9} {:>9} {:>4}  {:<30} RECIPIENTS",
                    "ID", "DIRECTION", "SIZE", "TRY", "SENDER"
                );
                for m in &all {
                    println!("{}", line(m));
                }
                println!("{} message(s)", all.len());
            }
            Ok(0)
        }
        QueueAction::Show { id, json } => {
            let m = or_exit!(call!(target, queue_show(&id)));
            if json {
                println!("{}", serde_json::to_string_pretty(&m)?);
                return Ok(0);
            }
            println!("id:          {}", m.id);
            println!("direction:   {}", direction(&m));
            println!("sender:      <{}>", m.mail_from);
            for r in &m.recipients {
                println!(
                    "recipient:   <{}> {:?} {}",
                    r.address,
                    r.status,
                    r.error.as_deref().unwrap_or("")
                );
            }
            println!("size:        {}", m.size);
            println!("received_at: {}", m.received_at);
            println!("attempts:    {}", m.attempts);
            println!("next_try:    {}", m.next_attempt);
            println!("last_error:  {}", m.last_error.as_deref().unwrap_or("-"));
            println!("client:      {} ({})", m.client_ip, m.helo);
            println!("score:       {:.2} {}", m.score, m.symbols);
            match &m.body_file {
                Some(f) => println!("body:        {f}"),
                None => println!(
                    "body:        inline in {}",
                    config.data_dir.join("queue.db").display()
                ),
            }
            Ok(0)
        }
        QueueAction::Retry { id } => {
            let r = or_exit!(call!(target, queue_retry(&id)));
            println!("{}: {}", r.id, r.result);
            Ok(0)
        }
        QueueAction::Delete { id } => {
            let r = or_exit!(call!(target, queue_delete(&id)));
            println!("{}: {}", r.id, r.result);
            Ok(0)
        }
    }
}

fn line(m: &QueueMessage) -> String {
    let rcpts: Vec<&str> = m.recipients.iter().map(|r| r.address.as_str()).collect();
    format!(
        "{:<18} {:<9} {:>9} {:>4}  {:<30} {}",
        m.id,
        direction(m),
        m.size,
        m.attempts,
        if m.mail_from.is_empty() {
            "<>"
        } else {
            &m.mail_from
        },
        rcpts.join(",")
    )
}
