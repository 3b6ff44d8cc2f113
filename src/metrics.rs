//! Counters for operators: Prometheus text on `GET /metrics` (loopback by default).
//!
//! Names follow Prometheus conventions (`_total` counters, `_seconds` histograms).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels1 = [(&'static str, &'static str); 1];
type Labels2 = [(&'static str, &'static str); 2];

fn latency_histogram() -> Histogram {
    // 50 µs … ~3 s
    Histogram::new(exponential_buckets(0.00005, 3.0, 11))
}

struct Inner {
    registry: Registry,
    connections: Counter,
    connections_active: Gauge,
    connections_refused: Family<Labels1, Counter>,
    tls_sessions: Counter,
    messages: Family<Labels2, Counter>,
    symbols: Family<Labels1, Counter>,
    stage_seconds: Family<Labels1, Histogram, fn() -> Histogram>,
    queue_depth: Gauge,
    quarantine_held: Gauge,
    quarantine_held_bytes: Gauge,
    quarantine_actions: Family<Labels1, Counter>,
    /// The audit's totals at the last refresh, to add only what is new to the counters.
    quarantine_seen: std::sync::Mutex<Option<[i64; 3]>>,
    queue_removed: Counter,
    deliveries: Family<Labels1, Counter>,
    clamd_up: Gauge,
    clamd_latency: Gauge<f64, std::sync::atomic::AtomicU64>,
    clamd_info: Family<Vec<(String, String)>, Gauge>,
    /// The same message counts, readable for the admin API's dashboard figures.
    verdicts: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    /// The last clamd probe (`None` inside: it did not answer); `None`: no probe yet.
    clamd_last: Mutex<Option<Option<filters::clamav::clamd::Health>>>,
    dns_up: Gauge,
    dns_latency: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// The last DNS probe; `None`: no probe yet.
    dns_last: Mutex<Option<DnsProbe>>,
    /// Symbol hits of the current UTC day, for the dashboard's "top symbols today".
    symbols_today: Mutex<SymbolDay>,
}

/// What the last DNS health probe saw.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsProbe {
    /// `Ok(latency)` when the resolver answered (a "no such name" is an answer too);
    /// `Err(why)` when it did not.
    pub result: Result<std::time::Duration, String>,
    /// Unix seconds of the probe.
    pub at: i64,
}

/// Symbol hits counted per UTC day; the day rolls over at midnight.
#[derive(Debug, Default)]
struct SymbolDay {
    day: i64,
    counts: std::collections::HashMap<&'static str, u64>,
}

const DAY_SECS: i64 = 86_400;

