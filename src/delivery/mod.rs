//! Delivery workers: take queued messages, deliver them to the next hop, report outcomes.
//!
//! Routes: recipients in `local_domains` go to `inbound_next_hop` (the internal server);
//! others to `outbound_smarthost` when set, else to the MX of their domain. Each worker
//! keeps its last connection open for the next message to the same route.
//! Temporary failures are retried with exponential backoff up to `queue.max_age_secs`;
//! permanent failures (and expiry) send a DSN to the sender, never to the null sender.

pub mod client;
pub mod dsn;
pub mod mx;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use tokio::sync::{Mutex, mpsc};

use client::{Connection, Connector, RcptResult, TlsNeed};
use filters::Direction;

use crate::config::{Config, parse_host_port};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::queue::{
    DeliveryJob, Op, Queue, QueuedMessage, RcptStatus, Stored, is_inline, new_queue_id, unix_now,
    write_body_file,
};
use crate::smtp::address::domain_of;

/// Where a group of recipients is sent.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Route {
    /// A fixed host:port (internal server or smarthost).
    Relay(String, u16),
    /// The MX hosts of a domain.
    Mx(String),
}

impl Route {
    fn key(&self) -> String {
        match self {
            Route::Relay(h, p) => format!("relay:{h}:{p}"),
            Route::Mx(d) => format!("mx:{d}"),
        }
    }
}

/// The TLS a recipient's domain requires by `[[tls_policy]]` (outbound direction).
pub fn tls_need(config: &Config, rcpt: &str) -> TlsNeed {
    match config.tls_policy_for(&domain_of(rcpt), filters::Direction::Outbound) {
        Some(p) if p.require_verified_cert => TlsNeed::Verified,
        Some(p) if p.require_tls => TlsNeed::Required,
        _ => TlsNeed::Opportunistic,
    }
}

pub fn route_for(config: &Config, rcpt: &str) -> Route {
    let domain = domain_of(rcpt);
    let hop = if config.is_local_domain(&domain) {
        Some(&config.inbound_next_hop)
    } else {
        config.outbound_smarthost.as_ref()
    };
    match hop.and_then(|h| parse_host_port(h).ok()) {
        Some((host, port)) => Route::Relay(host, port),
        None => Route::Mx(domain),
    }
}

/// Wait before attempt `attempts + 1`: initial × 2^(attempts-1), capped.
pub fn backoff(config: &Config, attempts: u32) -> i64 {
    let q = &config.queue;
    let exp = attempts.saturating_sub(1).min(30);
    q.retry_initial_secs
        .saturating_mul(1u64 << exp)
        .min(q.retry_max_secs.max(q.retry_initial_secs)) as i64
}

pub struct Delivery {
    /// The configuration in force: routes, TLS policies, retries and bounces follow a
    /// reload; the connector and resolver below are built once (their keys need a restart).
    live: Live,
    queue: Queue,
    metrics: Metrics,
    connector: Connector,
    resolver: Option<TokioResolver>,
}

type Cached = Option<(String, Connection)>;

