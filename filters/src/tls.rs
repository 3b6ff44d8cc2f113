//! TLS reputation (inbound): a bonus for a sending server that used TLS and proved itself
//! with a valid client certificate whose name fits; plaintext itself scores nothing.
//!
//! Facts come from the session's handshake (`Envelope::tls`); the per-domain *requirement*
//! (`[[tls_policy]]`) is enforced earlier, at MAIL FROM, by the SMTP session.
//!
//! A certificate "fits" when it names the HELO host, the sending domain, or the client's
//! forward-confirmed reverse DNS name (looked up only when nothing else matched).
//!
//! With a [`TrustBook`], each sending domain's TLS history is consulted: a domain whose
//! authenticated mail always came with a verified client certificate and now comes without
//! one is a downgrade (`TLS_DOWNGRADE`, logged as a warning for operators); a different
//! verified certificate is a change (`TLS_CERT_CHANGED`). The history is written by the
//! gateway after the verdict, from authenticated mail only, so forged mail cannot erase it.

use std::sync::Arc;

use crate::auth::AuthDns;
use crate::trust::TrustBook;
use crate::{Envelope, MessageContext, Stage, StageFuture, Symbol, domain_of};

#[derive(Default)]
pub struct TlsReputation {
    /// Per-domain TLS history; `None`: no change/downgrade symbols.
    pub book: Option<Arc<TrustBook>>,
    /// Resolver for the reverse DNS name; `None`: HELO and sender domain only.
    pub dns: Option<Arc<AuthDns>>,
}

impl Stage for TlsReputation {
    fn name(&self) -> &'static str {
        "tls_reputation"
    }

    fn check<'a>(&'a self, ctx: &'a MessageContext<'a>) -> StageFuture<'a> {
        Box::pin(async move {
            let env = ctx.envelope;
            let mut proof = assess(env);
            // Only a verified certificate that named nothing else is worth a PTR lookup.
            if proof.name == "TLS_CERT_VALID"
                && let Some(dns) = &self.dns
                && let Some(rdns) = dns.confirmed_reverse_name(env.client_ip).await
            {
                proof = match_reverse_name(env, &rdns).unwrap_or(proof);
            }
            let mut found = vec![proof];
            if let Some(book) = &self.book {
                let domain = ctx
                    .facts
                    .authenticated_domain
                    .clone()
                    .unwrap_or_else(|| domain_of(&env.mail_from));
                found.extend(compare_with_history(env, &domain, book));
            }
            Ok(found)
        })
    }
}

/// `TLS_CERT_NAME_MATCH` when the verified certificate names the client's (forward-
/// confirmed) reverse DNS name.
fn match_reverse_name(env: &Envelope, rdns: &str) -> Option<Symbol> {
    let tls = env.tls.as_ref().filter(|t| t.peer_cert_verified)?;
    let name = tls.peer_cert_names.iter().find(|n| name_covers(n, rdns))?;
    Some(Symbol::new(
        "TLS_CERT_NAME_MATCH",
        format!("{name} (reverse DNS {rdns})"),
    ))
}

/// Change or downgrade against the domain's history of verified certificates.
fn compare_with_history(env: &Envelope, domain: &str, book: &TrustBook) -> Option<Symbol> {
    let history = book.tls_history(domain)?;
    if !history.always_verified() {
        return None;
    }
    let verified = env.tls.as_ref().filter(|t| t.peer_cert_verified);
    match verified.and_then(|t| t.peer_cert_sha256.as_deref()) {
        None => {
            let now = match &env.tls {
                None => "plaintext",
                Some(t) if t.peer_cert_sha256.is_none() => "no client certificate",
                Some(_) => "unverified certificate",
            };
            tracing::warn!(
                domain,
                client_ip = %env.client_ip,
                now,
                verified_sessions = history.verified,
                "TLS downgrade: this domain always showed a verified client certificate"
            );
            Some(Symbol::new(
                "TLS_DOWNGRADE",
                format!(
                    "{domain}: {now} after {} verified sessions",
                    history.verified
                ),
            ))
        }
        Some(fp) if history.fingerprint.as_deref().is_some_and(|old| old != fp) => {
            Some(Symbol::new(
                "TLS_CERT_CHANGED",
                format!(
                    "{domain}: {} → {}",
                    short(history.fingerprint.as_deref()),
                    short(Some(fp))
                ),
            ))
        }
        Some(_) => None,
    }
}

fn short(fp: Option<&str>) -> &str {
    fp.map_or("-", |f| &f[..f.len().min(16)])
}

/// Whether certificate name `pattern` (possibly "*.example.org") covers `host`.
fn name_covers(pattern: &str, host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(base) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == base),
        None => pattern == host,
    }
}

/// A certificate name "fits" the HELO name, or belongs to the sender's domain
/// (mx1.partner.example for mail from partner.example).
fn matching_name<'a>(names: &'a [String], helo: &str, sender_domain: &str) -> Option<&'a str> {
    names
        .iter()
        .find(|n| {
            name_covers(n, helo)
                || (!sender_domain.is_empty()
                    && (name_covers(n, sender_domain)
                        || n.trim_start_matches("*.")
                            .ends_with(&format!(".{sender_domain}"))))
        })
        .map(String::as_str)
}