/// Cheap to clone; every clone updates the same counters.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("portcullis");
        let connections = Counter::default();
        registry.register(
            "smtp_connections",
            "SMTP connections accepted",
            connections.clone(),
        );
        let connections_active = Gauge::default();
        registry.register(
            "smtp_connections_active",
            "SMTP sessions open now",
            connections_active.clone(),
        );
        let connections_refused = Family::<Labels1, Counter>::default();
        registry.register(
            "smtp_connections_refused",
            "SMTP connections refused by a limit (reason)",
            connections_refused.clone(),
        );
        let tls_sessions = Counter::default();
        registry.register(
            "smtp_tls_sessions",
            "SMTP sessions upgraded with STARTTLS",
            tls_sessions.clone(),
        );
        let messages = Family::<Labels2, Counter>::default();
        registry.register(
            "messages",
            "Messages by direction and verdict (accept, tag, quarantine, reject, tempfail)",
            messages.clone(),
        );
        let symbols = Family::<Labels1, Counter>::default();
        registry.register(
            "symbols",
            "Symbols the stages reported, by name (alert on e.g. TLS_DOWNGRADE, CLAM_VIRUS)",
            symbols.clone(),
        );
        let stage_seconds: Family<Labels1, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "stage_duration_seconds",
            "Time spent in each pipeline stage",
            stage_seconds.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Messages waiting for delivery",
            queue_depth.clone(),
        );
        let quarantine_held = Gauge::default();
        registry.register(
            "quarantine_held",
            "Quarantine entries held now (one per held recipient)",
            quarantine_held.clone(),
        );
        let quarantine_held_bytes = Gauge::default();
        registry.register(
            "quarantine_held_bytes",
            "Bytes of the messages held now",
            quarantine_held_bytes.clone(),
        );
        let quarantine_actions = Family::<Labels1, Counter>::default();
        registry.register(
            "quarantine_entries",
            "Quarantine entries that left the held state, by action (released, deleted, expired)",
            quarantine_actions.clone(),
        );
        let queue_removed = Counter::default();
        registry.register(
            "queue_settled",
            "Messages removed from the queue after delivery or bounce",
            queue_removed.clone(),
        );
        let deliveries = Family::<Labels1, Counter>::default();
        registry.register(
            "deliveries",
            "Recipient delivery attempts by result (delivered, deferred, failed, bounce_sent)",
            deliveries.clone(),
        );
        let clamd_up = Gauge::default();
        registry.register(
            "clamd_up",
            "1 when the last clamd health probe answered",
            clamd_up.clone(),
        );
        let clamd_latency = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "clamd_probe_latency_seconds",
            "Time clamd took to answer the last VERSION probe",
            clamd_latency.clone(),
        );
        let clamd_info = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "clamd_info",
            "clamd version and signature database (labels), value 1",
            clamd_info.clone(),
        );
        let dns_up = Gauge::default();
        registry.register(
            "dns_up",
            "1 when the last DNS health probe was answered",
            dns_up.clone(),
        );
        let dns_latency = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "dns_probe_latency_seconds",
            "Time the resolver took to answer the last DNS health probe",
            dns_latency.clone(),
        );
        Metrics(Arc::new(Inner {
            registry,
            connections,
            connections_active,
            connections_refused,
            tls_sessions,
            messages,
            symbols,
            stage_seconds,
            queue_depth,
            quarantine_held,
            quarantine_held_bytes,
            quarantine_actions,
            quarantine_seen: std::sync::Mutex::new(None),
            queue_removed,
            deliveries,
            clamd_up,
            clamd_latency,
            clamd_info,
            verdicts: Mutex::new(BTreeMap::new()),
            clamd_last: Mutex::new(None),
            dns_up,
            dns_latency,
            dns_last: Mutex::new(None),
            symbols_today: Mutex::new(SymbolDay::default()),
        }))
    }

    pub fn connection_opened(&self) {
        self.0.connections.inc();
        self.0.connections_active.inc();
    }

    pub fn connection_closed(&self) {
        self.0.connections_active.dec();
    }

    pub fn connection_refused(&self, reason: &'static str) {
        self.0
            .connections_refused
            .get_or_create(&[("reason", reason)])
            .inc();
    }

    pub fn tls_session(&self) {
        self.0.tls_sessions.inc();
    }

    pub fn message(&self, direction: &'static str, verdict: &'static str) {
        self.0
            .messages
            .get_or_create(&[("direction", direction), ("verdict", verdict)])
            .inc();
        *self
            .0
            .verdicts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((direction, verdict))
            .or_default() += 1;
    }

    /// Messages by (direction, verdict) since start.
    pub fn verdict_counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.0
            .verdicts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|((d, v), n)| (*d, *v, *n))
            .collect()
    }

    /// The last clamd probe: `None` before the first; `Some(None)` when clamd did not
    /// answer it.
    pub fn clamd_last(&self) -> Option<Option<filters::clamav::clamd::Health>> {
        self.0
            .clamd_last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn symbol(&self, name: &'static str) {
        self.0.symbols.get_or_create(&[("symbol", name)]).inc();
        self.symbol_today(name, crate::clock::unix_now());
    }

    fn symbol_today(&self, name: &'static str, now: i64) {
        let mut today = self
            .0
            .symbols_today
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let day = now.div_euclid(DAY_SECS);
        if today.day != day {
            today.day = day;
            today.counts.clear();
        }
        *today.counts.entry(name).or_default() += 1;
    }

    /// The `n` symbols seen most often since midnight UTC, most frequent first (ties by
    /// name); empty on a new day until the first hit.
    pub fn top_symbols_today(&self, n: usize, now: i64) -> Vec<(&'static str, u64)> {
        let today = self
            .0
            .symbols_today
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if today.day != now.div_euclid(DAY_SECS) {
            return Vec::new();
        }
        let mut top: Vec<(&'static str, u64)> =
            today.counts.iter().map(|(k, v)| (*k, *v)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        top.truncate(n);
        top
    }

    /// SMTP connections accepted and, of them, sessions upgraded with STARTTLS, since start.
    pub fn tls_share(&self) -> (u64, u64) {
        (self.0.connections.get(), self.0.tls_sessions.get())
    }

    /// Record a DNS health probe.
    pub fn dns_health(&self, probe: DnsProbe) {
        match &probe.result {
            Ok(latency) => {
                self.0.dns_up.set(1);
                self.0.dns_latency.set(latency.as_secs_f64());
            }
            Err(_) => {
                self.0.dns_up.set(0);
            }
        }
        *self.0.dns_last.lock().unwrap_or_else(|e| e.into_inner()) = Some(probe);
    }

    /// The last DNS probe; `None` before the first.
    pub fn dns_last(&self) -> Option<DnsProbe> {
        self.0
            .dns_last
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn stage_time(&self, stage: &'static str, seconds: f64) {
        self.0
            .stage_seconds
            .get_or_create(&[("stage", stage)])
            .observe(seconds);
    }

    pub fn queue_depth(&self, queued: i64) {
        self.0.queue_depth.set(queued);
    }

    /// The quarantine as its store counts it (held now; released, deleted and expired ever,
    /// from the audit, so actions taken by the CLI count too).
    pub fn quarantine(&self, t: &quarantine::Totals) {
        self.0.quarantine_held.set(t.held_entries);
        self.0.quarantine_held_bytes.set(t.held_bytes);
        let now = [t.released, t.deleted, t.expired];
        let mut seen = self
            .0
            .quarantine_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let before = seen.unwrap_or([0; 3]);
        for ((name, n), b) in ["released", "deleted", "expired"]
            .into_iter()
            .zip(now)
            .zip(before)
        {
            if n > b {
                self.0
                    .quarantine_actions
                    .get_or_create(&[("action", name)])
                    .inc_by((n - b) as u64);
            }
        }
        *seen = Some(now);
    }

    pub fn queue_removed(&self, n: usize) {
        self.0.queue_removed.inc_by(n as u64);
    }

    pub fn delivery(&self, result: &'static str, n: usize) {
        self.0
            .deliveries
            .get_or_create(&[("result", result)])
            .inc_by(n as u64);
    }

    /// Record a clamd health probe (`None`: clamd did not answer).
    pub fn clamd_health(&self, health: Option<&filters::clamav::clamd::Health>) {
        *self.0.clamd_last.lock().unwrap_or_else(|e| e.into_inner()) = Some(health.cloned());
        let Some(h) = health else {
            self.0.clamd_up.set(0);
            return;
        };
        self.0.clamd_up.set(1);
        self.0.clamd_latency.set(h.latency.as_secs_f64());
        self.0.clamd_info.clear();
        self.0
            .clamd_info
            .get_or_create(&vec![
                ("version".to_string(), h.version.clone()),
                (
                    "signatures".to_string(),
                    h.signatures.clone().unwrap_or_default(),
                ),
                (
                    "signature_date".to_string(),
                    h.signature_date.clone().unwrap_or_default(),
                ),
            ])
            .set(1);
    }

    /// The Prometheus text exposition of all counters.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.0.registry);
        out
    }
}

/// Serve `GET /metrics` on `bind` until the process ends.
pub async fn serve(bind: SocketAddr, metrics: Metrics) -> anyhow::Result<SocketAddr> {
    use axum::{Router, http::header, routing::get};
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    m.render(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot bind metrics endpoint {bind}: {e}"))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_symbols_count_the_current_utc_day_only() {
        let m = Metrics::new();
        let day = 20_000 * DAY_SECS;
        m.symbol_today("BAYES_SPAM", day + 10);
        m.symbol_today("BAYES_SPAM", day + 20);
        m.symbol_today("HDR_MISSING_DATE", day + 30);
        m.symbol_today("AUTH_SPF_FAIL", day + 40);
        assert_eq!(
            m.top_symbols_today(2, day + 50),
            [("BAYES_SPAM", 2), ("AUTH_SPF_FAIL", 1)]
        );
        // Midnight: yesterday's hits no longer count, and the next hit starts afresh.
        assert!(m.top_symbols_today(5, day + DAY_SECS).is_empty());
        m.symbol_today("HDR_MISSING_DATE", day + DAY_SECS + 1);
        assert_eq!(
            m.top_symbols_today(5, day + DAY_SECS + 2),
            [("HDR_MISSING_DATE", 1)]
        );
    }

    #[test]
    fn tls_share_and_dns_probe_are_readable() {
        let m = Metrics::new();
        m.connection_opened();
        m.connection_opened();
        m.tls_session();
        assert_eq!(m.tls_share(), (2, 1));
        assert_eq!(m.dns_last(), None);
        m.dns_health(DnsProbe {
            result: Err("timed out".into()),
            at: 5,
        });
        assert!(m.render().contains("portcullis_dns_up 0"));
        m.dns_health(DnsProbe {
            result: Ok(std::time::Duration::from_millis(3)),
            at: 6,
        });
        assert!(m.render().contains("portcullis_dns_up 1"));
        assert_eq!(m.dns_last().unwrap().at, 6);
    }
}
