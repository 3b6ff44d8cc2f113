//! Trust anchors and chain checks: the system roots (if configured), `certs.extra_ca`, and
//! certificates trusted with `certs trust-ca`. Any anchor ends a chain (PARTIAL_CHAIN), so a
//! configured sub-CA (a company or DFN-style CA) is trusted without its root.

use anyhow::Context;
use openssl::error::ErrorStack;
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder, X509StoreRef};
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509, X509Ref, X509StoreContext};
use serde::Serialize;

use super::info;

/// The configured anchors (read once when the store opens).
#[derive(Clone)]
pub struct Anchors {
    pub system_roots: bool,
    pub extra_ca: Vec<X509>,
}

impl Anchors {
    /// An OpenSSL store of the configured anchors plus `more`. `ignore_time` for chain
    /// status (validity is judged on its own); signature verification checks times.
    pub fn store(&self, more: &[X509], ignore_time: bool) -> anyhow::Result<X509Store> {
        let mut b = X509StoreBuilder::new()?;
        if self.system_roots {
            b.set_default_paths()
                .context("cannot load the system's root CAs")?;
        }
        for c in self.extra_ca.iter().chain(more) {
            add_anchor(&mut b, c)?;
        }
        let mut flags = X509VerifyFlags::PARTIAL_CHAIN;
        if ignore_time {
            flags |= X509VerifyFlags::NO_CHECK_TIME;
        }
        b.set_flags(flags)?;
        Ok(b.build())
    }
}

fn add_anchor(b: &mut X509StoreBuilder, cert: &X509) -> anyhow::Result<()> {
    match b.add_cert(cert.clone()) {
        Ok(()) => Ok(()),
        // Already there (e.g. a system root also given in extra_ca): fine.
        Err(e)
            if e.errors().iter().any(|x| {
                x.reason()
                    .is_some_and(|r| r.contains("already in hash table"))
            }) =>
        {
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// One certificate of a chain, as shown to people.
#[derive(Debug, Clone, Serialize)]
pub struct ChainLink {
    pub subject: String,
    pub fingerprint: String,
}

/// A certificate's chain against the trust store (time ignored: validity is judged
/// separately, so an expired certificate still shows whether its issuer is trusted).
#[derive(Debug, Clone, Serialize)]
pub struct ChainStatus {
    pub trusted: bool,
    /// The anchor's subject when trusted ("itself" for a directly trusted certificate),
    /// else OpenSSL's reason.
    pub detail: String,
    /// The certificates above this one, up to the anchor (or as far as it could be built).
    pub chain: Vec<ChainLink>,
    /// The same certificates as objects (for the revocation check of a trusted chain).
    #[serde(skip)]
    pub above: Vec<X509>,
}

impl ChainStatus {
    /// As the `chain_status` column shows it.
    pub fn text(&self) -> String {
        if self.trusted {
            format!("trusted (anchor: {})", self.detail)
        } else {
            format!("untrusted: {}", self.detail)
        }
    }
}

/// Build and check `cert`'s chain in `store`, with `intermediates` as untrusted helpers.
pub fn check_chain(
    store: &X509StoreRef,
    intermediates: &Stack<X509>,
    cert: &X509Ref,
) -> ChainStatus {
    let link = |c: &X509Ref| ChainLink {
        subject: info::name_text(c.subject_name()),
        fingerprint: info::fingerprint(c).unwrap_or_default(),
    };
    let result = (|| -> Result<ChainStatus, ErrorStack> {
        let mut ctx = X509StoreContext::new()?;
        ctx.init(store, cert, intermediates, |c| {
            let ok = c.verify_cert()?;
            let above: Vec<X509> = c
                .chain()
                .map(|s| s.iter().skip(1).map(|x| x.to_owned()).collect())
                .unwrap_or_default();
            let chain: Vec<ChainLink> = above.iter().map(|x| link(x)).collect();
            let detail = if ok {
                chain
                    .last()
                    .map(|l| l.subject.clone())
                    .unwrap_or_else(|| "itself".into())
            } else {
                c.error().error_string().to_string()
            };
            Ok(ChainStatus {
                trusted: ok,
                detail,
                chain,
                above,
            })
        })
    })();
    result.unwrap_or_else(|e| ChainStatus {
        trusted: false,
        detail: e.to_string(),
        chain: Vec::new(),
        above: Vec::new(),
    })
}

/// The path OpenSSL verifies from `cert` to an anchor in `store` (`cert` first, the anchor
/// last), with `intermediates` as untrusted helpers; `None` when the chain does not verify.
pub fn verified_path(
    store: &X509StoreRef,
    intermediates: &Stack<X509>,
    cert: &X509Ref,
) -> Option<Vec<X509>> {
    let mut ctx = X509StoreContext::new().ok()?;
    ctx.init(store, cert, intermediates, |c| {
        if !c.verify_cert()? {
            return Ok(None);
        }
        Ok(c.chain().map(|s| s.iter().map(|x| x.to_owned()).collect()))
    })
    .ok()
    .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::test_pki::Pki;

    fn no_roots(extra: Vec<X509>) -> Anchors {
        Anchors {
            system_roots: false,
            extra_ca: extra,
        }
    }

    #[test]
    fn chain_through_an_intermediate_to_an_anchor() {
        let root = Pki::new();
        let sub = root.sub_ca("Sub");
        let user = sub.user("u@example.test");
        let mut inter = Stack::new().unwrap();
        inter.push(sub.ca_cert.clone()).unwrap();
        let store = no_roots(vec![root.ca_cert.clone()])
            .store(&[], true)
            .unwrap();
        let s = check_chain(&store, &inter, &user.cert);
        assert!(s.trusted, "{s:?}");
        assert_eq!(s.detail, "CN=Test CA");
        assert_eq!(s.chain.len(), 2);
        // without the intermediate the chain cannot be built
        let s = check_chain(&store, &Stack::new().unwrap(), &user.cert);
        assert!(!s.trusted);
        assert!(
            s.text().starts_with("untrusted: unable to get"),
            "{}",
            s.text()
        );
    }

    #[test]
    fn a_directly_trusted_certificate_is_its_own_anchor() {
        let other = Pki::named("Unknown CA");
        let partner = other.user("p@partner.test");
        let anchors = no_roots(vec![]);
        let store = anchors
            .store(std::slice::from_ref(&partner.cert), true)
            .unwrap();
        let s = check_chain(&store, &Stack::new().unwrap(), &partner.cert);
        assert!(s.trusted, "{s:?}");
        assert_eq!(s.detail, "itself");
    }

    #[test]
    fn a_duplicate_anchor_is_no_error() {
        let root = Pki::new();
        let anchors = no_roots(vec![root.ca_cert.clone()]);
        assert!(
            anchors
                .store(std::slice::from_ref(&root.ca_cert), false)
                .is_ok()
        );
    }
}
