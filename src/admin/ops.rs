//! The operations of the admin API, one function each. The server's handlers call them
//! with the running gateway's state ([`Live`]): a change is in the gateway's memory before
//! the function returns. The CLI calls the very same functions on the files when the
//! gateway is not running ([`Ops::offline`]).

mod quarantine;
mod report;

use std::sync::Arc;
use std::time::Instant;

use filters::lists::LiveLists;
use filters::trust::{Pin, TrustBook};

use super::error::ApiError;
use super::types::*;
use crate::certs::crl;
use crate::certs::info::{self, date_text};
use crate::certs::parse;
use crate::certs::store::{CA_IDENTITY_NOTE, CertRecord, CertStore, normalize_domain};
use crate::config::Config;
use crate::lists::{Added, ListStore};
use crate::metrics::Metrics;
use crate::quarantine_ops::QuarantineService;
use crate::queue::{Queue, QueueStore, QueuedMessage, body_path, is_inline, is_valid_id};
use crate::store::Database;
use crate::trust::TrustStore;

/// Symbols listed in the counters' "top today".
const TOP_SYMBOLS: usize = 10;

/// Who asks: from the socket's peer credentials, or the CLI's own user offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub gid: u32,
    /// The user name, when the system knows the uid.
    pub user: Option<String>,
}

impl Caller {
    /// The user running this process.
    pub fn this_process() -> Caller {
        let uid = nix::unistd::getuid();
        Caller {
            uid: uid.as_raw(),
            gid: nix::unistd::getgid().as_raw(),
            user: user_name(uid.as_raw()),
        }
    }

    /// `uid 1000 (alice)`, for audit records.
    pub fn describe(&self) -> String {
        match &self.user {
            Some(u) => format!("uid {} ({u})", self.uid),
            None => format!("uid {}", self.uid),
        }
    }
}

/// The user name of `uid` in the system's user database.
pub fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name)
}

/// What a running gateway holds in memory; all `None` offline.
#[derive(Clone, Default)]
pub struct Live {
    /// To hand a retried message to delivery at once.
    pub queue: Option<Queue>,
    /// The trust stage's memory: pins are applied to it at once.
    pub trust_book: Option<Arc<TrustBook>>,
    /// The lists stage's memory: replaced after each change.
    pub lists: Option<LiveLists>,
    /// The S/MIME store the pipeline uses (when S/MIME is on): changes rebuild its index.
    pub certs: Option<CertStore>,
    pub metrics: Option<Metrics>,
    /// ClamAV is enabled (its probes fill the counters).
    pub clamav: bool,
    /// The gateway's quarantine service (released copies dispatched at once, learning into
    /// the running model).
    pub quarantine: Option<QuarantineService>,
    /// Re-reads the config file and puts it in force.
    pub reloader: Option<Arc<crate::gateway::Reloader>>,
}

/// The operations, on one data directory. Cheap to clone.
#[derive(Clone)]
pub struct Ops {
    inner: Arc<Inner>,
}

struct Inner {
    config: Arc<Config>,
    db: Database,
    queue: QueueStore,
    trust: TrustStore,
    lists: ListStore,
    quarantine: QuarantineService,
    /// Opened on first use when the gateway does not run S/MIME (the master key file is
    /// made then).
    certs: tokio::sync::OnceCell<CertStore>,
    live: Live,
    started: Instant,
}

fn now() -> i64 {
    crate::clock::unix_now()
}

impl Ops {
    /// The operations of a running gateway, on its database and memory.
    pub fn new(config: Arc<Config>, db: Database, live: Live) -> Ops {
        let certs = tokio::sync::OnceCell::new_with(live.certs.clone());
        Ops {
            inner: Arc::new(Inner {
                quarantine: live
                    .quarantine
                    .clone()
                    .unwrap_or_else(|| QuarantineService::new(&config, &db)),
                queue: QueueStore::new(&db),
                trust: TrustStore::new(db.pool().clone()),
                lists: ListStore::new(db.pool().clone()),
                config,
                db,
                certs,
                live,
                started: Instant::now(),
            }),
        }
    }

