//! What rules match on in attacker-controlled mail: attachment content recognition, the
//! message's attachment kinds, file name globs and address patterns.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis::rules::pattern::{AddressPattern, Glob};
use portcullis::rules::sniff;

fn patterns() -> &'static (Vec<Glob>, Vec<AddressPattern>) {
    static P: OnceLock<(Vec<Glob>, Vec<AddressPattern>)> = OnceLock::new();
    P.get_or_init(|| {
        let globs = ["*.pdf", "invoice-*.p??", "*", "*.exe.*", "?"]
            .iter()
            .map(|g| Glob::new(g).unwrap())
            .collect();
        let addresses = [
            "@example.test",
            "ann@example.test",
            "@.example.test",
            "*@*.test",
        ]
        .iter()
        .filter_map(|a| AddressPattern::parse(a).ok())
        .collect();
        (globs, addresses)
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = sniff::kinds_of(data);
    if let Some(parsed) = mail_parser::MessageParser::default().parse(data) {
        let _ = sniff::message_kinds(&parsed);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let (globs, addresses) = patterns();
        for g in globs {
            let _ = g.matches(text);
        }
        let domain = text.rsplit('@').next().unwrap_or("");
        for a in addresses {
            let _ = a.matches(text, domain);
        }
    }
});
