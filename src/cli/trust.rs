//! `portcullis trust list|show|set`: the level of trust the gateway learned, and operators'
//! pins. Works on the gateway's database while it runs (pins are picked up within
//! `[trust] pin_reload_secs`).

use clap::Subcommand;
use filters::trust::{Pin, unix_now};

use crate::config::Config;
use crate::trust::TrustStore;

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

pub async fn run(config: &Config, action: TrustAction) -> anyhow::Result<i32> {
    let store = TrustStore::new(
        crate::store::Database::open(&config.data_dir)
            .await?
            .pool()
            .clone(),
    );
    let hl = config.trust.half_life_days;
    let now = unix_now();
    match action {
        TrustAction::List { json } => {
            let all = store.report(hl, now, None).await?;
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
            let report = store.report(hl, now, Some(&domain)).await?;
            let Some(d) = report.into_iter().next() else {
                eprintln!("nothing is known about {domain}");
                return Ok(1);
            };
            let (pairs, servers) = store.details(&domain, hl, now).await?;
            if json {
                let v = serde_json::json!({
                    "domain": d,
                    "correspondents": pairs.iter().map(|(l, r, w)| serde_json::json!({
                        "local": l, "remote": r, "weight": (w * 100.0).round() / 100.0,
                    })).collect::<Vec<_>>(),
                    "servers": servers.iter().map(|(n, m, f, l)| serde_json::json!({
                        "network": n, "messages": m, "first_seen": f, "last_seen": l,
                    })).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&v)?);
                return Ok(0);
            }
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
            for (l, r, w) in &pairs {
                println!("  {l} → {r}  ({w:.2})");
            }
            println!("sending networks (authenticated mail):");
            for (n, m, _, _) in &servers {
                println!("  {n}  {m} message(s)");
            }
            Ok(0)
        }
        TrustAction::Set { domain, level } => {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            if domain.is_empty() || domain.contains(['@', ' ', '[', ']']) || !domain.contains('.') {
                anyhow::bail!("{domain:?} is not a domain name (e.g. partner.example)");
            }
            let pin = if level.eq_ignore_ascii_case("auto") {
                None
            } else {
                Some(level.parse::<Pin>().map_err(|e| anyhow::anyhow!(e))?)
            };
            store.set_pin(&domain, pin, now).await?;
            match pin {
                Some(p) => println!("{domain}: pinned {}", p.as_str()),
                None => println!("{domain}: pin removed, trust is learned again"),
            }
            Ok(0)
        }
    }
}
