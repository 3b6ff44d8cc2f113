//! `portcullis eval`: the whole inbound pipeline, offline, on directories of ham and spam —
//! every stage that needs no network (with this config: S/MIME, lists, header sanity,
//! content, Bayes, rules, …; authentication from recorded results with `--auth-results`),
//! in dry-run mode (nothing learned, harvested or stored). The final score
//! decides. Prints recall, false-positive rate per directory, ROC AUC, recall at fixed
//! false-positive rates, the verdicts per class and messages/s; `--roc FILE.svg` draws the
//! ROC curve of the whole pipeline and of each scoring stage alone.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use filters::{Direction, Envelope};
use linfa::dataset::Pr;
use serde::Serialize;

use crate::bayes::corpus::{self, thread_cpu_secs};
use crate::config::Config;
use crate::gateway::{Loaded, Purpose};
use crate::metrics::Metrics;
use crate::pipeline::RunMode;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Directories of ham (one message per file).
    #[arg(long, num_args = 1..)]
    ham: Vec<PathBuf>,
    /// Directories of spam.
    #[arg(long, num_args = 1..)]
    spam: Vec<PathBuf>,
    /// Score from which a message counts as flagged (default: verdict.tag_score).
    #[arg(long)]
    threshold: Option<f64>,
    /// Draw the ROC curves into this SVG file.
    #[arg(long)]
    roc: Option<PathBuf>,
    /// Read SPF, DKIM, ARC and DMARC from the `Authentication-Results` field this
    /// authserv-id recorded in each message (mail exported from a server that checked it).
    /// Without it the auth stage is off: live DNS answers say nothing about old mail.
    #[arg(long, value_name = "AUTHSERV_ID")]
    auth_results: Option<String>,
    /// Also write one line per message to this file (tab-separated: directory, index in
    /// the directory sorted by file name, class, score, then `SYMBOL=points` of every
    /// symbol): the input for choosing symbol points offline.
    #[arg(long)]
    messages: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct DirEval {
    pub dir: String,
    pub class: &'static str,
    pub messages: usize,
    pub flagged: usize,
    /// Spam recall for a spam directory, false-positive rate for a ham one.
    pub rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecallAt {
    pub fpr: f64,
    pub recall: f64,
    /// The score that keeps ham at this rate.
    pub threshold: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageAuc {
    pub stage: String,
    pub auc: f64,
}

/// How often a symbol fired on ham and on spam.
#[derive(Debug, Clone, Serialize)]
pub struct SymbolRate {
    pub symbol: String,
    pub ham: usize,
    pub spam: usize,
    pub ham_rate: f64,
    pub spam_rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub threshold: f64,
    pub messages: usize,
    pub spam_recall: f64,
    pub ham_fpr: f64,
    pub auc: f64,
    pub recall_at: Vec<RecallAt>,
    /// Verdicts per class: class → action → messages.
    pub verdicts: BTreeMap<String, BTreeMap<String, usize>>,
    pub stages: Vec<StageAuc>,
    /// Every symbol that fired, with its hit rate per class.
    pub symbols: Vec<SymbolRate>,
    pub msgs_per_sec: f64,
    pub cpu_ms_per_msg: Option<f64>,
    pub dirs: Vec<DirEval>,
}

/// One scored message: the whole score, each stage's points, the verdict.
struct Scored {
    spam: bool,
    score: f64,
    stages: BTreeMap<String, f64>,
    /// (symbol, points), as reported.
    symbols: Vec<(&'static str, f64)>,
}

/// Each symbol's hits on ham and on spam, most telling (largest rate difference) first.
fn symbol_rates(scored: &[Scored]) -> Vec<SymbolRate> {
    let mut hits: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for m in scored {
        let mut seen: Vec<&str> = m.symbols.iter().map(|(n, _)| *n).collect();
        seen.sort_unstable();
        seen.dedup();
        for name in seen {
            let e = hits.entry(name).or_default();
            if m.spam {
                e.1 += 1;
            } else {
                e.0 += 1;
            }
        }
    }
    let ham_n = scored.iter().filter(|m| !m.spam).count().max(1) as f64;
    let spam_n = scored.iter().filter(|m| m.spam).count().max(1) as f64;
    let mut rates: Vec<SymbolRate> = hits
        .into_iter()
        .map(|(name, (ham, spam))| SymbolRate {
            symbol: name.to_string(),
            ham,
            spam,
            ham_rate: ham as f64 / ham_n,
            spam_rate: spam as f64 / spam_n,
        })
        .collect();
    rates.sort_by(|a, b| {
        (b.spam_rate - b.ham_rate)
            .abs()
            .total_cmp(&(a.spam_rate - a.ham_rate).abs())
    });
    rates
}

/// A monotone map of a score into (0, 1): ROC and AUC depend only on the order.
fn as_pr(score: f64) -> Pr {
    Pr::new((1.0 / (1.0 + (-score / 4.0).exp())) as f32)
}

fn auc_of(scores: &[f64], truth: &[bool]) -> f64 {
    let probs: Vec<Pr> = scores.iter().map(|s| as_pr(*s)).collect();
    corpus::auc(&probs, truth)
}

/// The envelope sender a message's header names: Return-Path, else From.
fn sender_of(raw: &[u8]) -> String {
    let Some(m) = mail_parser::MessageParser::default().parse_headers(raw) else {
        return String::new();
    };
    let from_header = |name: &str| {
        m.header(name)
            .and_then(|h| h.as_address())
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .map(str::to_string)
    };
    from_header("Return-Path")
        .or_else(|| m.return_address().map(str::to_string))
        .or_else(|| from_header("From"))
        .unwrap_or_default()
}

/// Recall at the threshold that keeps ham at `fpr`: flagged means above the ham score at
/// that quantile.
fn recall_at(ham: &[f64], spam: &[f64], fpr: f64) -> RecallAt {
    let (recall, threshold) = corpus::recall_at_fpr(ham, spam, fpr);
    RecallAt {
        fpr,
        recall,
        threshold,
    }
}

/// The ROC points (FPR, TPR) of scores, highest threshold first.
fn roc_points(scores: &[f64], truth: &[bool]) -> Vec<(f64, f64)> {
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(truth.iter().copied()).collect();
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
    let pos = truth.iter().filter(|t| **t).count().max(1) as f64;
    let neg = truth.iter().filter(|t| !**t).count().max(1) as f64;
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut out = vec![(0.0, 0.0)];
    let mut i = 0;
    while i < pairs.len() {
        let s = pairs[i].0;
        while i < pairs.len() && pairs[i].0 == s {
            if pairs[i].1 {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            i += 1;
        }
        out.push((fp / neg, tp / pos));
    }
    out
}

/// A named ROC curve with its area: (name, AUC, (FPR, TPR) points).
type Curve = (String, f64, Vec<(f64, f64)>);

/// The ROC curves as an SVG picture: the whole pipeline thick, each stage thin.
fn svg(curves: &[Curve]) -> String {
    const COLOURS: [&str; 8] = [
        "#000000", "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf",
    ];
    let (w, h, pad) = (640.0, 520.0, 60.0);
    let (pw, ph) = (w - 2.0 * pad, h - 2.0 * pad - 60.0);
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\
         <text x=\"{pad}\" y=\"24\" font-size=\"15\">ROC: the whole pipeline and each scoring stage alone</text>\
         <rect x=\"{pad}\" y=\"{pad}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#888\"/>"
    );
    for i in 0..=10 {
        let f = i as f64 / 10.0;
        let x = pad + f * pw;
        let y = pad + ph - f * ph;
        let _ = write!(
            s,
            "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\">{f:.1}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">{f:.1}</text>",
            pad + ph + 16.0,
            pad - 6.0,
            y + 4.0
        );
    }
    let _ = write!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">ham false-positive rate</text>\
         <text x=\"16\" y=\"{}\" transform=\"rotate(-90 16 {})\" text-anchor=\"middle\">spam recall</text>",
        pad + pw / 2.0,
        pad + ph + 34.0,
        pad + ph / 2.0,
        pad + ph / 2.0
    );
    for (i, (name, auc, points)) in curves.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let width = if i == 0 { 2.5 } else { 1.2 };
        let path: Vec<String> = points
            .iter()
            .map(|(fx, ty)| format!("{:.1},{:.1}", pad + fx * pw, pad + ph - ty * ph))
            .collect();
        let _ = write!(
            s,
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"{width}\" points=\"{}\"/>",
            path.join(" ")
        );
        let ly = pad + ph + 52.0 + (i / 2) as f64 * 16.0;
        let lx = pad + (i % 2) as f64 * pw / 2.0;
        let _ = write!(
            s,
            "<line x1=\"{lx}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"{colour}\" stroke-width=\"{width}\"/>\
             <text x=\"{}\" y=\"{ly}\">{} (AUC {auc:.4})</text>",
            ly - 4.0,
            lx + 24.0,
            ly - 4.0,
            lx + 30.0,
            name.replace('&', "&amp;").replace('<', "&lt;")
        );
    }
    s.push_str("</svg>\n");
    s
}

pub async fn run(config: &Config, args: EvalArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(
        !args.ham.is_empty() && !args.spam.is_empty(),
        "give --ham DIR... and --spam DIR..."
    );
    // The network checks are off: a corpus is old mail, and today's DNS says nothing about
    // it. Recorded results stand in for them when asked for.
    let mut config = config.clone();
    config.auth.enabled = false;
    let config = &config;
    let db = crate::store::Database::open_data_dir(&config.data_dir).await?;
    let metrics = Metrics::new();
    let loaded = Loaded::open(config, &db, Purpose::Explain, metrics.clone()).await?;
    let mut resources = loaded.resources(config)?;
    resources.recorded_auth = args.auth_results.clone();
    let pipeline = crate::pipeline::Pipeline::from_config(config, &resources, metrics);
    let threshold = args.threshold.unwrap_or(config.verdict.tag_score);
    let rcpt = format!(
        "user@{}",
        config
            .local_domains
            .first()
            .map(String::as_str)
            .unwrap_or("example.test")
    );
    let client_ip: IpAddr = "192.0.2.1".parse().unwrap();
    let mut sets = Vec::new();
    for (dirs, spam) in [(&args.ham, false), (&args.spam, true)] {
        for d in dirs {
            sets.push((d.display().to_string(), spam, corpus::read_dir(d)?));
        }
    }
    let total: usize = sets.iter().map(|s| s.2.len()).sum();
    let mut scored: Vec<Scored> = Vec::with_capacity(total);
    let mut dirs = Vec::new();
    let mut verdicts: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    let cpu0 = thread_cpu_secs();
    let started = Instant::now();
    for (name, spam, messages) in &sets {
        let mut flagged = 0;
        for raw in messages {
            let raw = crate::smime::mime::to_crlf(raw);
            let envelope = Envelope {
                direction: Direction::Inbound,
                client_ip,
                helo: "client.example".into(),
                mail_from: sender_of(&raw),
                smtputf8: false,
                rcpt_to: vec![rcpt.clone()],
                body_8bit: false,
                tls: None,
            };
            let outcome = pipeline.run_with(&envelope, &raw, RunMode::DryRun).await;
            let score = outcome.card.score();
            if score >= threshold {
                flagged += 1;
            }
            let class = if *spam { "spam" } else { "ham" };
            *verdicts
                .entry(class.into())
                .or_default()
                .entry(outcome.action.as_str().into())
                .or_default() += 1;
            let mut stages = BTreeMap::new();
            for s in super::explain::stages(&outcome) {
                *stages.entry(s.stage).or_insert(0.0) += s.points;
            }
            scored.push(Scored {
                spam: *spam,
                score,
                stages,
                symbols: outcome
                    .card
                    .symbols
                    .iter()
                    .map(|s| (s.name, s.points))
                    .collect(),
            });
        }
        dirs.push(DirEval {
            dir: name.clone(),
            class: if *spam { "spam" } else { "ham" },
            messages: messages.len(),
            flagged,
            rate: if messages.is_empty() {
                0.0
            } else {
                flagged as f64 / messages.len() as f64
            },
        });
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = match (cpu0, thread_cpu_secs()) {
        (Some(a), Some(b)) if total > 0 => Some((b - a) * 1000.0 / total as f64),
        _ => None,
    };
    let truth: Vec<bool> = scored.iter().map(|s| s.spam).collect();
    let scores: Vec<f64> = scored.iter().map(|s| s.score).collect();
    let ham: Vec<f64> = scored.iter().filter(|s| !s.spam).map(|s| s.score).collect();
    let spam: Vec<f64> = scored.iter().filter(|s| s.spam).map(|s| s.score).collect();
    let stage_names: Vec<String> = {
        let mut names: Vec<String> = scored
            .iter()
            .flat_map(|s| {
                s.stages
                    .iter()
                    .filter(|(_, p)| **p != 0.0)
                    .map(|(n, _)| n.clone())
            })
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let stage_scores = |name: &str| -> Vec<f64> {
        scored
            .iter()
            .map(|s| s.stages.get(name).copied().unwrap_or(0.0))
            .collect()
    };
    let stages: Vec<StageAuc> = stage_names
        .iter()
        .map(|n| StageAuc {
            stage: n.clone(),
            auc: auc_of(&stage_scores(n), &truth),
        })
        .collect();
    let symbols = symbol_rates(&scored);
    if let Some(path) = &args.messages {
        let mut out = String::new();
        let mut at = 0;
        for (dir, spam, messages) in &sets {
            for i in 0..messages.len() {
                let m = &scored[at + i];
                let class = if *spam { "spam" } else { "ham" };
                let _ = write!(out, "{dir}\t{i}\t{class}\t{}", m.score);
                for (name, points) in &m.symbols {
                    let _ = write!(out, "\t{name}={points}");
                }
                out.push('\n');
            }
            at += messages.len();
        }
        std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))?;
    }
    let count = |spam_class: bool| {
        dirs.iter()
            .filter(|d| (d.class == "spam") == spam_class)
            .fold((0, 0), |(f, n), d| (f + d.flagged, n + d.messages))
    };
    let ((sf, sn), (hf, hn)) = (count(true), count(false));
    let report = EvalReport {
        threshold,
        messages: total,
        spam_recall: sf as f64 / sn.max(1) as f64,
        ham_fpr: hf as f64 / hn.max(1) as f64,
        auc: auc_of(&scores, &truth),
        recall_at: [0.001, 0.005, 0.01, 0.02]
            .iter()
            .map(|f| recall_at(&ham, &spam, *f))
            .collect(),
        verdicts,
        stages,
        symbols,
        msgs_per_sec: if secs > 0.0 { total as f64 / secs } else { 0.0 },
        cpu_ms_per_msg: cpu,
        dirs,
    };
    if let Some(path) = &args.roc {
        let mut curves = vec![(
            "whole pipeline".to_string(),
            report.auc,
            roc_points(&scores, &truth),
        )];
        for s in &report.stages {
            curves.push((
                s.stage.clone(),
                s.auc,
                roc_points(&stage_scores(&s.stage), &truth),
            ));
        }
        std::fs::write(path, svg(&curves))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(0)
}

fn print(r: &EvalReport) {
    println!(
        "whole pipeline, flagged from score {:.2}, {} messages",
        r.threshold, r.messages
    );
    for d in &r.dirs {
        corpus::print_dir_line(&d.dir, d.class, d.messages, d.rate, d.flagged);
    }
    println!("spam recall  {:.2}%", r.spam_recall * 100.0);
    println!("ham FPR      {:.2}%", r.ham_fpr * 100.0);
    println!("ROC AUC      {:.4}", r.auc);
    for a in &r.recall_at {
        println!(
            "recall at {:>4.1}% ham FPR: {:>6.2}% (score above {:.2})",
            a.fpr * 100.0,
            a.recall * 100.0,
            a.threshold
        );
    }
    for (class, actions) in &r.verdicts {
        let parts: Vec<String> = actions.iter().map(|(a, n)| format!("{a} {n}")).collect();
        println!("verdicts {class:<5} {}", parts.join(", "));
    }
    for s in &r.stages {
        println!("stage {:<20} alone: ROC AUC {:.4}", s.stage, s.auc);
    }
    println!("symbol                          ham hits          spam hits");
    for s in &r.symbols {
        println!(
            "  {:<28} {:>6} {:>7.2}%   {:>6} {:>7.2}%",
            s.symbol,
            s.ham,
            s.ham_rate * 100.0,
            s.spam,
            s.spam_rate * 100.0
        );
    }
    match r.cpu_ms_per_msg {
        Some(c) if c > 0.0 => println!(
            "speed        {:.0} msgs/s (one thread), {:.3} ms CPU per message ({:.0} msgs/s per core)",
            r.msgs_per_sec,
            c,
            1000.0 / c
        ),
        _ => println!("speed        {:.0} msgs/s (one thread)", r.msgs_per_sec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recall_at_a_false_positive_rate_and_roc_points() {
        let ham = [0.0, 1.0, 2.0, 3.0, 10.0];
        let spam = [4.0, 9.0, 11.0, 20.0];
        // No ham allowed over: above the highest ham score (10).
        let r = recall_at(&ham, &spam, 0.0);
        assert_eq!((r.threshold, r.recall), (10.0, 0.5));
        // One ham in five (20 %) allowed: above 3.
        let r = recall_at(&ham, &spam, 0.2);
        assert_eq!((r.threshold, r.recall), (3.0, 1.0));
        let truth = [false, false, true, true];
        let points = roc_points(&[0.0, 1.0, 2.0, 3.0], &truth);
        assert_eq!(
            points,
            [(0.0, 0.0), (0.0, 0.5), (0.0, 1.0), (0.5, 1.0), (1.0, 1.0)]
        );
        assert!((auc_of(&[0.0, 1.0, 2.0, 3.0], &truth) - 1.0).abs() < 1e-6);
        let picture = svg(&[("whole pipeline".into(), 1.0, points)]);
        assert!(picture.starts_with("<svg") && picture.contains("AUC 1.0000"));
    }

    #[test]
    fn symbol_hit_rates_count_a_message_once_and_put_the_telling_first() {
        let m = |spam: bool, symbols: &[&'static str]| Scored {
            spam,
            score: 0.0,
            stages: BTreeMap::new(),
            symbols: symbols.iter().map(|s| (*s, 1.0)).collect(),
        };
        let rates = symbol_rates(&[
            m(false, &["TLS_NONE", "A"]),
            m(false, &["TLS_NONE"]),
            m(true, &["TLS_NONE", "B", "B"]),
            m(true, &["TLS_NONE", "B", "A"]),
        ]);
        let names: Vec<&str> = rates.iter().map(|r| r.symbol.as_str()).collect();
        // B: 0 % ham, 100 % spam; A: 50 / 50; TLS_NONE: 100 / 100.
        assert_eq!(names[0], "B");
        let b = &rates[0];
        assert_eq!((b.ham, b.spam, b.spam_rate), (0, 2, 1.0));
        let a = rates.iter().find(|r| r.symbol == "A").unwrap();
        assert_eq!((a.ham, a.spam, a.ham_rate, a.spam_rate), (1, 1, 0.5, 0.5));
    }

    #[test]
    fn the_sender_comes_from_return_path_then_from() {
        assert_eq!(
            sender_of(b"Return-Path: <bounce@list.test>\r\nFrom: a@b.test\r\n\r\nx"),
            "bounce@list.test"
        );
        assert_eq!(sender_of(b"From: Ann <ann@b.test>\r\n\r\nx"), "ann@b.test");
        assert_eq!(sender_of(b"\r\n"), "");
    }
}
