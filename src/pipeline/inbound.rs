//! THE inbound order (internet → local domains). One step per line; adding a stage is
//! adding a line. `Pipeline::run` follows this list and nothing else.

use std::sync::Arc;

use super::{Resources, Step, push_check};
use crate::config::Config;
use crate::rules::RuleSet;

pub fn steps(config: &Config, resources: &Resources, rules: &Arc<RuleSet>) -> Vec<Step> {
    let mut s = Vec::new();
    let smime = resources.smime_inbound(config);
    // 1. S/MIME: decrypt and verify, so every check below judges the plaintext.
    if let Some(smime) = &smime {
        s.push(Step::Unwrap {
            smime: smime.clone(),
            fail_mode: config.stage("smime").fail_mode,
        });
    }
    // 2. Auth: SPF, DKIM, ARC, DMARC → symbols and our Authentication-Results header.
    //    Offline evaluation may read the results recorded in the message instead.
    if let Some(authserv_id) = &resources.recorded_auth {
        let recorded = filters::auth::recorded::RecordedAuth {
            authserv_id: authserv_id.clone(),
        };
        push_check(&mut s, config, recorded);
    } else if let Some(auth) = resources.auth_stage(config) {
        push_check(&mut s, config, auth);
    }
    // 3. Allow and block lists: after auth (an allowed name must be authenticated), before
    //    the spam filters an allow entry skips; a block entry forces a reject.
    if let Some(lists) = resources.lists_stage() {
        push_check(&mut s, config, lists);
    }
    // 4. Level of trust: relationships, known servers, pins — for authenticated senders.
    if let Some(trust) = resources.trust_stage(config) {
        push_check(&mut s, config, trust);
    }
    // 5. TLS reputation: a verified client certificate that names the sender earns trust,
    //    a domain that drops its usual certificate is flagged (the per-domain TLS
    //    *requirement* is enforced at MAIL FROM by the session).
    push_check(&mut s, config, resources.tls_stage());
    // 6. Header sanity: the RFC 5322 shape of the message.
    push_check(&mut s, config, filters::header_sanity::HeaderSanity);
    // 7. Content heuristics: links, attachments, disguised senders, obfuscated words.
    let max_parts = config.limits.max_mime_parts;
    push_check(&mut s, config, filters::content::Content { max_parts });
    // 8. Bayes: spam probability from the learned model (no opinion until trained).
    if let Some(bayes) = resources.bayes_stage(config) {
        push_check(&mut s, config, bayes);
    }
    // 9. ClamAV: a virus is rejected in the dialog (or quarantined, by config).
    if let Some(clamav) = resources.clamav_stage(config) {
        push_check(&mut s, config, clamav);
    }
    // 10. The rules ([[rules]]), on what the checks found; none configured: no step.
    if !rules.is_empty() {
        s.push(Step::Rules(rules.clone()));
    }
    // 11. The verdict: the rules' decision, else the score card becomes accept, tag,
    //     quarantine, reject or tempfail.
    s.push(Step::Verdict);
    // 12. The message actions the rules chose: disclaimer, attachment signatures, and the
    //     archive's journal copy — of the plaintext, after decryption.
    if !rules.is_empty() {
        s.push(Step::Act(resources.message_actions(config)));
    }
    // 13. Harvest: valid signers' certificates, only from mail the verdict lets through.
    if let Some(smime) = smime {
        s.push(Step::Harvest(smime));
    }
    s
}
