//! Wiring: config → queue, pipeline, delivery, listeners, metrics. `run` is the appliance.

mod loaded;
mod reload;

pub use loaded::{Loaded, Purpose};
pub use reload::{RESTART_KEYS, ReloadError, ReloadSummary, Reloader};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Config, TlsMode};
use crate::delivery::Delivery;
use crate::live::Live;
use crate::metrics::{self, Metrics};
use crate::queue::Queue;
use crate::smtp::listener;
use crate::smtp::session::{ListenerSettings, Shared};
use crate::smtp::tls;

/// Read a config file and check it as far as can be done without running: the config's own
/// validation, the DKIM key files, the certificate store's settings. `check-config` and
/// every reload check a file with this.
pub fn checked_config(path: &Path) -> anyhow::Result<Config> {
    let config = Config::load(path)?;
    // Key files are read at start; a bad one should show here first.
    crate::pipeline::dkim_sign::OutboundSigner::load(&config.dkim_signing)?;
    crate::certs::store::check_config(&config.data_dir, &config.certs)?;
    Ok(config)
}

/// A started gateway: its bound addresses, its reloader, and the switch that stops
/// accepting.
pub struct Running {
    pub smtp_addrs: Vec<SocketAddr>,
    pub metrics_addr: Option<SocketAddr>,
    /// The admin API (its socket is removed when the gateway stops).
    pub admin: Option<crate::admin::AdminServer>,
    /// The operations on held messages (for the admin API).
    pub quarantine: crate::quarantine_ops::QuarantineService,
    /// Re-reads the config file and puts it in force (SIGHUP, the admin API).
    pub reloader: Arc<Reloader>,
    /// The quarantine reports' link endpoint (`[digest] http_bind`).
    pub digest_web: Option<crate::digest::web::DigestWeb>,
    shutdown: watch::Sender<bool>,
    listeners: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stop accepting, let sessions finish (within the grace period), then return.
    pub async fn shut_down(self) {
        drop(self.admin);
        drop(self.digest_web);
        let _ = self.shutdown.send(true);
        for l in self.listeners {
            let _ = l.await;
        }
    }
}

