//! The first inbound step: unwrap S/MIME before any filter looks at the message, so auth,
//! Bayes, ClamAV and the quarantine see plaintext — and the plaintext is what gets queued.
//!
//! Not a [`filters::Stage`]: a stage never changes the message, this step replaces it.
//! `Pipeline::run` calls [`SmimeInbound::unwrap`] before its stage list and hands the later
//! stages the plaintext (keeping the wire bytes for DKIM). Harvesting partners'
//! certificates waits for the verdict ([`SmimeInbound::harvest`]): mail rejected or held as
//! spam or virus teaches us nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use filters::{Envelope, Symbol};

use super::engine::{
    self, ChainVerdicts, KeyPair, SignatureResult, SignatureStatus, SmimeError, Unwrapped,
};
use super::keyring::{Identity, Keyring, Revocation, RevocationMode};
use super::mime;
use crate::config::SmimeConfig;
use openssl::x509::store::X509Store;

/// The result header field.
const RESULT_FIELD: &str = "X-Portcullis-SMIME";

/// What the inbound step found.
#[derive(Default)]
pub struct InboundResult {
    pub symbols: Vec<Symbol>,
    /// `X-Portcullis-SMIME:` for the internal recipient, when the message was S/MIME.
    pub header: Option<String>,
    /// The message to judge and store instead of the received bytes.
    pub replacement: Option<Vec<u8>>,
    /// Valid signatures, to harvest once the verdict lets the message through.
    pub harvestable: Vec<SignatureResult>,
    /// The envelope recipients the replacement (the plaintext) is for, when not all: those
    /// whose key, or whose domain's gateway key, opened the message. The others get the
    /// message as received, with [`Self::others_header`] instead of [`Self::header`].
    pub readers: Option<Vec<String>>,
    /// The result header for the recipients who are not [`Self::readers`].
    pub others_header: Option<String>,
}

pub struct SmimeInbound {
    keyring: Arc<dyn Keyring>,
    config: SmimeConfig,
    /// Signers harvested lately (digest of certificate, chain and capabilities → when): a
    /// partner who writes often is not looked up in the store for every message.
    recent: Mutex<HashMap<Vec<u8>, Instant>>,
    /// Chain verdicts, for the trust store they were made with (a new store, after a CA
    /// was trusted or removed, gets a new memory).
    verdicts: Mutex<Option<(Arc<X509Store>, Arc<ChainVerdicts>)>>,
}

/// How long a harvested signer is not harvested again (unchanged).
const HARVEST_AGAIN_AFTER: Duration = Duration::from_secs(600);
/// Bound of [`SmimeInbound::recent`]; past it the memory starts over.
const RECENT_MAX: usize = 10_000;

impl SmimeInbound {
    pub fn new(keyring: Arc<dyn Keyring>, config: SmimeConfig) -> SmimeInbound {
        SmimeInbound {
            keyring,
            config,
            recent: Mutex::new(HashMap::new()),
            verdicts: Mutex::new(None),
        }
    }

    /// Unwrap `raw` when it is S/MIME. `Err` only when the store cannot be read (the
    /// pipeline applies `[stages.smime] fail_mode`); bad S/MIME is a symbol.
    pub async fn unwrap(&self, envelope: &Envelope, raw: &[u8]) -> anyhow::Result<InboundResult> {
        let mut result = self.unwrap_smime(envelope, raw).await?;
        // Our result header is ours alone: one from outside (or from inside the encrypted
        // part) could fake "signed by <ceo>, chain trusted".
        let judged = result.replacement.as_deref().unwrap_or(raw);
        if let Some(clean) = mime::without_field(judged, RESULT_FIELD) {
            result.replacement = Some(clean);
        }
        Ok(result)
    }

