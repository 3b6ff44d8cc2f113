//! Message directories for training and measuring the Bayesian filter: reading them,
//! evaluating a model (`bayes eval`) and cross-validating inside a training set
//! (`bayes cv`, the only place parameters are tuned).
//!
//! A directory holds one message per file (names starting with "." are skipped; symlinks
//! are followed). linfa does the dataset folding, the `Fit`/`Predict` plumbing (through
//! `filters::bayes::model`'s sparse [`TokenRecords`]) and the ROC AUC.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use filters::bayes::model::{BayesParams, Class, Classifier, Model, Params, TokenRecords};
use filters::bayes::tokenizer;
use linfa::dataset::{DatasetBase, Pr};
use linfa::metrics::BinaryClassification;
use linfa::traits::{Fit, Predict};
use ndarray::{Array1, Array2};
use serde::Serialize;

/// Named message sets: (directory, class, raw messages).
pub type MessageSets = Vec<(String, Class, Vec<Vec<u8>>)>;

/// The raw messages of a directory, in file-name order.
pub fn read_dir(dir: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read message directory {}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| std::fs::read(p).with_context(|| format!("cannot read {}", p.display())))
        .collect()
}

/// CPU seconds used by this thread so far (Linux: /proc/thread-self/stat, USER_HZ = 100).
pub fn thread_cpu_secs() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    let after = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[derive(Debug, Clone, Serialize)]
pub struct DirResult {
    pub dir: String,
    pub class: &'static str,
    pub messages: usize,
    /// Messages at or above the spam threshold.
    pub flagged_spam: usize,
    /// flagged/messages: spam recall for a spam directory, false-positive rate for ham.
    pub rate: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub scoring: &'static str,
    pub threshold: f64,
    pub messages: usize,
    pub spam_recall: f64,
    pub ham_fpr: f64,
    pub auc: f64,
    pub msgs_per_sec: f64,
    pub cpu_ms_per_msg: Option<f64>,
    pub dirs: Vec<DirResult>,
}