pub fn assess(envelope: &Envelope) -> Symbol {
    let Some(tls) = &envelope.tls else {
        return Symbol::new("TLS_NONE", "plaintext session");
    };
    let session = format!("{} {}", tls.version, tls.cipher);
    if tls.peer_cert_sha256.is_none() {
        return Symbol::new("TLS_NO_CLIENT_CERT", session);
    }
    if !tls.peer_cert_verified {
        return Symbol::new("TLS_CERT_UNTRUSTED", session);
    }
    let sender_domain = domain_of(&envelope.mail_from);
    match matching_name(&tls.peer_cert_names, &envelope.helo, &sender_domain) {
        Some(name) => Symbol::new("TLS_CERT_NAME_MATCH", name.to_string()),
        None => Symbol::new("TLS_CERT_VALID", tls.peer_cert_names.join(",")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Direction, TlsFacts};

    fn env(tls: Option<TlsFacts>, helo: &str, from: &str) -> Envelope {
        Envelope {
            direction: Direction::Inbound,
            client_ip: "192.0.2.1".parse().unwrap(),
            helo: helo.into(),
            mail_from: from.into(),
            rcpt_to: vec![],
            smtputf8: false,
            body_8bit: false,
            tls,
        }
    }

    fn facts(cert: bool, verified: bool, names: &[&str]) -> TlsFacts {
        TlsFacts {
            version: "TLSv1.3".into(),
            cipher: "TLS_AES_256_GCM_SHA384".into(),
            peer_cert_sha256: cert.then(|| "ab".into()),
            peer_cert_verified: verified,
            peer_cert_names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn each_level_of_proof_has_its_symbol() {
        assert_eq!(assess(&env(None, "mx.p.test", "a@p.test")).name, "TLS_NONE");
        assert_eq!(
            assess(&env(
                Some(facts(false, false, &[])),
                "mx.p.test",
                "a@p.test"
            ))
            .name,
            "TLS_NO_CLIENT_CERT"
        );
        assert_eq!(
            assess(&env(
                Some(facts(true, false, &["mx.p.test"])),
                "mx.p.test",
                "a@p.test"
            ))
            .name,
            "TLS_CERT_UNTRUSTED"
        );
        assert_eq!(
            assess(&env(
                Some(facts(true, true, &["other.test"])),
                "mx.p.test",
                "a@p.test"
            ))
            .name,
            "TLS_CERT_VALID"
        );
        let m = assess(&env(
            Some(facts(true, true, &["mx.p.test"])),
            "MX.P.TEST",
            "a@x.test",
        ));
        assert_eq!(
            (m.name, m.detail.as_str()),
            ("TLS_CERT_NAME_MATCH", "mx.p.test")
        );
        // a server of the sender's domain, whatever its HELO says
        assert_eq!(
            assess(&env(
                Some(facts(true, true, &["mx9.p.test"])),
                "unknown",
                "a@p.test"
            ))
            .name,
            "TLS_CERT_NAME_MATCH"
        );
    }

    #[test]
    fn downgrade_and_change_only_for_domains_that_always_verified() {
        let book = TrustBook::new(90.0);
        let ip = "192.0.2.1".parse().unwrap();
        let verified = Some(facts(true, true, &["mx.p.test"]));
        // one verified session is not yet a habit
        book.learn_inbound("p.test", ip, Some("aa"), 0);
        assert!(compare_with_history(&env(None, "h", "a@p.test"), "p.test", &book).is_none());
        book.learn_inbound("p.test", ip, Some("aa"), 0);
        let plain = compare_with_history(&env(None, "h", "a@p.test"), "p.test", &book).unwrap();
        assert_eq!(plain.name, "TLS_DOWNGRADE");
        assert!(plain.detail.contains("plaintext"), "{}", plain.detail);
        let nocert = Some(facts(false, false, &[]));
        assert_eq!(
            compare_with_history(&env(nocert, "h", "a@p.test"), "p.test", &book)
                .unwrap()
                .name,
            "TLS_DOWNGRADE"
        );
        // facts() presents fingerprint "ab"; the history knows "aa"
        assert_eq!(
            compare_with_history(&env(verified.clone(), "h", "a@p.test"), "p.test", &book)
                .unwrap()
                .name,
            "TLS_CERT_CHANGED"
        );
        book.learn_inbound("p.test", ip, Some("ab"), 0);
        assert!(compare_with_history(&env(verified, "h", "a@p.test"), "p.test", &book).is_none());
        // once an unverified session was authenticated for it, there is no habit to break
        book.learn_inbound("p.test", ip, None, 0);
        assert!(compare_with_history(&env(None, "h", "a@p.test"), "p.test", &book).is_none());
    }

    #[test]
    fn the_reverse_dns_name_is_a_match_candidate_for_verified_certificates_only() {
        let e = env(
            Some(facts(true, true, &["*.relay.test"])),
            "unknown",
            "a@x.test",
        );
        assert_eq!(assess(&e).name, "TLS_CERT_VALID");
        let m = match_reverse_name(&e, "out7.relay.test").unwrap();
        assert_eq!(m.name, "TLS_CERT_NAME_MATCH");
        assert!(
            m.detail.contains("reverse DNS out7.relay.test"),
            "{}",
            m.detail
        );
        assert!(match_reverse_name(&e, "relay.test.evil.test").is_none());
        let unverified = env(Some(facts(true, false, &["*.relay.test"])), "h", "a@x.test");
        assert!(match_reverse_name(&unverified, "out7.relay.test").is_none());
    }

    #[test]
    fn wildcards_cover_one_label_only() {
        assert!(name_covers("*.p.test", "mx.p.test"));
        assert!(!name_covers("*.p.test", "a.mx.p.test"));
        assert!(!name_covers("*.p.test", "p.test"));
        assert!(!name_covers("mx.p.test", "evilmx.p.test"));
        // a look-alike domain is not the sender's
        assert!(matching_name(&["mx.evilp.test".into()], "x", "p.test").is_none());
    }
}
