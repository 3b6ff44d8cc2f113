//! Outbound S/MIME by policy (`[[smime.policy]]`): sign with the sender's identity (else
//! the sender domain's gateway identity), encrypt per recipient (own certificate, else the
//! recipient domain's gateway certificate), one copy per certificate plus one clear copy
//! where policy allows it.
//!
//! Three moments, called by the session and `Pipeline::run`:
//! 1. RCPT TO: [`SmimeOutbound::recipient_refusal`] — `encrypt = "require"` and no usable
//!    certificate: that recipient is refused, never sent in clear.
//! 2. Before the stages: [`SmimeOutbound::precheck`] — mail the user protected already
//!    (`block_user_protected`), or `sign = "require"` without a signing identity.
//! 3. After the verdict, before DKIM: [`SmimeOutbound::protect`] builds the copies.

use std::collections::BTreeMap;
use std::sync::Arc;

use filters::{Action, Envelope, Symbol};
use openssl::x509::X509;

use super::engine::{self, KeyPair};
use super::keyring::{Identity, Keyring};
use super::mime;
use super::policy::{SmimeRules, rules_for};
use crate::config::{SmimeConfig, SmimeRule};
use crate::queue::MessageCopy;

pub struct SmimeOutbound {
    keyring: Arc<dyn Keyring>,
    config: SmimeConfig,
}

/// The copies to queue and what was done, for the score card.
pub struct Protected {
    pub copies: Vec<MessageCopy>,
    pub symbols: Vec<Symbol>,
}

/// The address whose identity signs: the From: header's (what the recipient's client
/// compares with the signer certificate), else the envelope sender. Policy goes by the
/// envelope sender (MAIL FROM), the one address known already at RCPT TO.
pub fn sender_of(envelope: &Envelope, raw: &[u8]) -> String {
    let from = mail_parser::MessageParser::default()
        .parse_headers(raw)
        .and_then(|m| {
            m.from()
                .and_then(|a| a.first())
                .and_then(|a| a.address())
                .map(str::to_string)
        });
    from.unwrap_or_else(|| envelope.mail_from.clone())
        .to_ascii_lowercase()
}

impl SmimeOutbound {
    pub fn new(keyring: Arc<dyn Keyring>, config: SmimeConfig) -> SmimeOutbound {
        SmimeOutbound { keyring, config }
    }

    pub fn rules(&self, sender: &str) -> SmimeRules {
        rules_for(&self.config, sender)
    }

    /// No policy and nothing to block: outbound S/MIME has nothing to do.
    fn idle(&self) -> bool {
        self.config.policy.is_empty() && !self.config.block_user_protected
    }

    /// The reason to refuse `rcpt` at RCPT TO, if its sender's policy (or the rules'
    /// `smime` override, `encrypt`) requires encryption and there is no certificate to
    /// encrypt to. `Err`: the store cannot be read.
    pub async fn recipient_refusal(
        &self,
        mail_from: &str,
        rcpt: &str,
        encrypt_override: Option<SmimeRule>,
    ) -> anyhow::Result<Option<String>> {
        let encrypt =
            encrypt_override.unwrap_or_else(|| self.rules(&mail_from.to_ascii_lowercase()).encrypt);
        if encrypt != SmimeRule::Require {
            return Ok(None);
        }
        Ok(match self.keyring.encryption_certificate(rcpt).await? {
            Some(_) => None,
            None => Some(format!(
                "Encryption required by policy, but no usable S/MIME certificate for <{rcpt}> or its domain"
            )),
        })
    }

    /// Findings before the stages run: a forced reject for user-protected mail (when
    /// blocked) or for `sign = "require"` without an identity.
    pub async fn precheck(&self, envelope: &Envelope, raw: &[u8]) -> anyhow::Result<Vec<Symbol>> {
        let mut out = Vec::new();
        if self.idle() {
            return Ok(out);
        }
        if engine::is_smime(raw) {
            if self.config.block_user_protected {
                out.push(
                    Symbol::new(
                        "SMIME_USER_PROTECTED",
                        "already encrypted or signed by the user",
                    )
                    .forcing(Action::Reject),
                );
            }
            return Ok(out);
        }
        let sender = sender_of(envelope, raw);
        if self.rules(&envelope.mail_from).sign == SmimeRule::Require
            && self.keyring.signing_identity(&sender).await?.is_none()
        {
            out.push(
                Symbol::new(
                    "SMIME_NO_SIGNING_KEY",
                    format!("signing required for {sender}"),
                )
                .forcing(Action::Reject),
            );
        }
        Ok(out)
    }

