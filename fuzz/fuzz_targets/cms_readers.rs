//! Every CMS reader on arbitrary BER: the content type, signed data (signers capped),
//! enveloped data, the recipients, the re-encoding of indefinite lengths.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::smime::cms_info;

fuzz_target!(|data: &[u8]| {
    let _ = cms_info::kind(data);
    let _ = cms_info::reencoded(data);
    let _ = cms_info::signed_info_any(data, 16);
    let _ = cms_info::envelope_any(data);
    let _ = cms_info::recipients(data);
});
