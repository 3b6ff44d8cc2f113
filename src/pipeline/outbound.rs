//! THE outbound order (internal networks → anywhere). One stage per line.

use super::{ConfiguredStage, Resources, push_stage};
use crate::config::Config;

pub fn stages(config: &Config, resources: &Resources) -> Vec<ConfiguredStage> {
    let mut s = Vec::new();
    // 1. S/MIME precheck (Pipeline::run, before this list): mail the user encrypted or signed
    //    when block_user_protected; sign = "require" without an identity.
    // 2. Header sanity: a broken client or a hijacked account shows here first.
    push_stage(&mut s, config, filters::header_sanity::HeaderSanity);
    // 3. ClamAV: no virus leaves the company either.
    if let Some(clamav) = resources.clamav_stage(config) {
        push_stage(&mut s, config, clamav);
    }
    // 4. S/MIME by policy (Pipeline::run, after the verdict): sign, encrypt per recipient
    //    certificate, one copy per treatment.
    // 5. DKIM signing is not a stage: Pipeline::run signs what the verdict lets through,
    //    as the last step before the queue (dkim_sign.rs).
    s
}
