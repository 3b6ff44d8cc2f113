//! The certificate and key store: certificates of users, partners and domain gateways, the
//! private keys of our own identities (sealed, see [`super::keys`]), trust anchors, and the
//! lookups the S/MIME engine makes per message.
//!
//! Rows live in SQLite (migration 0005); lookups use an in-memory index built from all rows,
//! rebuilt after each change made here and, for changes made by another process (the
//! `certs` CLI while the gateway runs), when `smime_meta.version` moved — checked at most
//! every `certs.reload_secs`. Chain status is recomputed on every rebuild, so a CA added with
//! `certs trust-ca` or a changed `certs.extra_ca` shows at once.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::store::X509Store;
use openssl::x509::{X509, X509Crl, X509Ref};
use serde::Serialize;
use sqlx::{Sqlite, SqlitePool, Transaction};

pub use crate::config::{CertsConfig, RevocationMode};

use super::anchors::{self, Anchors};
pub use super::anchors::{ChainLink, ChainStatus};
use super::crl::{self, FetchLimits, HeldCrl, Revocation};
use super::info::{self, CertFacts, domain_of, normalize_address};
use super::keys::MasterKey;
use super::parse::{self, Bundle};

/// A certificate with its private key, for decrypting and signing.
pub struct Identity {
    pub cert: X509,
    pub key: PKey<Private>,
    /// Intermediate CA certificates up to (not including) the root, as far as known.
    pub chain: Vec<X509>,
}

/// A recipient's certificate for encrypting.
pub struct EncryptionCert {
    pub cert: X509,
    pub fingerprint: String,
    /// The owner's SMIMECapabilities list AES-GCM.
    pub aes_gcm_capable: bool,
}

/// Where a certificate came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `certs import`.
    Imported,
    /// From a validly signed inbound message.
    Harvested,
    /// `certs trust-ca`.
    Trusted,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Imported => "imported",
            Source::Harvested => "harvested",
            Source::Trusted => "trusted",
        }
    }

    fn parse(s: &str) -> Source {
        match s {
            "harvested" => Source::Harvested,
            "trusted" => Source::Trusted,
            _ => Source::Imported,
        }
    }
}

/// Everything the store knows about one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertRecord {
    #[serde(flatten)]
    pub facts: CertFacts,
    #[serde(skip)]
    pub cert: X509,
    /// Domains of the addresses plus the gateway domains.
    pub domains: Vec<String>,
    /// Domains this certificate is the gateway certificate/identity of (`--domain`).
    pub gateway_domains: Vec<String>,
    pub source: Source,
    /// Harvested: the Message-ID of the message it came with.
    pub message_id: Option<String>,
    /// Unix seconds.
    pub added_at: i64,
    /// The owner's SMIMECapabilities as harvested (OIDs or cipher names); None = not seen.
    pub capabilities: Option<Vec<String>>,
    /// A trust anchor added with `certs trust-ca`.
    pub explicitly_trusted: bool,
    pub has_private_key: bool,
    pub chain: ChainStatus,
    /// From the CRLs the store holds (a fetch may know more: `CertStore::revocation`).
    pub revocation: Revocation,
}

impl CertRecord {
    /// Why mail cannot be encrypted to this certificate at `now`; empty = it can.
    pub fn encryption_problems(&self, now: i64) -> Vec<String> {
        let mut p = self.facts.encryption_problems(now);
        if !self.chain.trusted && !self.explicitly_trusted {
            p.push(format!("chain not trusted: {}", self.chain.detail));
        }
        if let Revocation::Revoked(why) = &self.revocation {
            p.push(why.clone());
        }
        p
    }

    pub fn usable_for_encryption(&self, now: i64) -> bool {
        self.encryption_problems(now).is_empty()
    }

    /// Why this certificate cannot sign for us at `now`; empty = it can. An untrusted
    /// chain is no obstacle (the administrator imported the identity), only a preference.
    pub fn signing_problems(&self, now: i64) -> Vec<String> {
        let mut p = self.facts.signing_problems(now);
        // A CA certificate imported with its own key is an identity the administrator chose
        // (the import warned about it).
        if self.has_private_key {
            p.retain(|x| x != "a CA certificate");
        }
        if !self.has_private_key {
            p.push("no private key".into());
        }
        p
    }

    pub fn fingerprint(&self) -> &str {
        &self.facts.fingerprint
    }

    fn aes_gcm_capable(&self) -> bool {
        self.capabilities
            .as_deref()
            .is_some_and(info::capabilities_list_gcm)
    }
}

/// How long a revocation result is reused (a CRL change resets it at once).
const REVOCATION_TTL: Duration = Duration::from_secs(60);
/// Bound of the revocation memory; past it the memory starts over.
const REVOCATIONS_MAX: usize = 4096;

/// What `certs import-crl` did with one CRL.
#[derive(Debug, Clone, Serialize)]
pub struct CrlStored {
    pub fingerprint: String,
    pub issuer: String,
    /// Unix seconds.
    pub this_update: i64,
    pub next_update: Option<i64>,
    /// Revoked serial numbers it lists.
    pub revoked: usize,
    /// "new", "unchanged", or why it was not stored.
    pub change: &'static str,
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Said on importing a CA certificate together with its private key (what `openssl req
/// -x509` makes by default): it is used as an identity, but mail clients may balk at it.
pub const CA_IDENTITY_NOTE: &str = "a CA certificate (basicConstraints CA:TRUE) with its own \
     private key: stored as an identity; some mail clients refuse CA certificates for S/MIME, \
     so prefer an end-entity certificate (CA:FALSE) for mail";

/// What an import or harvest did to one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct Stored {
    pub fingerprint: String,
    pub subject: String,
    pub addresses: Vec<String>,
    pub is_ca: bool,
    /// "new", "updated" or "unchanged".
    pub change: &'static str,
    /// What was stored, in words ("private key stored (encrypted)", ...).
    pub details: Vec<String>,
}

/// The in-memory view of all rows.
#[derive(Default)]
struct Index {
    version: i64,
    records: HashMap<String, Arc<CertRecord>>,
    /// Address → its certificates, newest first.
    by_address: HashMap<String, Vec<Arc<CertRecord>>>,
    /// Domain → its gateway certificates, newest first.
    gateways: HashMap<String, Vec<Arc<CertRecord>>>,
    /// The signature-verification trust store of this state (see `shared_trust_store`).
    trust: Option<Arc<X509Store>>,
    /// CA certificates held but not explicitly trusted (see `intermediates`).
    untrusted_cas: Vec<X509>,
    /// The CRL held per issuer (by the issuer certificate's fingerprint).
    crls: HashMap<String, Arc<HeldCrl>>,
}

struct Inner {
    pool: SqlitePool,
    master: MasterKey,
    /// System roots (if configured) and `certs.extra_ca`, read at open.
    anchors: Anchors,
    reload_every: Duration,
    index: RwLock<Arc<Index>>,
    last_check: Mutex<Instant>,
    /// One rebuild at a time.
    reloading: tokio::sync::Mutex<()>,
    /// Harvest caps, revocation mode and CRL fetching limits.
    config: CertsConfig,
    /// One round of CRL downloads at a time (the others then find the CRL held).
    fetching: tokio::sync::Mutex<()>,
    /// Distribution points that failed lately (URL → when): not tried again before
    /// `crl_retry_secs`.
    fetch_failures: Mutex<HashMap<String, Instant>>,
    /// Revocation results per signer and sent certificates, with the store version they
    /// were made at (a new CRL or certificate makes them stale) and when.
    revocations: Mutex<HashMap<[u8; 32], (i64, Revocation, Instant)>>,
    /// Opened private keys by fingerprint (opening costs an AES-GCM pass and a PKCS#8 parse).
    keys: Mutex<HashMap<String, PKey<Private>>>,
    /// Held while a key is read and opened, so that the 20 sessions that all miss the cache
    /// at start open it once (opening costs as much as a signature; and each separately
    /// opened copy would set up its own RSA blinding).
    opening: tokio::sync::Mutex<()>,
}

/// The certificate and key store. Cheap to clone; shareable between tasks.
#[derive(Clone)]
pub struct CertStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertStore({:?})", self.inner.master)
    }
}

#[derive(sqlx::FromRow)]
struct Row {
    fingerprint: String,
    der: Vec<u8>,
    source: String,
    message_id: Option<String>,
    added_at: i64,
    chain_status: String,
    capabilities: Option<String>,
    trusted: bool,
    has_key: bool,
}

