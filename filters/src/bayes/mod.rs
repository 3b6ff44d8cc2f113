//! The Bayesian spam filter stage: tokens of the message → spam probability → `BAYES_SPAM`
//! or `BAYES_HAM` with points scaled by that probability.
//!
//! - [`tokenizer`]: mail-aware features (text, HTML markup, URLs, selected headers,
//!   attachment types; never dates).
//! - [`model`]: sparse per-token ham/spam counts and the scorings (chi-square, multinomial).
//!
//! The stage reads a [`SharedModel`] from memory; the gateway loads it from its store, swaps
//! in a reloaded one when the store changes, and learns through its own entry point. This
//! crate does no SQL.
//!
//! No opinion (no symbol) until the model has learned at least `min_ham` ham and `min_spam`
//! spam messages, or when the probability is between the two thresholds.
//!
//! Points rise with the probability everywhere, so the score keeps the model's order (no
//! plateau where messages tie) and a threshold means the same in points as in p:
//! - p ≥ `spam_threshold` = t: `BAYES_SPAM`, its registered points × (½ + ½ (p − t)/(1 − t)):
//!   half at the threshold (10 → 5 = the tag score), all at p = 1;
//! - ½ < p < t: `BAYES_LEAN_SPAM`, its points × logit(p) / logit(t): from 0 at p = ½ to all
//!   of them (5) at the threshold — the log-odds, because most uncertain mail lies here;
//! - `ham_threshold` = h < p < ½: `BAYES_LEAN_HAM`, likewise towards the ham side;
//! - p ≤ h: `BAYES_HAM`, its points × (½ + ½ (h − p)/h): half at the threshold, all at 0.
//!
//! Measured inside the training corpus (grouped cross-validation): the points' ROC AUC is
//! the probability's (0.9957 against 0.9957), where no points between the thresholds lost
//! 0.008.

pub mod model;
pub mod tokenizer;

use std::sync::{Arc, RwLock};

pub use model::{Class, Model, Params, Scoring};

use crate::{Facts, Findings, FindingsFuture, MessageContext, Stage, StageFuture, Symbol};

/// The model the stage reads; replaced whole on reload, updated in place on learning.
pub type SharedModel = Arc<RwLock<Model>>;

/// The stage's settings (the gateway's `[bayes]` table).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub min_ham: u64,
    pub min_spam: u64,
    /// p ≥ this → BAYES_SPAM.
    pub spam_threshold: f64,
    /// p ≤ this → BAYES_HAM.
    pub ham_threshold: f64,
    pub params: Params,
}

pub const DEFAULT_MIN_HAM: u64 = 200;
pub const DEFAULT_MIN_SPAM: u64 = 200;
/// Chosen inside the public training corpus by 10-fold cross-validation grouped by source
/// (validation on lists and senders the model never saw), by a rule fixed before the test
/// run: the lowest threshold of the grid (…, 0.75, 0.8, 0.85, 0.9, …) at which no fold
/// (of at least 50 ham) flags more than 0.5 % of its ham, on each of five assignments of
/// sources to folds. 0.75 met the mean but not the worst fold (up to 1.48 %): a threshold
/// that holds only on average does not carry over to the next collection of mail. At 0.85
/// the worst fold is 0.28 %, the mean 0.06 %, recall 89.2 %; see `corpus/README.md`.
pub const DEFAULT_SPAM_THRESHOLD: f64 = 0.85;
pub const DEFAULT_HAM_THRESHOLD: f64 = 0.1;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            min_ham: DEFAULT_MIN_HAM,
            min_spam: DEFAULT_MIN_SPAM,
            spam_threshold: DEFAULT_SPAM_THRESHOLD,
            ham_threshold: DEFAULT_HAM_THRESHOLD,
            params: Params::default(),
        }
    }
}

pub struct Bayes {
    pub model: SharedModel,
    pub settings: Settings,
}

impl Bayes {
    pub fn new(model: SharedModel, settings: Settings) -> Bayes {
        Bayes { model, settings }
    }

    /// The spam probability of a message, or `None` while the model is not ready.
    pub fn probability(&self, ctx: &MessageContext<'_>) -> Option<f64> {
        let ready = |m: &Model| m.ready(self.settings.min_ham, self.settings.min_spam);
        // No tokenizing while the model has no opinion to give (an untrained gateway).
        if !ready(&self.model.read().unwrap_or_else(|e| e.into_inner())) {
            return None;
        }
        let tokens = tokenizer::tokenize(ctx.raw, ctx.parsed);
        let model = self.model.read().unwrap_or_else(|e| e.into_inner());
        if !ready(&model) {
            return None;
        }
        Some(model.score(&tokens, &self.settings.params))
    }
}

