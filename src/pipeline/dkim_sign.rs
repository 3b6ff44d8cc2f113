//! Outbound DKIM signing (RFC 6376; Ed25519 per RFC 8463): the last step before the queue.
//!
//! Every outbound message the verdict lets through (accept, tag, quarantine) gets one
//! `DKIM-Signature:` per configured key of its From: domain — configure an RSA and an
//! Ed25519 key for the same domain to sign with both. The From: domain is the one DMARC
//! aligns with; a message from a domain without a key goes out unsigned. Keys come from
//! `[[dkim_signing]]` (domain, selector, PEM key file: RSA ≥ 2048 bits or Ed25519, PKCS#8
//! or PKCS#1) and are loaded once at start; a bad key stops the gateway with its path.
//!
//! SECURITY: holds private keys in memory; reads only the From: header of our own users'
//! mail to pick a key. Signing is one private-key operation per key and message and runs
//! inline; its time is in /metrics as `stage_duration_seconds{stage="dkim_sign"}`.

use std::path::Path;

use anyhow::{Context, bail};
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner, Done};
use openssl::pkey::{Id, PKey};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::DkimSigningConfig;

/// Header fields we sign when present (RFC 6376 §5.4.1's list of what matters to readers).
const SIGNED_HEADERS: &[&str] = &[
    "From",
    "Sender",
    "Reply-To",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

enum Key {
    Rsa(DkimSigner<RsaKey<Sha256>, Done>),
    Ed25519(DkimSigner<Ed25519Key, Done>),
}

struct DomainKey {
    /// Lowercase, no trailing dot.
    domain: String,
    selector: String,
    key: Key,
}

/// The configured signing keys.
pub struct OutboundSigner {
    keys: Vec<DomainKey>,
}

impl OutboundSigner {
    /// Load every `[[dkim_signing]]` key; an error names the entry and the file.
    pub fn load(entries: &[DkimSigningConfig]) -> anyhow::Result<OutboundSigner> {
        let mut keys = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let domain = e.domain.trim_end_matches('.').to_ascii_lowercase();
            let key = load_key(&e.key, &domain, &e.selector)
                .with_context(|| format!("key `dkim_signing[{i}].key` ({})", e.key.display()))?;
            keys.push(DomainKey {
                domain,
                selector: e.selector.clone(),
                key,
            });
        }
        Ok(OutboundSigner { keys })
    }

    /// The DKIM-Signature fields for `raw` (no final CRLF), one per key of its From: domain.
    /// Signing errors are logged and that signature is left out (mail still flows).
    pub fn sign(&self, raw: &[u8]) -> Vec<String> {
        let Some(domain) = from_domain(raw) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for k in self.keys.iter().filter(|k| k.domain == domain) {
            let signed = match &k.key {
                Key::Rsa(s) => s.sign(raw).map(|sig| sig.to_header()),
                Key::Ed25519(s) => s.sign(raw).map(|sig| sig.to_header()),
            };
            match signed {
                Ok(h) => out.push(tidy(&h)),
                Err(e) => tracing::error!(
                    domain = %k.domain,
                    selector = %k.selector,
                    error = %e,
                    "DKIM signing failed; message sent without this signature"
                ),
            }
        }
        out
    }
}

/// The field without its final CRLF, and without a fold right before the closing `;`.
/// mail-auth 0.13 folds there when the `b=` value ends exactly at its line width
/// ("...==\r\n\t;"), but signed the field as "b=;": a verifier that keeps the whitespace
/// after the deleted `b=` value (dkimpy does) computes "b= ;" and the RSA-2048 signature
/// fails. Joining the `;` to the value gives every verifier the same "b=;".
fn tidy(header: &str) -> String {
    let h = header.trim_end_matches("\r\n");
    match h.strip_suffix(";") {
        Some(rest) => format!("{};", rest.trim_end_matches(['\r', '\n', '\t', ' '])),
        None => h.to_string(),
    }
}