/// "Example.TEST." → "example.test"; errors say what a domain must look like.
pub fn normalize_domain(domain: &str) -> anyhow::Result<String> {
    let d = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    if d.is_empty()
        || !d.contains('.')
        || d.starts_with('.')
        || d.contains(['@', ' ', '[', ']', '/', '\\'])
    {
        bail!("{domain:?} is not a domain name (e.g. example.com)");
    }
    Ok(d)
}

/// The certificates of `certs.extra_ca` (relative paths inside `data_dir`).
fn load_extra_ca(data_dir: &Path, config: &CertsConfig) -> anyhow::Result<Vec<X509>> {
    let mut out = Vec::new();
    for path in &config.extra_ca {
        let path = data_dir.join(path);
        let bytes = std::fs::read(&path)
            .with_context(|| format!("key `certs.extra_ca`: cannot read {}", path.display()))?;
        out.extend(
            parse::read_certificates(&bytes, &path.display().to_string())
                .context("key `certs.extra_ca`")?,
        );
    }
    Ok(out)
}

/// What `check-config` can tell about `[certs]` without opening the database: the extra
/// CA files parse, and an existing key file is a key file only the owner can read.
pub fn check_config(data_dir: &Path, config: &CertsConfig) -> anyhow::Result<()> {
    load_extra_ca(data_dir, config)?;
    let key_path = config.key_path(data_dir);
    if key_path.exists() {
        MasterKey::load_or_create(&key_path, false)?;
    }
    Ok(())
}

fn json_list(v: &[String]) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "[]".into())
}

impl CertStore {
    /// Open the store on a migrated pool (the data directory's database). Reads or creates
    /// the master key file (`certs.key_file`), reads `certs.extra_ca`, loads the index.
    pub async fn open(
        pool: SqlitePool,
        data_dir: &Path,
        config: &CertsConfig,
    ) -> anyhow::Result<CertStore> {
        let key_path = config.key_path(data_dir);
        let sealed_keys: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM smime_certs WHERE private_key IS NOT NULL")
                .fetch_one(&pool)
                .await
                .context("cannot read the certificate store (database not migrated?)")?;
        if sealed_keys > 0 && !key_path.exists() {
            bail!(
                "the S/MIME key file {} is missing, but the store holds {sealed_keys} private \
                 key(s) sealed with it: restore the key file from a backup (a new one cannot \
                 open them)",
                key_path.display()
            );
        }
        let master = MasterKey::load_or_create(&key_path, sealed_keys == 0)?;
        let extra_ca = load_extra_ca(data_dir, config)?;
        let store = CertStore {
            inner: Arc::new(Inner {
                pool,
                master,
                anchors: Anchors {
                    system_roots: config.system_roots,
                    extra_ca,
                },
                reload_every: Duration::from_secs(config.reload_secs),
                index: RwLock::new(Arc::new(Index {
                    version: -1,
                    ..Index::default()
                })),
                last_check: Mutex::new(Instant::now()),
                reloading: tokio::sync::Mutex::new(()),
                config: config.clone(),
                fetching: tokio::sync::Mutex::new(()),
                fetch_failures: Mutex::new(HashMap::new()),
                revocations: Mutex::new(HashMap::new()),
                keys: Mutex::new(HashMap::new()),
                opening: tokio::sync::Mutex::new(()),
            }),
        };
        store.reload().await?;
        Ok(store)
    }

    /// The master key file in use.
    pub fn key_file(&self) -> &Path {
        self.inner.master.path()
    }

    fn current(&self) -> Arc<Index> {
        self.inner
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The index, rebuilt first if another process changed the store (checked at most
    /// every `reload_secs`).
    async fn index(&self) -> anyhow::Result<Arc<Index>> {
        let due = {
            let mut last = self
                .inner
                .last_check
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= self.inner.reload_every {
                *last = Instant::now();
                true
            } else {
                false
            }
        };
        if due {
            let version: i64 = sqlx::query_scalar("SELECT version FROM smime_meta WHERE id = 1")
                .fetch_one(&self.inner.pool)
                .await?;
            if version != self.current().version {
                self.reload().await?;
            }
        }
        Ok(self.current())
    }

    /// Rebuild the index from the database and recompute every chain status.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let _one = self.inner.reloading.lock().await;
        let pool = &self.inner.pool;
        let version: i64 = sqlx::query_scalar("SELECT version FROM smime_meta WHERE id = 1")
            .fetch_one(pool)
            .await?;
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT fingerprint, der, source, message_id, added_at, chain_status, capabilities, \
             trusted, private_key IS NOT NULL AS has_key FROM smime_certs",
        )
        .fetch_all(pool)
        .await?;
        let gateway_rows: Vec<(String, String)> =
            sqlx::query_as("SELECT domain, fingerprint FROM smime_cert_domains WHERE gateway = 1")
                .fetch_all(pool)
                .await?;
        let mut gateway_of: HashMap<String, Vec<String>> = HashMap::new();
        for (domain, fp) in gateway_rows {
            gateway_of.entry(fp).or_default().push(domain);
        }
        let crl_rows: Vec<(String, Vec<u8>)> =
            sqlx::query_as("SELECT issuer_fingerprint, der FROM smime_crls")
                .fetch_all(pool)
                .await?;

        let anchors = self.inner.anchors.clone();
        let mode = self.inner.config.revocation;
        let (index, status_changes) = tokio::task::spawn_blocking(move || {
            build_index(version, rows, gateway_of, crl_rows, &anchors, mode)
        })
        .await??;
        if !status_changes.is_empty() {
            // The column shows people the last result; not a change of the store itself.
            let mut tx = pool.begin_with(crate::store::BEGIN_WRITE).await?;
            for (fp, text) in &status_changes {
                sqlx::query("UPDATE smime_certs SET chain_status = ? WHERE fingerprint = ?")
                    .bind(text)
                    .bind(fp)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        self.inner
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|fp, _| index.records.contains_key(fp));
        // Deleted keys must not live on in the workers' kept contexts either.
        super::keys::forget_all();
        *self.inner.index.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(index);
        *self
            .inner
            .last_check
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Instant::now();
        Ok(())
    }

    /// A trust store for verifying signatures: system roots + extra CAs + trusted CAs
    /// (validity times are checked). Built anew on each call (milliseconds with the system
    /// roots): per message use [`shared_trust_store`](Self::shared_trust_store).
    pub fn trust_store(&self) -> anyhow::Result<X509Store> {
        let anchors: Vec<X509> = self
            .current()
            .records
            .values()
            .filter(|r| r.explicitly_trusted)
            .map(|r| r.cert.clone())
            .collect();
        self.inner.anchors.store(&anchors, false)
    }

    /// The same trust store as [`trust_store`](Self::trust_store), built once per change of
    /// the store and shared: the one to use per message (building one costs milliseconds).
    pub fn shared_trust_store(&self) -> anyhow::Result<Arc<X509Store>> {
        match &self.current().trust {
            Some(t) => Ok(t.clone()),
            None => Ok(Arc::new(self.trust_store()?)),
        }
    }

    /// CA certificates the store knows but does not trust (from imported chains and
    /// harvested messages): pass them as untrusted intermediates when verifying. Collected
    /// once per change of the store, not per message.
    pub fn intermediates(&self) -> Vec<X509> {
        self.current().untrusted_cas.clone()
    }

    /// The store's change counter as of the last reload.
    pub fn version(&self) -> i64 {
        self.current().version
    }

    /// Every certificate (after picking up changes made elsewhere).
    pub async fn all(&self) -> anyhow::Result<Vec<Arc<CertRecord>>> {
        let mut all: Vec<_> = self.index().await?.records.values().cloned().collect();
        all.sort_by(|a, b| a.facts.subject.cmp(&b.facts.subject));
        Ok(all)
    }

    /// The certificate whose fingerprint is or starts with `prefix` (hex, colons and case
    /// ignored). Errors: none, or several (named).
    pub async fn find(&self, prefix: &str) -> anyhow::Result<Arc<CertRecord>> {
        let p: String = prefix
            .chars()
            .filter(|c| *c != ':')
            .collect::<String>()
            .to_ascii_lowercase();
        if p.is_empty() || !p.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("{prefix:?} is not a fingerprint (hex digits, as `certs list` shows)");
        }
        let index = self.index().await?;
        let mut hits: Vec<_> = index
            .records
            .values()
            .filter(|r| r.fingerprint().starts_with(&p))
            .cloned()
            .collect();
        match hits.len() {
            0 => bail!("no certificate with fingerprint {prefix} (see `portcullis certs list`)"),
            1 => Ok(hits.remove(0)),
            n => {
                hits.sort_by(|a, b| a.fingerprint().cmp(b.fingerprint()));
                let names: Vec<String> = hits
                    .iter()
                    .map(|r| format!("{} {}", &r.fingerprint()[..16], r.facts.subject))
                    .collect();
                bail!(
                    "fingerprint prefix {prefix} is ambiguous ({n} certificates: {}); give more digits",
                    names.join("; ")
                )
            }
        }
    }

