//! Wiring: config → queue, pipeline, delivery, listeners, metrics. `run` is the appliance.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, TlsMode};
use crate::delivery::Delivery;
use crate::metrics::{self, Metrics};
use crate::pipeline::{Pipeline, Resources};
use crate::queue::Queue;
use crate::smtp::listener;
use crate::smtp::session::{ListenerSettings, Shared};
use crate::smtp::tls;

/// A started gateway: its bound addresses, and the switch that stops accepting.
pub struct Running {
    pub smtp_addrs: Vec<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    /// The admin API (its socket is removed when the gateway stops).
    pub admin: Option<crate::admin::AdminServer>,
    /// The operations on held messages (for the admin API).
    pub quarantine: crate::quarantine_ops::QuarantineService,
    shutdown: watch::Sender<bool>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stop accepting, let sessions finish (within the grace period), then return.
    pub async fn shut_down(self) {
        drop(self.admin);
        let _ = self.shutdown.send(true);
        for l in self.listeners {
            let _ = l.await;
        }
    }
}

/// Start everything; returns once the listeners are bound.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let config = Arc::new(config);
    let metrics = Metrics::new();
    let db = crate::store::Database::open(&config.data_dir)
        .await
        .with_context(|| {
            format!(
                "cannot open the data directory {}",
                config.data_dir.display()
            )
        })?;
    let (queue, jobs) = Queue::open(
        &config.data_dir,
        &db,
        metrics.clone(),
        crate::queue::HoldSettings::from_config(&config.quarantine),
    )
    .await
    .with_context(|| format!("cannot open the queue in {}", config.data_dir.display()))?;

    let delivery = Arc::new(Delivery::new(
        config.clone(),
        queue.clone(),
        metrics.clone(),
    )?);
    delivery.spawn_workers(jobs);
    spawn_queue_scanner(config.clone(), queue.clone(), metrics.clone());

    let metrics_addr = if config.metrics_bind.is_empty() {
        None
    } else {
        Some(metrics::serve(config.metrics_bind.parse()?, metrics.clone()).await?)
    };

    let mut quarantine =
        crate::quarantine_ops::QuarantineService::new(&config, &db).with_queue(queue.clone());

    let mut resources = Resources::from_config(&config);
    resources.build_auth(&config)?;
    if config.bayes.enabled {
        // Reloaded when the CLI (or another gateway) learns.
        let store = crate::bayes::BayesStore::new(db.pool().clone());
        let model = crate::bayes::load_shared(&store)
            .await
            .context("cannot load the Bayes model")?;
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
        crate::bayes::spawn_reloader(
            store.clone(),
            model.clone(),
            Duration::from_secs(config.bayes.reload_secs),
        );
        let policy = config.bayes.autolearn_policy();
        if policy.enabled {
            resources.learning.autolearn = Some(crate::pipeline::learning::Autolearn {
                store,
                model: model.clone(),
                policy,
            });
        }
        quarantine = quarantine.with_model(model.clone());
        resources.bayes = Some(model);
    }
    if config.trust.enabled {
        let store = crate::trust::TrustStore::new(db.pool().clone());
        let book = Arc::new(
            store
                .load(config.trust.half_life_days, filters::trust::unix_now())
                .await
                .context("cannot load the trust tables")?,
        );
        resources.learning.trust = Some(crate::trust::Learner::spawn(
            book.clone(),
            store,
            Duration::from_secs(config.trust.pin_reload_secs),
        ));
        resources.learning.local_domains = Arc::new(config.local_domains.clone());
        resources.trust = Some(book);
    }
    let mut certs = None;
    if config.smime.enabled {
        let store =
            crate::certs::CertStore::open(db.pool().clone(), &config.data_dir, &config.certs)
                .await
                .context("cannot open the S/MIME certificate store")?;
        certs = Some(store.clone());
        resources.keyring = Some(Arc::new(store));
    }
    // The lists are read once here; the admin API replaces them after each change.
    let lists = filters::lists::LiveLists::new(
        crate::lists::ListStore::new(db.pool().clone())
            .load(crate::clock::unix_now())
            .await
            .context("cannot load the allow and block lists")?,
    );
    resources.lists = Some(lists.clone());
    quarantine.spawn_retention(metrics.clone());
    if let Some(clamd) = &resources.clamd {
        spawn_clamd_health(
            clamd.clone(),
            config.clamav.health_interval_secs,
            metrics.clone(),
        );
    }
    let admin = if config.admin.enabled {
        let live = crate::admin::Live {
            queue: Some(queue.clone()),
            trust_book: resources.trust.clone(),
            lists: Some(lists),
            certs,
            metrics: Some(metrics.clone()),
            clamav: resources.clamd.is_some(),
            quarantine: Some(quarantine.clone()),
        };
        let ops = crate::admin::Ops::new(config.clone(), db.clone(), live);
        Some(crate::admin::serve(&config, ops).await?)
    } else {
        None
    };
    let shared = Arc::new(Shared {
        config: config.clone(),
        pipeline: Arc::new(Pipeline::from_config(&config, &resources, metrics.clone())),
        queue,
        metrics,
        incoming: crate::smtp::body::Incoming::open(&config.data_dir, &config.limits)?,
        recipients: crate::smtp::verify::RecipientVerifier::new(&config)?,
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    let mut smtp_addrs = Vec::new();
    let mut listeners = Vec::new();
    for l in &config.listeners {
        let acceptor = match l.tls {
            TlsMode::None => None,
            TlsMode::Starttls | TlsMode::Required => {
                let (cert, key) = match (&l.cert, &l.key) {
                    (Some(c), Some(k)) => (c.clone(), k.clone()),
                    _ => tls::ensure_self_signed(&config.data_dir, &config.hostname)?,
                };
                Some(tls::acceptor(&cert, &key, l.client_ca.as_deref())?)
            }
        };
        let socket = TcpListener::bind(l.bind).await.with_context(|| {
            format!(
                "cannot listen on {} (is another server using the port?)",
                l.bind
            )
        })?;
        let addr = socket.local_addr()?;
        smtp_addrs.push(addr);
        let settings = Arc::new(ListenerSettings {
            tls_mode: l.tls,
            acceptor,
        });
        listeners.push(tokio::spawn(listener::serve(
            socket,
            shared.clone(),
            settings,
            shutdown_rx.clone(),
        )));
        tracing::info!(%addr, tls = ?l.tls, "SMTP listener ready");
    }
    Ok(Running {
        smtp_addrs,
        metrics_addr,
        admin,
        quarantine,
        shutdown,
        listeners,
    })
}

/// Every `scan_interval_secs`, hand due messages (retries, and all of them after a
/// restart) to delivery, and refresh the queue gauges.
fn spawn_queue_scanner(config: Arc<Config>, queue: Queue, metrics: Metrics) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(config.queue.scan_interval_secs));
        loop {
            tick.tick().await;
            match queue.dispatch_due(1000).await {
                Ok(n) if n > 0 => tracing::debug!(n, "dispatched due messages"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %format!("{e:#}"), "queue scan failed"),
            }
            if let Ok(queued) = queue.store.depth().await {
                metrics.queue_depth(queued);
            }
        }
    });
}

/// Probe clamd (VERSION) periodically: up/down, version, signature date, latency.
fn spawn_clamd_health(
    clamd: Arc<filters::clamav::clamd::Clamd>,
    every_secs: u64,
    metrics: Metrics,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(every_secs));
        loop {
            tick.tick().await;
            match clamd.health().await {
                Ok(h) => metrics.clamd_health(Some(&h)),
                Err(e) => {
                    tracing::warn!(error = %e, "clamd health probe failed");
                    metrics.clamd_health(None);
                }
            }
        }
    });
}

/// Run until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let running = start(config).await?;
    if let Some(a) = running.metrics_addr {
        tracing::info!(addr = %a, "metrics endpoint ready (GET /metrics)");
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    tracing::info!(
        "shutting down: no new connections; unacknowledged messages stay with their senders"
    );
    running.shut_down().await;
    // Every 250 was sent after its commit; give the committer a moment for the outcomes
    // of deliveries that just ended (a lost outcome only means a redelivery).
    tokio::time::sleep(Duration::from_millis(100)).await;
    tracing::info!("stopped");
    Ok(())
}
