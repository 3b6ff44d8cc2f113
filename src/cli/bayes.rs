//! `portcullis bayes train|learn|eval|cv|status`: the Bayesian filter's model in the
//! `data_dir` database. Works while the gateway runs: it reloads a changed model within
//! `bayes.reload_secs`.

use std::path::PathBuf;
use std::time::Instant;

use clap::{Args, Subcommand};
use filters::bayes::model::{Class, Params};
use filters::bayes::tokenizer;

use crate::bayes::{self, Learned, corpus};
use crate::config::Config;

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct OneMessage {
    /// Learn this message file as ham.
    #[arg(long)]
    ham: Option<PathBuf>,
    /// Learn this message file as spam.
    #[arg(long)]
    spam: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum BayesAction {
    /// Learn every message (one per file) of the ham and spam directories.
    Train {
        #[arg(long, required = true, num_args = 1..)]
        ham: Vec<PathBuf>,
        #[arg(long, required = true, num_args = 1..)]
        spam: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Learn one message as ham or spam (moves it if it was learned as the other class).
    Learn {
        #[command(flatten)]
        which: OneMessage,
    },
    /// Score directories with the stored model: spam recall, ham false-positive rate per
    /// directory and overall, ROC AUC, messages/s.
    Eval {
        #[arg(long, num_args = 1..)]
        ham: Vec<PathBuf>,
        #[arg(long, num_args = 1..)]
        spam: Vec<PathBuf>,
        /// Spam threshold (default: bayes.spam_threshold of the config).
        #[arg(long)]
        threshold: Option<f64>,
        /// Scoring (default: bayes.scoring of the config).
        #[arg(long)]
        scoring: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// k-fold cross-validation inside a training set (nothing stored): the place to tune.
    Cv {
        #[arg(long, required = true, num_args = 1..)]
        ham: Vec<PathBuf>,
        #[arg(long, required = true, num_args = 1..)]
        spam: Vec<PathBuf>,
        #[arg(long, default_value_t = 10)]
        folds: usize,
        /// Keep each source (List-Id, else From domain) in one fold: validation on unseen
        /// senders and lists.
        #[arg(long)]
        grouped: bool,
        /// Which assignment of sources to folds (grouped only).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Parameter overrides for every variant, e.g. `--param robinson_s=0.3`.
        #[arg(long = "param")]
        params: Vec<String>,
        /// Also write every message's out-of-fold probabilities to this file (tab-separated:
        /// index, class, source group, fold (grouped; else 0), one column per scoring;
        /// messages in the order read, each directory sorted by file name).
        #[arg(long)]
        scores: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Counts of the stored model.
    Status {
        #[arg(long)]
        json: bool,
    },
}

fn load_dirs(dirs: &[PathBuf], class: Class) -> anyhow::Result<corpus::MessageSets> {
    dirs.iter()
        .map(|d| Ok((d.display().to_string(), class, corpus::read_dir(d)?)))
        .collect()
}

fn tokenize_all(sets: &corpus::MessageSets) -> Vec<(Vec<u64>, Class)> {
    // Two threads at most: tokenizing is the CPU part of training.
    let all: Vec<(&Vec<u8>, Class)> = sets
        .iter()
        .flat_map(|(_, c, msgs)| msgs.iter().map(move |m| (m, *c)))
        .collect();
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 4);
    let chunk = all.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = all
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(raw, c)| (tokenizer::tokenize(raw, None), *c))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("tokenizer thread"))
            .collect()
    })
}

