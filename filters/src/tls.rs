//! TLS reputation (inbound): a bonus for a sending server that used TLS and proved itself
//! with a valid client certificate whose name fits, a small malus for plaintext.
//!
//! Facts come from the session's handshake (`Envelope::tls`); the per-domain *requirement*
//! (`[[tls_policy]]`) is enforced earlier, at MAIL FROM, by the SMTP session.
//! Not yet here: the reverse-DNS name as a match candidate, and remembering each domain's
//! certificate fingerprint to flag a change or a downgrade.

use crate::{Envelope, MessageContext, Stage, StageFuture, Symbol};

pub struct TlsReputation;

impl Stage for TlsReputation {
    fn name(&self) -> &'static str {
        "tls_reputation"
    }

    fn check<'a>(&'a self, ctx: &'a MessageContext<'a>) -> StageFuture<'a> {
        Box::pin(async move { Ok(vec![assess(ctx.envelope)]) })
    }
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
    let sender_domain = envelope
        .mail_from
        .rsplit_once('@')
        .map(|(_, d)| d.trim_end_matches('.').to_ascii_lowercase())
        .unwrap_or_default();
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
    fn wildcards_cover_one_label_only() {
        assert!(name_covers("*.p.test", "mx.p.test"));
        assert!(!name_covers("*.p.test", "a.mx.p.test"));
        assert!(!name_covers("*.p.test", "p.test"));
        assert!(!name_covers("mx.p.test", "evilmx.p.test"));
        // a look-alike domain is not the sender's
        assert!(matching_name(&["mx.evilp.test".into()], "x", "p.test").is_none());
    }
}
