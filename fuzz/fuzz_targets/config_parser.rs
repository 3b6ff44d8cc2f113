//! The configuration parser and its validation: a bad file is an error naming the key,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = portcullis::config::Config::parse(text);
    }
});
