//! What the pipeline needs from outside the configuration, opened once: the clamd client,
//! the Bayes model, the trust memory, the certificate store, the auth stage's resolver.
//!
//! The gateway opens them at start and keeps them across reloads (no database reopened, no
//! cache lost); `portcullis explain` opens them the same way, without the background tasks
//! and without anything that learns. [`Loaded::snapshot`] builds the pipeline for one
//! configuration on top of them: the one way both get their pipeline.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::live::Snapshot;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, Resources, dkim_sign, learning};
use crate::smtp::verify::RecipientVerifier;
use crate::store::Database;

/// Who opens the resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The running gateway: the model and the trust pins follow the database, stored
    /// messages teach.
    Gateway,
    /// One look at a message (`portcullis explain`): nothing runs in the background, nothing
    /// learns.
    Explain,
}

/// The auth stage's resolver and the settings it was built with.
struct AuthResolver {
    timeout_ms: u64,
    cache_entries: usize,
    dns: Arc<filters::auth::AuthDns>,
}

/// The shared resources, opened from the configuration the gateway started with.
pub struct Loaded {
    purpose: Purpose,
    clamd: Option<Arc<filters::clamav::clamd::Clamd>>,
    bayes: Option<(crate::bayes::BayesStore, filters::bayes::SharedModel)>,
    trust: Option<(
        Arc<filters::trust::TrustBook>,
        Option<crate::trust::Learner>,
    )>,
    keyring: Option<Arc<dyn crate::smime::keyring::Keyring>>,
    /// The same store as `keyring`, for the admin API (its changes rebuild the index).
    certs: Option<crate::certs::CertStore>,
    /// Operators' allow and block lists; the admin API replaces them after each change.
    lists: filters::lists::LiveLists,
    /// Kept while `[auth]`'s DNS settings stay the same (its record caches with it).
    auth: Mutex<Option<AuthResolver>>,
    metrics: Metrics,
}

impl Loaded {
    /// Open what `config` enables, on the data directory's database.
    pub async fn open(
        config: &Config,
        db: &Database,
        purpose: Purpose,
        metrics: Metrics,
    ) -> anyhow::Result<Loaded> {
        let clamd = Resources::from_config(config).clamd;
        let mut bayes = None;
        if config.bayes.enabled {
            let store = crate::bayes::BayesStore::new(db.pool().clone());
            let model = crate::bayes::load_shared(&store)
                .await
                .context("cannot load the Bayes model")?;
            if purpose == Purpose::Gateway {
                {
                    let m = model.read().unwrap_or_else(|e| e.into_inner());
                    tracing::info!(
                        tokens = m.len(),
                        ham = m.ham_msgs,
                        spam = m.spam_msgs,
                        ready = m.ready(config.bayes.min_ham, config.bayes.min_spam),
                        "Bayes model loaded"
                    );
                }
                // Reloaded when the CLI (or another gateway) learns.
                crate::bayes::spawn_reloader(
                    store.clone(),
                    model.clone(),
                    Duration::from_secs(config.bayes.reload_secs),
                );
            }
            bayes = Some((store, model));
        }
        let mut trust = None;
        if config.trust.enabled {
            let store = crate::trust::TrustStore::new(db.pool().clone());
            let book = Arc::new(
                store
                    .load(config.trust.half_life_days, filters::trust::unix_now())
                    .await
                    .context("cannot load the trust tables")?,
            );
            let learner = (purpose == Purpose::Gateway).then(|| {
                crate::trust::Learner::spawn(
                    book.clone(),
                    store,
                    Duration::from_secs(config.trust.pin_reload_secs),
                )
            });
            trust = Some((book, learner));
        }
        let mut keyring: Option<Arc<dyn crate::smime::keyring::Keyring>> = None;
        let mut certs = None;
        // The store holds the S/MIME keys, and the identities `sign_attachments` rules sign
        // with.
        let signs_attachments = config
            .rules
            .iter()
            .any(|r| r.actions.sign_attachments.is_some());
        if config.smime.enabled || signs_attachments {
            let store =
                crate::certs::CertStore::open(db.pool().clone(), &config.data_dir, &config.certs)
                    .await
                    .context("cannot open the S/MIME certificate store")?;
            certs = Some(store.clone());
            keyring = Some(Arc::new(store));
        }
        let lists = filters::lists::LiveLists::new(
            crate::lists::ListStore::new(db.pool().clone())
                .load(crate::clock::unix_now())
                .await
                .context("cannot load the allow and block lists")?,
        );
        Ok(Loaded {
            purpose,
            clamd,
            bayes,
            trust,
            keyring,
            certs,
            lists,
            auth: Mutex::new(None),
            metrics,
        })
    }

    /// The clamd client, for its health probe.
    pub fn clamd(&self) -> Option<&Arc<filters::clamav::clamd::Clamd>> {
        self.clamd.as_ref()
    }

    /// The Bayes model in memory (learning from the quarantine updates it at once).
    pub fn bayes_model(&self) -> Option<filters::bayes::SharedModel> {
        self.bayes.as_ref().map(|(_, m)| m.clone())
    }

