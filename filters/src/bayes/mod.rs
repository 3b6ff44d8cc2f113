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
//! Points: `BAYES_SPAM` gets its registered points × (0.5 + 0.5 × (p − spam_threshold) /
//! (1 − spam_threshold)): half at the threshold, all at p = 1. `BAYES_HAM` likewise below
//! `ham_threshold`, down to p = 0.

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
/// Chosen by 10-fold cross-validation inside the public training corpus grouped by source
/// (validation on lists and senders the model never saw), by a rule fixed before the test
/// run: the lowest threshold of the grid (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, …) whose
/// cross-validated ham false-positive rate is at most 0.25 %, a quarter of the 1 % target,
/// leaving room for harder ham than the training set has. On the mean of five
/// assignments of sources to folds, combined scoring at 0.75 gives 93.0 % recall at
/// 0.23 % FPR (0.7: 94.9 % / 0.49 %); see `corpus/README.md`.
pub const DEFAULT_SPAM_THRESHOLD: f64 = 0.75;
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

/// The symbol for probability `p`, if any (see the module doc for the scaling).
pub fn symbol_for(p: f64, s: &Settings) -> Option<Symbol> {
    let detail = format!("p={p:.4}");
    if p >= s.spam_threshold {
        let span = (1.0 - s.spam_threshold).max(f64::EPSILON);
        let scale = 0.5 + 0.5 * ((p - s.spam_threshold) / span).clamp(0.0, 1.0);
        Some(Symbol::new("BAYES_SPAM", detail).scaled(scale))
    } else if p <= s.ham_threshold {
        let span = s.ham_threshold.max(f64::EPSILON);
        let scale = 0.5 + 0.5 * ((s.ham_threshold - p) / span).clamp(0.0, 1.0);
        Some(Symbol::new("BAYES_HAM", detail).scaled(scale))
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
    fn points_scale_with_probability() {
        let s = Settings::default();
        let full = crate::symbols::default_points("BAYES_SPAM");
        assert!(symbol_for(0.5, &s).is_none());
        let at = symbol_for(s.spam_threshold, &s).unwrap();
        assert!((at.points - full / 2.0).abs() < 1e-9);
        let top = symbol_for(1.0, &s).unwrap();
        assert!((top.points - full).abs() < 1e-9);
        let ham = symbol_for(0.0, &s).unwrap();
        assert_eq!(ham.name, "BAYES_HAM");
        assert!((ham.points - crate::symbols::default_points("BAYES_HAM")).abs() < 1e-9);
        assert!(ham.points < 0.0);
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
