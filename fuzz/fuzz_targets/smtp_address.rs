//! RCPT TO paths as a client sends them: the recipient classifier (relay control, source
//! routes, control characters) and the path parser.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use portcullis::config::Config;
use portcullis::smtp::address;

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(Config::default)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        let _ = address::path_has_control(data);
        return;
    };
    let _ = address::has_control(text);
    let _ = address::smtp_path(text);
    for internal in [false, true] {
        let _ = address::classify_recipient(config(), internal, text, text);
    }
});
