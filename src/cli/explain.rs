//! `portcullis explain`: a stored message through the real pipeline, with the gateway's
//! resources and config, and nothing kept: every step's symbols, the verdict, and the reply
//! the client would get.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};
use filters::{Direction, Envelope, Symbol, TlsFacts};
use serde::Serialize;

use crate::config::Config;
use crate::gateway::{Loaded, Purpose};
use crate::metrics::Metrics;
use crate::pipeline::{Outcome, RunMode};
use crate::rules::EnvelopeFacts;
use crate::smtp::address::classify_recipient;
use crate::smtp::reply;

#[derive(Args, Debug)]
pub struct ExplainArgs {
    /// The message file (RFC 5322; LF line ends are read as CRLF, as the session does).
    pub message: PathBuf,
    /// Envelope sender (MAIL FROM); "" for the null sender.
    #[arg(long)]
    pub from: String,
    /// Envelope recipient (RCPT TO); repeat for several.
    #[arg(long = "to", required = true)]
    pub to: Vec<String>,
    /// The client's address. Default: 192.0.2.1 inbound, an internal address outbound.
    #[arg(long)]
    pub client_ip: Option<IpAddr>,
    /// The client's EHLO name.
    #[arg(long, default_value = "client.example")]
    pub helo: String,
    /// TLS of the session: none, any (STARTTLS without a client certificate),
    /// verified_cert (a client certificate whose chain verified, naming the HELO name).
    #[arg(long, value_enum, default_value = "none")]
    pub tls: TlsArg,
    /// Default: from --client-ip and `internal_networks`, as the gateway decides; inbound
    /// without --client-ip.
    #[arg(long, value_enum)]
    pub direction: Option<DirectionArg>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
#[value(rename_all = "snake_case")]
pub enum TlsArg {
    None,
    Any,
    VerifiedCert,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
#[value(rename_all = "lowercase")]
pub enum DirectionArg {
    Inbound,
    Outbound,
}

/// What `explain` reports; `--json` prints it as is.
#[derive(Serialize, Debug)]
pub struct Report {
    pub message: String,
    pub size: usize,
    pub envelope: EnvelopeReport,
    /// Recipients refused at RCPT TO (relay control, a rule): they never reach the
    /// pipeline.
    pub refused_recipients: Vec<RecipientRefusal>,
    /// Every step in order, with the symbols it reported.
    pub stages: Vec<StageReport>,
    /// All symbols, in the order they were reported.
    pub symbols: Vec<SymbolReport>,
    pub score: f64,
    /// accept, tag, quarantine, reject, tempfail.
    pub action: String,
    /// What decided: `score 5.00`, `forced by CLAM_VIRUS`, `stage clamav failed: ...`.
    pub reason: String,
    /// The reply to the end of DATA.
    pub reply: ReplyReport,
    /// The rules that matched (`[[rules]]`), why and what they did.
    pub rules: Vec<RuleReport>,
    /// What would be stored, copy by copy (recipients and treatment may differ).
    pub copies: Vec<CopyReport>,
}

#[derive(Serialize, Debug)]
pub struct EnvelopeReport {
    pub direction: String,
    pub client_ip: IpAddr,
    pub helo: String,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub tls: String,
}

#[derive(Serialize, Debug)]
pub struct RecipientRefusal {
    pub address: String,
    pub reply: ReplyReport,
    /// The rule that refused it, when a rule did.
    pub rule: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct RuleReport {
    pub rule: String,
    /// The conditions that held, with the values they held for.
    pub condition: String,
    pub actions: Vec<String>,
    pub recipients: Vec<String>,
    /// Decided at RCPT TO (envelope conditions only).
    pub at_rcpt: bool,
}

#[derive(Serialize, Debug)]
pub struct StageReport {
    pub stage: String,
    pub ms: f64,
    pub points: f64,
    pub symbols: Vec<SymbolReport>,
    pub error: Option<String>,
    pub skipped: Option<String>,
}

#[derive(Serialize, Debug, Clone)]
pub struct SymbolReport {
    pub name: String,
    pub points: f64,
    pub detail: String,
    /// The action this finding forces whatever the score, if any.
    pub forces: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct ReplyReport {
    pub code: u16,
    pub enhanced: String,
    pub text: String,
    /// The line as sent (without CRLF).
    pub line: String,
}

#[derive(Serialize, Debug)]
pub struct CopyReport {
    /// `None`: every recipient.
    pub recipients: Option<Vec<String>>,
    /// The body stored: `as received`, or `replaced` (decrypted, signed or encrypted).
    pub body: String,
    pub headers: Vec<String>,
    /// Held (quarantined) with this reason.
    pub hold: Option<String>,
    /// This copy's verdict and score when the recipients got different ones (rules);
    /// `None`: the message's.
    pub action: Option<String>,
    pub score: Option<f64>,
}

/// Run `explain`; the exit code.
pub async fn run(config: &Config, args: ExplainArgs) -> anyhow::Result<i32> {
    let raw = read_message(&args.message)?;
    let report = explain(config, &args, &raw).await?;
    let text = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        render(&report)
    };
    use std::io::Write;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        // A reader that stopped early (`| head`) is not an error.
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(0),
    }
}

/// The message as the session would hold it after DATA: every line ending CRLF, the last
/// line ended.
fn read_message(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("cannot read the message file {}", path.display()))?;
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 32 + 2);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\r' if bytes.get(i + 1) == Some(&b'\n') => {
                out.extend_from_slice(b"\r\n");
                i += 1;
            }
            b'\r' | b'\n' => out.extend_from_slice(b"\r\n"),
            b => out.push(b),
        }
        i += 1;
    }
    if !out.is_empty() && !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    Ok(out)
}

