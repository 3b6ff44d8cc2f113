//! What the S/MIME pipeline steps need from the certificate store, as one narrow trait:
//! keys to decrypt and sign with, certificates to encrypt to, the trust store, and the
//! harvest of partners' certificates. The real implementation is the certificate store
//! (`store::CertStore`); unit tests use [`MemoryKeyring`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use openssl::x509::X509;
use openssl::x509::store::X509Store;

pub use crate::certs::crl::Revocation;
pub use crate::certs::store::{EncryptionCert, Identity, RevocationMode};

pub type KeyFuture<'a, T> = Pin<Box<dyn Future<Output = anyhow::Result<T>> + Send + 'a>>;

pub trait Keyring: Send + Sync {
    /// Keys that may open mail for `rcpt`: the user's own, then the domain gateway's.
    fn decryption_identities<'a>(&'a self, rcpt: &'a str) -> KeyFuture<'a, Vec<Identity>>;
    /// The sender's own signing identity, else the sender domain's gateway identity.
    fn signing_identity<'a>(&'a self, sender: &'a str) -> KeyFuture<'a, Option<Identity>>;
    /// A certificate usable now to encrypt to `rcpt` (own, else the domain's gateway's).
    fn encryption_certificate<'a>(&'a self, rcpt: &'a str)
    -> KeyFuture<'a, Option<EncryptionCert>>;
    /// System roots plus the configured and explicitly trusted CAs, shared (built once per
    /// change of the store: building one costs milliseconds).
    fn trust_store(&self) -> anyhow::Result<Arc<X509Store>>;
    /// CA certificates held but not trusted, to complete chains senders send incomplete.
    fn intermediates(&self) -> Vec<X509> {
        Vec::new()
    }
    /// The revocation status of a verified signer certificate's chain (DER; `sent`: the
    /// certificates the message carried). Without a store: not checked.
    fn revocation<'a>(
        &'a self,
        _cert: &'a [u8],
        _sent: &'a [Vec<u8>],
    ) -> KeyFuture<'a, Revocation> {
        Box::pin(async { Ok(Revocation::Off) })
    }
    /// What an unknown revocation status means for the verdict.
    fn revocation_mode(&self) -> RevocationMode {
        RevocationMode::Off
    }
    /// Remember a partner's verified certificate (and chain, capabilities) for encryption.
    fn harvest<'a>(
        &'a self,
        signer: &'a X509,
        chain: &'a [X509],
        message_id: &'a str,
        capabilities: &'a [String],
    ) -> KeyFuture<'a, ()>;
}

impl Keyring for crate::certs::store::CertStore {
    fn decryption_identities<'a>(&'a self, rcpt: &'a str) -> KeyFuture<'a, Vec<Identity>> {
        Box::pin(crate::certs::store::CertStore::decryption_identities(
            self, rcpt,
        ))
    }
    fn signing_identity<'a>(&'a self, sender: &'a str) -> KeyFuture<'a, Option<Identity>> {
        Box::pin(crate::certs::store::CertStore::signing_identity(
            self, sender,
        ))
    }
    fn encryption_certificate<'a>(
        &'a self,
        rcpt: &'a str,
    ) -> KeyFuture<'a, Option<EncryptionCert>> {
        Box::pin(crate::certs::store::CertStore::encryption_certificate(
            self, rcpt,
        ))
    }
    fn trust_store(&self) -> anyhow::Result<Arc<X509Store>> {
        crate::certs::store::CertStore::shared_trust_store(self)
    }
    fn intermediates(&self) -> Vec<X509> {
        crate::certs::store::CertStore::intermediates(self)
    }
    fn revocation<'a>(&'a self, cert: &'a [u8], sent: &'a [Vec<u8>]) -> KeyFuture<'a, Revocation> {
        Box::pin(
            async move { Ok(crate::certs::store::CertStore::revocation(self, cert, sent).await) },
        )
    }
    fn revocation_mode(&self) -> RevocationMode {
        crate::certs::store::CertStore::revocation_mode(self)
    }
    fn harvest<'a>(
        &'a self,
        signer: &'a X509,
        chain: &'a [X509],
        message_id: &'a str,
        capabilities: &'a [String],
    ) -> KeyFuture<'a, ()> {
        Box::pin(crate::certs::store::CertStore::harvest(
            self,
            signer,
            chain,
            message_id,
            capabilities,
        ))
    }
}

