//! `portcullis trust list|show|set`: the level of trust the gateway learned, and operators'
//! pins — through the running gateway's admin API (a pin applies at once), or on the
//! database when it does not run.

use clap::Subcommand;

use super::target::{Target, call, or_exit};
use crate::admin::types::PinLevel;
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum TrustAction {
    /// Every domain with learned or pinned trust (or a JSON array).
    List {
        #[arg(long)]
        json: bool,
    },
    /// One domain: weight, pin, correspondents, sending networks, TLS history.
    Show {
        domain: String,
        #[arg(long)]
        json: bool,
    },
    /// Pin a domain's trust: high, medium, low, none — or auto to go back to learning.
    Set { domain: String, level: String },
}

fn pin_level(level: &str) -> anyhow::Result<Option<PinLevel>> {
    Ok(Some(match level.to_ascii_lowercase().as_str() {
        "auto" => return Ok(None),
        "high" => PinLevel::High,
        "medium" => PinLevel::Medium,
        "low" => PinLevel::Low,
        "none" => PinLevel::None,
        _ => anyhow::bail!(
            "{level:?} is not a level: high, medium, low or none (auto: learned again)"
        ),
    }))
}

pub async fn run(config: &Config, action: TrustAction) -> anyhow::Result<i32> {
    let target = Target::open(config, false).await?;
    let hl = config.trust.half_life_days;
    match action {
        TrustAction::List { json } => {
            let all = or_exit!(call!(target, trust_list()));
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(0);
            }
            println!(
                "{:<32} {:>8} {:<7} {:>7} {:>7} {:>9}",
                "DOMAIN", "WEIGHT", "PINNED", "PEOPLE", "SERVERS", "TLS V/U"
            );
            for d in &all {
                println!(
                    "{:<32} {:>8.2} {:<7} {:>7} {:>7} {:>9}",
                    d.domain,
                    d.weight,
                    d.pinned.as_deref().unwrap_or("-"),
                    d.correspondents,
                    d.servers,
                    format!("{}/{}", d.tls_verified, d.tls_unverified)
                );
            }
            println!("{} domain(s)", all.len());
            Ok(0)
        }
        TrustAction::Show { domain, json } => {
            let t = or_exit!(call!(target, trust_show(&domain)));
            if json {
                println!("{}", serde_json::to_string_pretty(&t)?);
                return Ok(0);
            }
            let d = &t.domain;
            println!("domain:         {}", d.domain);
            println!("weight:         {:.2} (half-life {hl} days)", d.weight);
            println!(
                "pinned:         {}",
                d.pinned.as_deref().unwrap_or("no (learned)")
            );
            println!(
                "TLS sessions:   {} with a verified certificate, {} without",
                d.tls_verified, d.tls_unverified
            );
            println!("correspondents:");
            for c in &t.correspondents {
                println!("  {} → {}  ({:.2})", c.local, c.remote, c.weight);
            }
            println!("sending networks (authenticated mail):");
            for s in &t.servers {
                println!("  {}  {} message(s)", s.network, s.messages);
            }
            Ok(0)
        }
        TrustAction::Set { domain, level } => {
            let level = pin_level(&level)?;
            let r = or_exit!(call!(target, trust_pin(&domain, level)));
            match r.pinned {
                Some(p) => println!(
                    "{}: pinned {}",
                    r.domain,
                    serde_json::to_value(p)?.as_str().unwrap_or("?")
                ),
                None => println!("{}: pin removed, trust is learned again", r.domain),
            }
            Ok(0)
        }
    }
}