    async fn unwrap_smime(&self, envelope: &Envelope, raw: &[u8]) -> anyhow::Result<InboundResult> {
        if !engine::is_smime(raw) {
            return Ok(InboundResult::default());
        }
        let mut identities: Vec<Identity> = Vec::new();
        // Per envelope recipient, the indexes of its keys (its own, its domain's gateway
        // key) in `identities`.
        let mut owned: Vec<Vec<usize>> = Vec::with_capacity(envelope.rcpt_to.len());
        for rcpt in &envelope.rcpt_to {
            let mut mine = Vec::new();
            for id in self.keyring.decryption_identities(rcpt).await? {
                let at = match identities.iter().position(|i| i.cert == id.cert) {
                    Some(at) => at,
                    None => {
                        identities.push(id);
                        identities.len() - 1
                    }
                };
                mine.push(at);
            }
            owned.push(mine);
        }
        let trust = self.keyring.trust_store()?;
        let intermediates = self.keyring.intermediates();
        let verdicts = self.verdicts_for(&trust);
        let message = raw.to_vec();
        let deadline = Instant::now() + Duration::from_secs(self.config.job_timeout_secs);
        let limits = engine::Limits {
            max_signers: self.config.max_signers,
            max_layers: self.config.max_layers,
            deadline: Some(deadline),
        };
        // RSA private-key operations take milliseconds: off the reactor.
        let result = super::cpu::run_until(deadline, move || {
            let keys: Vec<KeyPair> = identities
                .iter()
                .map(|i| KeyPair {
                    cert: &i.cert,
                    key: &i.key,
                })
                .collect();
            engine::unwrap_limited(
                &message,
                &keys,
                &trust,
                &intermediates,
                verdicts.as_deref(),
                &limits,
            )
        })
        .await?;
        Ok(match result {
            Ok(None) => InboundResult::default(),
            Ok(Some(mut u)) => {
                let notes = self.check_revocation(&mut u.signatures).await?;
                // The plaintext is for the recipients holding a key to every encrypted layer.
                let reads = |mine: &Vec<usize>| {
                    u.opened_with
                        .iter()
                        .all(|layer| layer.iter().any(|k| mine.contains(k)))
                };
                let readers: Vec<String> = envelope
                    .rcpt_to
                    .iter()
                    .zip(&owned)
                    .filter(|(_, mine)| reads(mine))
                    .map(|(r, _)| r.clone())
                    .collect();
                let mut out = self.unwrapped(raw, u, &notes);
                if readers.len() < envelope.rcpt_to.len() && out.replacement.is_some() {
                    out.readers = Some(readers);
                    out.others_header = Some(header(
                        "encrypted for another recipient, delivered as received",
                    ));
                }
                out
            }
            Err(e) => self.failed(e),
        })
    }