fn load_key(path: &Path, domain: &str, selector: &str) -> anyhow::Result<Key> {
    let pem = std::fs::read(path).context("cannot read the key file")?;
    let pkey = PKey::private_key_from_pem(&pem).context("not a PEM private key")?;
    let der = pkey
        .private_key_to_pkcs8()
        .context("cannot convert the key to PKCS#8")?;
    Ok(match pkey.id() {
        Id::RSA => {
            if pkey.bits() < 2048 {
                bail!("RSA key has {} bits; DKIM needs at least 2048", pkey.bits());
            }
            let key =
                RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der)))
                    .map_err(|e| anyhow::anyhow!("unusable RSA key: {e}"))?;
            Key::Rsa(configure(DkimSigner::from_key(key), domain, selector))
        }
        Id::ED25519 => {
            // openssl writes PKCS#8 v1 (no public key inside): ring's "maybe unchecked".
            let key = Ed25519Key::from_pkcs8_maybe_unchecked_der(&der)
                .map_err(|e| anyhow::anyhow!("unusable Ed25519 key: {e}"))?;
            Key::Ed25519(configure(DkimSigner::from_key(key), domain, selector))
        }
        other => bail!("key type {other:?} cannot sign DKIM (RSA or Ed25519)"),
    })
}

fn configure<T: mail_auth::common::crypto::SigningKey>(
    signer: DkimSigner<T>,
    domain: &str,
    selector: &str,
) -> DkimSigner<T, Done> {
    signer
        .domain(domain)
        .selector(selector)
        .headers(SIGNED_HEADERS.iter().copied())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

/// The domain of the first From: address, lowercase.
fn from_domain(raw: &[u8]) -> Option<String> {
    let parsed = mail_parser::MessageParser::new().parse_headers(raw)?;
    let addr = parsed.from()?.first()?.address()?;
    let (_, domain) = addr.rsplit_once('@')?;
    Some(domain.trim_end_matches('.').to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_fold_before_the_closing_semicolon() {
        assert_eq!(
            tidy("DKIM-Signature: a=1; b=xy==\r\n\t;\r\n"),
            "DKIM-Signature: a=1; b=xy==;"
        );
        assert_eq!(
            tidy("DKIM-Signature: a=1;\r\n\tb=xy==;\r\n"),
            "DKIM-Signature: a=1;\r\n\tb=xy==;"
        );
    }

    #[test]
    fn from_domain_is_taken_from_the_header() {
        assert_eq!(
            from_domain(b"To: x@y\r\nFrom: Me <me@Example.TEST>\r\n\r\nbody\r\n").as_deref(),
            Some("example.test")
        );
        assert_eq!(from_domain(b"To: x@y\r\n\r\nbody\r\n"), None);
    }

    #[test]
    fn an_ed25519_key_signs_for_its_domain_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ed.pem");
        let key = PKey::generate_ed25519().unwrap();
        std::fs::write(&path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        let signer = OutboundSigner::load(&[DkimSigningConfig {
            domain: "Example.test.".into(),
            selector: "ed".into(),
            key: path,
        }])
        .unwrap();
        let msg = b"From: me@example.test\r\nTo: you@remote.test\r\nSubject: hi\r\n\r\nbody\r\n";
        let sigs = signer.sign(msg);
        assert_eq!(sigs.len(), 1);
        assert!(sigs[0].starts_with("DKIM-Signature:"), "{}", sigs[0]);
        assert!(sigs[0].contains("a=ed25519-sha256"), "{}", sigs[0]);
        assert!(sigs[0].contains("d=example.test"), "{}", sigs[0]);
        assert!(!sigs[0].ends_with('\n'));
        assert!(signer.sign(b"From: me@other.test\r\n\r\nx\r\n").is_empty());
    }

    #[test]
    fn a_short_rsa_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rsa.pem");
        let rsa = openssl::rsa::Rsa::generate(1024).unwrap();
        std::fs::write(&path, rsa.private_key_to_pem().unwrap()).unwrap();
        let err = OutboundSigner::load(&[DkimSigningConfig {
            domain: "example.test".into(),
            selector: "s".into(),
            key: path,
        }])
        .err()
        .unwrap();
        let text = format!("{err:#}");
        assert!(text.contains("dkim_signing[0].key"), "{text}");
        assert!(text.contains("2048"), "{text}");
    }
}