/// The pipeline the gateway would build for `config`, run on `raw` without side effects.
pub async fn explain(config: &Config, args: &ExplainArgs, raw: &[u8]) -> anyhow::Result<Report> {
    let db = crate::store::Database::open_data_dir(&config.data_dir).await?;
    let loaded = Loaded::open(config, &db, Purpose::Explain, Metrics::new()).await?;
    let pipeline = loaded.pipeline(config)?;

    let (direction, client_ip) = direction_and_client(config, args);
    let internal = direction == Direction::Outbound;
    let tls = tls_facts(args);
    let rcpt_facts = EnvelopeFacts::new(direction, client_ip, &args.helo, tls.as_ref(), &args.from);
    // RCPT TO, as the session decides it: relay control, then the rules on the envelope.
    let mut rcpt_to = Vec::new();
    let mut refused_recipients = Vec::new();
    for to in &args.to {
        let accepted = match classify_recipient(config, internal, to, &format!("<{to}>")) {
            Ok(accepted) => accepted.address,
            Err(refusal) => {
                let r = reply::for_recipient_refusal(refusal);
                refused_recipients.push(RecipientRefusal {
                    address: to.clone(),
                    reply: reply_report(r, r.text),
                    rule: None,
                });
                continue;
            }
        };
        let rules = pipeline.rules();
        let at_rcpt = (!rules.is_empty()).then(|| {
            rules.evaluate(
                &rcpt_facts,
                &crate::rules::pattern::Address::new(&accepted),
                None,
            )
        });
        if let Some((r, text, rule)) = at_rcpt.as_ref().and_then(reply::for_rule_at_rcpt) {
            refused_recipients.push(RecipientRefusal {
                address: to.clone(),
                reply: reply_report(r, &text),
                rule: Some(rule),
            });
            continue;
        }
        if !rcpt_to
            .iter()
            .any(|r: &String| r.eq_ignore_ascii_case(&accepted))
        {
            rcpt_to.push(accepted);
        }
    }
    let envelope = Envelope {
        direction,
        client_ip,
        helo: args.helo.clone(),
        mail_from: args.from.clone(),
        smtputf8: !args.from.is_ascii() || rcpt_to.iter().any(|r| !r.is_ascii()),
        rcpt_to,
        body_8bit: false,
        tls,
    };
    let envelope_report = EnvelopeReport {
        direction: direction.as_str().to_string(),
        client_ip,
        helo: args.helo.clone(),
        mail_from: args.from.clone(),
        rcpt_to: envelope.rcpt_to.clone(),
        tls: format!("{:?}", args.tls).to_ascii_lowercase(),
    };
    let message = args.message.display().to_string();
    if envelope.rcpt_to.is_empty() {
        // DATA without an accepted recipient.
        return Ok(Report {
            message,
            size: raw.len(),
            envelope: envelope_report,
            refused_recipients,
            stages: Vec::new(),
            symbols: Vec::new(),
            score: 0.0,
            action: "reject".into(),
            reason: "no recipient was accepted at RCPT TO".into(),
            reply: reply_report(reply::NEED_RCPT, reply::NEED_RCPT.text),
            rules: Vec::new(),
            copies: Vec::new(),
        });
    }

    let outcome = pipeline.run_with(&envelope, raw, RunMode::DryRun).await;
    Ok(Report {
        message,
        size: raw.len(),
        envelope: envelope_report,
        refused_recipients,
        stages: stages(&outcome),
        symbols: outcome.card.symbols.iter().map(symbol_report).collect(),
        score: outcome.card.score(),
        action: outcome.action.as_str().to_string(),
        reason: outcome.reason.clone(),
        reply: final_reply(&outcome),
        rules: outcome
            .rules
            .iter()
            .map(|m| RuleReport {
                rule: m.rule.clone(),
                condition: m.condition.clone(),
                actions: m.actions.clone(),
                recipients: m.recipients.clone(),
                at_rcpt: m.at_rcpt,
            })
            .collect(),
        copies: outcome
            .copies
            .iter()
            .map(|c| CopyReport {
                recipients: c.recipients.clone(),
                body: if c.body.is_some() {
                    "replaced"
                } else {
                    "as received"
                }
                .into(),
                headers: outcome
                    .headers
                    .iter()
                    .chain(&c.headers)
                    .map(|h| h.trim_end().to_string())
                    .collect(),
                hold: c.hold.clone(),
                action: c.action.map(|a| a.as_str().to_string()),
                score: c.score,
            })
            .collect(),
    })
}