/// Score every message of every directory (tokenize + score, timed) with `model`.
pub fn evaluate(
    model: &Model,
    params: &Params,
    threshold: f64,
    sets: &[(String, Class, Vec<Vec<u8>>)],
) -> EvalReport {
    let mut probs = Vec::new();
    let mut truth = Vec::new();
    let mut dirs = Vec::new();
    let total: usize = sets.iter().map(|s| s.2.len()).sum();
    let cpu0 = thread_cpu_secs();
    let started = Instant::now();
    for (name, class, msgs) in sets {
        let mut flagged = 0;
        for raw in msgs {
            let p = model.score(&tokenizer::tokenize(raw, None), params);
            if p >= threshold {
                flagged += 1;
            }
            probs.push(Pr::new(p as f32));
            truth.push(*class == Class::Spam);
        }
        dirs.push(DirResult {
            dir: name.clone(),
            class: class.as_str(),
            messages: msgs.len(),
            flagged_spam: flagged,
            rate: ratio(flagged, msgs.len()),
        });
    }
    let secs = started.elapsed().as_secs_f64();
    let cpu = match (cpu0, thread_cpu_secs()) {
        (Some(a), Some(b)) if total > 0 => Some((b - a) * 1000.0 / total as f64),
        _ => None,
    };
    let sum = |c: &str| {
        dirs.iter()
            .filter(|d| d.class == c)
            .fold((0, 0), |(f, n), d| (f + d.flagged_spam, n + d.messages))
    };
    let (sf, sn) = sum("spam");
    let (hf, hn) = sum("ham");
    EvalReport {
        scoring: params.scoring.as_str(),
        threshold,
        messages: total,
        spam_recall: ratio(sf, sn),
        ham_fpr: ratio(hf, hn),
        auc: auc(&probs, &truth),
        msgs_per_sec: if secs > 0.0 { total as f64 / secs } else { 0.0 },
        cpu_ms_per_msg: cpu,
        dirs,
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// ROC AUC by linfa (0.5 when one class is missing).
pub fn auc(probs: &[Pr], truth: &[bool]) -> f64 {
    if !truth.iter().any(|t| *t) || truth.iter().all(|t| *t) {
        return 0.5;
    }
    probs
        .roc(truth)
        .map(|r| r.area_under_curve() as f64)
        .unwrap_or(0.5)
}

/// One directory's line of an evaluation: recall for spam, false-positive rate for ham.
pub fn print_dir_line(dir: &str, class: &str, messages: usize, rate: f64, flagged: usize) {
    let what = if class == "spam" {
        "spam recall"
    } else {
        "ham FPR"
    };
    println!(
        "  {dir:<40} {class:>4} {messages:>5} msgs  {what} {:>6.2}% ({flagged} flagged)",
        rate * 100.0
    );
}

pub fn print_eval(r: &EvalReport) {
    println!(
        "scoring {}, spam threshold {:.3}, {} messages",
        r.scoring, r.threshold, r.messages
    );
    for d in &r.dirs {
        print_dir_line(&d.dir, d.class, d.messages, d.rate, d.flagged_spam);
    }
    println!("spam recall  {:.2}%", r.spam_recall * 100.0);
    println!("ham FPR      {:.2}%", r.ham_fpr * 100.0);
    println!("ROC AUC      {:.4}", r.auc);
    match r.cpu_ms_per_msg {
        Some(c) => {
            println!(
                "speed        {:.0} msgs/s (tokenize + score, one thread), {:.3} ms CPU per message",
                r.msgs_per_sec, c
            );
            // Per core: from the thread's CPU time, so other load on the machine does not
            // count against the filter (the wall-clock rate above includes it).
            if c > 0.0 {
                println!(
                    "Bayes classify rate alone, msgs/s per core: {:.0}",
                    1000.0 / c
                );
            }
        }
        None => println!(
            "Bayes classify rate alone, msgs/s per core: {:.0} (wall clock, one thread)",
            r.msgs_per_sec
        ),
    }
}

// === cross-validation ===

/// Out-of-fold spam probabilities of every message under each parameter set, with k folds
/// stratified by class (linfa's `fold` over a column of message indices).
pub fn cross_validate(
    messages: &[(Vec<u64>, Class)],
    folds: usize,
    variants: &[Params],
) -> anyhow::Result<Vec<Vec<f64>>> {
    anyhow::ensure!(folds >= 2, "at least 2 folds");
    // Stratified order: each class shuffled by a fixed hash, then dealt fold by fold, so
    // linfa's contiguous folds each get the same class mix.
    let mix = |i: usize| {
        (i as u64)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(17)
    };
    let mut by_class: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
    for (i, (_, c)) in messages.iter().enumerate() {
        by_class[(*c == Class::Spam) as usize].push(i);
    }
    let mut order = Vec::with_capacity(messages.len());
    for v in &mut by_class {
        v.sort_by_key(|i| mix(*i));
    }
    for f in 0..folds {
        for v in &by_class {
            order.extend(v.iter().skip(f).step_by(folds));
        }
    }
    let n = order.len() - order.len() % folds;
    let order = &order[..n];
    let idx = Array2::from_shape_vec((n, 1), order.to_vec())?;
    let targets: Array1<bool> = order
        .iter()
        .map(|i: &usize| messages[*i].1 == Class::Spam)
        .collect();
    let ds = DatasetBase::new(idx, targets);
    let mut out = vec![vec![f64::NAN; messages.len()]; variants.len()];
    for (train, valid) in ds.fold(folds) {
        let pick = |d: &DatasetBase<Array2<usize>, Array1<bool>>| {
            let ids: Vec<usize> = d.records.column(0).to_vec();
            let recs = TokenRecords(ids.iter().map(|i| messages[*i].0.clone()).collect());
            (ids, DatasetBase::new(recs, d.targets.clone()))
        };
        let (_, train) = pick(&train);
        let (ids, valid) = pick(&valid);
        let model = BayesParams.fit(&train)?;
        score_fold(&model, &valid, &ids, variants, &mut out);
    }
    Ok(out)
}

/// Score one validation fold with every parameter set into `out[variant][message index]`.
fn score_fold(
    model: &Model,
    valid: &DatasetBase<TokenRecords, Array1<bool>>,
    ids: &[usize],
    variants: &[Params],
    out: &mut [Vec<f64>],
) {
    for (v, params) in variants.iter().enumerate() {
        let clf = Classifier {
            model,
            params: *params,
        };
        let probs: Array1<Pr> = clf.predict(valid);
        for (i, p) in ids.iter().zip(probs.iter()) {
            out[v][*i] = **p as f64;
        }
    }
}

/// The source of a message for grouped cross-validation: its mailing list (List-Id) when
/// it has one, else the domain of its From address.
pub fn source_group(raw: &[u8]) -> String {
    let Some(m) = mail_parser::MessageParser::default().parse(tokenizer::strip_mbox_line(raw))
    else {
        return "unparseable".into();
    };
    if let Some(id) = m.header_raw("List-Id") {
        let id = id.trim();
        let inner = id
            .rsplit_once('<')
            .map(|(_, r)| r.trim_end_matches('>'))
            .unwrap_or(id);
        return format!("list:{}", inner.to_ascii_lowercase());
    }
    m.from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .and_then(|a| a.rsplit_once('@'))
        .map(|(_, d)| format!("from:{}", d.to_ascii_lowercase()))
        .unwrap_or_else(|| "none".into())
}

/// The fold of each message when its source group decides (assignment number `seed`).
pub fn group_folds(groups: &[String], folds: usize, seed: u64) -> Vec<usize> {
    let prefix = if seed == 0 {
        "group:".to_string()
    } else {
        format!("group{seed}:")
    };
    groups
        .iter()
        .map(|g| (tokenizer::hash(&prefix, g) % folds.max(1) as u64) as usize)
        .collect()
}

/// Like [`cross_validate`], but every message of one source (see [`source_group`]) falls
/// in the same fold: the model is always validated on senders and lists it never saw,
/// which random folds hide (mailing-list ham is near-duplicated within a list).
///
/// `seed` picks one of many assignments of sources to folds (0 is the default).
/// With a few large sources the result depends on which land together, so compare
/// variants over several seeds.
pub fn cross_validate_grouped(
    messages: &[(Vec<u64>, Class)],
    groups: &[String],
    folds: usize,
    seed: u64,
    variants: &[Params],
) -> anyhow::Result<Vec<Vec<f64>>> {
    anyhow::ensure!(folds >= 2, "at least 2 folds");
    anyhow::ensure!(groups.len() == messages.len(), "one group per message");
    let fold_of = group_folds(groups, folds, seed);
    let mut out = vec![vec![f64::NAN; messages.len()]; variants.len()];
    for f in 0..folds {
        let (mut train, mut train_y, mut valid, mut ids) = (vec![], vec![], vec![], vec![]);
        for (i, (tokens, class)) in messages.iter().enumerate() {
            if fold_of[i] == f {
                valid.push(tokens.clone());
                ids.push(i);
            } else {
                train.push(tokens.clone());
                train_y.push(*class == Class::Spam);
            }
        }
        if valid.is_empty() {
            continue;
        }
        let model = BayesParams.fit(&DatasetBase::new(
            TokenRecords(train),
            Array1::from(train_y),
        ))?;
        let valid = DatasetBase::new(TokenRecords(valid), Array1::from_elem(ids.len(), false));
        score_fold(&model, &valid, &ids, variants, &mut out);
    }
    Ok(out)
}

#[derive(Debug, Clone, Serialize)]
pub struct CvPoint {
    pub threshold: f64,
    pub spam_recall: f64,
    pub ham_fpr: f64,
    /// The highest ham false-positive rate of one fold (grouped folds of at least
    /// [`MIN_FOLD_HAM`] ham): how far the threshold carries to unseen sources.
    pub worst_fold_ham_fpr: Option<f64>,
}

/// Folds with fewer ham than this are left out of the worst-fold rate (too few to say).
pub const MIN_FOLD_HAM: usize = 50;

#[derive(Debug, Clone, Serialize)]
pub struct CvReport {
    pub variant: String,
    pub auc: f64,
    /// Spam recall at the strictest threshold that flags at most 1 % of the ham.
    pub recall_at_1pct_fpr: f64,
    pub points: Vec<CvPoint>,
}

/// AUC and recall/FPR at each threshold of out-of-fold probabilities.
pub fn cv_report(
    variant: String,
    probs: &[f64],
    messages: &[(Vec<u64>, Class)],
    fold_of: Option<&[usize]>,
    thresholds: &[f64],
) -> CvReport {
    let (mut p, mut t) = (Vec::new(), Vec::new());
    for (pr, (_, c)) in probs.iter().zip(messages) {
        if pr.is_finite() {
            p.push(Pr::new(*pr as f32));
            t.push(*c == Class::Spam);
        }
    }
    let spam = t.iter().filter(|x| **x).count();
    let ham = t.len() - spam;
    let points = thresholds
        .iter()
        .map(|&th| {
            let mut tp = 0;
            let mut fp = 0;
            for (pr, is_spam) in p.iter().zip(&t) {
                if **pr as f64 >= th {
                    if *is_spam { tp += 1 } else { fp += 1 }
                }
            }
            let worst_fold_ham_fpr = fold_of.map(|folds| {
                let mut per_fold: std::collections::BTreeMap<usize, (usize, usize)> =
                    Default::default();
                for ((pr, (_, c)), f) in probs.iter().zip(messages).zip(folds) {
                    if *c == Class::Ham && pr.is_finite() {
                        let e = per_fold.entry(*f).or_default();
                        e.0 += 1;
                        e.1 += usize::from(*pr >= th);
                    }
                }
                per_fold
                    .values()
                    .filter(|(n, _)| *n >= MIN_FOLD_HAM)
                    .map(|(n, flagged)| ratio(*flagged, *n))
                    .fold(0.0, f64::max)
            });
            CvPoint {
                threshold: th,
                spam_recall: ratio(tp, spam),
                ham_fpr: ratio(fp, ham),
                worst_fold_ham_fpr,
            }
        })
        .collect();
    CvReport {
        variant,
        auc: auc(&p, &t),
        recall_at_1pct_fpr: {
            let class = |spam: bool| -> Vec<f64> {
                p.iter()
                    .zip(&t)
                    .filter(|(_, s)| **s == spam)
                    .map(|(p, _)| **p as f64)
                    .collect()
            };
            recall_at_fpr(&class(false), &class(true), 0.01).0
        },
        points,
    }
}

/// Spam recall when the threshold sits just above the ham score ranked `fpr × ham` from the
/// top (so at most that share of the ham is flagged), and that threshold; with no ham to
/// rank, every spam counts.
pub fn recall_at_fpr(ham: &[f64], spam: &[f64], fpr: f64) -> (f64, f64) {
    let mut sorted = ham.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let allowed = (fpr * sorted.len() as f64).floor() as usize;
    let threshold = sorted.get(allowed).copied().unwrap_or(f64::NEG_INFINITY);
    let caught = spam.iter().filter(|s| **s > threshold).count();
    (ratio(caught, spam.len()), threshold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_validation_covers_every_message_once() {
        let msgs: Vec<(Vec<u64>, Class)> = (0..40)
            .map(|i| {
                if i % 4 == 0 {
                    (vec![1, 2, 100 + i], Class::Spam)
                } else {
                    (vec![5, 6, 200 + i], Class::Ham)
                }
            })
            .collect();
        let out = cross_validate(&msgs, 5, &[Params::default()]).unwrap();
        assert!(out[0].iter().all(|p| p.is_finite()), "{:?}", out[0]);
        let r = cv_report("x".into(), &out[0], &msgs, None, &[0.5]);
        assert!(r.auc > 0.99, "{r:?}");
        assert_eq!(r.points[0].spam_recall, 1.0);
        assert_eq!(r.points[0].ham_fpr, 0.0);
        assert_eq!(r.recall_at_1pct_fpr, 1.0);
        let groups: Vec<String> = (0..40).map(|i| format!("g{}", i % 7)).collect();
        for seed in [0, 1] {
            let out =
                cross_validate_grouped(&msgs, &groups, 5, seed, &[Params::default()]).unwrap();
            assert!(out[0].iter().all(|p| p.is_finite()), "{:?}", out[0]);
        }
    }

    #[test]
    fn source_groups() {
        let list = b"From: a@x.example\r\nList-Id: Some list <list.lists.example>\r\n\r\nhi\r\n";
        assert_eq!(source_group(list), "list:list.lists.example");
        let plain = b"From someone  Tue Aug  6 11:51:02 2002\nFrom: A <a@Mail.Example>\n\nhi\n";
        assert_eq!(source_group(plain), "from:mail.example");
    }
}