    /// The operations on the files of a gateway that is not running.
    pub async fn offline(config: &Config) -> anyhow::Result<Ops> {
        let db = Database::open(&config.data_dir).await?;
        Ok(Ops::new(Arc::new(config.clone()), db, Live::default()))
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    // ----- health and counters -----

    pub fn health(&self) -> Health {
        Health {
            status: "ok".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            hostname: self.inner.config.hostname.clone(),
            pid: std::process::id(),
            uptime_secs: self.inner.started.elapsed().as_secs(),
        }
    }

    /// What the caller may do, as the role check in front of every endpoint decides it.
    pub fn whoami(&self, caller: &Caller, may_change: bool) -> WhoAmI {
        WhoAmI {
            uid: caller.uid,
            gid: caller.gid,
            user: caller.user.clone(),
            role: if may_change { "operator" } else { "auditor" }.into(),
            may_change,
        }
    }

    pub async fn counters(&self) -> Result<Counters, ApiError> {
        let (queued, oldest) = self.inner.queue.waiting().await?;
        let held = self.inner.quarantine.totals().await?.held_messages;
        let metrics = self.inner.live.metrics.as_ref();
        let messages = metrics
            .map(|m| {
                m.verdict_counts()
                    .into_iter()
                    .map(|(direction, verdict, count)| VerdictCount {
                        direction: direction.into(),
                        verdict: verdict.into(),
                        count,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let clamd = match (self.inner.live.clamav, metrics.and_then(|m| m.clamd_last())) {
            (true, Some(Some(h))) => Some(ClamdStatus {
                up: true,
                version: Some(h.version),
                signatures: h.signatures,
                signature_date: h.signature_date,
                latency_ms: Some(h.latency.as_secs_f64() * 1000.0),
            }),
            (true, Some(None)) => Some(ClamdStatus {
                up: false,
                version: None,
                signatures: None,
                signature_date: None,
                latency_ms: None,
            }),
            _ => None,
        };
        let now_secs = now();
        let dns = metrics.and_then(|m| m.dns_last()).map(|p| DnsStatus {
            up: p.result.is_ok(),
            latency_ms: p.result.as_ref().ok().map(|l| l.as_secs_f64() * 1000.0),
            error: p.result.err(),
            age_secs: (now_secs - p.at).max(0),
        });
        let tls = metrics.map_or(TlsShare::default(), |m| {
            let (connections, tls) = m.tls_share();
            TlsShare { connections, tls }
        });
        let symbols = metrics
            .map(|m| {
                m.top_symbols_today(TOP_SYMBOLS, now_secs)
                    .into_iter()
                    .map(|(name, count)| SymbolCount {
                        name: name.into(),
                        count,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Counters {
            messages,
            dns,
            tls,
            symbols,
            queue: QueueSummary {
                queued,
                held,
                oldest_received_at: oldest,
                oldest_age_secs: oldest.map(|t| (now() - t).max(0)),
            },
            clamd,
            uptime_secs: self.inner.started.elapsed().as_secs(),
        })
    }

    /// Read the config file again and put it in force (as SIGHUP does).
    pub async fn config_reload(&self) -> Result<ReloadResult, ApiError> {
        use crate::gateway::ReloadError;
        let Some(reloader) = &self.inner.live.reloader else {
            return Err(ApiError::unavailable(
                "the gateway is not running: there is nothing to reload (it reads its config when it starts)",
            ));
        };
        match reloader.reload().await {
            Ok(s) => Ok(ReloadResult {
                path: s.path.display().to_string(),
                applied: s.applied,
                needs_restart: s.needs_restart,
            }),
            Err(e @ ReloadError::NoConfigFile) => Err(ApiError::conflict(e.to_string())),
            Err(e) => Err(ApiError::field(
                "config",
                format!("reload refused, the configuration in force stays: {e}"),
            )),
        }
    }

    // ----- queue -----

    fn queue_message(&self, m: QueuedMessage) -> QueueMessage {
        let body_file = (!is_inline(m.size)).then(|| {
            body_path(&self.inner.config.data_dir.join("spool"), &m.id)
                .display()
                .to_string()
        });
        QueueMessage {
            direction: match m.direction {
                filters::Direction::Inbound => Direction::Inbound,
                filters::Direction::Outbound => Direction::Outbound,
            },
            recipients: m
                .recipients
                .into_iter()
                .map(|r| QueueRecipient {
                    address: r.address,
                    status: match r.status {
                        crate::queue::RcptStatus::Pending => RecipientStatus::Pending,
                        crate::queue::RcptStatus::Delivered => RecipientStatus::Delivered,
                        crate::queue::RcptStatus::Failed => RecipientStatus::Failed,
                    },
                    error: r.error,
                })
                .collect(),
            id: m.id,
            mail_from: m.mail_from,
            received_at: m.received_at,
            size: m.size,
            attempts: m.attempts,
            next_attempt: m.next_attempt,
            last_error: m.last_error,
            client_ip: m.client_ip,
            helo: m.helo,
            score: m.score,
            symbols: m.symbols,
            body_file,
        }
    }

    fn check_id(id: &str) -> Result<(), ApiError> {
        if is_valid_id(id) {
            Ok(())
        } else {
            Err(ApiError::field(
                "id",
                format!("{id:?} is not a queue id (hex digits)"),
            ))
        }
    }

    pub async fn queue_list(&self) -> Result<Vec<QueueMessage>, ApiError> {
        let all = self.inner.queue.list().await?;
        Ok(all.into_iter().map(|m| self.queue_message(m)).collect())
    }

    pub async fn queue_show(&self, id: &str) -> Result<QueueMessage, ApiError> {
        Self::check_id(id)?;
        match self.inner.queue.get(id).await? {
            Some(m) => Ok(self.queue_message(m)),
            None => Err(ApiError::not_found(format!("no message {id} in the queue"))),
        }
    }

    /// Make a queued message due now; a running gateway hands it to delivery at once.
    pub async fn queue_retry(&self, id: &str) -> Result<QueueActionResult, ApiError> {
        Self::check_id(id)?;
        if !self.inner.queue.retry_now(id).await? {
            return Err(ApiError::not_found(format!(
                "no queued message {id} (held messages are in the quarantine: `portcullis quarantine show {id}`)"
            )));
        }
        if let Some(q) = &self.inner.live.queue {
            q.dispatch_due(1000).await?;
        }
        Ok(QueueActionResult {
            id: id.into(),
            result: "due now".into(),
        })
    }

    pub async fn queue_delete(&self, id: &str) -> Result<QueueActionResult, ApiError> {
        Self::check_id(id)?;
        if !self.inner.queue.delete(id).await? {
            return Err(ApiError::not_found(format!("no message {id} in the queue")));
        }
        let _ = std::fs::remove_file(body_path(&self.inner.config.data_dir.join("spool"), id));
        Ok(QueueActionResult {
            id: id.into(),
            result: "deleted".into(),
        })
    }

    // ----- certificates -----

    async fn certs(&self) -> Result<&CertStore, ApiError> {
        let c = &self.inner.config;
        self.inner
            .certs
            .get_or_try_init(|| {
                CertStore::open(self.inner.db.pool().clone(), &c.data_dir, &c.certs)
            })
            .await
            .map_err(|e| ApiError::unavailable(format!("the certificate store: {e:#}")))
    }

    fn cert(r: &CertRecord, revocation: Option<&crl::Revocation>) -> Cert {
        let now = info::now();
        let f = &r.facts;
        let revocation = match revocation.unwrap_or(&r.revocation) {
            crl::Revocation::Off => Revocation::Off,
            crl::Revocation::Good => Revocation::Good,
            crl::Revocation::Revoked(s) => Revocation::Revoked(s.clone()),
            crl::Revocation::Unknown(s) => Revocation::Unknown(s.clone()),
        };
        Cert {
            fingerprint: f.fingerprint.clone(),
            subject: f.subject.clone(),
            issuer: f.issuer.clone(),
            serial: f.serial.clone(),
            addresses: f.addresses.clone(),
            not_before: f.not_before,
            not_after: f.not_after,
            expires: date_text(f.not_after),
            key_usage: f.key_usage.clone(),
            ext_key_usage: f.ext_key_usage.clone(),
            is_ca: f.is_ca,
            key_agreement: f.key_agreement,
            domains: r.domains.clone(),
            gateway_domains: r.gateway_domains.clone(),
            source: r.source.as_str().into(),
            message_id: r.message_id.clone(),
            added_at: r.added_at,
            capabilities: r.capabilities.clone(),
            explicitly_trusted: r.explicitly_trusted,
            has_private_key: r.has_private_key,
            chain: Chain {
                trusted: r.chain.trusted,
                detail: r.chain.detail.clone(),
                chain: r
                    .chain
                    .chain
                    .iter()
                    .map(|l| ChainLink {
                        subject: l.subject.clone(),
                        fingerprint: l.fingerprint.clone(),
                    })
                    .collect(),
            },
            revocation,
            usable_for_encryption: r.usable_for_encryption(now),
            encryption_problems: r.encryption_problems(now),
            signing_problems: r.signing_problems(now),
        }
    }

    /// A fingerprint that matches nothing is `not_found`; a malformed or ambiguous one a
    /// bad request.
    async fn find_cert(&self, fingerprint: &str) -> Result<Arc<CertRecord>, ApiError> {
        let store = self.certs().await?;
        store.find(fingerprint).await.map_err(|e| {
            let text = format!("{e:#}");
            if text.starts_with("no certificate") {
                ApiError::not_found(text)
            } else {
                ApiError::field("fingerprint", text)
            }
        })
    }

    pub async fn certs_list(&self, domain: Option<&str>) -> Result<CertList, ApiError> {
        let domain = domain
            .map(normalize_domain)
            .transpose()
            .map_err(|e| ApiError::from_input("domain", e))?;
        let all = self.certs().await?.all().await?;
        let now = info::now();
        let mut domains: Vec<String> = all
            .iter()
            .filter(|r| !r.facts.is_ca)
            .flat_map(|r| r.domains.iter().cloned())
            .collect();
        domains.sort();
        domains.dedup();
        if let Some(d) = &domain {
            domains.retain(|x| x == d);
        }
        let mut groups = Vec::new();
        for d in domains {
            let mut certs: Vec<&Arc<CertRecord>> = all
                .iter()
                .filter(|r| !r.facts.is_ca && r.domains.contains(&d))
                .collect();
            // Gateway certificates first, then by address, newest first.
            certs.sort_by(|a, b| {
                (
                    !a.gateway_domains.contains(&d),
                    &a.facts.addresses,
                    -a.facts.not_after,
                )
                    .cmp(&(
                        !b.gateway_domains.contains(&d),
                        &b.facts.addresses,
                        -b.facts.not_after,
                    ))
            });
            groups.push(DomainCerts {
                certificates: certs.len(),
                usable_for_encryption: certs
                    .iter()
                    .filter(|r| r.usable_for_encryption(now))
                    .count(),
                gateway: certs
                    .iter()
                    .filter(|r| r.gateway_domains.contains(&d))
                    .map(|r| r.fingerprint().to_string())
                    .collect(),
                certs: certs.iter().map(|r| Self::cert(r, None)).collect(),
                domain: d,
            });
        }
        let cas = if domain.is_some() {
            Vec::new()
        } else {
            all.iter()
                .filter(|r| r.facts.is_ca)
                .map(|r| Self::cert(r, None))
                .collect()
        };
        Ok(CertList {
            domains: groups,
            cas,
        })
    }

    /// One certificate, with its revocation as a signature check would see it (a CRL is
    /// fetched when none is held).
    pub async fn cert_show(&self, fingerprint: &str) -> Result<Cert, ApiError> {
        let r = self.find_cert(fingerprint).await?;
        let store = self.certs().await?;
        let revocation = if r.chain.trusted {
            let der = r
                .cert
                .to_der()
                .map_err(|e| ApiError::internal(e.to_string()))?;
            store.revocation(&der, &[]).await
        } else {
            r.revocation.clone()
        };
        // The check may have fetched a CRL: show the record as it is now.
        let r = self.find_cert(fingerprint).await?;
        Ok(Self::cert(&r, Some(&revocation)))
    }

    fn upload(upload: &CertUpload) -> Result<(Vec<u8>, String), ApiError> {
        let bytes = base64_simd::STANDARD
            .decode_to_vec(upload.data.trim())
            .map_err(|_| ApiError::field("data", "not base64 (the file's bytes, base64)"))?;
        if bytes.is_empty() {
            return Err(ApiError::field("data", "empty file"));
        }
        let name = upload.name.clone().unwrap_or_else(|| "upload".into());
        Ok((bytes, name))
    }

    fn stored(s: crate::certs::store::Stored) -> StoredCert {
        StoredCert {
            fingerprint: s.fingerprint,
            subject: s.subject,
            addresses: s.addresses,
            is_ca: s.is_ca,
            change: s.change.into(),
            details: s.details,
        }
    }

    /// Import certificates (and keys) into the store; the running gateway decrypts and
    /// signs with them from the moment this returns.
    pub async fn cert_import(&self, upload: &CertUpload) -> Result<ImportReport, ApiError> {
        let (bytes, name) = Self::upload(upload)?;
        let domain = upload
            .domain
            .as_deref()
            .map(normalize_domain)
            .transpose()
            .map_err(|e| ApiError::from_input("domain", e))?;
        let bundle = parse::read_import(&bytes, &name, upload.password.as_deref())
            .map_err(|e| ApiError::from_input("data", e))?;
        let stored = self
            .certs()
            .await?
            .import(&bundle, domain.as_deref())
            .await
            .map_err(|e| ApiError::from_input("data", e))?;
        let warnings = stored
            .iter()
            .filter(|s| s.details.iter().any(|d| d == CA_IDENTITY_NOTE))
            .map(|s| format!("{}: {CA_IDENTITY_NOTE}", s.subject))
            .collect();
        Ok(ImportReport {
            stored: stored.into_iter().map(Self::stored).collect(),
            warnings,
        })
    }

    /// Trust the certificates of a file as anchors.
    pub async fn cert_trust_ca(&self, upload: &CertUpload) -> Result<ImportReport, ApiError> {
        let (bytes, name) = Self::upload(upload)?;
        if upload.password.is_some() || upload.domain.is_some() {
            let field = if upload.password.is_some() {
                "password"
            } else {
                "domain"
            };
            return Err(ApiError::field(field, "not used when trusting a CA"));
        }
        let certs =
            parse::read_certificates(&bytes, &name).map_err(|e| ApiError::from_input("data", e))?;
        let stored = self
            .certs()
            .await?
            .trust_ca(&certs)
            .await
            .map_err(|e| ApiError::from_input("data", e))?;
        let warnings = stored
            .iter()
            .filter(|s| !s.is_ca)
            .map(|s| {
                format!(
                    "{} is not a CA certificate; it is trusted directly (as a partner's \
                     self-signed certificate would be)",
                    s.subject
                )
            })
            .collect();
        Ok(ImportReport {
            stored: stored.into_iter().map(Self::stored).collect(),
            warnings,
        })
    }

    pub async fn cert_import_crls(&self, upload: &CertUpload) -> Result<Vec<StoredCrl>, ApiError> {
        let (bytes, name) = Self::upload(upload)?;
        let crls = crl::read_crls(&bytes, &name).map_err(|e| ApiError::from_input("data", e))?;
        let stored = self
            .certs()
            .await?
            .import_crls(&crls)
            .await
            .map_err(|e| ApiError::from_input("data", e))?;
        Ok(stored
            .into_iter()
            .map(|c| StoredCrl {
                fingerprint: c.fingerprint,
                issuer: c.issuer,
                this_update: c.this_update,
                next_update: c.next_update,
                revoked: c.revoked,
                change: c.change.into(),
            })
            .collect())
    }

    /// Delete a certificate and its key (the full fingerprint is required).
    pub async fn cert_delete(&self, fingerprint: &str) -> Result<CertDeleted, ApiError> {
        self.find_cert(fingerprint).await?;
        let r = self
            .certs()
            .await?
            .delete(fingerprint)
            .await
            .map_err(|e| ApiError::from_input("fingerprint", e))?;
        Ok(CertDeleted {
            fingerprint: r.fingerprint().into(),
            subject: r.facts.subject.clone(),
            had_private_key: r.has_private_key,
        })
    }

    pub async fn cert_export(&self, fingerprint: &str) -> Result<CertPem, ApiError> {
        let r = self.find_cert(fingerprint).await?;
        let pem = r
            .cert
            .to_pem()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(CertPem {
            fingerprint: r.fingerprint().into(),
            pem: String::from_utf8_lossy(&pem).into_owned(),
        })
    }

    // ----- trust -----

    fn trust_domain(d: crate::trust::DomainReport) -> TrustDomain {
        TrustDomain {
            domain: d.domain,
            weight: d.weight,
            pinned: d.pinned,
            correspondents: d.correspondents,
            servers: d.servers,
            tls_verified: d.tls_verified,
            tls_unverified: d.tls_unverified,
            last_activity: d.last_activity,
        }
    }

    pub async fn trust_list(&self) -> Result<Vec<TrustDomain>, ApiError> {
        let hl = self.inner.config.trust.half_life_days;
        let all = self.inner.trust.report(hl, now(), None).await?;
        Ok(all.into_iter().map(Self::trust_domain).collect())
    }

    fn check_domain(domain: &str) -> Result<String, ApiError> {
        normalize_domain(domain).map_err(|e| ApiError::from_input("domain", e))
    }

    pub async fn trust_show(&self, domain: &str) -> Result<TrustDetails, ApiError> {
        let domain = Self::check_domain(domain)?;
        let hl = self.inner.config.trust.half_life_days;
        let t = now();
        let Some(d) = self
            .inner
            .trust
            .report(hl, t, Some(&domain))
            .await?
            .into_iter()
            .next()
        else {
            return Err(ApiError::not_found(format!(
                "nothing is known about {domain}"
            )));
        };
        let (pairs, servers) = self.inner.trust.details(&domain, hl, t).await?;
        Ok(TrustDetails {
            domain: Self::trust_domain(d),
            correspondents: pairs
                .into_iter()
                .map(|(local, remote, w)| Correspondent {
                    local,
                    remote,
                    weight: (w * 100.0).round() / 100.0,
                })
                .collect(),
            servers: servers
                .into_iter()
                .map(|(network, messages, first_seen, last_seen)| TrustServer {
                    network,
                    messages,
                    first_seen,
                    last_seen,
                })
                .collect(),
        })
    }

    /// Pin a domain's trust (or unpin: `None`); the running gateway applies it at once.
    pub async fn trust_pin(
        &self,
        domain: &str,
        level: Option<PinLevel>,
    ) -> Result<PinResult, ApiError> {
        let domain = Self::check_domain(domain)?;
        let pin = level.map(|l| match l {
            PinLevel::High => Pin::High,
            PinLevel::Medium => Pin::Medium,
            PinLevel::Low => Pin::Low,
            PinLevel::None => Pin::None,
        });
        self.inner.trust.set_pin(&domain, pin, now()).await?;
        if let Some(book) = &self.inner.live.trust_book {
            book.set_pins(self.inner.trust.pins().await?);
        }
        Ok(PinResult {
            domain,
            pinned: level,
        })
    }

    // ----- lists -----

    pub async fn lists_all(&self) -> Result<Vec<ListEntry>, ApiError> {
        Ok(self.inner.lists.all(now()).await?)
    }

    pub async fn lists_show(&self, id: i64) -> Result<ListEntry, ApiError> {
        self.inner
            .lists
            .get(id, now())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no list entry {id}")))
    }

    /// Put the stored lists into the running gateway's memory.
    async fn refresh_lists(&self) -> Result<(), ApiError> {
        if let Some(live) = &self.inner.live.lists {
            live.replace(self.inner.lists.load(now()).await?);
        }
        Ok(())
    }

    pub async fn lists_add(
        &self,
        new: &NewListEntry,
        caller: &Caller,
    ) -> Result<ListAdded, ApiError> {
        let added = self
            .inner
            .lists
            .add(new, &caller.describe(), now())
            .await?
            .map_err(|e| ApiError::field(e.field, e.message))?;
        self.refresh_lists().await?;
        Ok(match added {
            Added::New(entry) => ListAdded {
                change: "new".into(),
                entry,
            },
            Added::Updated(entry) => ListAdded {
                change: "updated".into(),
                entry,
            },
        })
    }

    pub async fn lists_remove(&self, id: i64) -> Result<ListEntry, ApiError> {
        let removed = self
            .inner
            .lists
            .remove(id, now())
            .await?
            .ok_or_else(|| ApiError::not_found(format!("no list entry {id}")))?;
        self.refresh_lists().await?;
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn ops(dir: &std::path::Path, live: Live) -> Ops {
        let config = Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        };
        let db = Database::open(dir).await.unwrap();
        Ops::new(Arc::new(config), db, live)
    }

    #[tokio::test]
    async fn pins_and_lists_reach_the_running_gateways_memory_before_returning() {
        let dir = tempfile::tempdir().unwrap();
        let book = Arc::new(TrustBook::new(90.0));
        let lists = LiveLists::default();
        let ops = ops(
            dir.path(),
            Live {
                trust_book: Some(book.clone()),
                lists: Some(lists.clone()),
                ..Live::default()
            },
        )
        .await;
        ops.trust_pin("Partner.Test.", Some(PinLevel::Medium))
            .await
            .unwrap();
        assert_eq!(book.pin("partner.test"), Some(Pin::Medium));
        ops.trust_pin("partner.test", None).await.unwrap();
        assert_eq!(book.pin("partner.test"), None);

        let me = Caller::this_process();
        let new = NewListEntry {
            list: ListName::Block,
            sender: "@spam.test".into(),
            recipient: None,
            comment: None,
            expires_at: None,
        };
        let added = ops.lists_add(&new, &me).await.unwrap();
        assert_eq!(added.change, "new");
        assert_eq!(lists.current().len(), 1);
        ops.lists_remove(added.entry.id).await.unwrap();
        assert!(lists.current().is_empty());
        let e = ops.lists_remove(added.entry.id).await.unwrap_err();
        assert!(e.is_not_found(), "{e:?}");
    }

    #[tokio::test]
    async fn bad_input_names_its_field() {
        let dir = tempfile::tempdir().unwrap();
        let ops = ops(dir.path(), Live::default()).await;
        let field = |e: ApiError| e.detail.field.unwrap_or_default();
        assert_eq!(field(ops.queue_show("../x").await.unwrap_err()), "id");
        assert!(ops.queue_show("ABC").await.unwrap_err().is_not_found());
        assert_eq!(
            field(ops.trust_pin("not a domain", None).await.unwrap_err()),
            "domain"
        );
        let upload = CertUpload {
            data: "***".into(),
            name: None,
            password: None,
            domain: None,
        };
        assert_eq!(field(ops.cert_import(&upload).await.unwrap_err()), "data");
        let garbage = CertUpload {
            data: base64_simd::STANDARD.encode_to_string(b"not a certificate"),
            ..upload
        };
        assert_eq!(field(ops.cert_import(&garbage).await.unwrap_err()), "data");
    }
}
