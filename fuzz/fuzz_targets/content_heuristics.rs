//! The content heuristics on any parsed message: link and attachment scanning, sender
//! disguises, obfuscated words.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(parsed) = mail_parser::MessageParser::default().parse(data) {
        let _ = filters::content::inspect(&parsed, 500);
    }
});
