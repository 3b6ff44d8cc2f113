//! What the gateway learns from a message once it is stored: trust (who our users write to,
//! which servers send authenticated mail for a domain, their TLS habits) and cautious Bayes
//! autolearn. Runs after the 250 and never delays it: memory is updated at once, the
//! database in the background.
//!
//! Trust is only taught by stored, deliverable verdicts (accept, tag): a refused message
//! teaches nothing, and a quarantined one waits for the operator. Bayes autolearn learns
//! ham only from delivered mail, spam also from mail that was refused or quarantined (a very
//! confident spam is exactly what gets refused); never from a tempfail.

use std::sync::Arc;

use filters::bayes::{AutolearnFacts, AutolearnPolicy, SharedModel};
use filters::{Action, Direction, Envelope};

use super::Outcome;
use crate::bayes::BayesStore;

/// Bayes autolearn: where the model is stored and the policy.
#[derive(Clone)]
pub struct Autolearn {
    pub store: BayesStore,
    pub model: SharedModel,
    pub policy: AutolearnPolicy,
}

#[derive(Clone, Default)]
pub struct Learning {
    pub trust: Option<crate::trust::Learner>,
    /// Our own domains (lowercase): mail between our users teaches no trust.
    pub local_domains: Arc<Vec<String>>,
    pub autolearn: Option<Autolearn>,
}

impl Learning {
    /// After the final answer to a message: `stored` = it is in the queue (250).
    pub fn after_verdict(
        &self,
        envelope: &Envelope,
        outcome: &Outcome,
        stored: bool,
        message: &[u8],
    ) {
        let deliverable = stored && matches!(outcome.action, Action::Accept | Action::Tag);
        let facts = &outcome.facts;
        match envelope.direction {
            Direction::Outbound => {
                if !deliverable {
                    return;
                }
                if let Some(trust) = &self.trust {
                    let local = &self.local_domains;
                    trust.outbound(&envelope.mail_from, &envelope.rcpt_to, |d| {
                        local.iter().any(|l| l == d)
                    });
                }
            }
            Direction::Inbound => {
                if let (true, Some(trust), Some(domain)) =
                    (deliverable, &self.trust, &facts.authenticated_domain)
                {
                    let verified = envelope
                        .tls
                        .as_ref()
                        .filter(|t| t.peer_cert_verified)
                        .and_then(|t| t.peer_cert_sha256.as_deref());
                    trust.inbound(domain, envelope.client_ip, verified);
                }
                if let Some(a) = &self.autolearn {
                    let facts = AutolearnFacts {
                        probability: facts.spam_probability,
                        sender_authenticated: facts.authenticated_domain.is_some(),
                        virus: outcome.card.symbols.iter().any(|s| s.name == "CLAM_VIRUS"),
                    };
                    let allowed = match filters::bayes::autolearn(&a.policy, &facts) {
                        Some(filters::bayes::Class::Ham) => deliverable,
                        Some(filters::bayes::Class::Spam) => outcome.action != Action::Tempfail,
                        None => false,
                    };
                    if allowed {
                        let a = a.clone();
                        let message = message.to_vec();
                        tokio::spawn(async move {
                            match crate::bayes::autolearn(
                                &a.store,
                                Some(&a.model),
                                &a.policy,
                                &facts,
                                &message,
                            )
                            .await
                            {
                                Ok(Some(class)) => {
                                    tracing::info!(class = ?class, p = ?facts.probability, "Bayes autolearn")
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    tracing::warn!(error = %format!("{e:#}"), "Bayes autolearn failed")
                                }
                            }
                        });
                    }
                }
            }
        }
    }
}
