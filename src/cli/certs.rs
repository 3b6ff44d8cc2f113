//! `portcullis certs import|import-crl|list|show|export|delete|trust-ca`: the S/MIME
//! certificate and key store — through the running gateway's admin API (a change is in
//! use before the command returns), or on the `data_dir` database when it does not run
//! (e.g. importing keys before the first start). Private keys go in, never out: `export`
//! writes the certificate only.

use std::path::{Path, PathBuf};

use clap::Subcommand;

use super::target::{Target, call, explain, read_file};
use crate::admin::types::{Cert, CertUpload, ImportReport, Revocation};
use crate::certs::info::date_text;
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

fn read_password(path: &Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read password file {}: {e}", path.display()))?;
    Ok(text.lines().next().unwrap_or("").to_string())
}

/// A file for the API: its bytes in base64.
fn upload(
    file: &Path,
    password: Option<String>,
    domain: Option<String>,
) -> anyhow::Result<CertUpload> {
    Ok(CertUpload {
        data: base64_simd::STANDARD.encode_to_string(read_file(file)?),
        name: Some(file.display().to_string()),
        password,
        domain,
    })
}

fn print_stored(report: &ImportReport, json: bool) -> anyhow::Result<()> {
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report.stored)?);
        return Ok(());
    }
    for s in &report.stored {
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

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn revocation_text(r: &Revocation) -> String {
    match r {
        Revocation::Off => "not checked ([certs] revocation = \"off\")".into(),
        Revocation::Good => "not revoked (current CRLs checked)".into(),
        Revocation::Revoked(why) => format!("REVOKED ({why})"),
        Revocation::Unknown(why) => format!("unknown ({why})"),
    }
}

fn print_list(list: &crate::admin::types::CertList, domain: Option<&str>) {
    if list.domains.is_empty() {
        match domain {
            Some(d) => println!("no certificates for {d}"),
            None => println!("no user or gateway certificates"),
        }
    }
    for g in &list.domains {
        println!(
            "{}: {} certificate(s), {} usable for encryption now",
            g.domain, g.certificates, g.usable_for_encryption
        );
        for r in &g.certs {
            let names = if r.addresses.is_empty() {
                r.subject.clone()
            } else {
                r.addresses.join(", ")
            };
            let who = if r.gateway_domains.contains(&g.domain) {
                format!("[gateway] {names}")
            } else {
                names
            };
            let encryption = if r.encryption_problems.is_empty() {
                "encryption: yes".to_string()
            } else {
                format!("encryption: no ({})", r.encryption_problems.join("; "))
            };
            println!(
                "  {}  {who:<32} expires {}  key: {:<3}  {:<9}  {encryption}",
                &r.fingerprint[..16],
                r.expires,
                yes_no(r.has_private_key),
                r.source,
            );
        }
    }
    if !list.cas.is_empty() {
        println!("CA certificates: {}", list.cas.len());
        for r in &list.cas {
            println!(
                "  {}  {:<32} expires {}  {}",
                &r.fingerprint[..16],
                r.subject,
                r.expires,
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
}

fn print_cert(r: &Cert) {
    let list_or = |v: &Option<Vec<String>>| match v {
        None => "(extension absent: no restriction)".to_string(),
        Some(v) if v.is_empty() => "(none recognised)".to_string(),
        Some(v) => v.join(", "),
    };
    println!("fingerprint:    {}", r.fingerprint);
    println!("subject:        {}", r.subject);
    println!("issuer:         {}", r.issuer);
    println!("serial:         {}", r.serial);
    let none = |v: String| {
        if v.is_empty() {
            "(none)".to_string()
        } else {
            v
        }
    };
    println!("addresses:      {}", none(r.addresses.join(", ")));
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
        date_text(r.not_before),
        date_text(r.not_after)
    );
    println!("key usage:      {}", list_or(&r.key_usage));
    println!("ext. key usage: {}", list_or(&r.ext_key_usage));
    println!("CA:             {}", yes_no(r.is_ca));
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
        r.source,
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
    println!("  0 {} (this certificate)", r.subject);
    for (i, l) in r.chain.chain.iter().enumerate() {
        println!("  {} {}  [{}]", i + 1, l.subject, &l.fingerprint[..16]);
    }
    println!("revocation:     {}", revocation_text(&r.revocation));
    println!(
        "encryption now: {}",
        if r.encryption_problems.is_empty() {
            "usable".to_string()
        } else {
            format!("not usable: {}", r.encryption_problems.join("; "))
        }
    );
    println!(
        "signing now:    {}",
        if r.signing_problems.is_empty() {
            "usable".to_string()
        } else {
            format!("not usable: {}", r.signing_problems.join("; "))
        }
    );
}

/// Every failure, an unknown fingerprint included, exits with 2.
pub async fn run(config: &Config, action: CertsAction) -> anyhow::Result<i32> {
    // Importing may create the store (keys before the first start); reading needs one.
    let creates = matches!(
        action,
        CertsAction::Import { .. } | CertsAction::TrustCa { .. }
    );
    let target = Target::open(config, !creates).await?;
    match action {
        CertsAction::Import {
            file,
            password_file,
            domain,
            json,
        } => {
            let password = password_file.as_deref().map(read_password).transpose()?;
            let u = upload(&file, password, domain)?;
            let report = call!(target, cert_import(&u)).map_err(explain)?;
            print_stored(&report, json)?;
            Ok(0)
        }
        CertsAction::List { domain, json } => {
            let list = call!(target, certs_list(domain.as_deref())).map_err(explain)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                print_list(&list, domain.as_deref());
            }
            Ok(0)
        }
        CertsAction::Show { fingerprint, json } => {
            let cert = call!(target, cert_show(&fingerprint)).map_err(explain)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&cert)?);
            } else {
                print_cert(&cert);
            }
            Ok(0)
        }
        CertsAction::ImportCrl { file, json } => {
            let u = upload(&file, None, None)?;
            let stored = call!(target, cert_import_crls(&u)).map_err(explain)?;
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
            let pem = call!(target, cert_export(&fingerprint)).map_err(explain)?;
            print!("{}", pem.pem);
            Ok(0)
        }
        CertsAction::Delete { fingerprint } => {
            let r = call!(target, cert_delete(&fingerprint)).map_err(explain)?;
            println!(
                "deleted {} {}{}",
                r.fingerprint,
                r.subject,
                if r.had_private_key {
                    " and its private key (mail encrypted to it can no longer be decrypted here)"
                } else {
                    ""
                }
            );
            Ok(0)
        }
        CertsAction::TrustCa { file, json } => {
            let u = upload(&file, None, None)?;
            let report = call!(target, cert_trust_ca(&u)).map_err(explain)?;
            for w in &report.warnings {
                eprintln!("note: {w}");
            }
            let quiet = ImportReport {
                warnings: Vec::new(),
                ..report
            };
            print_stored(&quiet, json)?;
            Ok(0)
        }
    }
}