    /// Import what a file held: end-entity certificates (with their keys), and the CA
    /// certificates of their chains (kept for building chains, not trusted). With
    /// `gateway_domain`, the end-entity certificates become that domain's gateway
    /// certificates (with a key: its gateway identity).
    pub async fn import(
        &self,
        bundle: &Bundle,
        gateway_domain: Option<&str>,
    ) -> anyhow::Result<Vec<Stored>> {
        let gateway_domain = gateway_domain.map(normalize_domain).transpose()?;
        if gateway_domain.is_some() && bundle.leaves.is_empty() {
            bail!("--domain needs an end-entity certificate; the file holds only CA certificates");
        }
        let mut tx = self
            .inner
            .pool
            .begin_with(crate::store::BEGIN_WRITE)
            .await?;
        let mut out = Vec::new();
        for leaf in &bundle.leaves {
            let mut stored = self
                .upsert(
                    &mut tx,
                    &leaf.cert,
                    Upsert {
                        source: Source::Imported,
                        key: leaf.key.as_ref(),
                        gateway_domain: gateway_domain.as_deref(),
                        ..Upsert::default()
                    },
                )
                .await?;
            if stored.is_ca && leaf.key.is_some() {
                stored.details.push(CA_IDENTITY_NOTE.into());
            }
            out.push(stored);
        }
        for ca in &bundle.cas {
            out.push(
                self.upsert(
                    &mut tx,
                    ca,
                    Upsert {
                        source: Source::Imported,
                        ..Upsert::default()
                    },
                )
                .await?,
            );
        }
        self.commit(tx, &out).await?;
        Ok(out)
    }

    /// Trust these certificates as anchors (normally CAs; a partner's self-signed
    /// certificate may be trusted directly too).
    pub async fn trust_ca(&self, certs: &[X509]) -> anyhow::Result<Vec<Stored>> {
        let mut tx = self
            .inner
            .pool
            .begin_with(crate::store::BEGIN_WRITE)
            .await?;
        let mut out = Vec::new();
        for c in certs {
            out.push(
                self.upsert(
                    &mut tx,
                    c,
                    Upsert {
                        source: Source::Trusted,
                        trusted: true,
                        ..Upsert::default()
                    },
                )
                .await?,
            );
        }
        self.commit(tx, &out).await?;
        Ok(out)
    }

