//! The Bayesian spam filter, gateway side: the model in the store, the one learning entry
//! point, training from directories, reloading in a running gateway, evaluation and
//! cross-validation. The stage itself (tokenizer, model, scoring) is `filters::bayes`,
//! which does no SQL: it reads a [`SharedModel`] this module loads and keeps current.
//!
//! Learning paths, all through [`learn`] / [`learn_batch`]:
//! - `portcullis bayes train --ham DIR --spam DIR` and `bayes learn --ham|--spam FILE`;
//! - autolearn: [`autolearn`] applies `filters::bayes::autolearn`'s cautious policy (very
//!   confident, authenticated sender, never a virus) and learns (`pipeline::learning`
//!   calls it after the verdict); off by default.

pub mod corpus;
pub mod store;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use filters::bayes::model::{Class, Model};
use filters::bayes::{AutolearnFacts, AutolearnPolicy, SharedModel, tokenizer};

pub use store::{BayesStore, Delta};

/// Open the model's store: the data directory's SQLite database, migrated.
pub async fn open(data_dir: &Path) -> anyhow::Result<BayesStore> {
    let db = crate::store::Database::open(data_dir).await?;
    Ok(BayesStore::new(db.pool().clone()))
}

/// Load the stored model into a [`SharedModel`] for the stage.
pub async fn load_shared(store: &BayesStore) -> anyhow::Result<SharedModel> {
    Ok(Arc::new(RwLock::new(store.load().await?)))
}

/// Identity of a learned message: a digest of its token set (so a message re-sent with
/// other Received lines or Date is the same message to the model).
pub fn digest(tokens: &[u64]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for t in tokens {
        for b in t.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// What [`learn`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// First time this message was learned.
    New,
    /// It had been learned as the other class: moved.
    Moved,
    /// Already learned as this class: nothing changed.
    AlreadyKnown,
}

impl Learned {
    pub fn as_str(self) -> &'static str {
        match self {
            Learned::New => "learned",
            Learned::Moved => "moved from the other class",
            Learned::AlreadyKnown => "already learned",
        }
    }
}

/// How many messages one learned message counts as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weight {
    /// Training from directories and autolearn: once.
    Once,
    /// An operator's correction (release or delete with learning, `bayes learn`): it is a
    /// message the filter got wrong, so it counts `bayes.feedback_weight` times.
    Operator(u32),
}

impl Weight {
    fn times(self) -> u32 {
        match self {
            Weight::Once => 1,
            Weight::Operator(n) => n.max(1),
        }
    }
}

/// THE learning entry point: learn one raw message as `class`, in the store and, when the
/// caller runs the stage, in its in-memory model too. Quarantine release calls it with
/// `Class::Ham`, delete-as-spam with `Class::Spam`, both with [`Weight::Operator`].
pub async fn learn(
    store: &BayesStore,
    model: Option<&SharedModel>,
    raw: &[u8],
    class: Class,
    weight: Weight,
) -> anyhow::Result<Learned> {
    let tokens = tokenizer::tokenize(raw, None);
    Ok(learn_batch(store, model, &[(tokens, class)], weight).await?[0])
}

/// Learn many tokenized messages in one transaction (training). A message learned before
/// as the same class changes nothing (whatever its weight then); learned as the other
/// class, it moves: what it added then is taken back, and it is added with this weight.
pub async fn learn_batch(
    store: &BayesStore,
    model: Option<&SharedModel>,
    messages: &[(Vec<u64>, Class)],
    weight: Weight,
) -> anyhow::Result<Vec<Learned>> {
    let times = weight.times();
    let known = if messages.len() > 16 {
        store.learned().await?
    } else {
        let mut m = std::collections::HashMap::new();
        for (t, _) in messages {
            let d = digest(t);
            if let Some(c) = store.learned_as(&d).await? {
                m.insert(d, c);
            }
        }
        m
    };
    let mut delta = Delta::default();
    // (what happened, the weight taken back on a move)
    let mut outcome: Vec<(Learned, u32)> = Vec::with_capacity(messages.len());
    let mut seen = std::collections::HashMap::new();
    for (tokens, class) in messages {
        let d = digest(tokens);
        let before = seen.get(&d).or(known.get(&d)).copied();
        let o = match before {
            Some((c, _)) if c == *class => (Learned::AlreadyKnown, 0),
            Some((other, old)) => {
                delta.add(tokens, other, -i64::from(old));
                delta.add(tokens, *class, i64::from(times));
                (Learned::Moved, old)
            }
            None => {
                delta.add(tokens, *class, i64::from(times));
                (Learned::New, 0)
            }
        };
        if o.0 != Learned::AlreadyKnown {
            delta.learned.push((d.clone(), *class, times));
            seen.insert(d, (*class, times));
        }
        outcome.push(o);
    }
    store.apply(&delta).await?;
    if let Some(shared) = model {
        let mut m = shared.write().unwrap_or_else(|e| e.into_inner());
        for ((tokens, class), (o, old)) in messages.iter().zip(&outcome) {
            match o {
                Learned::AlreadyKnown => {}
                Learned::New => m.learn_times(tokens, *class, times),
                Learned::Moved => {
                    let other = if *class == Class::Ham {
                        Class::Spam
                    } else {
                        Class::Ham
                    };
                    m.unlearn_times(tokens, other, *old);
                    m.learn_times(tokens, *class, times);
                }
            }
        }
    }
    Ok(outcome.into_iter().map(|(o, _)| o).collect())
}

