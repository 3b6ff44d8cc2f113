//! THE inbound order (internet → local domains). One stage per line; adding a stage is
//! adding a line.

use super::{ConfiguredStage, Resources, push_stage};
use crate::config::Config;

pub fn stages(config: &Config, resources: &Resources) -> Vec<ConfiguredStage> {
    let mut s = Vec::new();
    // 1. S/MIME unwrapping is not in this list: Pipeline::run decrypts and verifies before
    //    it (every stage below judges the plaintext) and harvests after the verdict.
    // 2. Auth: SPF, DKIM, ARC, DMARC → symbols and our Authentication-Results header.
    if let Some(auth) = resources.auth_stage(config) {
        push_stage(&mut s, config, auth);
    }
    // 3. Level of trust: relationships, known servers, pins — for authenticated senders.
    if let Some(trust) = resources.trust_stage(config) {
        push_stage(&mut s, config, trust);
    }
    // 4. TLS reputation: a verified client certificate that names the sender earns trust,
    //    a domain that drops its usual certificate is flagged (the per-domain TLS
    //    *requirement* is enforced at MAIL FROM by the session).
    push_stage(&mut s, config, resources.tls_stage());
    // 5. Header sanity: the RFC 5322 shape of the message.
    push_stage(&mut s, config, filters::header_sanity::HeaderSanity);
    // 6. Bayes: spam probability from the learned model (no opinion until trained).
    if let Some(bayes) = resources.bayes_stage(config) {
        push_stage(&mut s, config, bayes);
    }
    // 7. ClamAV: a virus is rejected in the dialog (or quarantined, by config).
    if let Some(clamav) = resources.clamav_stage(config) {
        push_stage(&mut s, config, clamav);
    }
    s
}
