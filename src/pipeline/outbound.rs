//! THE outbound order (internal networks → anywhere). One step per line. `Pipeline::run`
//! follows this list and nothing else.

use std::sync::Arc;

use super::{Resources, Step, push_check};
use crate::config::Config;
use crate::rules::RuleSet;

pub fn steps(config: &Config, resources: &Resources, rules: &Arc<RuleSet>) -> Vec<Step> {
    let mut s = Vec::new();
    let smime = resources.smime_outbound(config);
    // 1. S/MIME precheck: mail the user encrypted or signed (block_user_protected);
    //    sign = "require" without an identity.
    if let Some(smime) = &smime {
        s.push(Step::Precheck {
            smime: smime.clone(),
            fail_mode: config.stage("smime").fail_mode,
        });
    }
    // 2. Header sanity: a broken client or a hijacked account shows here first.
    push_check(&mut s, config, filters::header_sanity::HeaderSanity);
    // 3. ClamAV: no virus leaves the company either.
    if let Some(clamav) = resources.clamav_stage(config) {
        push_check(&mut s, config, clamav);
    }
    // 4. The rules ([[rules]]), on what the checks found; none configured: no step.
    if !rules.is_empty() {
        s.push(Step::Rules(rules.clone()));
    }
    // 5. The verdict: the rules' decision, else the thresholds.
    s.push(Step::Verdict);
    // 6. The message actions the rules chose: disclaimer, attachment signatures, and the
    //    archive's journal copy — before S/MIME encrypts and DKIM signs what they changed.
    if !rules.is_empty() {
        s.push(Step::Act(resources.message_actions(config)));
    }
    // 7. S/MIME by policy: sign, encrypt per recipient certificate, one copy per treatment.
    if let Some(smime) = smime {
        s.push(Step::Protect(smime));
    }
    // 8. DKIM: each copy as it will leave, the last step before the queue.
    if let Some(signer) = resources.dkim_signer.clone() {
        s.push(Step::DkimSign(signer));
    }
    s
}
