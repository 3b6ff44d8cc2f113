//! `portcullis queue list|show|retry|delete`: works on the queue database in `data_dir`,
//! also while the gateway runs (SQLite WAL; the gateway picks retries up at its next scan).

use clap::Subcommand;

use crate::config::Config;
use crate::queue::{QueueStore, QueuedMessage, body_path, is_inline, is_valid_id};

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

pub async fn run(config: &Config, action: QueueAction) -> anyhow::Result<i32> {
    if !config.data_dir.join("queue.db").exists() {
        anyhow::bail!(
            "no queue database in {} (wrong --config, or the gateway never ran there)",
            config.data_dir.display()
        );
    }
    let store = QueueStore::new(&crate::store::Database::open(&config.data_dir).await?);
    let check = |id: &str| -> anyhow::Result<()> {
        if is_valid_id(id) {
            Ok(())
        } else {
            anyhow::bail!("{id:?} is not a queue id (hex digits)")
        }
    };
    match action {
        QueueAction::List { json } => {
            let all = store.list().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!(
                    "{:<18} {:<9} {:<7} {:>9} {:>4}  {:<30} RECIPIENTS",
                    "ID", "DIRECTION", "STATE", "SIZE", "TRY", "SENDER"
                );
                for m in &all {
                    println!("{}", line(m));
                }
                println!("{} message(s)", all.len());
            }
            Ok(0)
        }
        QueueAction::Show { id, json } => {
            check(&id)?;
            let Some(m) = store.get(&id).await? else {
                eprintln!("no message {id} in the queue");
                return Ok(1);
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&m)?);
            } else {
                println!("id:          {}", m.id);
                println!("direction:   {}", m.direction.as_str());
                println!("state:       {}", m.state.as_str());
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
                // A held message's row keeps why it is held where others keep their last
                // delivery error.
                let label = match m.state {
                    crate::queue::QueueState::Held => "held for:  ",
                    crate::queue::QueueState::Queued => "last_error: ",
                };
                println!("{label} {}", m.last_error.as_deref().unwrap_or("-"));
                println!("client:      {} ({})", m.client_ip, m.helo);
                println!("score:       {:.2} {}", m.score, m.symbols);
                if is_inline(m.size) {
                    println!(
                        "body:        inline in {}",
                        config.data_dir.join("queue.db").display()
                    );
                } else {
                    println!(
                        "body:        {}",
                        body_path(&config.data_dir.join("spool"), &m.id).display()
                    );
                }
            }
            Ok(0)
        }
        QueueAction::Retry { id } => {
            check(&id)?;
            if store.retry_now(&id).await? {
                println!("{id}: due now");
                Ok(0)
            } else {
                eprintln!(
                    "no queued message {id} (held messages are not retried; `queue show {id}` shows one)"
                );
                Ok(1)
            }
        }
        QueueAction::Delete { id } => {
            check(&id)?;
            if store.delete(&id).await? {
                let _ = std::fs::remove_file(body_path(&config.data_dir.join("spool"), &id));
                println!("{id}: deleted");
                Ok(0)
            } else {
                eprintln!("no message {id} in the queue");
                Ok(1)
            }
        }
    }
}

fn line(m: &QueuedMessage) -> String {
    let rcpts: Vec<&str> = m.recipients.iter().map(|r| r.address.as_str()).collect();
    format!(
        "{:<18} {:<9} {:<7} {:>9} {:>4}  {:<30} {}",
        m.id,
        m.direction.as_str(),
        m.state.as_str(),
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
