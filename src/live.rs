//! The configuration in force and what is built from it: one [`Snapshot`], replaced whole
//! by a reload (`gateway::Reloader`).
//!
//! A session takes the snapshot when its connection is accepted and keeps it to the end,
//! so a message is never judged half by one configuration and half by another; readers
//! take no lock.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::pipeline::Pipeline;
use crate::smtp::verify::RecipientVerifier;

/// One configuration and the parts built from it.
pub struct Snapshot {
    pub config: Arc<Config>,
    pub pipeline: Arc<Pipeline>,
    /// `[recipients]`: which local recipients exist.
    pub recipients: Arc<RecipientVerifier>,
}

/// The snapshot in force, shared by the listeners, delivery and the reloader.
#[derive(Clone)]
pub struct Live(Arc<ArcSwap<Snapshot>>);

impl Live {
    pub fn new(snapshot: Snapshot) -> Live {
        Live(Arc::new(ArcSwap::from_pointee(snapshot)))
    }

    /// The snapshot in force now (a session keeps it for its whole connection).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.0.load_full()
    }

    /// The configuration in force now.
    pub fn config(&self) -> Arc<Config> {
        self.0.load().config.clone()
    }

    /// Put `snapshot` in force: new sessions and delivery attempts use it; sessions in
    /// progress keep theirs.
    pub fn replace(&self, snapshot: Snapshot) {
        self.0.store(Arc::new(snapshot));
    }
}