    /// Harvest a valid signer's certificate (source = harvested, with Message-ID and date);
    /// idempotent. Of the certificates the message carried (`chain`), only those the store
    /// can vouch for are kept: the intermediate CAs of the path that verifies the signer up
    /// to a trusted anchor (the anchor itself is trusted already), and end-entity
    /// certificates sharing an address with the signer (e.g. a separate encryption
    /// certificate) whose own chain verifies. Anything else a sender adds (CA certificates
    /// of its own making, say) is ignored. At most `certs.max_harvest_per_message`
    /// certificates per message, and no new CA certificates once
    /// `certs.max_harvested_intermediates` harvested ones are held. New `capabilities`
    /// replace the signer's stored ones.
    pub async fn harvest(
        &self,
        signer: &X509,
        chain: &[X509],
        message_id: &str,
        capabilities: &[String],
    ) -> anyhow::Result<()> {
        let signer_facts = CertFacts::of(signer)?;
        let capabilities = (!capabilities.is_empty()).then_some(capabilities);
        let index = self.index().await?;
        let Some(trust) = index.trust.clone() else {
            bail!("the trust store is not loaded");
        };
        let mut helpers: Vec<X509> = index.untrusted_cas.clone();
        helpers.extend(chain.iter().filter(|c| info::is_ca(c)).cloned());
        let owners: Vec<X509> = chain
            .iter()
            .filter(|c| {
                !info::is_ca(c)
                    && CertFacts::of(c).is_ok_and(|f| {
                        f.fingerprint != signer_facts.fingerprint
                            && f.addresses
                                .iter()
                                .any(|a| signer_facts.addresses.contains(a))
                    })
            })
            .cloned()
            .collect();
        let signer_owned = signer.clone();
        // Chain building is CPU work: off the async threads.
        let (path, owners) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut stack = Stack::new()?;
            for c in helpers {
                stack.push(c)?;
            }
            let path = anchors::verified_path(&trust, &stack, &signer_owned);
            let owners: Vec<X509> = owners
                .into_iter()
                .filter(|c| anchors::verified_path(&trust, &stack, c).is_some())
                .collect();
            Ok((path, owners))
        })
        .await??;
        let Some(path) = path else {
            tracing::info!(signer = ?signer_facts.addresses, "signer's chain does not verify against the store now; nothing harvested");
            return Ok(());
        };
        // path: signer, intermediates..., anchor (trusted already, never harvested)
        let intermediates = &path[1..path.len().saturating_sub(1).max(1)];
        let max = self.inner.config.max_harvest_per_message;
        let mut harvested_cas: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM smime_certs WHERE source = 'harvested' AND is_ca = 1",
        )
        .fetch_one(&self.inner.pool)
        .await?;
        let mut tx = self
            .inner
            .pool
            .begin_with(crate::store::BEGIN_WRITE)
            .await?;
        let mut out = vec![
            self.upsert(
                &mut tx,
                signer,
                Upsert {
                    source: Source::Harvested,
                    message_id: Some(message_id),
                    capabilities,
                    ..Upsert::default()
                },
            )
            .await?,
        ];
        for c in intermediates {
            if out.len() >= max {
                break;
            }
            let fp = info::fingerprint(c)?;
            if !index.records.contains_key(&fp) {
                if harvested_cas >= self.inner.config.max_harvested_intermediates as i64 {
                    tracing::warn!(
                        ca = %info::name_text(c.subject_name()),
                        limit = self.inner.config.max_harvested_intermediates,
                        "the store holds the most harvested CA certificates allowed (key `certs.max_harvested_intermediates`): not harvested; import it with `certs import` if needed"
                    );
                    continue;
                }
                harvested_cas += 1;
            }
            out.push(
                self.upsert(
                    &mut tx,
                    c,
                    Upsert {
                        source: Source::Harvested,
                        message_id: Some(message_id),
                        ..Upsert::default()
                    },
                )
                .await?,
            );
        }
        for c in &owners {
            if out.len() >= max {
                break;
            }
            out.push(
                self.upsert(
                    &mut tx,
                    c,
                    Upsert {
                        source: Source::Harvested,
                        message_id: Some(message_id),
                        capabilities,
                        ..Upsert::default()
                    },
                )
                .await?,
            );
        }
        self.commit(tx, &out).await
    }

    /// Store CRLs an operator gives (`certs import-crl`): each must be signed by a
    /// certificate the store holds or `certs.extra_ca` names. Replaces an older CRL of the
    /// same issuer; an older one than held is left out.
    pub async fn import_crls(&self, crls: &[X509Crl]) -> anyhow::Result<Vec<CrlStored>> {
        let index = self.index().await?;
        let candidates: Vec<X509> = index
            .records
            .values()
            .filter(|r| r.facts.is_ca || r.explicitly_trusted)
            .map(|r| r.cert.clone())
            .chain(self.inner.anchors.extra_ca.iter().cloned())
            .collect();
        let mut out = Vec::new();
        for c in crls {
            let issuer_name = info::name_text(c.issuer_name());
            let Some(issuer) = candidates.iter().find(|i| crl::issued_by(c, i)) else {
                bail!(
                    "the CRL of {issuer_name} is not signed by any CA certificate the store                      holds: import or trust the issuing CA first (`certs import` / `certs                      trust-ca`), then the CRL"
                );
            };
            out.push(self.store_crl(c, issuer, "imported", None).await?);
        }
        Ok(out)
    }

    /// Insert a verified CRL of `issuer` (one per issuer, the newest).
    async fn store_crl(
        &self,
        c: &X509Crl,
        issuer: &X509Ref,
        source: &str,
        url: Option<&str>,
    ) -> anyhow::Result<CrlStored> {
        let der = c.to_der()?;
        let fingerprint = hex_lower(&openssl::sha::sha256(&der));
        let issuer_fp = info::fingerprint(issuer)?;
        let this_update = crl::unix(c.last_update())?;
        let next_update = c.next_update().map(crl::unix).transpose()?;
        let revoked = c.get_revoked().map(|r| r.len()).unwrap_or(0);
        let mut stored = CrlStored {
            fingerprint: fingerprint.clone(),
            issuer: info::name_text(issuer.subject_name()),
            this_update,
            next_update,
            revoked,
            change: "new",
        };
        let mut tx = self
            .inner
            .pool
            .begin_with(crate::store::BEGIN_WRITE)
            .await?;
        let held: Vec<(String, i64)> = sqlx::query_as(
            "SELECT fingerprint, this_update FROM smime_crls WHERE issuer_fingerprint = ?",
        )
        .bind(&issuer_fp)
        .fetch_all(&mut *tx)
        .await?;
        if held.iter().any(|(fp, _)| *fp == fingerprint) {
            stored.change = "unchanged";
        } else if held.iter().any(|(_, t)| *t > this_update) {
            stored.change = "older than the CRL held (not stored)";
        }
        if stored.change != "new" {
            tx.rollback().await?;
            return Ok(stored);
        }
        sqlx::query("DELETE FROM smime_crls WHERE issuer_fingerprint = ?")
            .bind(&issuer_fp)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO smime_crls (fingerprint, issuer_fingerprint, issuer, der, this_update, \
             next_update, revoked_count, source, url, added_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&fingerprint)
        .bind(&issuer_fp)
        .bind(&stored.issuer)
        .bind(&der)
        .bind(this_update)
        .bind(next_update)
        .bind(revoked as i64)
        .bind(source)
        .bind(url)
        .bind(info::now())
        .execute(&mut *tx)
        .await?;
        // A new CRL changes verdicts: the store's version moves, so running gateways
        // reload (and start new chain-verdict and revocation memories).
        sqlx::query("UPDATE smime_meta SET version = version + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.reload().await?;
        Ok(stored)
    }

    /// The configured revocation mode.
    pub fn revocation_mode(&self) -> RevocationMode {
        self.inner.config.revocation
    }

    /// The revocation status of the verified chain of the certificate `cert` (DER), built
    /// as for the signature verdict: the store's anchors and CA certificates plus the
    /// certificates the message carried, `sent` (DER). Certificates without a current CRL
    /// get one fetched from their distribution point when `certs.crl_fetch` is on. Never
    /// fails: what keeps the check from running is an unknown status. Remembered per
    /// (certificates, store version): a partner who writes often costs one hash.
    pub async fn revocation(&self, cert: &[u8], sent: &[Vec<u8>]) -> Revocation {
        if self.inner.config.revocation == RevocationMode::Off {
            return Revocation::Off;
        }
        match self.revocation_checked(cert, sent).await {
            Ok(r) => r,
            Err(e) => Revocation::Unknown(format!("{e:#}")),
        }
    }

    async fn revocation_checked(
        &self,
        cert: &[u8],
        sent: &[Vec<u8>],
    ) -> anyhow::Result<Revocation> {
        let index = self.index().await?;
        let mut h = openssl::sha::Sha256::new();
        for der in std::iter::once(cert).chain(sent.iter().map(Vec::as_slice)) {
            h.update(&(der.len() as u64).to_be_bytes());
            h.update(der);
        }
        let key = h.finish();
        if let Some((version, r, at)) = self
            .inner
            .revocations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            && *version == index.version
            && at.elapsed() < REVOCATION_TTL
        {
            return Ok(r.clone());
        }
        let Some(trust) = index.trust.clone() else {
            bail!("the trust store is not loaded");
        };
        let owned = X509::from_der(cert)?;
        let mut helpers = index.untrusted_cas.clone();
        helpers.extend(sent.iter().filter_map(|d| X509::from_der(d).ok()));
        let path = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
            let mut stack = Stack::new()?;
            for c in helpers {
                stack.push(c)?;
            }
            Ok(anchors::verified_path(&trust, &stack, &owned))
        })
        .await??;
        let Some(path) = path else {
            return Ok(Revocation::Unknown(
                "the chain does not verify against the store".into(),
            ));
        };
        let mut verdict = held_verdict(&path, &index.crls, info::now());
        if matches!(verdict, Revocation::Unknown(_)) && self.inner.config.crl_fetch {
            verdict = self.fetch_for(&path).await;
        }
        let version = self.current().version;
        let mut memory = self
            .inner
            .revocations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if memory.len() >= REVOCATIONS_MAX {
            memory.clear();
        }
        memory.insert(key, (version, verdict.clone(), Instant::now()));
        Ok(verdict)
    }

    /// Fetch the CRLs `path` lacks from the distribution points, store them, and judge
    /// again. Failures are remembered for `crl_retry_secs` and named in the result.
    async fn fetch_for(&self, path: &[X509]) -> Revocation {
        let _one = self.inner.fetching.lock().await;
        // Another task may have fetched them while this one waited.
        let current = self.current();
        let missing =
            match crl::check_path(path, |fp| current.crls.get(fp).map(|c| &**c), info::now()) {
                Err(revoked) => return Revocation::Revoked(revoked),
                Ok(m) => m,
            };
        let limits = FetchLimits {
            connect: Duration::from_secs(self.inner.config.crl_connect_timeout_secs),
            read: Duration::from_secs(self.inner.config.crl_read_timeout_secs),
            max_bytes: self.inner.config.crl_max_bytes,
        };
        let retry = Duration::from_secs(self.inner.config.crl_retry_secs);
        let mut failures = Vec::new();
        for m in &missing {
            let issuer = &path[m.position + 1];
            if m.urls.is_empty() {
                failures.push(format!(
                    "{}: no http CRL distribution point",
                    info::name_text(path[m.position].subject_name())
                ));
            }
            for url in &m.urls {
                let failed_lately = self
                    .inner
                    .fetch_failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(url)
                    .is_some_and(|at| at.elapsed() < retry);
                if failed_lately {
                    failures.push(format!("{url}: failed lately, retried later"));
                    continue;
                }
                match self.fetch_one(url, issuer, limits).await {
                    Ok(()) => break,
                    Err(e) => {
                        tracing::warn!(url = %url, error = %format!("{e:#}"), "cannot fetch a CRL (revocation status unknown)");
                        failures.push(format!("{e:#}"));
                        self.inner
                            .fetch_failures
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(url.clone(), Instant::now());
                    }
                }
            }
        }
        match held_verdict(path, &self.current().crls, info::now()) {
            Revocation::Unknown(why) if !failures.is_empty() => {
                Revocation::Unknown(format!("{why}; {}", failures.join("; ")))
            }
            v => v,
        }
    }

    async fn fetch_one(&self, url: &str, issuer: &X509, limits: FetchLimits) -> anyhow::Result<()> {
        let body = crl::fetch(url, limits).await?;
        let crls = crl::read_crls(&body, url)?;
        let Some(c) = crls.iter().find(|c| crl::issued_by(c, issuer)) else {
            bail!(
                "{url}: the CRL is not signed by {}",
                info::name_text(issuer.subject_name())
            );
        };
        self.store_crl(c, issuer, "fetched", Some(url)).await?;
        Ok(())
    }

    /// Delete a certificate (and its private key, if stored). Returns what was deleted.
    pub async fn delete(&self, fingerprint: &str) -> anyhow::Result<Arc<CertRecord>> {
        let record = self.find(fingerprint).await?;
        if record.fingerprint() != fingerprint.replace(':', "").to_ascii_lowercase() {
            bail!(
                "delete needs the full fingerprint: {}",
                record.fingerprint()
            );
        }
        let fp = record.fingerprint().to_string();
        let mut tx = self
            .inner
            .pool
            .begin_with(crate::store::BEGIN_WRITE)
            .await?;
        for sql in [
            "DELETE FROM smime_cert_addresses WHERE fingerprint = ?",
            "DELETE FROM smime_cert_domains WHERE fingerprint = ?",
            "DELETE FROM smime_certs WHERE fingerprint = ?",
        ] {
            sqlx::query(sql).bind(&fp).execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE smime_meta SET version = version + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.reload().await?;
        Ok(record)
    }

    async fn commit(&self, mut tx: Transaction<'_, Sqlite>, out: &[Stored]) -> anyhow::Result<()> {
        if out.iter().all(|s| s.change == "unchanged") {
            tx.rollback().await?;
            return Ok(());
        }
        sqlx::query("UPDATE smime_meta SET version = version + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.reload().await
    }

    /// Insert a certificate, or add to an existing row what is new (a key, a gateway
    /// domain, trust, capabilities; an import turns a harvested row into an imported one).
    async fn upsert(
        &self,
        tx: &mut Transaction<'_, Sqlite>,
        cert: &X509Ref,
        what: Upsert<'_>,
    ) -> anyhow::Result<Stored> {
        let facts = CertFacts::of(cert)?;
        let fp = facts.fingerprint.clone();
        let existing: Option<(String, bool, bool, Option<String>)> = sqlx::query_as(
            "SELECT source, private_key IS NOT NULL, trusted, capabilities FROM smime_certs \
             WHERE fingerprint = ?",
        )
        .bind(&fp)
        .fetch_optional(&mut **tx)
        .await?;
        let sealed = what
            .key
            .map(|k| self.inner.master.seal_key(k, fp.as_bytes()))
            .transpose()?;
        let capabilities = what.capabilities.map(json_list);
        let mut details = Vec::new();
        let change = match &existing {
            None => {
                sqlx::query(
                    "INSERT INTO smime_certs (fingerprint, der, subject, issuer, serial, \
                     not_before, not_after, key_usage, ext_key_usage, is_ca, source, message_id, \
                     added_at, chain_status, capabilities, trusted, private_key) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'unchecked', ?, ?, ?)",
                )
                .bind(&fp)
                .bind(cert.to_der()?)
                .bind(&facts.subject)
                .bind(&facts.issuer)
                .bind(&facts.serial)
                .bind(facts.not_before)
                .bind(facts.not_after)
                .bind(facts.key_usage.as_ref().map(|v| v.join(",")))
                .bind(facts.ext_key_usage.as_ref().map(|v| v.join(",")))
                .bind(facts.is_ca)
                .bind(what.source.as_str())
                .bind(what.message_id)
                .bind(info::now())
                .bind(&capabilities)
                .bind(what.trusted)
                .bind(&sealed)
                .execute(&mut **tx)
                .await?;
                for a in &facts.addresses {
                    sqlx::query(
                        "INSERT OR IGNORE INTO smime_cert_addresses (address, fingerprint) \
                         VALUES (?, ?)",
                    )
                    .bind(a)
                    .bind(&fp)
                    .execute(&mut **tx)
                    .await?;
                }
                for d in facts.address_domains() {
                    sqlx::query(
                        "INSERT OR IGNORE INTO smime_cert_domains (domain, fingerprint, gateway) \
                         VALUES (?, ?, 0)",
                    )
                    .bind(d)
                    .bind(&fp)
                    .execute(&mut **tx)
                    .await?;
                }
                if sealed.is_some() {
                    details.push("private key stored (encrypted)".into());
                }
                if what.trusted {
                    details.push("trusted as an anchor".into());
                } else if facts.is_ca {
                    details.push(
                        "CA certificate kept for building chains (not trusted: use `certs trust-ca` to trust it)"
                            .into(),
                    );
                }
                "new"
            }
            Some((source, has_key, trusted, stored_caps)) => {
                if sealed.is_some() && !has_key {
                    sqlx::query("UPDATE smime_certs SET private_key = ? WHERE fingerprint = ?")
                        .bind(&sealed)
                        .bind(&fp)
                        .execute(&mut **tx)
                        .await?;
                    details.push("private key stored (encrypted)".into());
                }
                if what.trusted && !trusted {
                    sqlx::query("UPDATE smime_certs SET trusted = 1 WHERE fingerprint = ?")
                        .bind(&fp)
                        .execute(&mut **tx)
                        .await?;
                    details.push("trusted as an anchor".into());
                }
                if capabilities.is_some() && capabilities != *stored_caps {
                    sqlx::query("UPDATE smime_certs SET capabilities = ? WHERE fingerprint = ?")
                        .bind(&capabilities)
                        .bind(&fp)
                        .execute(&mut **tx)
                        .await?;
                    details.push("S/MIME capabilities updated".into());
                }
                if what.source == Source::Imported && source == "harvested" {
                    sqlx::query(
                        "UPDATE smime_certs SET source = 'imported', message_id = NULL \
                         WHERE fingerprint = ?",
                    )
                    .bind(&fp)
                    .execute(&mut **tx)
                    .await?;
                    details.push("was harvested, now imported".into());
                }
                if details.is_empty() {
                    "unchanged"
                } else {
                    "updated"
                }
            }
        };
        if let Some(domain) = what.gateway_domain {
            let res = sqlx::query(
                "INSERT INTO smime_cert_domains (domain, fingerprint, gateway) VALUES (?, ?, 1) \
                 ON CONFLICT (domain, fingerprint) DO UPDATE SET gateway = 1 WHERE gateway = 0",
            )
            .bind(domain)
            .bind(&fp)
            .execute(&mut **tx)
            .await?;
            if res.rows_affected() > 0 {
                details.push(format!(
                    "gateway {} of {domain}",
                    if sealed.is_some() || existing.as_ref().is_some_and(|e| e.1) {
                        "identity"
                    } else {
                        "certificate"
                    }
                ));
            }
        }
        let change = if change == "unchanged" && !details.is_empty() {
            "updated"
        } else {
            change
        };
        Ok(Stored {
            fingerprint: fp,
            subject: facts.subject,
            addresses: facts.addresses,
            is_ca: facts.is_ca,
            change,
            details,
        })
    }

    /// The private key of a stored certificate, opened (and cached).
    async fn private_key(&self, fingerprint: &str) -> anyhow::Result<PKey<Private>> {
        let cached = || {
            self.inner
                .keys
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(fingerprint)
                .cloned()
        };
        if let Some(k) = cached() {
            return Ok(k);
        }
        let _opening = self.inner.opening.lock().await;
        if let Some(k) = cached() {
            return Ok(k);
        }
        let sealed: Option<Vec<u8>> =
            sqlx::query_scalar("SELECT private_key FROM smime_certs WHERE fingerprint = ?")
                .bind(fingerprint)
                .fetch_optional(&self.inner.pool)
                .await?
                .flatten();
        let Some(sealed) = sealed else {
            bail!("certificate {fingerprint} has no stored private key");
        };
        let key = self
            .inner
            .master
            .open_key(&sealed, fingerprint.as_bytes())?;
        self.inner
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fingerprint.to_string(), key.clone());
        Ok(key)
    }

    async fn identity(&self, index: &Index, record: &CertRecord) -> anyhow::Result<Identity> {
        let chain = record
            .chain
            .chain
            .iter()
            .filter_map(|link| index.records.get(&link.fingerprint))
            .filter(|r| r.facts.subject != r.facts.issuer)
            .map(|r| r.cert.clone())
            .collect();
        Ok(Identity {
            cert: record.cert.clone(),
            key: self.private_key(record.fingerprint()).await?,
            chain,
        })
    }

    /// Keys that may decrypt mail to `rcpt`: the user's own (all, newest first), then the
    /// gateway identities of the recipient's domain. Validity is not checked: old mail
    /// needs old keys.
    pub async fn decryption_identities(&self, rcpt: &str) -> anyhow::Result<Vec<Identity>> {
        let index = self.index().await?;
        let address = normalize_address(rcpt);
        let own = index.by_address.get(&address).into_iter().flatten();
        let gateway = domain_of(&address)
            .and_then(|d| index.gateways.get(&d))
            .into_iter()
            .flatten();
        let mut seen = Vec::new();
        let mut out = Vec::new();
        for r in own.chain(gateway) {
            if r.has_private_key && !seen.contains(&r.fingerprint()) {
                seen.push(r.fingerprint());
                out.push(self.identity(&index, r).await?);
            }
        }
        Ok(out)
    }

    /// Sender's own usable signing identity, else the sender domain's gateway identity.
    /// Among several, one with a trusted chain wins, then the newest.
    pub async fn signing_identity(&self, sender: &str) -> anyhow::Result<Option<Identity>> {
        let index = self.index().await?;
        let address = normalize_address(sender);
        let now = info::now();
        let pick = |list: Option<&Vec<Arc<CertRecord>>>| -> Option<Arc<CertRecord>> {
            let usable = list
                .into_iter()
                .flatten()
                .filter(|r| r.signing_problems(now).is_empty());
            usable
                .clone()
                .find(|r| r.chain.trusted)
                .or_else(|| usable.clone().next())
                .cloned()
        };
        let chosen = pick(index.by_address.get(&address))
            .or_else(|| domain_of(&address).and_then(|d| pick(index.gateways.get(&d))));
        match chosen {
            Some(r) => Ok(Some(self.identity(&index, &r).await?)),
            None => Ok(None),
        }
    }

    /// Recipient's own usable certificate, else the recipient domain's gateway certificate.
    pub async fn encryption_certificate(
        &self,
        rcpt: &str,
    ) -> anyhow::Result<Option<EncryptionCert>> {
        let index = self.index().await?;
        let address = normalize_address(rcpt);
        let now = info::now();
        let pick = |list: Option<&Vec<Arc<CertRecord>>>| {
            list.into_iter()
                .flatten()
                .find(|r| r.usable_for_encryption(now))
                .cloned()
        };
        let chosen = pick(index.by_address.get(&address))
            .or_else(|| domain_of(&address).and_then(|d| pick(index.gateways.get(&d))));
        Ok(chosen.map(|r| EncryptionCert {
            cert: r.cert.clone(),
            fingerprint: r.fingerprint().to_string(),
            aes_gcm_capable: r.aes_gcm_capable(),
        }))
    }
}