    /// Sign and encrypt by policy. `None`: nothing to do (the message goes as received).
    /// `Err`: the store failed, or a recipient that requires encryption lost its
    /// certificate since RCPT TO — never a clear copy in that case.
    /// `overrides`: a rule's `smime` action, over the sender's policy.
    pub async fn protect(
        &self,
        envelope: &Envelope,
        raw: &[u8],
        overrides: Option<crate::rules::SmimeOverride>,
    ) -> anyhow::Result<Option<Protected>> {
        // Mail the user protected is passed as is (or was refused by the precheck).
        if (self.idle() && overrides.is_none()) || engine::is_smime(raw) {
            return Ok(None);
        }
        let mut rules = self.rules(&envelope.mail_from);
        if let Some(o) = overrides {
            rules.sign = o.sign.unwrap_or(rules.sign);
            rules.encrypt = o.encrypt.unwrap_or(rules.encrypt);
        }
        if rules.sign == SmimeRule::Forbid && rules.encrypt == SmimeRule::Forbid {
            return Ok(None);
        }
        let sender = sender_of(envelope, raw);
        let signer = match rules.sign {
            SmimeRule::Forbid => None,
            _ => self.keyring.signing_identity(&sender).await?,
        };
        if rules.sign == SmimeRule::Require && signer.is_none() {
            anyhow::bail!("signing required for {sender}, and its identity is gone");
        }
        // Recipients by certificate (fingerprint), and those that stay clear.
        let mut groups: BTreeMap<String, (X509, bool, Vec<String>)> = BTreeMap::new();
        let mut clear = Vec::new();
        for rcpt in &envelope.rcpt_to {
            let cert = match rules.encrypt {
                SmimeRule::Forbid => None,
                _ => self.keyring.encryption_certificate(rcpt).await?,
            };
            match cert {
                Some(c) => {
                    groups
                        .entry(c.fingerprint.clone())
                        .or_insert_with(|| (c.cert.clone(), c.aes_gcm_capable, Vec::new()))
                        .2
                        .push(rcpt.clone());
                }
                None if rules.encrypt == SmimeRule::Require => {
                    anyhow::bail!(
                        "encryption required and no certificate for <{rcpt}> (removed since RCPT TO?)"
                    );
                }
                None => clear.push(rcpt.clone()),
            }
        }
        if signer.is_none() && groups.is_empty() {
            return Ok(None);
        }
        let message = raw.to_vec();
        // Private-key and bulk cipher work: off the reactor.
        super::cpu::run(move || build(&message, signer.as_ref(), groups, clear))
            .await?
            .map(Some)
    }
}