    /// Revocation of each trusted signer's chain (the certificate the verdict was made on,
    /// with the certificates the message carried): a revoked one is no longer trusted; an
    /// unknown status makes it untrusted with `revocation = "hard"`, else it is noted in
    /// the result ("chain trusted (revocation unknown)"). The notes go with `signatures`.
    async fn check_revocation(
        &self,
        signatures: &mut [SignatureResult],
    ) -> anyhow::Result<Vec<Option<&'static str>>> {
        let mut notes = vec![None; signatures.len()];
        for (s, note) in signatures.iter_mut().zip(notes.iter_mut()) {
            if s.status != SignatureStatus::Valid {
                continue;
            }
            let Some(signer) = s.signer_der.as_deref() else {
                continue;
            };
            match self.keyring.revocation(signer, &s.chain_der).await? {
                Revocation::Off | Revocation::Good => {}
                Revocation::Revoked(why) => s.status = SignatureStatus::UntrustedChain(why),
                Revocation::Unknown(why) => {
                    tracing::info!(signer = ?s.signer_address, reason = %why, "S/MIME signer's revocation status unknown");
                    if self.keyring.revocation_mode() == RevocationMode::Hard {
                        s.status =
                            SignatureStatus::UntrustedChain(format!("revocation unknown: {why}"));
                    } else {
                        *note = Some("revocation unknown");
                    }
                }
            }
        }
        Ok(notes)
    }

    /// The chain verdict memory for `trust`. The keyring builds one trust store per change
    /// of the certificate store (anchors and intermediates alike), so a different store
    /// means different answers: the memory starts over. Holding the `Arc` keeps its address
    /// from being reused by a later store.
    fn verdicts_for(&self, trust: &Arc<X509Store>) -> Option<Arc<ChainVerdicts>> {
        let mut slot = self.verdicts.lock().ok()?;
        match slot.as_ref() {
            Some((store, verdicts)) if Arc::ptr_eq(store, trust) => Some(verdicts.clone()),
            _ => {
                let verdicts = Arc::new(ChainVerdicts::default());
                *slot = Some((trust.clone(), verdicts.clone()));
                Some(verdicts)
            }
        }
    }

    fn unwrapped(&self, raw: &[u8], u: Unwrapped, notes: &[Option<&str>]) -> InboundResult {
        let mut out = InboundResult::default();
        let mut summary = Vec::new();
        if u.decrypted() {
            out.symbols
                .push(Symbol::new("SMIME_DECRYPTED", format!("{:?}", u.layers)));
            summary.push("decrypted".to_string());
        }
        for (i, s) in u.signatures.iter().enumerate() {
            let who = s.signer_address.as_deref().unwrap_or("unknown signer");
            match &s.status {
                SignatureStatus::Valid => {
                    let note = notes
                        .get(i)
                        .copied()
                        .flatten()
                        .map(|n| format!(" ({n})"))
                        .unwrap_or_default();
                    out.symbols
                        .push(Symbol::new("SMIME_SIGNED_VALID", format!("{who}{note}")));
                    summary.push(format!("signed by <{who}>, chain trusted{note}"));
                    out.harvestable.push(s.clone());
                }
                SignatureStatus::UntrustedChain(why) => {
                    out.symbols.push(Symbol::new(
                        "SMIME_SIGNED_UNTRUSTED_CHAIN",
                        format!("{who}: {why}"),
                    ));
                    summary.push(format!("signed by <{who}>, chain NOT trusted ({why})"));
                }
                SignatureStatus::Invalid(why) => {
                    out.symbols
                        .push(Symbol::new("SMIME_SIGNED_INVALID", format!("{who}: {why}")));
                    summary.push(format!("signature INVALID ({why})"));
                }
            }
        }
        if let Some(why) = &u.left_as_sent {
            out.symbols
                .push(Symbol::new("SMIME_NOT_UNWRAPPED", why.as_str()));
            summary.push(why.clone());
        }
        out.header = Some(header(&summary.join("; ")));
        // Left as sent and not encrypted: delivered byte for byte as received.
        if u.left_as_sent.is_some() && !u.decrypted() {
            return out;
        }
        // Keep the signature where it directly wraps the plaintext and the operator wants
        // it; otherwise deliver the plaintext. A message that was only signed and keeps its
        // signature is stored as received, byte for byte.
        let keep = self.config.keep_signature && u.signed_entity.is_some();
        if keep && !u.decrypted() {
            return out;
        }
        let entity = match (keep, &u.signed_entity) {
            (true, Some(signed)) => signed,
            _ => &u.plaintext,
        };
        let outer = mime::outer_fields(raw);
        out.replacement = Some(mime::assemble(&outer, &[], entity));
        out
    }

    fn failed(&self, e: SmimeError) -> InboundResult {
        let forced = self.config.undecryptable_action.forced();
        let (name, text) = match &e {
            SmimeError::Undecryptable(why) => {
                ("SMIME_UNDECRYPTABLE", format!("undecryptable ({why})"))
            }
            other => ("SMIME_MALFORMED", format!("malformed ({other})")),
        };
        let mut sym = Symbol::new(name, e.to_string());
        if let Some(a) = forced {
            sym = sym.forcing(a);
        }
        InboundResult {
            symbols: vec![sym],
            header: Some(header(&text)),
            replacement: None,
            harvestable: Vec::new(),
            readers: None,
            others_header: None,
        }
    }

    /// Store the valid signers' certificates (called after an accept or tag verdict).
    /// Failures are logged: a missed harvest only means the partner's next signed mail
    /// teaches us the certificate.
    pub async fn harvest(&self, signatures: &[SignatureResult], message_id: &str) {
        for s in signatures {
            if s.signer_der.is_none() {
                continue;
            }
            let key = harvest_key(s);
            if let Some(k) = &key {
                let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
                if recent
                    .get(k)
                    .is_some_and(|at| at.elapsed() < HARVEST_AGAIN_AFTER)
                {
                    continue;
                }
            }
            let Some(signer) = s.signer() else { continue };
            let chain = s.chain();
            if let Err(e) = self
                .keyring
                .harvest(&signer, &chain, message_id, &s.capabilities)
                .await
            {
                tracing::warn!(error = %format!("{e:#}"), signer = ?s.signer_address, "cannot harvest the signer's certificate");
            } else if let Some(k) = key {
                let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
                if recent.len() >= RECENT_MAX {
                    recent.clear();
                }
                recent.insert(k, Instant::now());
            }
        }
    }
}

/// What makes a harvest the same as an earlier one: the certificates and capabilities.
fn harvest_key(s: &SignatureResult) -> Option<Vec<u8>> {
    let mut h = openssl::sha::Sha256::new();
    for c in s.signer_der.iter().chain(s.chain_der.iter()) {
        h.update(c);
    }
    for c in &s.capabilities {
        h.update(c.as_bytes());
        h.update(b",");
    }
    Some(h.finish().to_vec())
}