/// Start everything; returns once the listeners are bound. `path` is the file `config`
/// was read from (what a reload reads again); `None` for the embedded defaults.
///
/// `prebound` holds SMTP sockets bound before a change of user (the rest are bound here);
/// `service_uid` is the user the gateway runs as (operator on the admin socket).
pub async fn start(
    config: Config,
    path: Option<PathBuf>,
    mut prebound: crate::service::Prebound,
    service_uid: u32,
) -> anyhow::Result<Running> {
    let config = Arc::new(config);
    let metrics = Metrics::new();
    let db = crate::store::Database::open_data_dir(&config.data_dir).await?;
    let (queue, jobs) = Queue::open(
        &config.data_dir,
        &db,
        metrics.clone(),
        crate::queue::HoldSettings::from_config(&config.quarantine),
    )
    .await
    .with_context(|| format!("cannot open the queue in {}", config.data_dir.display()))?;
    queue.budget.set_limit(config.queue.dispatch_memory_bytes);

    let loaded = Arc::new(Loaded::open(&config, &db, Purpose::Gateway, metrics.clone()).await?);
    if let Some(clamd) = loaded.clamd() {
        spawn_clamd_health(
            clamd.clone(),
            config.clamav.health_interval_secs,
            metrics.clone(),
        );
    }
    if config.dns_health_interval_secs > 0 {
        spawn_dns_health(config.clone(), metrics.clone());
    }
    let live = Live::new(loaded.snapshot(config.clone(), None)?);
    let reloader = Arc::new(Reloader::new(
        path,
        config.clone(),
        live.clone(),
        loaded.clone(),
    ));

    let delivery = Arc::new(Delivery::new(live.clone(), queue.clone(), metrics.clone())?);
    delivery.spawn_workers(jobs);
    spawn_queue_scanner(config.clone(), queue.clone(), metrics.clone());

    let metrics_addr = if config.metrics_bind.is_empty() {
        None
    } else {
        Some(metrics::serve(config.metrics_bind.parse()?, metrics.clone()).await?)
    };

    let mut quarantine =
        crate::quarantine_ops::QuarantineService::new(&config, &db).with_queue(queue.clone());
    if let Some(model) = loaded.bayes_model() {
        quarantine = quarantine.with_model(model);
    }
    quarantine.spawn_retention(metrics.clone());
    let state = crate::admin::Live {
        queue: Some(queue.clone()),
        trust_book: loaded.trust_book(),
        lists: Some(loaded.lists()),
        certs: loaded.cert_store(),
        metrics: Some(metrics.clone()),
        clamav: loaded.clamd().is_some(),
        quarantine: Some(quarantine.clone()),
        reloader: Some(reloader.clone()),
    };
    let ops = crate::admin::Ops::new(config.clone(), db.clone(), state);
    let admin = if config.admin.enabled {
        Some(crate::admin::serve(&config, ops.clone(), service_uid).await?)
    } else {
        None
    };
    let digest = crate::digest::DigestService::new(config.clone(), &db, Some(queue.clone()))?;
    digest.clone().spawn_schedule();
    let digest_web = match config.digest.http_bind.parse::<SocketAddr>() {
        Ok(addr) => {
            let socket = match prebound.take(addr) {
                Some(socket) => TcpListener::from_std(socket)?,
                None => TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} (key `digest.http_bind`)"))?,
            };
            let acceptor = crate::digest::web::acceptor(&config)?;
            Some(crate::digest::web::serve(&config, socket, acceptor, digest, ops).await?)
        }
        Err(_) => None,
    };
    let shared = Arc::new(Shared {
        live,
        queue,
        metrics,
        incoming: crate::smtp::body::Incoming::open(&config.data_dir, &config.limits)?,
    });
    let (shutdown, shutdown_rx) = watch::channel(false);
    // Every socket is bound before any is served: whoever sees one listener answer finds
    // all of them there.
    let mut bound = Vec::new();
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
        let socket = match prebound.take(l.bind) {
            Some(socket) => TcpListener::from_std(socket)?,
            None => TcpListener::bind(l.bind).await.with_context(|| {
                format!(
                    "cannot listen on {} (is another server using the port?)",
                    l.bind
                )
            })?,
        };
        let settings = Arc::new(ListenerSettings {
            tls_mode: l.tls,
            acceptor,
        });
        bound.push((socket, settings));
    }
    let mut smtp_addrs = Vec::new();
    let mut listeners = Vec::new();
    for (socket, settings) in bound {
        let addr = socket.local_addr()?;
        smtp_addrs.push(addr);
        let tls_mode = settings.tls_mode;
        listeners.push(tokio::spawn(listener::serve(
            socket,
            shared.clone(),
            settings,
            shutdown_rx.clone(),
        )));
        tracing::info!(%addr, tls = ?tls_mode, "SMTP listener ready");
    }
    Ok(Running {
        smtp_addrs,
        metrics_addr,
        admin,
        quarantine,
        reloader,
        digest_web,
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

/// Longest wait for the DNS probe's answer: the resolver's own attempts end sooner.
const DNS_PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// Probe the resolver periodically with an MX query for the gateway's own name: any answer
/// (also "no such name") means DNS works; a timeout or a server failure means mail
/// authentication and MX lookups will tempfail. A fresh resolver each time, so no cached
/// answer hides an outage and a changed /etc/resolv.conf is read.
fn spawn_dns_health(config: Arc<Config>, metrics: Metrics) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(config.dns_health_interval_secs));
        let name = format!("{}.", config.hostname.trim_end_matches('.'));
        loop {
            tick.tick().await;
            let started = std::time::Instant::now();
            let result = match crate::delivery::mx::resolver(&config.dns_servers) {
                Err(e) => Err(e),
                Ok(resolver) => {
                    match tokio::time::timeout(DNS_PROBE_TIMEOUT, resolver.mx_lookup(name.as_str()))
                        .await
                    {
                        Err(_) => Err(format!("no answer within {DNS_PROBE_TIMEOUT:?}")),
                        Ok(Ok(_)) => Ok(started.elapsed()),
                        Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => {
                            Ok(started.elapsed())
                        }
                        Ok(Err(e)) => Err(e.to_string()),
                    }
                }
            };
            if let Err(e) = &result {
                tracing::warn!(error = %e, query = %name, "DNS health probe failed");
            }
            metrics.dns_health(crate::metrics::DnsProbe {
                result,
                at: crate::clock::unix_now(),
            });
        }
    });
}

/// Run until SIGTERM or Ctrl-C; SIGHUP reloads the config file (`path`).
pub async fn run(config: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    // Handlers first: a SIGHUP or SIGTERM that arrives once the listeners answer must not
    // meet the default action (ending the process).
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    // Root is needed for the ports only: bind them, give the data directory away and
    // become the service user before anything else is opened.
    let plan = crate::service::Plan::decide(&config.service)?;
    // A socket per session on every listener, plus the database, spool files and clients.
    let sessions = config.limits.max_connections as u64 * config.listeners.len() as u64;
    crate::service::raise_file_limit(sessions + 256);
    let mut prebound = crate::service::Prebound::default();
    if let crate::service::Plan::Become(user) = &plan {
        prebound = crate::service::Prebound::bind(&config)?;
        crate::service::become_user(user, &config.data_dir)?;
    }
    let running = start(config, path, prebound, plan.service_uid()).await?;
    if let Some(a) = running.metrics_addr {
        tracing::info!(addr = %a, "metrics endpoint ready (GET /metrics)");
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = term.recv() => break,
            // The outcome is logged by the reloader.
            _ = hup.recv() => { let _ = running.reloader.reload().await; }
        }
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