/// In-memory keyring for unit tests: identities by address or "@domain".
#[cfg(test)]
#[derive(Default)]
pub struct MemoryKeyring {
    pub identities: std::collections::BTreeMap<
        String,
        Vec<(X509, openssl::pkey::PKey<openssl::pkey::Private>)>,
    >,
    pub encryption: std::collections::BTreeMap<String, (X509, bool)>,
    pub trusted: Vec<X509>,
    pub harvested: std::sync::Mutex<Vec<(String, String)>>,
    /// What `revocation` answers (None: not checked) and the mode.
    pub revocation: Option<Revocation>,
    pub revocation_mode: RevocationMode,
}

#[cfg(test)]
impl MemoryKeyring {
    fn lookup<T: Clone>(map: &std::collections::BTreeMap<String, T>, addr: &str) -> Option<T> {
        let domain = addr.rsplit_once('@').map(|(_, d)| format!("@{d}"));
        map.get(&addr.to_ascii_lowercase())
            .or_else(|| domain.and_then(|d| map.get(&d)))
            .cloned()
    }
}

#[cfg(test)]
impl Keyring for MemoryKeyring {
    fn decryption_identities<'a>(&'a self, rcpt: &'a str) -> KeyFuture<'a, Vec<Identity>> {
        let found = Self::lookup(&self.identities, rcpt).unwrap_or_default();
        Box::pin(async move {
            Ok(found
                .into_iter()
                .map(|(cert, key)| Identity {
                    cert,
                    key,
                    chain: Vec::new(),
                })
                .collect())
        })
    }
    fn signing_identity<'a>(&'a self, sender: &'a str) -> KeyFuture<'a, Option<Identity>> {
        let found = Self::lookup(&self.identities, sender).and_then(|v| v.into_iter().next());
        Box::pin(async move {
            Ok(found.map(|(cert, key)| Identity {
                cert,
                key,
                chain: Vec::new(),
            }))
        })
    }
    fn encryption_certificate<'a>(
        &'a self,
        rcpt: &'a str,
    ) -> KeyFuture<'a, Option<EncryptionCert>> {
        let found = Self::lookup(&self.encryption, rcpt);
        Box::pin(async move {
            Ok(found.map(|(cert, gcm)| EncryptionCert {
                fingerprint: hex::encode(
                    cert.digest(openssl::hash::MessageDigest::sha256()).unwrap(),
                ),
                cert,
                aes_gcm_capable: gcm,
            }))
        })
    }
    fn trust_store(&self) -> anyhow::Result<Arc<X509Store>> {
        let mut b = openssl::x509::store::X509StoreBuilder::new()?;
        for c in &self.trusted {
            b.add_cert(c.clone())?;
        }
        Ok(Arc::new(b.build()))
    }
    fn revocation<'a>(
        &'a self,
        _cert: &'a [u8],
        _sent: &'a [Vec<u8>],
    ) -> KeyFuture<'a, Revocation> {
        let r = self.revocation.clone().unwrap_or(Revocation::Off);
        Box::pin(async move { Ok(r) })
    }
    fn revocation_mode(&self) -> RevocationMode {
        self.revocation_mode
    }
    fn harvest<'a>(
        &'a self,
        signer: &'a X509,
        _chain: &'a [X509],
        message_id: &'a str,
        _capabilities: &'a [String],
    ) -> KeyFuture<'a, ()> {
        let who = super::engine::email_of(signer).unwrap_or_default();
        self.harvested
            .lock()
            .unwrap()
            .push((who, message_id.to_string()));
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod hex {
    pub fn encode(b: impl AsRef<[u8]>) -> String {
        b.as_ref().iter().map(|x| format!("{x:02x}")).collect()
    }
}