impl Delivery {
    pub fn new(live: Live, queue: Queue, metrics: Metrics) -> anyhow::Result<Delivery> {
        let config = live.config();
        let connector = Connector::new(
            config.hostname.clone(),
            Duration::from_secs(config.queue.connect_timeout_secs),
            Duration::from_secs(config.queue.reply_timeout_secs),
            config.outbound_tls_ca.as_deref(),
        )?;
        let resolver = match mx::resolver(&config.dns_servers) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::warn!(error = %e, "no DNS resolver: MX deliveries will be deferred");
                None
            }
        };
        Ok(Delivery {
            live,
            queue,
            metrics,
            connector,
            resolver,
        })
    }

    fn config(&self) -> Arc<Config> {
        self.live.config()
    }

    /// Start the workers; they run until the job channel closes.
    pub fn spawn_workers(self: Arc<Self>, jobs: mpsc::UnboundedReceiver<DeliveryJob>) {
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..self.config().queue.delivery_concurrency {
            tokio::spawn(self.clone().worker(jobs.clone()));
        }
    }

    async fn worker(self: Arc<Self>, jobs: Arc<Mutex<mpsc::UnboundedReceiver<DeliveryJob>>>) {
        let idle = Duration::from_secs(self.config().queue.idle_connection_secs.max(1));
        let mut cached: Cached = None;
        loop {
            let next = {
                let mut rx = jobs.lock().await;
                tokio::time::timeout(idle, rx.recv()).await
            };
            match next {
                Ok(Some(job)) => self.deliver(job, &mut cached).await,
                Ok(None) => break,
                Err(_) => {
                    if let Some((_, c)) = cached.take() {
                        c.quit().await;
                    }
                }
            }
        }
    }

    /// One delivery attempt for every pending recipient of a message.
    async fn deliver(&self, job: DeliveryJob, cached: &mut Cached) {
        let mut message = job.message;
        let body = match job.body {
            Some(b) => b,
            None => match self.queue.load_body(&message).await {
                Ok(b) => Arc::new(b),
                Err(e) => {
                    tracing::error!(id = %message.id, error = %format!("{e:#}"), "cannot read message body; will retry");
                    let error = format!("451 4.3.0 message body unreadable: {e}");
                    self.defer_all(&mut message, &error);
                    self.queue.settle(Op::Settle { message, dsn: None });
                    return;
                }
            },
        };
        let mut groups: BTreeMap<(Route, TlsNeed), Vec<String>> = BTreeMap::new();
        let config = self.config();
        for r in message.pending_recipients() {
            groups
                .entry((
                    route_for(&config, &r.address),
                    tls_need(&config, &r.address),
                ))
                .or_default()
                .push(r.address.clone());
        }
        let mut results: Vec<(String, RcptResult)> = Vec::new();
        for ((route, need), rcpts) in groups {
            let outcome = self
                .attempt(&route, need, &message.mail_from, &rcpts, &body, cached)
                .await;
            for (rcpt, result) in rcpts.into_iter().zip(outcome) {
                tracing::info!(
                    target: "portcullis::delivery",
                    id = %message.id,
                    rcpt = %rcpt,
                    route = %route.key(),
                    result = ?result,
                    "delivery attempt"
                );
                results.push((rcpt, result));
            }
        }
        self.conclude(message, results, &body).await;
    }

    /// Deliver to one route; one result per recipient, in order.
    async fn attempt(
        &self,
        route: &Route,
        need: TlsNeed,
        from: &str,
        rcpts: &[String],
        body: &[u8],
        cached: &mut Cached,
    ) -> Vec<RcptResult> {
        // A kept connection is only reused for the same route *and* TLS need.
        let key = format!("{} {}", route.key(), need.as_str());
        // A kept connection may have been closed by the peer meanwhile: one retry fresh.
        if let Some((k, mut conn)) = cached.take() {
            if k == key {
                if let Ok(results) = conn.send(from, rcpts, body).await {
                    self.keep(cached, key, conn, &results).await;
                    return results;
                }
            } else {
                tokio::spawn(conn.quit());
            }
        }
        let targets = match self.targets(route).await {
            Ok(t) => t,
            Err(e) => {
                let r = if e.permanent {
                    RcptResult::Failed(e.message)
                } else {
                    RcptResult::Deferred(e.message)
                };
                return rcpts.iter().map(|_| r.clone()).collect();
            }
        };
        let mut last_error = String::from("no address to try");
        for (addr, name) in targets {
            let mut conn = match self.connector.connect(addr, &name, need).await {
                Ok(c) => c,
                Err(e) => {
                    last_error = e;
                    continue;
                }
            };
            match conn.send(from, rcpts, body).await {
                Ok(results) => {
                    self.keep(cached, key, conn, &results).await;
                    return results;
                }
                Err(e) => last_error = format!("{addr}: {e}"),
            }
        }
        let r = RcptResult::Deferred(format!("451 4.4.1 {last_error}"));
        rcpts.iter().map(|_| r.clone()).collect()
    }

    async fn keep(
        &self,
        cached: &mut Cached,
        key: String,
        mut conn: Connection,
        results: &[RcptResult],
    ) {
        let clean = results
            .iter()
            .all(|r| matches!(r, RcptResult::Delivered(_)));
        if clean || conn.rset().await {
            *cached = Some((key, conn));
        }
    }

    async fn targets(&self, route: &Route) -> Result<Vec<(SocketAddr, String)>, mx::RouteError> {
        match route {
            Route::Relay(host, port) => {
                let addrs = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(|e| mx::RouteError {
                        permanent: false,
                        message: format!("451 4.4.3 cannot resolve next hop {host}: {e}"),
                    })?;
                Ok(addrs.map(|a| (a, host.clone())).collect())
            }
            Route::Mx(domain) => match &self.resolver {
                Some(r) => mx::targets(r, domain, self.config().queue.mx_port).await,
                None => Err(mx::RouteError {
                    permanent: false,
                    message: "451 4.4.3 no DNS resolver configured".into(),
                }),
            },
        }
    }

    fn defer_all(&self, message: &mut QueuedMessage, error: &str) {
        message.attempts += 1;
        message.next_attempt = unix_now() + backoff(&self.config(), message.attempts);
        message.last_error = Some(error.to_string());
    }

    /// Record the results, bounce what failed, schedule what was deferred.
    async fn conclude(
        &self,
        mut message: QueuedMessage,
        results: Vec<(String, RcptResult)>,
        body: &[u8],
    ) {
        let now = unix_now();
        let expired = now - message.received_at >= self.config().queue.max_age_secs as i64;
        let (mut delivered, mut deferred, mut failed) = (0, 0, 0);
        let mut newly_failed: Vec<(String, String)> = Vec::new();
        let mut last_error = None;
        for (rcpt, result) in results {
            let Some(r) = message
                .recipients
                .iter_mut()
                .find(|r| r.address == rcpt && r.status == RcptStatus::Pending)
            else {
                continue;
            };
            match result {
                RcptResult::Delivered(_) => {
                    r.status = RcptStatus::Delivered;
                    delivered += 1;
                }
                RcptResult::Deferred(e) if expired => {
                    let e = format!("{e} (gave up after {} attempts)", message.attempts + 1);
                    r.status = RcptStatus::Failed;
                    r.error = Some(e.clone());
                    newly_failed.push((rcpt, e));
                    failed += 1;
                }
                RcptResult::Deferred(e) => {
                    r.error = Some(e.clone());
                    last_error = Some(e);
                    deferred += 1;
                }
                RcptResult::Failed(e) => {
                    r.status = RcptStatus::Failed;
                    r.error = Some(e.clone());
                    newly_failed.push((rcpt, e));
                    failed += 1;
                }
            }
        }
        self.metrics.delivery("delivered", delivered);
        self.metrics.delivery("deferred", deferred);
        self.metrics.delivery("failed", failed);
        message.attempts += 1;
        message.next_attempt = now + backoff(&self.config(), message.attempts);
        if last_error.is_some() {
            message.last_error = last_error;
        }
        let dsn = if !newly_failed.is_empty() && !message.mail_from.is_empty() {
            self.bounce(&message, &newly_failed, body).await
        } else {
            None
        };
        self.queue.settle(Op::Settle { message, dsn });
    }

    /// Make a DSN for `failed`; the committer stores it with the outcome.
    async fn bounce(
        &self,
        message: &QueuedMessage,
        failed: &[(String, String)],
        body: &[u8],
    ) -> Option<Stored> {
        let list: Vec<dsn::FailedRecipient> = failed
            .iter()
            .map(|(a, d)| dsn::FailedRecipient {
                address: a,
                diagnostic: d,
            })
            .collect();
        let id = new_queue_id();
        let config = self.config();
        let text = dsn::build(
            &config.hostname,
            &message.id,
            &message.mail_from,
            message.received_at,
            &list,
            body,
            config.queue.dsn_max_returned_bytes,
        );
        let size = text.len() as u64;
        let text = Arc::new(text);
        if !is_inline(size)
            && let Err(e) = write_body_file(self.queue.body_path(&id), text.clone()).await
        {
            // Without the DSN the sender would never learn: keep the failure visible.
            tracing::error!(id = %message.id, error = %format!("{e:#}"), "cannot write DSN");
            return None;
        }
        self.metrics.delivery("bounce_sent", 1);
        let local_sender = self
            .config()
            .is_local_domain(&domain_of(&message.mail_from));
        let direction = if local_sender {
            Direction::Inbound
        } else {
            Direction::Outbound
        };
        let dsn = QueuedMessage::made_here(id, direction, message.mail_from.clone(), size);
        Some((dsn, text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_follow_locality_and_smarthost() {
        let c =
            Config::parse("local_domains = [\"example.test\"]\ninbound_next_hop = \"10.0.0.5:25\"")
                .unwrap();
        assert_eq!(
            route_for(&c, "u@Example.Test"),
            Route::Relay("10.0.0.5".into(), 25)
        );
        assert_eq!(
            route_for(&c, "u@other.test"),
            Route::Mx("other.test".into())
        );
        let c = Config::parse("outbound_smarthost = \"relay.test:587\"").unwrap();
        assert_eq!(
            route_for(&c, "u@other.test"),
            Route::Relay("relay.test".into(), 587)
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let c = Config::parse("[queue]\nretry_initial_secs = 60\nretry_max_secs = 3600").unwrap();
        assert_eq!(backoff(&c, 1), 60);
        assert_eq!(backoff(&c, 2), 120);
        assert_eq!(backoff(&c, 3), 240);
        assert_eq!(backoff(&c, 20), 3600);
    }
}
