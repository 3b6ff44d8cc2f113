//! `portcullis certs import|import-crl|list|show|export|delete|trust-ca`: the S/MIME certificate and
//! key store in the `data_dir` database. Works while the gateway runs (it picks changes
//! up within `certs.reload_secs`). Private keys go in, never out: `export` writes the
//! certificate only.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Subcommand;
use serde_json::json;

use crate::certs::crl::{self, Revocation};
use crate::certs::info::{self, date_text};
use crate::certs::parse;
use crate::certs::store::{CA_IDENTITY_NOTE, CertRecord, CertStore, Stored, normalize_domain};
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum CertsAction {
    /// Import a certificate, a bundle/chain (PEM, DER, PKCS#7) or a PKCS#12 file with key.
    Import {
        file: PathBuf,
        /// File whose first line is the password of the PKCS#12 file or encrypted PEM key.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Make it this domain's gateway certificate (with a key: its gateway identity,
        /// used for domain-to-domain encryption and as the signing fallback).
        #[arg(long)]
        domain: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Certificates per domain: how many, which are usable for encryption now, expiry.
    List {
        #[arg(long)]
        domain: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Everything about one certificate, with its chain (a unique fingerprint prefix will do).
    Show {
        fingerprint: String,
        #[arg(long)]
        json: bool,
    },
    /// Write the certificate (PEM, never the key) to stdout.
    Export { fingerprint: String },
    /// Delete a certificate and its private key (give the full fingerprint).
    Delete { fingerprint: String },
    /// Import certificate revocation lists (PEM or DER; each signed by a CA certificate the
    /// store holds or `certs.extra_ca` names). Replaces an older CRL of the same CA.
    ImportCrl {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Trust the CA certificate(s) of a file as anchors for chains.
    TrustCa {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

async fn open(config: &Config, create: bool) -> anyhow::Result<CertStore> {
    if !create && !config.data_dir.join("queue.db").exists() {
        anyhow::bail!(
            "no database in {} (wrong --config, or nothing imported yet)",
            config.data_dir.display()
        );
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let db = crate::store::Database::open(&config.data_dir).await?;
    CertStore::open(db.pool().clone(), &config.data_dir, &config.certs).await
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

fn read_password(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read password file {}: {e}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

fn print_stored(stored: &[Stored], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(stored)?);
        return Ok(());
    }
    for s in stored {
        let who = if s.addresses.is_empty() {
            s.subject.clone()
        } else {
            format!("{} ({})", s.addresses.join(", "), s.subject)
        };
        let details = if s.details.is_empty() {
            String::new()
        } else {
            format!(": {}", s.details.join("; "))
        };
        println!("{:<9} {}  {who}{details}", s.change, &s.fingerprint[..16]);
    }
    Ok(())
}

fn cert_json(r: &CertRecord, now: i64) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["expires"] = json!(date_text(r.facts.not_after));
    v["usable_for_encryption"] = json!(r.usable_for_encryption(now));
    v["encryption_problems"] = json!(r.encryption_problems(now));
    v["signing_problems"] = json!(r.signing_problems(now));
    v
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn list(all: &[Arc<CertRecord>], domain: Option<&str>, json: bool) -> anyhow::Result<()> {
    let now = info::now();
    let mut domains: Vec<String> = all
        .iter()
        .filter(|r| !r.facts.is_ca)
        .flat_map(|r| r.domains.iter().cloned())
        .collect();
    domains.sort();
    domains.dedup();
    if let Some(d) = domain {
        domains.retain(|x| x == d);
    }
    let mut groups = Vec::new();
    for d in &domains {
        let mut certs: Vec<&Arc<CertRecord>> = all
            .iter()
            .filter(|r| !r.facts.is_ca && r.domains.contains(d))
            .collect();
        // Gateway certificates first, then by address, newest first.
        certs.sort_by(|a, b| {
            (
                !a.gateway_domains.contains(d),
                &a.facts.addresses,
                -a.facts.not_after,
            )
                .cmp(&(
                    !b.gateway_domains.contains(d),
                    &b.facts.addresses,
                    -b.facts.not_after,
                ))
        });
        groups.push((d, certs));
    }
    let cas: Vec<&Arc<CertRecord>> = all.iter().filter(|r| r.facts.is_ca).collect();
    if json {
        let out = json!({
            "domains": groups.iter().map(|(d, certs)| json!({
                "domain": d,
                "certificates": certs.len(),
                "usable_for_encryption": certs.iter().filter(|r| r.usable_for_encryption(now)).count(),
                "gateway": certs.iter().filter(|r| r.gateway_domains.contains(d)).map(|r| r.fingerprint()).collect::<Vec<_>>(),
                "certs": certs.iter().map(|r| cert_json(r, now)).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "cas": if domain.is_some() { vec![] } else { cas.iter().map(|r| cert_json(r, now)).collect::<Vec<_>>() },
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if groups.is_empty() {
        match domain {
            Some(d) => println!("no certificates for {d}"),
            None => println!("no user or gateway certificates"),
        }
    }
    for (d, certs) in &groups {
        let usable = certs
            .iter()
            .filter(|r| r.usable_for_encryption(now))
            .count();
        println!(
            "{d}: {} certificate(s), {usable} usable for encryption now",
            certs.len()
        );
        for r in certs {
            let names = if r.facts.addresses.is_empty() {
                r.facts.subject.clone()
            } else {
                r.facts.addresses.join(", ")
            };
            let who = if r.gateway_domains.contains(d) {
                format!("[gateway] {names}")
            } else {
                names
            };
            let problems = r.encryption_problems(now);
            let encryption = if problems.is_empty() {
                "encryption: yes".to_string()
            } else {
                format!("encryption: no ({})", problems.join("; "))
            };
            println!(
                "  {}  {who:<32} expires {}  key: {:<3}  {:<9}  {encryption}",
                &r.fingerprint()[..16],
                date_text(r.facts.not_after),
                yes_no(r.has_private_key),
                r.source.as_str(),
            );
        }
    }
    if domain.is_none() && !cas.is_empty() {
        println!("CA certificates: {}", cas.len());
        for r in &cas {
            println!(
                "  {}  {:<32} expires {}  {}",
                &r.fingerprint()[..16],
                r.facts.subject,
                date_text(r.facts.not_after),
                if r.explicitly_trusted {
                    "trusted anchor".to_string()
                } else if r.chain.trusted {
                    format!("chain trusted ({})", r.chain.detail)
                } else {
                    format!("not trusted ({})", r.chain.detail)
                }
            );
        }
    }
    Ok(())
}

fn show(r: &CertRecord, revocation: &Revocation, json: bool) -> anyhow::Result<()> {
    let now = info::now();
    if json {
        let mut v = cert_json(r, now);
        v["revocation"] = serde_json::to_value(revocation)?;
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    let f = &r.facts;
    let list_or = |v: &Option<Vec<String>>| match v {
        None => "(extension absent: no restriction)".to_string(),
        Some(v) if v.is_empty() => "(none recognised)".to_string(),
        Some(v) => v.join(", "),
    };
    println!("fingerprint:    {}", f.fingerprint);
    println!("subject:        {}", f.subject);
    println!("issuer:         {}", f.issuer);
    println!("serial:         {}", f.serial);
    let none = |v: String| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v
        }
    };
    println!("addresses:      {}", none(f.addresses.join(", ")));
    let domains: Vec<String> = r
        .domains
        .iter()
        .map(|d| {
            if r.gateway_domains.contains(d) {
                format!("{d} (gateway)")
            } else {
                d.clone()
            }
        })
        .collect();
    println!("domains:        {}", none(domains.join(", ")));
    println!(
        "valid:          {} to {}",
        date_text(f.not_before),
        date_text(f.not_after)
    );
    println!("key usage:      {}", list_or(&f.key_usage));
    println!("ext. key usage: {}", list_or(&f.ext_key_usage));
    println!("CA:             {}", yes_no(f.is_ca));
    println!(
        "private key:    {}",
        if r.has_private_key {
            "stored (encrypted; never exported)"
        } else {
            "none"
        }
    );
    println!(
        "source:         {} {}{}",
        r.source.as_str(),
        date_text(r.added_at),
        r.message_id
            .as_deref()
            .map(|m| format!(" from {m}"))
            .unwrap_or_default()
    );
    println!(
        "capabilities:   {}",
        r.capabilities
            .as_ref()
            .map(|c| c.join(", "))
            .unwrap_or_else(|| "(not seen)".into())
    );
    println!(
        "chain:          {}{}",
        if r.chain.trusted {
            format!("trusted (anchor: {})", r.chain.detail)
        } else {
            format!("not trusted: {}", r.chain.detail)
        },
        if r.explicitly_trusted {
            "; explicitly trusted (certs trust-ca)"
        } else {
            ""
        }
    );
    println!("  0 {} (this certificate)", f.subject);
    for (i, l) in r.chain.chain.iter().enumerate() {
        println!("  {} {}  [{}]", i + 1, l.subject, &l.fingerprint[..16]);
    }
    println!("revocation:     {}", revocation.text());
    let problems = r.encryption_problems(now);
    println!(
        "encryption now: {}",
        if problems.is_empty() {
            "usable".to_string()
        } else {
            format!("not usable: {}", problems.join("; "))
        }
    );
    let problems = r.signing_problems(now);
    println!(
        "signing now:    {}",
        if problems.is_empty() {
            "usable".to_string()
        } else {
            format!("not usable: {}", problems.join("; "))
        }
    );
    Ok(())
}

pub async fn run(config: &Config, action: CertsAction) -> anyhow::Result<i32> {
    match action {
        CertsAction::Import {
            file,
            password_file,
            domain,
            json,
        } => {
            let password = password_file.as_deref().map(read_password).transpose()?;
            let domain = domain.as_deref().map(normalize_domain).transpose()?;
            let bytes = read(&file)?;
            let bundle =
                parse::read_import(&bytes, &file.display().to_string(), password.as_deref())?;
            let store = open(config, true).await?;
            let stored = store.import(&bundle, domain.as_deref()).await?;
            for s in &stored {
                if s.details.iter().any(|d| d == CA_IDENTITY_NOTE) {
                    eprintln!("warning: {}: {CA_IDENTITY_NOTE}", s.subject);
                }
            }
            print_stored(&stored, json)?;
            Ok(0)
        }
        CertsAction::List { domain, json } => {
            let domain = domain.as_deref().map(normalize_domain).transpose()?;
            let store = open(config, false).await?;
            list(&store.all().await?, domain.as_deref(), json)?;
            Ok(0)
        }
        CertsAction::Show { fingerprint, json } => {
            let store = open(config, false).await?;
            let r = store.find(&fingerprint).await?;
            // As a signature check would see it (a CRL is fetched when none is held).
            let revocation = if r.chain.trusted {
                store.revocation(&r.cert.to_der()?, &[]).await
            } else {
                r.revocation.clone()
            };
            let r = store.find(&fingerprint).await?;
            show(&r, &revocation, json)?;
            Ok(0)
        }
        CertsAction::ImportCrl { file, json } => {
            let crls = crl::read_crls(&read(&file)?, &file.display().to_string())?;
            let store = open(config, false).await?;
            let stored = store.import_crls(&crls).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&stored)?);
            } else {
                for c in &stored {
                    println!(
                        "{:<9} CRL of {}: {} revoked, issued {}, next update {}",
                        c.change,
                        c.issuer,
                        c.revoked,
                        date_text(c.this_update),
                        c.next_update
                            .map(date_text)
                            .unwrap_or_else(|| "(not given)".into())
                    );
                }
            }
            Ok(0)
        }
        CertsAction::Export { fingerprint } => {
            let store = open(config, false).await?;
            let r = store.find(&fingerprint).await?;
            print!("{}", String::from_utf8(r.cert.to_pem()?)?);
            Ok(0)
        }
        CertsAction::Delete { fingerprint } => {
            let store = open(config, false).await?;
            let r = store.delete(&fingerprint).await?;
            println!(
                "deleted {} {}{}",
                r.fingerprint(),
                r.facts.subject,
                if r.has_private_key {
                    " and its private key (mail encrypted to it can no longer be decrypted here)"
                } else {
                    ""
                }
            );
            Ok(0)
        }
        CertsAction::TrustCa { file, json } => {
            let certs = parse::read_certificates(&read(&file)?, &file.display().to_string())?;
            let store = open(config, true).await?;
            let stored = store.trust_ca(&certs).await?;
            for s in stored.iter().filter(|s| !s.is_ca) {
                eprintln!(
                    "note: {} is not a CA certificate; it is trusted directly (as a partner's self-signed certificate would be)",
                    s.subject
                );
            }
            print_stored(&stored, json)?;
            Ok(0)
        }
    }
}