/// Cautious autolearn after a verdict (see `filters::bayes::autolearn` for the policy).
/// Returns the class learned, if any.
pub async fn autolearn(
    store: &BayesStore,
    model: Option<&SharedModel>,
    policy: &AutolearnPolicy,
    facts: &AutolearnFacts,
    raw: &[u8],
) -> anyhow::Result<Option<Class>> {
    match filters::bayes::autolearn(policy, facts) {
        Some(class) => {
            learn(store, model, raw, class, Weight::Once).await?;
            Ok(Some(class))
        }
        None => Ok(None),
    }
}

/// Keep a running gateway's model current: every `every`, reload when the stored version
/// moved (learning by the CLI or by another gateway sharing the database).
pub fn spawn_reloader(store: BayesStore, model: SharedModel, every: Duration) {
    tokio::spawn(async move {
        let mut seen = store.version().await.ok();
        let mut tick = tokio::time::interval(every);
        tick.tick().await;
        loop {
            tick.tick().await;
            let v = match store.version().await {
                Ok(v) => v,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "Bayes model version check failed");
                    continue;
                }
            };
            if Some(v) == seen {
                continue;
            }
            match store.load().await {
                Ok(m) => {
                    tracing::info!(
                        version = v,
                        tokens = m.len(),
                        ham = m.ham_msgs,
                        spam = m.spam_msgs,
                        "Bayes model reloaded"
                    );
                    *model.write().unwrap_or_else(|e| e.into_inner()) = m;
                    seen = Some(v);
                }
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "Bayes model reload failed"),
            }
        }
    });
}