fn build(
    raw: &[u8],
    signer: Option<&Identity>,
    groups: BTreeMap<String, (X509, bool, Vec<String>)>,
    clear: Vec<String>,
) -> anyhow::Result<Protected> {
    let parts = mime::message_parts(raw);
    let mut symbols = Vec::new();
    let content = match signer {
        Some(id) => {
            let signed = engine::sign(
                &parts.entity,
                &KeyPair {
                    cert: &id.cert,
                    key: &id.key,
                },
                &id.chain,
            )?;
            symbols.push(Symbol::new(
                "SMIME_SIGNED_OUT",
                engine::email_of(&id.cert).unwrap_or_default(),
            ));
            Some(signed)
        }
        None => None,
    };
    let inner = content.as_deref().unwrap_or(&parts.entity);
    let mut copies = Vec::new();
    let mut encrypted_for = Vec::new();
    for (_, (cert, gcm, rcpts)) in groups {
        let cipher = engine::cipher_for(gcm);
        let enc = engine::encrypt(inner, std::slice::from_ref(&cert), cipher)?;
        encrypted_for.push(format!("{} ({cipher:?})", rcpts.join(",")));
        copies.push(MessageCopy {
            recipients: Some(rcpts),
            body: Some(mime::assemble(&parts.outer, &[], &enc)),
            headers: Vec::new(),
            hold: None,
            ..MessageCopy::default()
        });
    }
    if !encrypted_for.is_empty() {
        symbols.push(Symbol::new("SMIME_ENCRYPTED_OUT", encrypted_for.join("; ")));
    }
    if !clear.is_empty() {
        copies.push(MessageCopy {
            recipients: Some(clear),
            body: content.map(|signed| mime::assemble(&parts.outer, &[], &signed)),
            headers: Vec::new(),
            hold: None,
            ..MessageCopy::default()
        });
    }
    Ok(Protected { copies, symbols })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use filters::{Action, Direction, Envelope};

    use crate::certs::test_pki::on_disk::Pki;
    use crate::config::{Config, SmimeRule};
    use crate::metrics::Metrics;
    use crate::pipeline::{Pipeline, Resources};
    use crate::smime::engine::{self, KeyPair, Layer, SignatureStatus};
    use crate::smime::keyring::MemoryKeyring;

    const MESSAGE: &[u8] = b"From: Alice <alice@example.test>\r\nTo: bob@partner.test, carol@other.test\r\nSubject: offer\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <offer@example.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nthe price is 42\r\n";

    fn envelope() -> Envelope {
        Envelope {
            direction: Direction::Outbound,
            client_ip: "10.0.0.5".parse().unwrap(),
            helo: "pc.example.test".into(),
            mail_from: "alice@example.test".into(),
            rcpt_to: vec!["bob@partner.test".into(), "carol@other.test".into()],
            smtputf8: false,
            body_8bit: false,
            tls: None,
        }
    }

    #[tokio::test]
    async fn signs_encrypts_per_recipient_and_keeps_a_clear_copy_where_allowed() {
        let pki = Pki::new("Test CA");
        let alice = pki.user("alice@example.test");
        let bob = pki.user("bob@partner.test");
        let mut k = MemoryKeyring::default();
        k.identities.insert(
            "alice@example.test".into(),
            vec![(alice.cert.clone(), alice.key.clone())],
        );
        k.encryption
            .insert("@partner.test".into(), (bob.cert.clone(), true));
        k.trusted.push(pki.ca.clone());
        let keyring = Arc::new(k);
        let run = |extra: &str| {
            let c = Config::parse(extra).unwrap();
            let r = Resources {
                keyring: Some(keyring.clone()),
                ..Resources::default()
            };
            Pipeline::from_config(&c, &r, Metrics::new())
        };
        let p = run(
            "[[smime.policy]]\ndomain = \"example.test\"\nsign = \"allow\"\nencrypt = \"allow\"\n",
        );
        let out = p.run(&envelope(), MESSAGE).await;
        assert_eq!(out.action, Action::Accept, "{out:?}");
        assert_eq!(out.copies.len(), 2, "{out:?}");
        let enc = &out.copies[0];
        assert_eq!(
            enc.recipients.as_deref(),
            Some(&["bob@partner.test".to_string()][..])
        );
        let body = enc.body.as_ref().unwrap();
        let text = String::from_utf8_lossy(body);
        assert!(text.contains("Subject: offer\r\n"), "{text}");
        assert!(
            text.contains("smime-type=authEnveloped-data"),
            "GCM for a capable recipient: {text}"
        );
        assert!(!text.contains("price"), "{text}");
        let u = engine::unwrap(
            body,
            &[KeyPair {
                cert: &bob.cert,
                key: &bob.key,
            }],
            &pki.store(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            u.layers,
            vec![
                Layer::Encrypted {
                    authenticated: true
                },
                Layer::Signed { opaque: false }
            ]
        );
        assert_eq!(u.signatures[0].status, SignatureStatus::Valid);
        assert_eq!(
            u.signatures[0].signer_address.as_deref(),
            Some("alice@example.test")
        );
        assert!(String::from_utf8_lossy(&u.plaintext).contains("the price is 42"));
        // carol: no certificate, policy allows clear — signed only
        let clear = &out.copies[1];
        assert_eq!(
            clear.recipients.as_deref(),
            Some(&["carol@other.test".to_string()][..])
        );
        let text = String::from_utf8_lossy(clear.body.as_ref().unwrap()).into_owned();
        assert!(
            text.contains("multipart/signed") && text.contains("the price is 42"),
            "{text}"
        );
        let summary = out.card.summary();
        assert!(
            summary.contains("SMIME_SIGNED_OUT") && summary.contains("SMIME_ENCRYPTED_OUT"),
            "{summary}"
        );

        // RCPT check under "require"
        let p = run("[[smime.policy]]\nuser = \"alice@example.test\"\nencrypt = \"require\"\n");
        let s = p.smime_outbound().unwrap();
        assert!(
            s.recipient_refusal("alice@example.test", "bob@partner.test", None)
                .await
                .unwrap()
                .is_none()
        );
        let why = s
            .recipient_refusal("Alice@example.test", "carol@other.test", None)
            .await
            .unwrap()
            .unwrap();
        assert!(why.contains("carol@other.test"), "{why}");
        assert!(
            s.recipient_refusal("dave@example.test", "carol@other.test", None)
                .await
                .unwrap()
                .is_none()
        );
        // A rule's `smime = { encrypt = "require" }` makes the same refusal for dave.
        assert!(
            s.recipient_refusal(
                "dave@example.test",
                "carol@other.test",
                Some(SmimeRule::Require)
            )
            .await
            .unwrap()
            .is_some()
        );

        // sign = require without an identity: refused with its own reason
        let mut env = envelope();
        env.mail_from = "dave@example.test".into();
        let m = String::from_utf8_lossy(MESSAGE).replace("alice@", "dave@");
        let p = run("[[smime.policy]]\ndomain = \"example.test\"\nsign = \"require\"\n");
        let out = p.run(&env, m.as_bytes()).await;
        assert_eq!(out.action, Action::Reject);
        let (reply, _) = crate::smtp::reply::refusal(out.action, &out.card).unwrap();
        assert_eq!(reply, crate::smtp::reply::SMIME_NO_SIGNING_KEY);

        // block_user_protected: a message the user signed already
        let signed = engine::sign(
            b"Content-Type: text/plain\r\n\r\nmine\r\n",
            &KeyPair {
                cert: &alice.cert,
                key: &alice.key,
            },
            &[],
        )
        .unwrap();
        let mut user_signed =
            b"From: <alice@example.test>\r\nSubject: x\r\nMIME-Version: 1.0\r\n".to_vec();
        user_signed.extend_from_slice(&signed);
        let p = run("[smime]\nblock_user_protected = true\n");
        let out = p.run(&envelope(), &user_signed).await;
        assert_eq!(out.action, Action::Reject);
        let (reply, _) = crate::smtp::reply::refusal(out.action, &out.card).unwrap();
        assert_eq!(reply, crate::smtp::reply::SMIME_USER_PROTECTED);
        // without the option it passes untouched, not wrapped twice
        let p = run(
            "[[smime.policy]]\ndomain = \"example.test\"\nsign = \"allow\"\nencrypt = \"allow\"\n",
        );
        let out = p.run(&envelope(), &user_signed).await;
        assert_eq!(out.action, Action::Accept);
        assert_eq!(out.copies.len(), 1);
        assert!(out.copies[0].body.is_none());
    }
}

#[cfg(test)]
mod dkim_tests {
    use std::sync::Arc;

    use filters::{Direction, Envelope};
    use openssl::pkey::PKey;

    use crate::certs::test_pki::on_disk::Pki;
    use crate::config::{Config, DkimSigningConfig};
    use crate::metrics::Metrics;
    use crate::pipeline::dkim_sign::OutboundSigner;
    use crate::pipeline::{Pipeline, Resources};
    use crate::smime::keyring::MemoryKeyring;

    fn bh(sig: &str) -> String {
        let i = sig.find("bh=").unwrap() + 3;
        sig[i..]
            .split(';')
            .next()
            .unwrap()
            .split_whitespace()
            .collect()
    }

    #[tokio::test]
    async fn each_copy_is_dkim_signed_as_it_leaves_after_smime() {
        let pki = Pki::new("Test CA");
        let bob = pki.user("bob@partner.test");
        let mut k = MemoryKeyring::default();
        k.encryption
            .insert("bob@partner.test".into(), (bob.cert.clone(), false));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ed.pem");
        let key = PKey::generate_ed25519().unwrap();
        std::fs::write(&path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        let signer = Arc::new(
            OutboundSigner::load(&[DkimSigningConfig {
                domain: "example.test".into(),
                selector: "ed".into(),
                key: path,
            }])
            .unwrap(),
        );
        let c = Config::parse("[[smime.policy]]\ndomain = \"example.test\"\nencrypt = \"allow\"\n")
            .unwrap();
        let r = Resources {
            keyring: Some(Arc::new(k)),
            dkim_signer: Some(signer.clone()),
            ..Resources::default()
        };
        let p = Pipeline::from_config(&c, &r, Metrics::new());
        let env = Envelope {
            direction: Direction::Outbound,
            client_ip: "10.0.0.5".parse().unwrap(),
            helo: "pc".into(),
            mail_from: "alice@example.test".into(),
            rcpt_to: vec!["bob@partner.test".into(), "carol@other.test".into()],
            smtputf8: false,
            body_8bit: false,
            tls: None,
        };
        let raw = b"From: <alice@example.test>\r\nTo: bob@partner.test\r\nSubject: s\r\nDate: Sat, 28 Nov 2026 10:00:00 +0000\r\nMessage-ID: <d@example.test>\r\n\r\nhello\r\n";
        let out = p.run(&env, raw).await;
        assert_eq!(out.copies.len(), 2);
        let encrypted = out.copies[0].body.as_deref().unwrap();
        let clear = out.copies[1].body.as_deref().unwrap_or(raw);
        let sig_enc = &out.copies[0].headers[0];
        let sig_clear = &out.copies[1].headers[0];
        // the body hash is the one of the bytes that leave: the ciphertext for bob
        assert_eq!(bh(sig_enc), bh(&signer.sign(encrypted)[0]));
        assert_eq!(bh(sig_clear), bh(&signer.sign(clear)[0]));
        assert_ne!(bh(sig_enc), bh(sig_clear));
        assert!(out.headers.iter().all(|h| !h.starts_with("DKIM-Signature")));
    }
}