/// The result header, one line (folded by the reader if long); control characters from
/// certificate names are dropped.
fn header(text: &str) -> String {
    let clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("{RESULT_FIELD}: {clean}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use filters::{Action, Direction, Envelope};

    use crate::certs::test_pki::on_disk::Pki;
    use crate::config::Config;
    use crate::metrics::Metrics;
    use crate::pipeline::{Pipeline, Resources};
    use crate::smime::engine::{self, ContentCipher, KeyPair};
    use crate::smime::keyring::MemoryKeyring;

    const ENTITY: &[u8] = b"Content-Type: text/plain\r\n\r\nmeet at noon\r\n";

    fn envelope() -> Envelope {
        Envelope {
            direction: Direction::Inbound,
            client_ip: "192.0.2.1".parse().unwrap(),
            helo: "mx.partner.test".into(),
            mail_from: "alice@partner.test".into(),
            rcpt_to: vec!["bob@example.test".into()],
            smtputf8: false,
            body_8bit: false,
            tls: None,
        }
    }

    fn message(entity: &[u8]) -> Vec<u8> {
        let mut m = b"From: <alice@partner.test>\r\nTo: <bob@example.test>\r\nSubject: lunch\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <lunch@partner.test>\r\nMIME-Version: 1.0\r\n".to_vec();
        m.extend_from_slice(entity);
        m
    }

    struct World {
        pki: Pki,
        keyring: Arc<MemoryKeyring>,
        alice: crate::certs::test_pki::on_disk::User,
        bob: crate::certs::test_pki::on_disk::User,
    }

    fn world() -> World {
        let pki = Pki::new("Test CA");
        let alice = pki.user("alice@partner.test");
        let bob = pki.user("bob@example.test");
        let mut k = MemoryKeyring::default();
        k.identities.insert(
            "bob@example.test".into(),
            vec![(bob.cert.clone(), bob.key.clone())],
        );
        k.trusted.push(pki.ca.clone());
        World {
            pki,
            keyring: Arc::new(k),
            alice,
            bob,
        }
    }

    fn pipeline(w: &World, extra: &str) -> Pipeline {
        let c = Config::parse(extra).unwrap();
        let r = Resources {
            keyring: Some(w.keyring.clone()),
            ..Resources::default()
        };
        Pipeline::from_config(&c, &r, Metrics::new())
    }

    fn signed_and_encrypted(w: &World) -> Vec<u8> {
        let signed = engine::sign(
            ENTITY,
            &KeyPair {
                cert: &w.alice.cert,
                key: &w.alice.key,
            },
            &[],
        )
        .unwrap();
        let enc = engine::encrypt(
            &signed,
            std::slice::from_ref(&w.bob.cert),
            ContentCipher::Aes256Gcm,
        )
        .unwrap();
        message(&enc)
    }

    #[tokio::test]
    async fn decrypts_first_judges_plaintext_and_harvests_after_accept() {
        let w = world();
        let _ = &w.pki;
        let raw = signed_and_encrypted(&w);
        let out = pipeline(&w, "[smime]\nkeep_signature = false")
            .run(&envelope(), &raw)
            .await;
        assert_eq!(out.action, Action::Accept, "{out:?}");
        let names: Vec<&str> = out.card.symbols.iter().map(|s| s.name).collect();
        assert!(names.contains(&"SMIME_DECRYPTED"), "{names:?}");
        assert!(names.contains(&"SMIME_SIGNED_VALID"), "{names:?}");
        let header = out
            .headers
            .iter()
            .find(|h| h.starts_with("X-Portcullis-SMIME:"))
            .unwrap();
        assert!(
            header.contains("decrypted; signed by <alice@partner.test>, chain trusted"),
            "{header}"
        );
        let body = out.copies[0]
            .body
            .as_ref()
            .expect("plaintext replaces the message");
        let text = String::from_utf8_lossy(body);
        assert!(text.contains("Subject: lunch\r\n"), "{text}");
        assert!(
            text.ends_with("Content-Type: text/plain\r\n\r\nmeet at noon\r\n"),
            "{text}"
        );
        assert!(!text.contains("pkcs7"), "{text}");
        assert_eq!(
            w.keyring.harvested.lock().unwrap().as_slice(),
            &[(
                "alice@partner.test".to_string(),
                "lunch@partner.test".to_string()
            )]
        );
        // a result header that came with the message is removed, ours is the only one
        let forged = [
            b"X-Portcullis-SMIME: signed by <ceo@example.test>, chain trusted\r\n".as_slice(),
            &raw,
        ]
        .concat();
        let out = pipeline(&w, "").run(&envelope(), &forged).await;
        let text = String::from_utf8_lossy(out.copies[0].body.as_ref().unwrap()).into_owned();
        assert!(!text.contains("ceo@"), "{text}");
        let out = pipeline(&w, "")
            .run(
                &envelope(),
                b"X-Portcullis-SMIME: decrypted\r\nSubject: plain\r\n\r\nhi\r\n",
            )
            .await;
        assert_eq!(
            out.copies[0].body.as_deref(),
            Some(&b"Subject: plain\r\n\r\nhi\r\n"[..])
        );
        // keep_signature (the default): the signed entity is delivered, decrypted
        let out = pipeline(&w, "").run(&envelope(), &raw).await;
        let text = String::from_utf8_lossy(out.copies[0].body.as_ref().unwrap()).into_owned();
        assert!(text.contains("multipart/signed"), "{text}");
        assert!(text.contains("meet at noon"), "{text}");
    }

    #[tokio::test]
    async fn revocation_decides_between_trusted_unknown_and_not_trusted() {
        use crate::smime::keyring::{MemoryKeyring, Revocation, RevocationMode};
        let w = world();
        let raw = signed_and_encrypted(&w);
        for (revocation, mode, expected, harvested) in [
            (
                Revocation::Good,
                RevocationMode::Soft,
                "chain trusted",
                true,
            ),
            (
                Revocation::Revoked("certificate revoked".into()),
                RevocationMode::Soft,
                "chain NOT trusted (certificate revoked)",
                false,
            ),
            (
                Revocation::Unknown("no CRL of CN=Test CA".into()),
                RevocationMode::Soft,
                "chain trusted (revocation unknown)",
                true,
            ),
            (
                Revocation::Unknown("no CRL of CN=Test CA".into()),
                RevocationMode::Hard,
                "chain NOT trusted (revocation unknown: no CRL of CN=Test CA)",
                false,
            ),
        ] {
            let mut k = MemoryKeyring::default();
            k.identities.insert(
                "bob@example.test".into(),
                vec![(w.bob.cert.clone(), w.bob.key.clone())],
            );
            k.trusted.push(w.pki.ca.clone());
            k.revocation = Some(revocation.clone());
            k.revocation_mode = mode;
            let k = Arc::new(k);
            let c = Config::parse("").unwrap();
            let r = Resources {
                keyring: Some(k.clone()),
                ..Resources::default()
            };
            let out = Pipeline::from_config(&c, &r, Metrics::new())
                .run(&envelope(), &raw)
                .await;
            let header = out
                .headers
                .iter()
                .find(|h| h.starts_with("X-Portcullis-SMIME:"))
                .unwrap();
            assert!(
                header.ends_with(&format!("signed by <alice@partner.test>, {expected}")),
                "{revocation:?}: {header}"
            );
            assert_eq!(
                !k.harvested.lock().unwrap().is_empty(),
                harvested,
                "{revocation:?}"
            );
        }
    }

    #[tokio::test]
    async fn no_harvest_when_the_verdict_rejects_and_undecryptable_takes_its_action() {
        let w = world();
        let raw = signed_and_encrypted(&w);
        // the plaintext lacks nothing, but make the verdict reject via a points override
        let out = pipeline(&w, "[symbols]\nSMIME_DECRYPTED = 50.0")
            .run(&envelope(), &raw)
            .await;
        assert_eq!(out.action, Action::Reject);
        assert!(w.keyring.harvested.lock().unwrap().is_empty());
        // for someone we hold no key for
        let mut env = envelope();
        env.rcpt_to = vec!["carol@example.test".into()];
        for (cfg, action) in [
            ("", Action::Accept),
            (
                "[smime]\nundecryptable_action = \"quarantine\"",
                Action::Quarantine,
            ),
            ("[smime]\nundecryptable_action = \"reject\"", Action::Reject),
        ] {
            let out = pipeline(&w, cfg).run(&env, &raw).await;
            assert_eq!(out.action, action, "{cfg}: {out:?}");
            assert!(out.card.summary().contains("SMIME_UNDECRYPTABLE"), "{cfg}");
            assert!(out.copies[0].body.is_none(), "delivered as received");
        }
        // garbled CMS
        let garbled = String::from_utf8(raw.clone())
            .unwrap()
            .replace("MII", "!!!");
        let out = pipeline(&w, "[smime]\nundecryptable_action = \"reject\"")
            .run(&envelope(), garbled.as_bytes())
            .await;
        assert_eq!(out.action, Action::Reject);
        assert!(out.card.summary().contains("SMIME_MALFORMED"), "{out:?}");
        // [smime] enabled = false: untouched
        let out = pipeline(&w, "[smime]\nenabled = false")
            .run(&envelope(), &raw)
            .await;
        assert!(!out.card.summary().contains("SMIME"));
        assert!(out.copies[0].body.is_none());
    }
}