    /// The trust memory (the admin API applies pins to it at once).
    pub fn trust_book(&self) -> Option<Arc<filters::trust::TrustBook>> {
        self.trust.as_ref().map(|(b, _)| b.clone())
    }

    /// The certificate store the S/MIME steps use, when S/MIME was on at start.
    pub fn cert_store(&self) -> Option<crate::certs::CertStore> {
        self.certs.clone()
    }

    /// The allow and block lists in memory, shared by every pipeline built on these
    /// resources.
    pub fn lists(&self) -> filters::lists::LiveLists {
        self.lists.clone()
    }

    /// Whether the resource a `enabled` key needs was opened at start (turning it on later
    /// needs a restart).
    pub fn has(&self, what: Opened) -> bool {
        match what {
            Opened::Clamd => self.clamd.is_some(),
            Opened::Bayes => self.bayes.is_some(),
            Opened::Trust => self.trust.is_some(),
            Opened::Keyring => self.keyring.is_some(),
        }
    }

    /// The pipeline's resources for `config`: what was opened shared, what depends only on
    /// config values built for it (DKIM keys, the autolearn policy, the local domains, the
    /// auth resolver when its settings changed). Fails on an unreadable DKIM key or
    /// resolv.conf: a configuration that cannot work is not put in force.
    pub fn resources(&self, config: &Config) -> anyhow::Result<Resources> {
        let dkim_signer = if config.dkim_signing.is_empty() {
            None
        } else {
            Some(Arc::new(dkim_sign::OutboundSigner::load(
                &config.dkim_signing,
            )?))
        };
        let auth_dns = if config.auth.enabled {
            Some(self.auth_resolver(config)?)
        } else {
            None
        };
        let mut learning = learning::Learning::default();
        if self.purpose == Purpose::Gateway {
            if let Some((store, model)) = &self.bayes {
                let policy = config.bayes.autolearn_policy();
                if config.bayes.enabled && policy.enabled {
                    learning.autolearn = Some(learning::Autolearn {
                        store: store.clone(),
                        model: model.clone(),
                        policy,
                    });
                }
            }
            if config.trust.enabled {
                learning.trust = self.trust.as_ref().and_then(|(_, l)| l.clone());
                learning.local_domains = Arc::new(config.local_domains.clone());
            }
        }
        // What was opened at start but is turned off now is left out, as if never opened.
        Ok(Resources {
            clamd: self.clamd.clone().filter(|_| config.clamav.enabled),
            bayes: self.bayes.as_ref().map(|(_, m)| m.clone()),
            auth_dns,
            dkim_signer,
            trust: (self.trust.as_ref())
                .filter(|_| config.trust.enabled)
                .map(|(b, _)| b.clone()),
            learning,
            keyring: self.keyring.clone(),
            lists: Some(self.lists.clone()),
            recorded_auth: None,
        })
    }

    /// The auth resolver: the one in use while `dns_timeout_ms` and `dns_cache_entries` stay
    /// the same, else a new one (`dns_servers` needs a restart: delivery uses them too).
    fn auth_resolver(&self, config: &Config) -> anyhow::Result<Arc<filters::auth::AuthDns>> {
        let mut held = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        let a = &config.auth;
        if let Some(r) = held.as_ref()
            && r.timeout_ms == a.dns_timeout_ms
            && r.cache_entries == a.dns_cache_entries
        {
            return Ok(r.dns.clone());
        }
        let dns = Arc::new(
            filters::auth::AuthDns::new(
                &config.dns_servers,
                Duration::from_millis(a.dns_timeout_ms),
                a.dns_cache_entries,
            )
            .map_err(|e| anyhow::anyhow!("[auth]: {e}"))?,
        );
        *held = Some(AuthResolver {
            timeout_ms: a.dns_timeout_ms,
            cache_entries: a.dns_cache_entries,
            dns: dns.clone(),
        });
        Ok(dns)
    }

    /// The pipeline for `config` on these resources.
    pub fn pipeline(&self, config: &Config) -> anyhow::Result<Pipeline> {
        let resources = self.resources(config)?;
        Ok(Pipeline::from_config(
            config,
            &resources,
            self.metrics.clone(),
        ))
    }

    /// Everything a session needs from `config`: the pipeline and the recipient verifier
    /// (`reuse`: the verifier in force, kept when `[recipients]` did not change, with its
    /// callout cache).
    pub fn snapshot(
        &self,
        config: Arc<Config>,
        reuse: Option<Arc<RecipientVerifier>>,
    ) -> anyhow::Result<Snapshot> {
        let pipeline = Arc::new(self.pipeline(&config)?);
        let recipients = match reuse {
            Some(r) => r,
            None => Arc::new(RecipientVerifier::new(&config)?),
        };
        Ok(Snapshot {
            config,
            pipeline,
            recipients,
        })
    }
}

/// The resources an `enabled` key turns on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    Clamd,
    Bayes,
    Trust,
    Keyring,
}
