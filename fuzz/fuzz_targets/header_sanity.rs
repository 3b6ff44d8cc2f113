//! The header-sanity stage on arbitrary messages, 7-bit and SMTPUTF8 sessions.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = filters::header_sanity::inspect(data, false);
    let _ = filters::header_sanity::inspect(data, true);
});
