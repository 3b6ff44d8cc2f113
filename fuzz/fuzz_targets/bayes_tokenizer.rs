//! The Bayes tokenizer on raw mail, with and without the parsed message.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = filters::bayes::tokenizer::tokenize(data, None);
    if let Some(parsed) = mail_parser::MessageParser::default().parse(data) {
        let _ = filters::bayes::tokenizer::tokenize(data, Some(&parsed));
    }
    let _ = filters::bayes::tokenizer::strip_mbox_line(data);
});