/// log(p / (1 − p)), finite for p = 0 and p = 1 (a saturated model says 0 or 1).
fn logit(p: f64) -> f64 {
    let p = p.clamp(1e-12, 1.0 - 1e-12);
    (p / (1.0 - p)).ln()
}

/// The symbol for probability `p`, if any (see the module doc for the scaling). The
/// thresholds lie on either side of ½ (the config checks it).
pub fn symbol_for(p: f64, s: &Settings) -> Option<Symbol> {
    let detail = format!("p={p:.4}");
    let l = logit(p);
    if p >= s.spam_threshold {
        let span = (1.0 - s.spam_threshold).max(f64::EPSILON);
        let scale = 0.5 + 0.5 * ((p - s.spam_threshold) / span).clamp(0.0, 1.0);
        Some(Symbol::new("BAYES_SPAM", detail).scaled(scale))
    } else if p <= s.ham_threshold {
        let span = s.ham_threshold.max(f64::EPSILON);
        let scale = 0.5 + 0.5 * ((s.ham_threshold - p) / span).clamp(0.0, 1.0);
        Some(Symbol::new("BAYES_HAM", detail).scaled(scale))
    } else if l > 0.0 {
        let scale = (l / logit(s.spam_threshold).max(1e-6)).clamp(0.0, 1.0);
        Some(Symbol::new("BAYES_LEAN_SPAM", detail).scaled(scale))
    } else if l < 0.0 {
        let scale = (l / logit(s.ham_threshold).min(-1e-6)).clamp(0.0, 1.0);
        Some(Symbol::new("BAYES_LEAN_HAM", detail).scaled(scale))
    } else {
        None
    }
}

impl Stage for Bayes {
    fn name(&self) -> &'static str {
        "bayes"
    }

    fn is_spam_filter(&self) -> bool {
        true
    }

    fn check<'a>(&'a self, ctx: &'a MessageContext<'a>) -> StageFuture<'a> {
        Box::pin(async move { Ok(self.check_with_headers(ctx).await?.symbols) })
    }

    fn check_with_headers<'a>(&'a self, ctx: &'a MessageContext<'a>) -> FindingsFuture<'a> {
        // Tokenize + score is well under a millisecond for ordinary mail (bounded for huge
        // mail by the tokenizer's limits), so it runs inline. The probability is also a
        // fact: autolearn after the verdict needs it.
        Box::pin(async move {
            let p = self.probability(ctx);
            Ok(Findings {
                symbols: p
                    .and_then(|p| symbol_for(p, &self.settings))
                    .into_iter()
                    .collect(),
                facts: Facts {
                    spam_probability: p,
                    ..Facts::default()
                },
                ..Findings::default()
            })
        })
    }
}

// === autolearn ===

/// Cautious autolearn policy (the gateway's `[bayes] autolearn*` keys). Off by default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutolearnPolicy {
    pub enabled: bool,
    /// Learn as spam only at p ≥ this.
    pub spam_above: f64,
    /// Learn as ham only at p ≤ this.
    pub ham_below: f64,
}

impl Default for AutolearnPolicy {
    fn default() -> Self {
        AutolearnPolicy {
            enabled: false,
            spam_above: 0.999,
            ham_below: 0.001,
        }
    }
}

/// What autolearn needs to know about one scored message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutolearnFacts {
    /// The Bayes probability (None: the model gave no opinion).
    pub probability: Option<f64>,
    /// The sender was authenticated (DMARC pass / aligned DKIM or SPF) — from the auth stage.
    pub sender_authenticated: bool,
    /// A virus scanner found something.
    pub virus: bool,
}