/// What [`CertStore::upsert`] stores besides the certificate.
struct Upsert<'a> {
    source: Source,
    message_id: Option<&'a str>,
    key: Option<&'a PKey<Private>>,
    gateway_domain: Option<&'a str>,
    trusted: bool,
    capabilities: Option<&'a [String]>,
}

impl Default for Upsert<'_> {
    fn default() -> Self {
        Upsert {
            source: Source::Imported,
            message_id: None,
            key: None,
            gateway_domain: None,
            trusted: false,
            capabilities: None,
        }
    }
}

/// A stored CRL as the index holds it.
fn held_crl(der: &[u8], issuer_fingerprint: String) -> anyhow::Result<HeldCrl> {
    let crl = X509Crl::from_der(der)?;
    Ok(HeldCrl {
        this_update: crl::unix(crl.last_update())?,
        next_update: crl.next_update().map(crl::unix).transpose()?,
        crl,
        issuer_fingerprint,
    })
}

/// The held CRLs' verdict on a verified path, without fetching.
fn held_verdict(path: &[X509], crls: &HashMap<String, Arc<HeldCrl>>, now: i64) -> Revocation {
    match crl::check_path(path, |fp| crls.get(fp).map(|c| &**c), now) {
        Err(revoked) => Revocation::Revoked(revoked),
        Ok(missing) if missing.is_empty() => Revocation::Good,
        Ok(missing) => Revocation::Unknown(
            missing
                .iter()
                .map(|m| m.why.clone())
                .collect::<Vec<_>>()
                .join("; "),
        ),
    }
}