/// An empty model for stages built without a store (unit tests of the pipeline).
pub fn empty() -> SharedModel {
    Arc::new(RwLock::new(Model::new()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use filters::bayes::Params;

    fn spam(i: usize) -> String {
        format!(
            "From: Deals <d@cheap.example>\r\nSubject: cheap pills {i}\r\n\r\nbuy cheap pills viagra now offer{i}\r\n"
        )
    }
    fn ham(i: usize) -> String {
        format!(
            "From: Ann <ann@work.example>\r\nSubject: project meeting {i}\r\n\r\nagenda for the project meeting notes{i}\r\n"
        )
    }

    #[tokio::test]
    async fn persistence_round_trip_and_learning_semantics() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await.unwrap();
        let shared = load_shared(&store).await.unwrap();
        assert!(shared.read().unwrap().is_empty());
        let out = learn_five_of_each(&store, &shared).await;
        assert!(out.iter().all(|o| *o == Learned::New), "{out:?}");
        // the same message again: nothing changes
        assert_eq!(
            learn(
                &store,
                Some(&shared),
                spam(0).as_bytes(),
                Class::Spam,
                Weight::Once
            )
            .await
            .unwrap(),
            Learned::AlreadyKnown
        );
        let loaded = store.load().await.unwrap();
        let mem = shared.read().unwrap().clone();
        assert_eq!((loaded.ham_msgs, loaded.spam_msgs), (5, 5));
        assert_eq!(loaded.len(), mem.len());
        let mut a: Vec<_> = loaded.iter().collect();
        let mut b: Vec<_> = mem.iter().collect();
        a.sort_by_key(|x| x.0);
        b.sort_by_key(|x| x.0);
        assert_eq!(a, b, "store and memory agree token by token");
        let p = Params::default();
        let t = tokenizer::tokenize(spam(9).as_bytes(), None);
        assert!(loaded.score(&t, &p) > 0.9);

        // Moving a message to the other class is exact: learn ham(0) as spam, then back.
        assert_eq!(
            learn(
                &store,
                Some(&shared),
                ham(0).as_bytes(),
                Class::Spam,
                Weight::Once
            )
            .await
            .unwrap(),
            Learned::Moved
        );
        assert_eq!(store.meta().await.unwrap().0, 4);
        learn(
            &store,
            Some(&shared),
            ham(0).as_bytes(),
            Class::Ham,
            Weight::Once,
        )
        .await
        .unwrap();
        let back = store.load().await.unwrap();
        let mut c: Vec<_> = back.iter().collect();
        c.sort_by_key(|x| x.0);
        assert_eq!(a, c);
        // reopening the database gives the same model
        drop(store);
        let again = open(dir.path()).await.unwrap().load().await.unwrap();
        assert_eq!(again.len(), back.len());
        assert_eq!((again.ham_msgs, again.spam_msgs), (5, 5));
    }

    #[tokio::test]
    async fn batch_training_matches_single_learning() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await.unwrap();
        let batch: Vec<_> = (0..20)
            .map(|i| {
                let (raw, c) = if i % 2 == 0 {
                    (spam(i), Class::Spam)
                } else {
                    (ham(i), Class::Ham)
                };
                (tokenizer::tokenize(raw.as_bytes(), None), c)
            })
            .collect();
        let out = learn_batch(&store, None, &batch, Weight::Once)
            .await
            .unwrap();
        assert!(out.iter().all(|o| *o == Learned::New));
        let mut single = Model::new();
        for (t, c) in &batch {
            single.learn(t, *c);
        }
        let stored = store.load().await.unwrap();
        let mut a: Vec<_> = stored.iter().collect();
        let mut b: Vec<_> = single.iter().collect();
        a.sort_by_key(|x| x.0);
        b.sort_by_key(|x| x.0);
        assert_eq!(a, b);
    }

    #[tokio::test]
    async fn an_operators_correction_counts_its_weight_and_moves_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await.unwrap();
        let shared = load_shared(&store).await.unwrap();
        learn_five_of_each(&store, &shared).await;
        let before = sorted(&store.load().await.unwrap());
        let op = Weight::Operator(3);
        // A ham the operator says is spam: its one ham count goes, three spam counts come.
        let o = learn(&store, Some(&shared), ham(0).as_bytes(), Class::Spam, op).await;
        assert_eq!(o.unwrap(), Learned::Moved);
        let stored = store.load().await.unwrap();
        assert_eq!((stored.ham_msgs, stored.spam_msgs), (4, 8));
        assert_eq!(
            sorted(&stored),
            sorted(&shared.read().unwrap()),
            "store = memory"
        );
        // The same correction again changes nothing.
        let o = learn(&store, Some(&shared), ham(0).as_bytes(), Class::Spam, op).await;
        assert_eq!(o.unwrap(), Learned::AlreadyKnown);
        assert_eq!(store.load().await.unwrap().spam_msgs, 8);
        // Back to ham once: exactly the model before the correction.
        let o = learn(
            &store,
            Some(&shared),
            ham(0).as_bytes(),
            Class::Ham,
            Weight::Once,
        )
        .await;
        assert_eq!(o.unwrap(), Learned::Moved);
        assert_eq!(sorted(&store.load().await.unwrap()), before);
        assert_eq!(sorted(&shared.read().unwrap()), before);
        // A new message learned by an operator counts three times.
        learn(&store, Some(&shared), spam(7).as_bytes(), Class::Spam, op)
            .await
            .unwrap();
        assert_eq!(store.load().await.unwrap().spam_msgs, 8);
    }

    /// spam(0..5) and ham(0..5), once each.
    async fn learn_five_of_each(store: &BayesStore, shared: &SharedModel) -> Vec<Learned> {
        let mut out = Vec::new();
        for i in 0..5 {
            for (raw, class) in [(spam(i), Class::Spam), (ham(i), Class::Ham)] {
                let o = learn(store, Some(shared), raw.as_bytes(), class, Weight::Once).await;
                out.push(o.unwrap());
            }
        }
        out
    }

    fn sorted(m: &Model) -> Vec<(u64, filters::bayes::model::Counts)> {
        let mut v: Vec<_> = m.iter().collect();
        v.sort_by_key(|x| x.0);
        v
    }
}