/// The direction and client address, as the session would see them.
fn direction_and_client(config: &Config, args: &ExplainArgs) -> (Direction, IpAddr) {
    let internal_address = || {
        config
            .internal_networks
            .first()
            .and_then(|n| n.hosts().next())
            .unwrap_or(IpAddr::from([127, 0, 0, 1]))
    };
    let external_address = IpAddr::from([192, 0, 2, 1]);
    match (args.direction, args.client_ip) {
        (Some(DirectionArg::Inbound), ip) => (Direction::Inbound, ip.unwrap_or(external_address)),
        (Some(DirectionArg::Outbound), ip) => {
            (Direction::Outbound, ip.unwrap_or_else(internal_address))
        }
        (None, Some(ip)) if config.is_internal(ip) => (Direction::Outbound, ip),
        (None, Some(ip)) => (Direction::Inbound, ip),
        (None, None) => (Direction::Inbound, external_address),
    }
}

fn tls_facts(args: &ExplainArgs) -> Option<TlsFacts> {
    let verified = args.tls == TlsArg::VerifiedCert;
    (args.tls != TlsArg::None).then(|| TlsFacts {
        version: "TLSv1.3".into(),
        cipher: "TLS_AES_256_GCM_SHA384".into(),
        peer_cert_sha256: verified.then(|| "0".repeat(64)),
        peer_cert_verified: verified,
        peer_cert_names: if verified {
            vec![args.helo.to_ascii_lowercase()]
        } else {
            Vec::new()
        },
    })
}

pub(crate) fn stages(outcome: &Outcome) -> Vec<StageReport> {
    outcome
        .trace
        .iter()
        .map(|run| {
            let symbols: Vec<SymbolReport> =
                outcome.symbols_of(run).iter().map(symbol_report).collect();
            StageReport {
                stage: run.step.to_string(),
                ms: run.elapsed.as_secs_f64() * 1000.0,
                points: symbols.iter().map(|s| s.points).fold(0.0, |a, b| a + b),
                symbols,
                error: run.error.clone(),
                skipped: run.skipped.map(str::to_string),
            }
        })
        .collect()
}

fn symbol_report(s: &Symbol) -> SymbolReport {
    SymbolReport {
        name: s.name.to_string(),
        points: s.points,
        detail: s.detail.clone(),
        forces: s.forced_action.map(|a| a.as_str().to_string()),
    }
}