/// The index of all rows, with every chain status computed (CPU work: run it off the
/// async threads). Also returns the rows whose stored chain status text changed.
fn build_index(
    version: i64,
    rows: Vec<Row>,
    mut gateway_of: HashMap<String, Vec<String>>,
    crl_rows: Vec<(String, Vec<u8>)>,
    configured: &Anchors,
    mode: RevocationMode,
) -> anyhow::Result<(Index, Vec<(String, String)>)> {
    let mut crls = HashMap::new();
    for (issuer_fingerprint, der) in crl_rows {
        match held_crl(&der, issuer_fingerprint) {
            Ok(held) => {
                crls.insert(held.issuer_fingerprint.clone(), Arc::new(held));
            }
            Err(e) => tracing::warn!(error = %e, "stored CRL does not parse; skipped"),
        }
    }
    let mut parsed = Vec::with_capacity(rows.len());
    for row in rows {
        let cert = match X509::from_der(&row.der) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(fingerprint = %row.fingerprint, error = %e, "stored certificate does not parse; skipped");
                continue;
            }
        };
        let facts = CertFacts::of(&cert)?;
        parsed.push((row, cert, facts));
    }
    let anchors: Vec<X509> = parsed
        .iter()
        .filter(|(row, _, _)| row.trusted)
        .map(|(_, c, _)| c.clone())
        .collect();
    let checker = configured.store(&anchors, true)?;
    let trust = Arc::new(configured.store(&anchors, false)?);
    let mut intermediates = Stack::new()?;
    for (_, cert, facts) in &parsed {
        if facts.is_ca {
            intermediates.push(cert.clone())?;
        }
    }

    let untrusted_cas = parsed
        .iter()
        .filter(|(row, _, facts)| facts.is_ca && !row.trusted)
        .map(|(_, c, _)| c.clone())
        .collect();
    let mut index = Index {
        version,
        trust: Some(trust),
        untrusted_cas,
        crls,
        ..Index::default()
    };
    let now = info::now();
    let mut status_changes = Vec::new();
    for (row, cert, facts) in parsed {
        let chain = anchors::check_chain(&checker, &intermediates, &cert);
        let revocation = if mode == RevocationMode::Off {
            Revocation::Off
        } else if !chain.trusted {
            Revocation::Unknown("the chain is not trusted".into())
        } else {
            let path: Vec<X509> = std::iter::once(cert.clone())
                .chain(chain.above.iter().cloned())
                .collect();
            held_verdict(&path, &index.crls, now)
        };
        if chain.text() != row.chain_status {
            status_changes.push((row.fingerprint.clone(), chain.text()));
        }
        let mut gateway_domains = gateway_of.remove(&row.fingerprint).unwrap_or_default();
        gateway_domains.sort();
        let mut domains = facts.address_domains();
        domains.extend(gateway_domains.iter().cloned());
        domains.sort();
        domains.dedup();
        let record = Arc::new(CertRecord {
            cert,
            domains,
            gateway_domains,
            source: Source::parse(&row.source),
            message_id: row.message_id,
            added_at: row.added_at,
            capabilities: row
                .capabilities
                .and_then(|c| serde_json::from_str::<Vec<String>>(&c).ok()),
            explicitly_trusted: row.trusted,
            has_private_key: row.has_key,
            chain,
            revocation,
            facts,
        });
        // A CA certificate is an identity only when its own key was imported with it.
        if !record.facts.is_ca || record.has_private_key {
            for a in &record.facts.addresses {
                index
                    .by_address
                    .entry(a.clone())
                    .or_default()
                    .push(record.clone());
            }
            for d in &record.gateway_domains {
                index
                    .gateways
                    .entry(d.clone())
                    .or_default()
                    .push(record.clone());
            }
        }
        index.records.insert(row.fingerprint, record);
    }
    let newest_first = |a: &Arc<CertRecord>, b: &Arc<CertRecord>| {
        (b.facts.not_before, b.facts.not_after, b.fingerprint()).cmp(&(
            a.facts.not_before,
            a.facts.not_after,
            a.fingerprint(),
        ))
    };
    for list in index.by_address.values_mut() {
        list.sort_by(newest_first);
    }
    for list in index.gateways.values_mut() {
        list.sort_by(newest_first);
    }
    Ok((index, status_changes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::parse::Leaf;
    use crate::certs::test_pki::{Pki, UserSpec};

    struct TestStore {
        _dir: tempfile::TempDir,
        store: CertStore,
        db: std::path::PathBuf,
    }

    async fn store_with(config: CertsConfig) -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let q = crate::store::Database::open(dir.path()).await.unwrap();
        let store = CertStore::open(q.pool().clone(), dir.path(), &config)
            .await
            .unwrap();
        TestStore {
            db: dir.path().join("queue.db"),
            _dir: dir,
            store,
        }
    }

    fn no_system_roots() -> CertsConfig {
        CertsConfig {
            system_roots: false,
            ..CertsConfig::default()
        }
    }

    fn bundle(leaves: Vec<(&X509, Option<&PKey<Private>>)>, cas: Vec<&X509>) -> Bundle {
        Bundle {
            leaves: leaves
                .into_iter()
                .map(|(c, k)| Leaf {
                    cert: c.clone(),
                    key: k.cloned(),
                })
                .collect(),
            cas: cas.into_iter().cloned().collect(),
        }
    }

    #[tokio::test]
    async fn chain_status_follows_trust_ca_and_decides_encryption() {
        let t = store_with(no_system_roots()).await;
        let root = Pki::new();
        let sub = root.sub_ca("Test Sub CA");
        let alice = sub.user("alice@example.test");
        let out = t
            .store
            .import(&bundle(vec![(&alice.cert, None)], vec![&sub.ca_cert]), None)
            .await
            .unwrap();
        assert_eq!(out.len(), 2);
        assert!(out.iter().all(|s| s.change == "new"));
        let r = t.store.find(&out[0].fingerprint).await.unwrap();
        assert!(!r.chain.trusted);
        assert!(
            r.encryption_problems(info::now())
                .iter()
                .any(|p| p.starts_with("chain not trusted")),
            "{:?}",
            r.encryption_problems(info::now())
        );
        assert!(
            t.store
                .encryption_certificate("alice@example.test")
                .await
                .unwrap()
                .is_none()
        );

        t.store
            .trust_ca(std::slice::from_ref(&root.ca_cert))
            .await
            .unwrap();
        let r = t.store.find(&out[0].fingerprint).await.unwrap();
        assert!(r.chain.trusted, "{:?}", r.chain);
        let subjects: Vec<&str> = r.chain.chain.iter().map(|l| l.subject.as_str()).collect();
        assert_eq!(subjects, vec!["CN=Test Sub CA", "CN=Test CA"]);
        let enc = t
            .store
            .encryption_certificate("<Alice@Example.TEST>")
            .await
            .unwrap()
            .expect("usable now");
        assert_eq!(enc.fingerprint, out[0].fingerprint);
        assert!(!enc.aes_gcm_capable);
        let stored: String =
            sqlx::query_scalar("SELECT chain_status FROM smime_certs WHERE fingerprint = ?")
                .bind(&out[0].fingerprint)
                .fetch_one(&t.store.inner.pool)
                .await
                .unwrap();
        assert_eq!(stored, "trusted (anchor: CN=Test CA)");
    }

    #[tokio::test]
    async fn a_configured_sub_ca_is_an_anchor_without_its_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Pki::new();
        let sub = root.sub_ca("Company Sub CA");
        std::fs::write(dir.path().join("sub.pem"), sub.ca_cert.to_pem().unwrap()).unwrap();
        let t = store_with(CertsConfig {
            extra_ca: vec![dir.path().join("sub.pem")],
            ..no_system_roots()
        })
        .await;
        let bob = sub.user("bob@example.test");
        t.store
            .import(&bundle(vec![(&bob.cert, None)], vec![]), None)
            .await
            .unwrap();
        assert!(
            t.store
                .encryption_certificate("bob@example.test")
                .await
                .unwrap()
                .is_some()
        );
        // the signature-verification stores have the same anchors, and check validity
        let expired = sub.issue(UserSpec {
            days: (-30, -1),
            ..UserSpec::email("old@example.test")
        });
        let chain = Stack::new().unwrap();
        let verify = |store: &openssl::x509::store::X509StoreRef, cert: &X509| {
            let mut ctx = openssl::x509::X509StoreContext::new().unwrap();
            ctx.init(store, cert, &chain, |c| c.verify_cert()).unwrap()
        };
        let fresh = t.store.trust_store().unwrap();
        let shared = t.store.shared_trust_store().unwrap();
        for store in [&*fresh, &**shared] {
            assert!(verify(store, &bob.cert));
            assert!(!verify(store, &expired.cert), "expired: not valid now");
        }
    }

    #[tokio::test]
    async fn gateway_identity_is_the_fallback_and_own_keys_come_first() {
        let t = store_with(no_system_roots()).await;
        let ca = Pki::new();
        t.store
            .trust_ca(std::slice::from_ref(&ca.ca_cert))
            .await
            .unwrap();
        let gw = ca.issue(UserSpec::new("Example Gateway"));
        let alice = ca.user("alice@example.test");
        let alice_new = ca.issue(UserSpec {
            days: (0, 400),
            ..UserSpec::email("alice@example.test")
        });
        let out = t
            .store
            .import(
                &bundle(vec![(&gw.cert, Some(&gw.key))], vec![]),
                Some("Example.TEST"),
            )
            .await
            .unwrap();
        assert!(
            out[0]
                .details
                .contains(&"gateway identity of example.test".to_string()),
            "{:?}",
            out[0].details
        );
        // bob has nothing of his own: the domain's gateway identity serves him
        let ids = t
            .store
            .decryption_identities("bob@example.test")
            .await
            .unwrap();
        assert_eq!(ids.len(), 1);
        assert!(ids[0].key.public_eq(&gw.key));
        let s = t
            .store
            .signing_identity("bob@example.test")
            .await
            .unwrap()
            .unwrap();
        assert!(s.key.public_eq(&gw.key));
        let e = t
            .store
            .encryption_certificate("bob@example.test")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.fingerprint, out[0].fingerprint);
        assert!(
            t.store
                .encryption_certificate("bob@other.test")
                .await
                .unwrap()
                .is_none()
        );

        t.store
            .import(
                &bundle(
                    vec![
                        (&alice.cert, Some(&alice.key)),
                        (&alice_new.cert, Some(&alice_new.key)),
                    ],
                    vec![],
                ),
                None,
            )
            .await
            .unwrap();
        let ids = t
            .store
            .decryption_identities("alice@example.test")
            .await
            .unwrap();
        assert_eq!(ids.len(), 3, "both of alice's keys, then the gateway's");
        assert!(ids[0].key.public_eq(&alice_new.key), "newest first");
        assert!(ids[1].key.public_eq(&alice.key));
        assert!(ids[2].key.public_eq(&gw.key));
        let s = t
            .store
            .signing_identity("alice@example.test")
            .await
            .unwrap()
            .unwrap();
        assert!(s.key.public_eq(&alice_new.key));
    }

    #[tokio::test]
    async fn unusable_own_certificates_fall_back_to_the_gateway() {
        let t = store_with(no_system_roots()).await;
        let ca = Pki::new();
        t.store
            .trust_ca(std::slice::from_ref(&ca.ca_cert))
            .await
            .unwrap();
        let expired = ca.issue(UserSpec {
            days: (-30, -1),
            ..UserSpec::email("carol@example.test")
        });
        let no_email = ca.issue(UserSpec {
            eku_email: false,
            ..UserSpec::email("dave@example.test")
        });
        let gw = ca.issue(UserSpec::new("gw"));
        t.store
            .import(
                &bundle(vec![(&expired.cert, None), (&no_email.cert, None)], vec![]),
                None,
            )
            .await
            .unwrap();
        for rcpt in ["carol@example.test", "dave@example.test"] {
            assert!(
                t.store
                    .encryption_certificate(rcpt)
                    .await
                    .unwrap()
                    .is_none()
            );
        }
        let gw_out = t
            .store
            .import(
                &bundle(vec![(&gw.cert, None)], vec![]),
                Some("example.test"),
            )
            .await
            .unwrap();
        assert!(
            gw_out[0]
                .details
                .contains(&"gateway certificate of example.test".to_string())
        );
        let e = t
            .store
            .encryption_certificate("carol@example.test")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.fingerprint, gw_out[0].fingerprint);
        // a partner domain's gateway certificate without key: no identity to sign with
        assert!(
            t.store
                .signing_identity("x@example.test")
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn harvest_is_idempotent_and_keeps_capabilities() {
        let t = store_with(no_system_roots()).await;
        let root = Pki::new();
        let sub = root.sub_ca("Partner Sub CA");
        t.store
            .trust_ca(std::slice::from_ref(&root.ca_cert))
            .await
            .unwrap();
        let eve = sub.user("eve@partner.test");
        let eve_enc = sub.user("eve@partner.test");
        let stranger = sub.user("mallory@partner.test");
        let chain = vec![
            sub.ca_cert.clone(),
            eve_enc.cert.clone(),
            stranger.cert.clone(),
        ];
        let caps = vec!["2.16.840.1.101.3.4.1.46".to_string()];
        t.store
            .harvest(&eve.cert, &chain, "<m1@partner.test>", &caps)
            .await
            .unwrap();
        let v = t.store.version();
        t.store
            .harvest(&eve.cert, &chain, "<m2@partner.test>", &caps)
            .await
            .unwrap();
        assert_eq!(t.store.version(), v, "nothing new: no change");
        let all = t.store.all().await.unwrap();
        assert_eq!(
            all.len(),
            4,
            "root, sub CA, eve's two certificates; not mallory's"
        );
        let r = t
            .store
            .find(&info::fingerprint(&eve.cert).unwrap())
            .await
            .unwrap();
        assert_eq!(r.source, Source::Harvested);
        assert_eq!(r.message_id.as_deref(), Some("<m1@partner.test>"));
        assert!(r.chain.trusted);
        assert!(!r.has_private_key);
        let e = t
            .store
            .encryption_certificate("eve@partner.test")
            .await
            .unwrap()
            .unwrap();
        assert!(e.aes_gcm_capable);
        assert!(
            t.store
                .intermediates()
                .iter()
                .any(|c| c.subject_name().entries().count() == 1
                    && info::name_text(c.subject_name()) == "CN=Partner Sub CA")
        );
        // an import of the same certificate makes it an imported one
        let out = t
            .store
            .import(&bundle(vec![(&eve.cert, None)], vec![]), None)
            .await
            .unwrap();
        assert_eq!(out[0].change, "updated");
        let r = t.store.find(&out[0].fingerprint).await.unwrap();
        assert_eq!(r.source, Source::Imported);
    }

    #[tokio::test]
    async fn harvest_keeps_only_the_verified_path_within_the_caps() {
        let root = Pki::new();
        let sub = root.sub_ca("Partner Sub CA");
        let eve = sub.user("eve@partner.test");
        let junk: Vec<Pki> = (0..5).map(|i| Pki::named(&format!("Junk {i}"))).collect();
        let mut chain: Vec<X509> = junk.iter().map(|j| j.ca_cert.clone()).collect();
        chain.push(sub.ca_cert.clone());
        chain.extend(junk.iter().map(|j| j.sub_ca("Junk Sub").ca_cert.clone()));
        let subjects = |all: &[Arc<CertRecord>]| -> Vec<String> {
            all.iter().map(|r| r.facts.subject.clone()).collect()
        };

        let t = store_with(no_system_roots()).await;
        t.store
            .trust_ca(std::slice::from_ref(&root.ca_cert))
            .await
            .unwrap();
        t.store
            .harvest(&eve.cert, &chain, "<m@p>", &[])
            .await
            .unwrap();
        let all = t.store.all().await.unwrap();
        assert_eq!(all.len(), 3, "root, sub CA, eve: {:?}", subjects(&all));
        assert!(!subjects(&all).iter().any(|s| s.contains("Junk")));
        assert_eq!(t.store.intermediates().len(), 1);

        // an untrusted signer teaches nothing
        let stranger = junk[0].user("x@junk.test");
        t.store
            .harvest(&stranger.cert, &chain, "<n@p>", &[])
            .await
            .unwrap();
        assert_eq!(t.store.all().await.unwrap().len(), 3);

        // the total cap on harvested CA certificates, and the per-message cap
        for (config, expected) in [
            (
                CertsConfig {
                    max_harvested_intermediates: 0,
                    ..no_system_roots()
                },
                2,
            ),
            (
                CertsConfig {
                    max_harvest_per_message: 1,
                    ..no_system_roots()
                },
                2,
            ),
        ] {
            let t = store_with(config).await;
            t.store
                .trust_ca(std::slice::from_ref(&root.ca_cert))
                .await
                .unwrap();
            t.store
                .harvest(&eve.cert, &chain, "<m@p>", &[])
                .await
                .unwrap();
            let all = t.store.all().await.unwrap();
            assert_eq!(all.len(), expected, "root and eve: {:?}", subjects(&all));
        }
    }

    #[tokio::test]
    async fn keys_are_sealed_in_the_database_and_delete_removes_them() {
        let t = store_with(no_system_roots()).await;
        let ca = Pki::new();
        let u = ca.user("frank@example.test");
        let out = t
            .store
            .import(&bundle(vec![(&u.cert, Some(&u.key))], vec![]), None)
            .await
            .unwrap();
        let fp = out[0].fingerprint.clone();
        let pkcs8 = u.key.private_key_to_pkcs8().unwrap();
        let sealed: Vec<u8> =
            sqlx::query_scalar("SELECT private_key FROM smime_certs WHERE fingerprint = ?")
                .bind(&fp)
                .fetch_one(&t.store.inner.pool)
                .await
                .unwrap();
        let window = &pkcs8[pkcs8.len() / 2..pkcs8.len() / 2 + 32];
        assert!(!sealed.windows(32).any(|w| w == window));
        let mut on_disk = std::fs::read(&t.db).unwrap();
        on_disk.extend(std::fs::read(t.db.with_extension("db-wal")).unwrap_or_default());
        assert!(
            !on_disk.windows(32).any(|w| w == window),
            "key bytes in clear on disk"
        );

        let ids = t
            .store
            .decryption_identities("frank@example.test")
            .await
            .unwrap();
        assert!(ids[0].key.public_eq(&u.key));

        let e = t.store.delete(&fp[..8]).await.unwrap_err().to_string();
        assert!(e.contains("full fingerprint"), "{e}");
        t.store.delete(&fp).await.unwrap();
        assert!(t.store.find(&fp).await.is_err());
        assert!(
            t.store
                .decryption_identities("frank@example.test")
                .await
                .unwrap()
                .is_empty()
        );
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM smime_cert_addresses")
            .fetch_one(&t.store.inner.pool)
            .await
            .unwrap();
        assert_eq!(rows, 0);
    }

    #[tokio::test]
    async fn find_by_prefix_names_ambiguity() {
        let t = store_with(no_system_roots()).await;
        let ca = Pki::new();
        let certs: Vec<_> = (0..20)
            .map(|i| ca.user(&format!("u{i}@example.test")))
            .collect();
        t.store
            .import(
                &bundle(certs.iter().map(|c| (&c.cert, None)).collect(), vec![]),
                None,
            )
            .await
            .unwrap();
        // 20 fingerprints, 16 hex digits: at least two share their first digit
        let all = t.store.all().await.unwrap();
        let shared = all
            .iter()
            .map(|r| &r.fingerprint()[..1])
            .find(|d| {
                all.iter()
                    .filter(|r| r.fingerprint().starts_with(*d))
                    .count()
                    > 1
            })
            .unwrap();
        let e = t.store.find(shared).await.unwrap_err().to_string();
        assert!(
            e.contains("ambiguous") && e.contains("give more digits"),
            "{e}"
        );
        let fp = all[0].fingerprint();
        let with_colons: String = fp.as_bytes()[..16]
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap().to_ascii_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(t.store.find(&with_colons).await.unwrap().fingerprint(), fp);
        assert!(t.store.find("zz").await.is_err());
    }

    #[tokio::test]
    async fn another_process_changes_are_picked_up() {
        let dir = tempfile::tempdir().unwrap();
        let q = crate::store::Database::open(dir.path()).await.unwrap();
        let config = CertsConfig {
            reload_secs: 1,
            ..no_system_roots()
        };
        let gateway = CertStore::open(q.pool().clone(), dir.path(), &config)
            .await
            .unwrap();
        let cli = CertStore::open(q.pool().clone(), dir.path(), &config)
            .await
            .unwrap();
        let ca = Pki::new();
        cli.trust_ca(std::slice::from_ref(&ca.ca_cert))
            .await
            .unwrap();
        let u = ca.user("gina@example.test");
        cli.import(&bundle(vec![(&u.cert, None)], vec![]), None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(
            gateway
                .encryption_certificate("gina@example.test")
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn missing_key_file_with_sealed_keys_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let q = crate::store::Database::open(dir.path()).await.unwrap();
        let config = no_system_roots();
        let store = CertStore::open(q.pool().clone(), dir.path(), &config)
            .await
            .unwrap();
        let ca = Pki::new();
        let u = ca.user("h@example.test");
        store
            .import(&bundle(vec![(&u.cert, Some(&u.key))], vec![]), None)
            .await
            .unwrap();
        std::fs::remove_file(config.key_path(dir.path())).unwrap();
        let e = CertStore::open(q.pool().clone(), dir.path(), &config)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("restore the key file"), "{e}");
    }

    #[test]
    fn store_is_send_sync_and_cheap_to_clone() {
        fn check<T: Send + Sync + Clone>() {}
        check::<CertStore>();
    }
}