fn apply_param(p: &mut Params, kv: &str) -> anyhow::Result<()> {
    let (k, v) = kv
        .split_once('=')
        .ok_or_else(|| anyhow::anyhow!("--param {kv:?}: expected key=value"))?;
    let f = || -> anyhow::Result<f64> {
        v.parse()
            .map_err(|_| anyhow::anyhow!("--param {k}: {v:?} is not a number"))
    };
    match k {
        "scoring" => p.scoring = v.parse().map_err(|e: String| anyhow::anyhow!(e))?,
        "robinson_s" => p.robinson_s = f()?,
        "robinson_x" => p.robinson_x = f()?,
        "min_dev" => p.min_dev = f()?,
        "max_clues" => p.max_clues = f()? as usize,
        "alpha" => p.alpha = f()?,
        "mnb_scale" => p.mnb_scale = f()?,
        _ => anyhow::bail!(
            "--param {k}: unknown (scoring, robinson_s, robinson_x, min_dev, max_clues, alpha, mnb_scale)"
        ),
    }
    Ok(())
}

pub async fn run(config: &Config, action: BayesAction) -> anyhow::Result<i32> {
    let settings = config.bayes.settings();
    match action {
        BayesAction::Train { ham, spam, json } => {
            let started = Instant::now();
            let mut sets = load_dirs(&ham, Class::Ham)?;
            sets.extend(load_dirs(&spam, Class::Spam)?);
            let messages = tokenize_all(&sets);
            let store = bayes::open(&config.data_dir).await?;
            let out = bayes::learn_batch(&store, None, &messages, bayes::Weight::Once).await?;
            let secs = started.elapsed().as_secs_f64();
            let count = |c: Class| {
                messages
                    .iter()
                    .zip(&out)
                    .filter(|((_, k), o)| *k == c && **o != Learned::AlreadyKnown)
                    .count()
            };
            let known = out.iter().filter(|o| **o == Learned::AlreadyKnown).count();
            let (h, s, _) = store.meta().await?;
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "learned_ham": count(Class::Ham), "learned_spam": count(Class::Spam),
                        "already_known": known, "seconds": secs,
                        "model_ham": h, "model_spam": s,
                    })
                );
            } else {
                println!(
                    "learned {} ham and {} spam ({known} already known) in {secs:.2} s; the model has {h} ham, {s} spam",
                    count(Class::Ham),
                    count(Class::Spam)
                );
            }
            Ok(0)
        }
        BayesAction::Learn { which } => {
            let (path, class) = match (which.ham, which.spam) {
                (Some(p), _) => (p, Class::Ham),
                (_, Some(p)) => (p, Class::Spam),
                _ => anyhow::bail!("give --ham FILE or --spam FILE"),
            };
            let raw = std::fs::read(&path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            let store = bayes::open(&config.data_dir).await?;
            let weight = bayes::Weight::Operator(config.bayes.feedback_weight);
            let o = bayes::learn(&store, None, &raw, class, weight).await?;
            let (h, s, _) = store.meta().await?;
            println!(
                "{}: {} as {}; the model has {h} ham, {s} spam",
                path.display(),
                o.as_str(),
                class.as_str()
            );
            Ok(0)
        }
        BayesAction::Eval {
            ham,
            spam,
            threshold,
            scoring,
            json,
        } => {
            anyhow::ensure!(
                !ham.is_empty() || !spam.is_empty(),
                "give --ham DIR... and/or --spam DIR..."
            );
            let mut params = settings.params;
            if let Some(s) = scoring {
                params.scoring = s.parse().map_err(|e: String| anyhow::anyhow!(e))?;
            }
            let mut sets = load_dirs(&ham, Class::Ham)?;
            sets.extend(load_dirs(&spam, Class::Spam)?);
            let store = bayes::open(&config.data_dir).await?;
            let model = store.load().await?;
            if !model.ready(settings.min_ham, settings.min_spam) {
                eprintln!(
                    "note: the model has {} ham and {} spam; the gateway gives no opinion below {} / {}",
                    model.ham_msgs, model.spam_msgs, settings.min_ham, settings.min_spam
                );
            }
            let threshold = threshold.unwrap_or(settings.spam_threshold);
            let report = corpus::evaluate(&model, &params, threshold, &sets);
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                corpus::print_eval(&report);
            }
            Ok(0)
        }
        BayesAction::Cv {
            ham,
            spam,
            folds,
            grouped,
            seed,
            params,
            scores,
            json,
        } => {
            let mut sets = load_dirs(&ham, Class::Ham)?;
            sets.extend(load_dirs(&spam, Class::Spam)?);
            let messages = tokenize_all(&sets);
            let mut base = settings.params;
            for kv in &params {
                apply_param(&mut base, kv)?;
            }
            let variants: Vec<Params> = [
                filters::bayes::Scoring::ChiSquare,
                filters::bayes::Scoring::Multinomial,
                filters::bayes::Scoring::Combined,
            ]
            .iter()
            .map(|s| Params {
                scoring: *s,
                ..base
            })
            .collect();
            let started = Instant::now();
            let groups: Vec<String> = sets
                .iter()
                .flat_map(|(_, _, msgs)| msgs.iter().map(|m| corpus::source_group(m)))
                .collect();
            let probs = if grouped {
                corpus::cross_validate_grouped(&messages, &groups, folds, seed, &variants)?
            } else {
                corpus::cross_validate(&messages, folds, &variants)?
            };
            let group_folds = grouped.then(|| corpus::group_folds(&groups, folds, seed));
            if let Some(path) = &scores {
                let fold_of = group_folds.clone().unwrap_or_else(|| vec![0; groups.len()]);
                let mut out = String::from("index\tclass\tgroup\tfold");
                for v in &variants {
                    out.push('\t');
                    out.push_str(v.scoring.as_str());
                }
                out.push('\n');
                for (i, ((_, class), group)) in messages.iter().zip(&groups).enumerate() {
                    out.push_str(&format!("{i}\t{}\t{group}\t{}", class.as_str(), fold_of[i]));
                    for p in &probs {
                        out.push_str(&format!("\t{}", p[i]));
                    }
                    out.push('\n');
                }
                std::fs::write(path, out)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
            }
            let thresholds = [
                0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999,
            ];
            let reports: Vec<_> = variants
                .iter()
                .zip(&probs)
                .map(|(v, p)| {
                    corpus::cv_report(
                        v.scoring.as_str().into(),
                        p,
                        &messages,
                        group_folds.as_deref(),
                        &thresholds,
                    )
                })
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                println!(
                    "{folds}-fold {}cross-validation of {} messages ({:.1} s), params {:?}",
                    if grouped {
                        format!("grouped (seed {seed}) ")
                    } else {
                        String::new()
                    },
                    messages.len(),
                    started.elapsed().as_secs_f64(),
                    base
                );
                for r in &reports {
                    println!(
                        "{:<12} AUC {:.4}, spam recall at 1% ham FPR {:.2}%",
                        r.variant,
                        r.auc,
                        r.recall_at_1pct_fpr * 100.0
                    );
                    for p in &r.points {
                        let worst = p
                            .worst_fold_ham_fpr
                            .map(|w| format!("  worst fold {:>5.2}%", w * 100.0))
                            .unwrap_or_default();
                        println!(
                            "    threshold {:<6} spam recall {:>6.2}%  ham FPR {:>5.2}%{worst}",
                            p.threshold,
                            p.spam_recall * 100.0,
                            p.ham_fpr * 100.0
                        );
                    }
                }
            }
            Ok(0)
        }
        BayesAction::Status { json } => {
            let store = bayes::open(&config.data_dir).await?;
            let (h, s, v) = store.meta().await?;
            let tokens = store.load().await?.len();
            let ready = h as u64 >= settings.min_ham && s as u64 >= settings.min_spam;
            if json {
                println!(
                    "{}",
                    serde_json::json!({"ham": h, "spam": s, "tokens": tokens, "version": v, "ready": ready})
                );
            } else {
                println!(
                    "{h} ham, {s} spam, {tokens} tokens, version {v}; {}",
                    if ready {
                        "giving opinions"
                    } else {
                        "no opinion until min_ham / min_spam are reached"
                    }
                );
            }
            Ok(0)
        }
    }
}