/// The reply to the end of DATA: the session's refusal for the outcome, or its 250 with a
/// placeholder queue id per stored copy.
fn final_reply(outcome: &Outcome) -> ReplyReport {
    match reply::for_outcome(outcome) {
        Some((r, text)) => reply_report(r, &text),
        None => {
            let ids: Vec<String> = (1..=outcome.copies.len())
                .map(|i| format!("<id{i}>"))
                .collect();
            let (r, text) = reply::queued(&ids);
            reply_report(r, &text)
        }
    }
}

fn reply_report(r: reply::Reply, text: &str) -> ReplyReport {
    let mut line = Vec::new();
    reply::write_reply(&mut line, r.code, r.enhanced, text);
    ReplyReport {
        code: r.code,
        enhanced: r.enhanced.to_string(),
        text: text.to_string(),
        line: String::from_utf8_lossy(&line).trim_end().to_string(),
    }
}

/// The report as text.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let e = &r.envelope;
    let _ = writeln!(o, "message    {} ({} bytes)", r.message, r.size);
    let _ = writeln!(
        o,
        "envelope   {} from <{}> to {}",
        e.direction,
        e.mail_from,
        e.rcpt_to
            .iter()
            .map(|t| format!("<{t}>"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(
        o,
        "client     {} helo {} tls {}",
        e.client_ip, e.helo, e.tls
    );
    for refused in &r.refused_recipients {
        let by = refused
            .rule
            .as_deref()
            .map(|rule| format!(" (rule {rule})"))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "refused    <{}> at RCPT TO: {}{by}",
            refused.address, refused.reply.line
        );
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "stages");
    for s in &r.stages {
        let status = match (&s.error, &s.skipped) {
            (Some(err), _) => format!("  FAILED: {err}"),
            (None, Some(why)) => format!("  skipped: {why}"),
            (None, None) if s.symbols.is_empty() => "  (no symbols)".into(),
            _ => String::new(),
        };
        let _ = writeln!(
            o,
            "  {:<20} {:>7.2} {:>8.1} ms{status}",
            s.stage, s.points, s.ms
        );
        for sym in &s.symbols {
            let forces = sym
                .forces
                .as_deref()
                .map(|a| format!(" [forces {a}]"))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "      {:<28} {:>7.2}  {}{forces}",
                sym.name, sym.points, sym.detail
            );
        }
    }
    if !r.rules.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "rules");
        for m in &r.rules {
            let at = if m.at_rcpt { " (at RCPT TO)" } else { "" };
            let _ = writeln!(o, "  {}{at}: {}", m.rule, m.actions.join(", "));
            let _ = writeln!(o, "      when {}", m.condition);
            let _ = writeln!(o, "      for {}", m.recipients.join(", "));
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(o, "score      {:.2}", r.score);
    let _ = writeln!(o, "verdict    {} ({})", r.action, r.reason);
    let _ = writeln!(o, "reply      {}", r.reply.line);
    for (i, c) in r.copies.iter().enumerate() {
        let to = match &c.recipients {
            None => "every recipient".to_string(),
            Some(list) => list.join(", "),
        };
        let held = c
            .hold
            .as_deref()
            .map(|h| format!(", held: {h}"))
            .unwrap_or_default();
        let verdict = match (&c.action, c.score) {
            (Some(a), Some(score)) => format!(", {a} (score {score:.2})"),
            _ => String::new(),
        };
        let _ = writeln!(o, "copy {}     {to}: body {}{verdict}{held}", i + 1, c.body);
        for h in &c.headers {
            let first = h.lines().next().unwrap_or_default();
            let _ = writeln!(o, "             + {first}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_files_get_crlf_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.eml");
        std::fs::write(&p, b"A: 1\nB: 2\r\n\rbody").unwrap();
        assert_eq!(read_message(&p).unwrap(), b"A: 1\r\nB: 2\r\n\r\nbody\r\n");
        let err = read_message(&dir.path().join("none.eml")).unwrap_err();
        assert!(format!("{err:#}").contains("cannot read the message file"));
    }
}