/// Whether to learn a message, and as what: only very confident verdicts, only from
/// authenticated senders (forged senders must not steer the model), never viruses (they are
/// rejected anyway and their text says nothing about spam), and never when the model gave
/// no opinion.
pub fn autolearn(policy: &AutolearnPolicy, facts: &AutolearnFacts) -> Option<Class> {
    if !policy.enabled || facts.virus || !facts.sender_authenticated {
        return None;
    }
    let p = facts.probability?;
    if p >= policy.spam_above {
        Some(Class::Spam)
    } else if p <= policy.ham_below {
        Some(Class::Ham)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Direction, Envelope};

    fn envelope() -> Envelope {
        Envelope {
            direction: Direction::Inbound,
            client_ip: "192.0.2.1".parse().unwrap(),
            helo: "c".into(),
            mail_from: "a@b.test".into(),
            rcpt_to: vec!["u@example.test".into()],
            smtputf8: false,
            body_8bit: false,
            tls: None,
        }
    }

    fn msg(subject: &str, body: &str) -> String {
        format!("From: x@y.example\r\nSubject: {subject}\r\n\r\n{body}\r\n")
    }

    #[tokio::test]
    async fn no_opinion_until_both_classes_are_learned() {
        let model: SharedModel = Arc::default();
        let stage = Bayes::new(
            model.clone(),
            Settings {
                min_ham: 3,
                min_spam: 3,
                ..Settings::default()
            },
        );
        let env = envelope();
        let spam = msg("cheap pills", "buy viagra cheap pills now");
        let ham = msg("meeting notes", "the agenda for the project meeting");
        let ctx = MessageContext {
            envelope: &env,
            raw: spam.as_bytes(),
            wire: spam.as_bytes(),
            parsed: None,
            facts: &crate::Facts::default(),
        };
        assert!(stage.check(&ctx).await.unwrap().is_empty());
        for _ in 0..3 {
            let mut m = model.write().unwrap();
            m.learn(&tokenizer::tokenize(spam.as_bytes(), None), Class::Spam);
            assert!(m.ready(0, 3) || m.spam_msgs < 3);
        }
        assert!(stage.check(&ctx).await.unwrap().is_empty(), "no ham yet");
        for _ in 0..3 {
            model
                .write()
                .unwrap()
                .learn(&tokenizer::tokenize(ham.as_bytes(), None), Class::Ham);
        }
        let found = stage.check(&ctx).await.unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].name, "BAYES_SPAM");
        let ctx = MessageContext {
            envelope: &env,
            raw: ham.as_bytes(),
            wire: ham.as_bytes(),
            parsed: None,
            facts: &crate::Facts::default(),
        };
        assert_eq!(stage.check(&ctx).await.unwrap()[0].name, "BAYES_HAM");
    }

    #[test]
    fn points_rise_with_the_probability_without_a_plateau() {
        let s = Settings::default();
        let pts = |p: f64| symbol_for(p, &s).map(|x| x.points).unwrap_or(0.0);
        let name = |p: f64| symbol_for(p, &s).map(|x| x.name).unwrap_or("-");
        let full = crate::symbols::default_points("BAYES_SPAM");
        let full_ham = crate::symbols::default_points("BAYES_HAM");
        assert_eq!(symbol_for(0.5, &s), None);
        assert_eq!(name(s.spam_threshold), "BAYES_SPAM");
        assert!((pts(s.spam_threshold) - full / 2.0).abs() < 1e-9);
        assert!((pts(1.0) - full).abs() < 1e-9);
        assert_eq!(name(0.6), "BAYES_LEAN_SPAM");
        assert_eq!(name(0.3), "BAYES_LEAN_HAM");
        assert!((pts(s.ham_threshold) - full_ham / 2.0).abs() < 1e-9);
        assert!((pts(0.0) - full_ham).abs() < 1e-9);
        // Strictly rising between the caps, continuous at both thresholds.
        let grid: Vec<f64> = (1..1000).map(|i| i as f64 / 1000.0).collect();
        for w in grid.windows(2) {
            assert!(
                pts(w[0]) <= pts(w[1]),
                "{} > {} at p={}",
                pts(w[0]),
                pts(w[1]),
                w[0]
            );
        }
        assert!(pts(0.3) < pts(0.4) && pts(0.6) < pts(0.7) && pts(0.8) < pts(0.9));
        let e = 1e-9;
        assert!((pts(s.spam_threshold - e) - pts(s.spam_threshold)).abs() < 1e-3);
        assert!((pts(s.ham_threshold + e) - pts(s.ham_threshold)).abs() < 1e-3);
        // No plateau at the top either: 0.9, 0.99 and 0.999 stay apart.
        assert!(pts(0.9) < pts(0.99) && pts(0.99) < pts(0.999) && pts(0.01) > pts(0.001));
    }

    #[test]
    fn autolearn_is_cautious() {
        let on = AutolearnPolicy {
            enabled: true,
            ..AutolearnPolicy::default()
        };
        let facts = |p: Option<f64>, auth: bool, virus: bool| AutolearnFacts {
            probability: p,
            sender_authenticated: auth,
            virus,
        };
        assert_eq!(
            autolearn(&on, &facts(Some(0.9999), true, false)),
            Some(Class::Spam)
        );
        assert_eq!(
            autolearn(&on, &facts(Some(0.0001), true, false)),
            Some(Class::Ham)
        );
        assert_eq!(autolearn(&on, &facts(Some(0.99), true, false)), None);
        assert_eq!(autolearn(&on, &facts(Some(0.9999), false, false)), None);
        assert_eq!(autolearn(&on, &facts(Some(0.0001), true, true)), None);
        assert_eq!(autolearn(&on, &facts(None, true, false)), None);
        let off = AutolearnPolicy::default();
        assert_eq!(autolearn(&off, &facts(Some(0.9999), true, false)), None);
    }
}
