//! The mail tokenizer: one message → the set of its features, hashed to `u64`.
//!
//! What it looks at (each feature carries a short prefix so a word in the Subject is not the
//! same feature as the same word in the body):
//! - every text part, decoded (base64 / quoted-printable) and charset-converted by
//!   mail-parser: lowercased words (`w:`), digit runs reduced to their length (`num:`),
//!   money amounts (`money`), long words as a length bucket (`long:`);
//! - HTML parts reduced to the text a reader sees (entities decoded, inline tags such as
//!   `<b>` not splitting words; same word features) plus content-level markup features
//!   (`html:`): hidden text (`display:none`, `visibility:hidden`, tiny fonts), comments, the
//!   link/text ratio, image count, image-only messages, HTML without a plain-text
//!   alternative, letters written as numeric character references — not which tags are
//!   used (see [`html`]);
//! - URLs in text and in `href`/`src`: host (`uh:`), registered domain (`ud:`), IP hosts,
//!   user-info and escaped URLs, URL count bucket — not the words of the path;
//! - selected headers: Subject words and shape (`s:`), From display name words (`fn:`) and
//!   domain (`fd:`), Reply-To domain (`rt:`), the Content-Type shape of the message and of
//!   each part (`ct:`, `pt:`, `cs:`, `cte:`, base64 plain text `mime:`), X-Mailer /
//!   User-Agent words (`xm:`);
//! - how the header fields fit together, as shapes, never values (see [`consistency`]): a
//!   Message-ID made by the From domain, list / bulk declarations, the recipient shape, a
//!   "Re:" Subject with or without the thread headers, a padded Subject;
//! - attachments: file extension and content type (`att:`).
//!
//! Mailing-list footers (a line of underscores, then "mailing list" / "listinfo") are cut
//! off the text: they say which list a message came through, not whether it is spam.
//!
//! Never dates: Date, Received and every other header not listed above are ignored, digit
//! runs become their length only, and month and weekday names are dropped — a filter that
//! learns the calendar of its training mail does not generalise.
//!
//! Untrusted input: bounded work per message (at most [`MAX_TEXT_BYTES`] of text per part,
//! [`MAX_PARTS`] parts, nested messages to depth 3).

use std::collections::HashSet;

use mail_parser::{Addr, Message, MessageParser, MimeHeaders, PartType};

/// Text read from one part; the rest of a huge part adds nothing a filter needs.
pub const MAX_TEXT_BYTES: usize = 200 * 1024;
/// Parts looked at per message.
pub const MAX_PARTS: usize = 64;
const MAX_DEPTH: usize = 3;
const MIN_WORD: usize = 2;
const MAX_WORD: usize = 20;

/// Month and weekday names (and their abbreviations): never features.
const CALENDAR: &[&str] = &[
    "jan",
    "feb",
    "mar",
    "apr",
    "may",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "january",
    "february",
    "march",
    "april",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "mon",
    "tue",
    "tues",
    "wed",
    "thu",
    "thur",
    "thurs",
    "fri",
    "sat",
    "sun",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "am",
    "pm",
    "gmt",
    "utc",
    "est",
    "edt",
    "pst",
    "pdt",
    "cst",
    "cdt",
    "mst",
    "mdt",
    "bst",
    "cet",
    "cest",
    "ist",
];

/// 64-bit FNV-1a of `prefix` and `text`: stable across builds and machines, so hashes stored
/// in the database stay valid.
pub fn hash(prefix: &str, text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in prefix.bytes().chain([0xff]).chain(text.bytes()) {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Collects features; keeps the readable form only when asked (tests, `bayes tokens`).
struct Sink {
    hashes: Vec<u64>,
    names: Option<Vec<String>>,
}

impl Sink {
    fn add(&mut self, prefix: &str, text: &str) {
        self.hashes.push(hash(prefix, text));
        if let Some(n) = &mut self.names {
            n.push(format!("{prefix}{text}"));
        }
    }
}

/// The features of a message: sorted, unique hashes.
pub fn tokenize(raw: &[u8], parsed: Option<&Message<'_>>) -> Vec<u64> {
    let mut sink = Sink {
        hashes: Vec::with_capacity(512),
        names: None,
    };
    run(raw, parsed, &mut sink);
    let mut h = sink.hashes;
    h.sort_unstable();
    h.dedup();
    h
}

/// The features of a message in readable form (sorted, unique): for tests and debugging.
pub fn token_names(raw: &[u8]) -> Vec<String> {
    let mut sink = Sink {
        hashes: Vec::new(),
        names: Some(Vec::new()),
    };
    run(raw, None, &mut sink);
    let mut n = sink.names.unwrap_or_default();
    n.sort();
    n.dedup();
    n
}

/// Skip an mbox "From " separator line some archives (and the public corpora) keep.
pub fn strip_mbox_line(raw: &[u8]) -> &[u8] {
    if raw.starts_with(b"From ") {
        match raw.iter().position(|&b| b == b'\n') {
            Some(i) => &raw[i + 1..],
            None => &raw[..0],
        }
    } else {
        raw
    }
}

fn run(raw: &[u8], parsed: Option<&Message<'_>>, sink: &mut Sink) {
    let owned;
    let msg = match parsed {
        Some(m) => m,
        None => match MessageParser::default().parse(strip_mbox_line(raw)) {
            Some(m) => {
                owned = m;
                &owned
            }
            None => {
                sink.add("msg:", "unparseable");
                return;
            }
        },
    };
    let mut st = State::default();
    headers(msg, sink);
    body(msg, sink, &mut st, 0);
    st.finish(sink);
}

/// Counters over the whole message for the shape features.
#[derive(Default)]
struct State {
    parts: usize,
    words: usize,
    urls: usize,
    html_parts: usize,
    text_parts: usize,
    html_links: usize,
    html_images: usize,
    html_words: usize,
    hosts: HashSet<String>,
}

impl State {
    fn finish(&self, sink: &mut Sink) {
        sink.add("words:", bucket(self.words));
        sink.add("urls:", bucket(self.urls));
        if self.html_parts > 0 {
            if self.text_parts == 0 {
                sink.add("html:", "no-text-alternative");
            }
            if self.html_images > 0 && self.html_words < 10 {
                sink.add("html:", "image-only");
            }
            let ratio = match (self.html_links * 100).checked_div(self.html_words) {
                Some(r) => r.min(100),
                None if self.html_links > 0 => 100,
                None => 0,
            };
            let r = match ratio {
                0 => "0",
                1..=2 => "1-2",
                3..=5 => "3-5",
                6..=10 => "6-10",
                11..=25 => "11-25",
                _ => "26+",
            };
            sink.add("html:linkratio:", r);
            sink.add("html:images:", bucket(self.html_images));
        }
        sink.add("hosts:", bucket(self.hosts.len()));
    }
}

/// Coarse size bucket: 0, 1, 2, 3-4, 5-8, 9-16, ...
fn bucket(n: usize) -> &'static str {
    match n {
        0 => "0",
        1 => "1",
        2 => "2",
        3..=4 => "3-4",
        5..=8 => "5-8",
        9..=16 => "9-16",
        17..=32 => "17-32",
        33..=64 => "33-64",
        65..=128 => "65-128",
        129..=256 => "129-256",
        257..=512 => "257-512",
        513..=1024 => "513-1024",
        _ => "1025+",
    }
}

/// The domain part of an address or Message-ID as written (a trailing `>` of a Message-ID
/// dropped, the rest kept as the sender wrote it: a token, not a routing decision).
fn domain_part(address: &str) -> Option<String> {
    let d = address.rsplit_once('@')?.1.trim_end_matches('>');
    (!d.is_empty()).then(|| d.to_ascii_lowercase())
}

fn first_addr<'a>(a: Option<&'a mail_parser::Address<'a>>) -> Option<&'a Addr<'a>> {
    a.and_then(|a| a.first())
}

fn headers(msg: &Message<'_>, sink: &mut Sink) {
    match msg.subject() {
        Some(s) => {
            words(s, "s:", sink, &mut 0);
            let letters = s.chars().filter(|c| c.is_alphabetic()).count();
            let upper = s.chars().filter(|c| c.is_uppercase()).count();
            if letters >= 6 && upper * 10 >= letters * 7 {
                sink.add("s:", "SHOUTING");
            }
            if s.contains("!!") {
                sink.add("s:", "!!");
            }
            if s.contains('$') {
                sink.add("s:", "$");
            }
            if s.trim().is_empty() {
                sink.add("s:", "EMPTY");
            }
            if !s.is_ascii() {
                sink.add("s:", "NONASCII");
            }
            // padding before a per-recipient tail, a bulk-mailer trick
            if s.trim_end().contains("     ") {
                sink.add("s:", "PADDED");
            }
            let l = s.trim_start().to_ascii_lowercase();
            if l.starts_with("re:") {
                // a reply that carries its thread (In-Reply-To / References), or one that
                // only says so in the Subject
                let threaded = msg.header_raw("In-Reply-To").is_some()
                    || msg.header_raw("References").is_some();
                sink.add(
                    "s:",
                    if threaded {
                        "REPLY"
                    } else {
                        "REPLY_UNTHREADED"
                    },
                );
            } else if l.starts_with("fw:") || l.starts_with("fwd:") {
                sink.add("s:", "FORWARD");
            }
        }
        None => sink.add("s:", "MISSING"),
    }
    let from = first_addr(msg.from());
    let from_domain = from.and_then(|a| a.address()).and_then(domain_part);
    match from {
        Some(a) => {
            match a.name() {
                Some(n) if !n.trim().is_empty() => words(n, "fn:", sink, &mut 0),
                _ => sink.add("fn:", "NONE"),
            }
            match &from_domain {
                Some(d) => {
                    sink.add("fd:", d);
                    sink.add("fd:", crate::registered_domain(d));
                }
                None => sink.add("fd:", "NONE"),
            }
        }
        None => sink.add("from:", "MISSING"),
    }
    // Not whether Reply-To differs from From: in list mail the list sets it, so in a
    // training set of list ham it teaches "differs = ham" (grouped CV: no loss without it).
    if let Some(rt) = first_addr(msg.reply_to()) {
        match rt.address().and_then(domain_part) {
            Some(d) => sink.add("rt:", crate::registered_domain(&d)),
            None => sink.add("rt:", "NOADDR"),
        }
    }
    consistency(msg, from_domain.as_deref(), sink);
    for name in ["X-Mailer", "User-Agent"] {
        if let Some(v) = msg.header_raw(name) {
            let mut n = 0;
            words(v, "xm:", sink, &mut n);
            if n == 0 {
                sink.add("xm:", "EMPTY");
            }
        }
    }
    let root = msg.root_part();
    match root.content_type() {
        Some(ct) => {
            sink.add(
                "ct:",
                &format!(
                    "{}/{}",
                    ct.ctype().to_ascii_lowercase(),
                    ct.subtype().unwrap_or("").to_ascii_lowercase()
                ),
            );
            if let Some(cs) = ct.attribute("charset") {
                sink.add("cs:", &cs.to_ascii_lowercase());
            }
        }
        None => sink.add("ct:", "NONE"),
    }
}

/// Shapes of how the header fields fit together, never their values: whether the
/// Message-ID was made by the From domain (`mid:ALIGNED`), whether the message declares
/// itself as list or bulk mail (`list:ID`, `list:UNSUBSCRIBE`, `prec:bulk|list|junk`,
/// RFC 2919 / 2369 / 3834), and the recipient shape (`to:UNDISCLOSED`, `to:EMPTY`,
/// `to:MANY`, `to:SELF`).
///
/// Only the shapes that mean the same thing in other mail: a Message-ID of another domain is
/// no feature (ESPs and relays make them for legitimate senders, and a relay adds one when
/// the sender did not), nor is a Return-Path, Reply-To or Sender of another domain (list
/// software sets them, so in a training set of list ham they teach "foreign = ham"), nor a
/// missing To (list gateways drop it). Each was kept for what it did in grouped
/// cross-validation (`portcullis bayes cv --grouped`).
fn consistency(msg: &Message<'_>, from_domain: Option<&str>, sink: &mut Sink) {
    if let (Some(from), Some(mid)) = (from_domain, msg.message_id().and_then(domain_part)) {
        let mid = mid.trim_end_matches('.');
        if crate::registered_domain(mid) == crate::registered_domain(from) {
            sink.add("mid:", "ALIGNED");
        }
    }
    if msg.header_raw("List-Id").is_some() {
        sink.add("list:", "ID");
    }
    if msg.header_raw("List-Unsubscribe").is_some() {
        sink.add("list:", "UNSUBSCRIBE");
    }
    if let Some(v) = msg.header_raw("Precedence") {
        let v = v.trim().to_ascii_lowercase();
        if matches!(v.as_str(), "bulk" | "list" | "junk") {
            sink.add("prec:", &v);
        }
    }
    if let Some(v) = msg.header_raw("To") {
        if v.trim().is_empty() {
            sink.add("to:", "EMPTY");
        } else if v.to_ascii_lowercase().contains("undisclosed") {
            sink.add("to:", "UNDISCLOSED");
        }
    }
    let count = |a: Option<&mail_parser::Address<'_>>| a.map(|a| a.iter().count()).unwrap_or(0);
    if count(msg.to()) + count(msg.cc()) >= 9 {
        sink.add("to:", "MANY");
    }
    let from = first_addr(msg.from()).and_then(|a| a.address());
    let to = first_addr(msg.to()).and_then(|a| a.address());
    if let (Some(f), Some(t)) = (from, to)
        && f.eq_ignore_ascii_case(t)
    {
        sink.add("to:", "SELF");
    }
}

fn body(msg: &Message<'_>, sink: &mut Sink, st: &mut State, depth: usize) {
    for (i, part) in msg.parts.iter().enumerate() {
        if st.parts >= MAX_PARTS {
            sink.add("msg:", "too-many-parts");
            return;
        }
        st.parts += 1;
        let ct = part.content_type();
        let shape = ct.map(|c| {
            format!(
                "{}/{}",
                c.ctype().to_ascii_lowercase(),
                c.subtype().unwrap_or("").to_ascii_lowercase()
            )
        });
        if i > 0 {
            if let Some(s) = &shape {
                sink.add("pt:", s);
            }
            if let Some(cs) = ct.and_then(|c| c.attribute("charset")) {
                sink.add("cs:", &cs.to_ascii_lowercase());
            }
        }
        if let Some(cte) = part.content_transfer_encoding() {
            sink.add("cte:", &cte.to_ascii_lowercase());
        }
        if part.is_encoding_problem {
            sink.add("msg:", "encoding-problem");
        }
        match &part.body {
            PartType::Text(t) => {
                st.text_parts += 1;
                // plain text needs no base64; bulk mailers use it to hide words from filters
                if part
                    .content_transfer_encoding()
                    .is_some_and(|c| c.eq_ignore_ascii_case("base64"))
                {
                    sink.add("mime:", "base64-text");
                }
                text(clip(t), sink, st);
            }
            PartType::Html(h) => {
                st.html_parts += 1;
                html(clip(h), sink, st);
            }
            PartType::Binary(_) | PartType::InlineBinary(_) => {
                let name = part.attachment_name().unwrap_or("");
                match name.rsplit_once('.') {
                    Some((_, ext)) if !ext.is_empty() && ext.len() <= 8 => {
                        sink.add("att:ext:", &ext.to_ascii_lowercase())
                    }
                    _ => sink.add("att:ext:", "NONE"),
                }
                sink.add("att:ct:", shape.as_deref().unwrap_or("NONE"));
            }
            PartType::Message(m) => {
                sink.add("att:", "message/rfc822");
                if depth < MAX_DEPTH {
                    body(m, sink, st, depth + 1);
                }
            }
            PartType::Multipart(_) => {}
        }
    }
}

fn clip(s: &str) -> &str {
    crate::clip_str(s, MAX_TEXT_BYTES)
}

/// Plain text: URLs first (so their parts do not become words), then words.
fn text(t: &str, sink: &mut Sink, st: &mut State) {
    let t = strip_list_footer(t);
    let mut rest = String::with_capacity(t.len());
    let mut last = 0;
    for (start, end) in find_urls(t) {
        rest.push_str(&t[last..start]);
        rest.push(' ');
        url(&t[start..end], sink, st);
        last = end;
    }
    rest.push_str(&t[last..]);
    let mut n = 0;
    words(&rest, "", sink, &mut n);
    st.words += n;
}

/// The text without a mailing-list footer: a line of underscores followed by "mailing list"
/// or "listinfo" within the last [`FOOTER_BYTES`] of the text. Only at the very end, so a
/// sender cannot hide a body from the filter behind a fake footer.
fn strip_list_footer(t: &str) -> &str {
    let Some(at) = t.rfind("\n____________________") else {
        return t;
    };
    if t.len() - at > FOOTER_BYTES {
        return t;
    }
    let tail = t[at..].to_ascii_lowercase();
    if tail.contains("mailing list") || tail.contains("listinfo") {
        &t[..at]
    } else {
        t
    }
}

const FOOTER_BYTES: usize = 600;

/// Byte ranges of `http://`, `https://` and `www.` URLs.
fn find_urls(t: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let lower = t.as_bytes();
    let mut i = 0;
    while i < lower.len() {
        let rest = &lower[i..];
        let hit = starts_with_ci(rest, b"http://")
            || starts_with_ci(rest, b"https://")
            || (starts_with_ci(rest, b"www.") && (i == 0 || !lower[i - 1].is_ascii_alphanumeric()));
        if hit {
            let end = rest
                .iter()
                .position(|&b| {
                    b.is_ascii_whitespace() || matches!(b, b'"' | b'\'' | b'<' | b'>' | b')')
                })
                .map(|p| i + p)
                .unwrap_or(lower.len());
            out.push((i, end));
            i = end.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

fn starts_with_ci(hay: &[u8], needle: &[u8]) -> bool {
    hay.len() >= needle.len() && hay[..needle.len()].eq_ignore_ascii_case(needle)
}

fn url(u: &str, sink: &mut Sink, st: &mut State) {
    st.urls += 1;
    let lower = u.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))
        .unwrap_or(&lower);
    if lower.starts_with("https://") {
        sink.add("url:", "https");
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let host = authority.rsplit('@').next().unwrap_or("");
    let host = host.split(':').next().unwrap_or("").trim_end_matches('.');
    if authority.contains('@') {
        sink.add("url:", "userinfo");
    }
    if host.is_empty() {
        return;
    }
    if host.parse::<std::net::Ipv4Addr>().is_ok() || host.chars().all(|c| c.is_ascii_digit()) {
        sink.add("url:", "ip-host");
    } else {
        st.hosts.insert(host.to_string());
        sink.add("uh:", host);
        sink.add("ud:", crate::registered_domain(host));
    }
    // Not the words of the path: grouped cross-validation measured them as the source's
    // identity (tracking ids, list-archive paths), ROC AUC 0.9916 → 0.9939 without them.
    if rest[end..].contains('%') {
        sink.add("url:", "escaped");
    }
}

/// HTML: text between tags becomes words; of the markup only content-level signals are
/// features (hidden text, comments, links, images). Which tags a message uses is not: in a
/// training set whose ham is mostly plain text, every tag teaches "HTML = spam", which
/// flags legitimate commercial and HTML mail (and measured no better in grouped
/// cross-validation).
fn html(h: &str, sink: &mut Sink, st: &mut State) {
    let mut visible = String::with_capacity(h.len() / 2);
    let mut hidden = false;
    let mut skip_until: Option<&str> = None;
    let mut i = 0;
    let b = h.as_bytes();
    while i < b.len() {
        if b[i] == b'<' {
            let end = match h[i..].find('>') {
                Some(e) => i + e,
                None => break,
            };
            let tag = &h[i + 1..end];
            i = end + 1;
            if tag.starts_with("!--") {
                sink.add("html:", "comment");
                if let Some(e) = h[end - tag.len() + 3..].find("-->") {
                    i = (end - tag.len() + 3 + e + 3).max(i);
                }
                continue;
            }
            let name_end = tag
                .find(|c: char| c.is_ascii_whitespace() || c == '/')
                .unwrap_or(tag.len());
            let name_raw = if let Some(t) = tag.strip_prefix('/') {
                &t[..t.find(|c: char| c.is_ascii_whitespace()).unwrap_or(t.len())]
            } else {
                &tag[..name_end]
            };
            let name = name_raw.to_ascii_lowercase();
            if let Some(until) = skip_until {
                if tag.starts_with('/') && name == until {
                    skip_until = None;
                }
                continue;
            }
            // Inline markup does not end a word: `<b>V</b>iagra` reads "Viagra".
            let breaks = !INLINE_TAGS.contains(&name.as_str());
            if tag.starts_with('/') {
                if breaks {
                    visible.push(' ');
                }
                continue;
            }
            if name == "script" || name == "style" {
                skip_until = Some(if name == "script" { "script" } else { "style" });
                continue;
            }
            let attrs = tag[name_end..].to_ascii_lowercase();
            let compact: String = attrs.chars().filter(|c| !c.is_whitespace()).collect();
            if compact.contains("display:none")
                || compact.contains("visibility:hidden")
                || compact.contains("font-size:0")
                || compact.contains("font-size:1px")
                || (name == "font"
                    && (compact.contains("size=\"1\"") || compact.contains("size=1")))
            {
                hidden = true;
            }
            if name == "a" {
                st.html_links += 1;
            }
            if name == "img" {
                st.html_images += 1;
            }
            for key in ["href=", "src="] {
                if let Some(p) = attrs.find(key) {
                    let v = attrs[p + key.len()..].trim_start_matches(['"', '\'']);
                    let v = &v[..v.find(['"', '\'', ' ', '>']).unwrap_or(v.len())];
                    if v.starts_with("http") || v.starts_with("www.") {
                        url(v, sink, st);
                    } else if v.starts_with("mailto:") {
                        sink.add("html:", "mailto");
                    }
                }
            }
            if breaks {
                visible.push(' ');
            }
        } else {
            let next = h[i..].find('<').map(|p| i + p).unwrap_or(b.len());
            if skip_until.is_none() {
                visible.push_str(&h[i..next]);
            }
            i = next;
        }
    }
    if hidden {
        sink.add("html:", "hidden-text");
    }
    let decoded = decode_entities(&visible, sink);
    let before = st.words;
    text(&decoded, sink, st);
    st.html_words += st.words - before;
}

/// Tags that style text inside a word rather than separate words.
const INLINE_TAGS: &[&str] = &[
    "b", "i", "u", "s", "em", "strong", "font", "span", "small", "big", "strike", "sup", "sub",
    "tt",
];

/// The text as a reader sees it: numeric character references (`&#86;`, `&#x56;`) and the
/// common named entities decoded. Letters and digits written as numeric references (three or
/// more) are a feature of their own (`html:encoded-letters`): no mail program writes plain
/// letters that way, filter evasion does.
fn decode_entities(s: &str, sink: &mut Sink) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    let mut encoded_letters = 0usize;
    while let Some(p) = rest.find('&') {
        out.push_str(&rest[..p]);
        let after = &rest[p + 1..];
        let decoded = after
            .bytes()
            .take(12)
            .position(|b| b == b';')
            .and_then(|e| {
                let entity = &after[..e];
                let c = match entity.strip_prefix('#') {
                    Some(num) => {
                        let v = match num.strip_prefix(['x', 'X']) {
                            Some(hex) => u32::from_str_radix(hex, 16).ok(),
                            None => num.parse::<u32>().ok(),
                        };
                        let c = v.and_then(char::from_u32)?;
                        if c.is_ascii_alphanumeric() {
                            encoded_letters += 1;
                        }
                        c
                    }
                    None => match entity.to_ascii_lowercase().as_str() {
                        "nbsp" => ' ',
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "quot" => '"',
                        "apos" => '\'',
                        _ => return None,
                    },
                };
                Some((c, e))
            });
        match decoded {
            Some((c, e)) => {
                out.push(c);
                rest = &after[e + 1..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    if encoded_letters >= 3 {
        sink.add("html:", "encoded-letters");
    }
    out
}

/// Words of `s` with `prefix`: lowercased runs of letters, digits, `'`, `$`, `-`; digit-only
/// runs become `num:<length>`; `$` followed by digits becomes `money`.
fn words(s: &str, prefix: &str, sink: &mut Sink, count: &mut usize) {
    let mut prev: Option<String> = None;
    for raw in s.split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '$' || c == '-')) {
        let w = raw.trim_matches(|c: char| c == '\'' || c == '-');
        if w.is_empty() {
            continue;
        }
        *count += 1;
        if w.starts_with('$') && w[1..].starts_with(|c: char| c.is_ascii_digit()) {
            sink.add(prefix, "money");
            continue;
        }
        let w = w.trim_matches('$');
        if w.is_empty() {
            continue;
        }
        if w.chars().all(|c| c.is_ascii_digit()) {
            sink.add(prefix, &format!("num:{}", w.len().min(9)));
            continue;
        }
        let len = w.chars().count();
        if len < MIN_WORD {
            continue;
        }
        if len > MAX_WORD {
            sink.add(prefix, &format!("long:{}", (len / 10 * 10).min(60)));
            continue;
        }
        let lower = w.to_lowercase();
        if CALENDAR.contains(&lower.as_str()) {
            continue;
        }
        sink.add(prefix, &lower);
        if BIGRAMS && prefix.is_empty() {
            if let Some(p) = &prev {
                sink.add("bi:", &format!("{p} {lower}"));
            }
            prev = Some(lower);
        }
    }
}

/// Word pairs of body text as features: off, 10-fold cross-validation inside TRAIN gave a
/// lower ROC AUC with them (random folds: chi-square 0.9978 → 0.9959, multinomial
/// 0.9988 → 0.9968; grouped folds with the current defaults: combined 0.9954 → 0.9950).
const BIGRAMS: bool = false;

#[cfg(test)]
mod tests {
    use super::*;

    /// Every one of `wanted` is among the token names `t`.
    fn assert_has(t: &[String], wanted: &[&str]) {
        for want in wanted {
            assert!(t.iter().any(|x| x == want), "missing {want} in {t:?}");
        }
    }

    const MSG: &str = "From someone@spam.example  Tue Aug  6 11:51:02 2002\r\n\
Received: from mx.example (mx.example [192.0.2.1]) by gw; Tue, 6 Aug 2002 06:48:09 -0400\r\n\
Date: Fri, 02 Aug 2002 23:37:59 +0530\r\n\
From: \"Cheap Meds\" <deals@pharma.spam.example>\r\n\
Reply-To: <orders@other.example>\r\n\
To: you@example.test\r\n\
Subject: FREE PILLS NOW!! only $5\r\n\
X-Mailer: Mass Mailer 4.2\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b\"\r\n\
\r\n\
--b\r\n\
Content-Type: text/plain; charset=iso-8859-1\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Buy now at http://www.pills.spam.example/buy?id=3D1 for $19.99, caf=E9 2002 on Monday 12:30\r\n\
--b\r\n\
Content-Type: text/html\r\n\
\r\n\
<html><body><a href=\"http://click.tracker.example/x\"><img src=\"http://img.example/a.gif\"></a>\
<div style=\"display: none\">hidden words</div><p>Hello &amp; welcome</p></body></html>\r\n\
--b\r\n\
Content-Type: application/octet-stream; name=\"invoice.exe\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
TVqQAAMAAAAEAAAA\r\n\
--b--\r\n";

    #[test]
    fn features_of_a_mail() {
        let t = token_names(MSG.as_bytes());
        assert_has(
            &t,
            &[
                "s:free",
                "s:pills",
                "s:SHOUTING",
                "s:!!",
                "s:money",
                "fn:cheap",
                "fn:meds",
                "fd:pharma.spam.example",
                "fd:spam.example",
                "rt:other.example",
                "xm:mass",
                "xm:mailer",
                "ct:multipart/alternative",
                "pt:text/html",
                "cs:iso-8859-1",
                "cte:quoted-printable",
                "buy",
                "café",
                "money",
                "uh:www.pills.spam.example",
                "ud:spam.example",
                "uh:click.tracker.example",
                "html:hidden-text",
                "html:images:1",
                "hello",
                "welcome",
                "att:ext:exe",
                "att:ct:application/octet-stream",
                "num:4",
            ],
        );
        // URL pieces are not body words; markup is not text
        assert!(!t.contains(&"http".to_string()), "{t:?}");
        assert!(!t.contains(&"div".to_string()), "{t:?}");
        // source identity, not spamminess: no URL path words, no tag inventory
        assert!(
            !t.iter()
                .any(|x| x.starts_with("up:") || x.starts_with("html:tag:")),
            "{t:?}"
        );
    }

    #[test]
    fn header_consistency_shapes() {
        let mail =
            |headers: &str| token_names(format!("{headers}\r\n\r\nhello there\r\n").as_bytes());
        // a Message-ID of the From domain (or a host under it) is aligned; another is nothing
        let t = mail("From: a@mail.shop.example\r\nMessage-ID: <1.2@mx.shop.example>");
        assert!(t.contains(&"mid:ALIGNED".to_string()), "{t:?}");
        let t = mail("From: a@shop.example\r\nMessage-ID: <1.2@esp.example>");
        assert!(!t.iter().any(|x| x.starts_with("mid:")), "{t:?}");
        // list and bulk declarations, as presence only
        let t = mail(
            "From: a@b.example\r\nList-Id: Talk <talk.lists.example>\r\n\
             List-Unsubscribe: <mailto:leave@lists.example>\r\nPrecedence: Bulk",
        );
        assert_has(&t, &["list:ID", "list:UNSUBSCRIBE", "prec:bulk"]);
        assert!(!t.iter().any(|x| x.contains("talk")), "no list name: {t:?}");
        // recipients
        let t = mail("From: a@b.example\r\nTo: undisclosed-recipients:;");
        assert!(t.contains(&"to:UNDISCLOSED".to_string()), "{t:?}");
        let many: Vec<String> = (0..9).map(|i| format!("u{i}@c.example")).collect();
        let t = mail(&format!("From: a@b.example\r\nTo: {}", many.join(", ")));
        assert!(t.contains(&"to:MANY".to_string()), "{t:?}");
        let t = mail("From: a@b.example\r\nTo: A@B.example");
        assert!(t.contains(&"to:SELF".to_string()), "{t:?}");
        // no shape for a missing To (list gateways drop it)
        let t = mail("From: a@b.example");
        assert!(!t.iter().any(|x| x.starts_with("to:")), "{t:?}");
        // a reply with its thread headers, one without, a forward, a padded Subject
        let t = mail("From: a@b.example\r\nSubject: Re: the patch\r\nIn-Reply-To: <x@b.example>");
        assert!(t.contains(&"s:REPLY".to_string()), "{t:?}");
        let t = mail("From: a@b.example\r\nSubject: RE: your order");
        assert!(t.contains(&"s:REPLY_UNTHREADED".to_string()), "{t:?}");
        let t = mail("From: a@b.example\r\nSubject: Fwd: look");
        assert!(t.contains(&"s:FORWARD".to_string()), "{t:?}");
        let t = mail("From: a@b.example\r\nSubject: Great offer                  xk3j9");
        assert!(t.contains(&"s:PADDED".to_string()), "{t:?}");
        // Reply-To: its domain, not whether it differs from From
        let t = mail("From: a@b.example\r\nReply-To: r@other.example");
        assert!(t.contains(&"rt:other.example".to_string()), "{t:?}");
        assert!(!t.iter().any(|x| x.contains("DIFFERS")), "{t:?}");
    }

    #[test]
    fn base64_plain_text_is_a_shape() {
        let m = "From: a@b.example\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\
Content-Transfer-Encoding: base64\r\n\r\naGVsbG8gd29ybGQ=\r\n";
        let t = token_names(m.as_bytes());
        assert!(t.contains(&"mime:base64-text".to_string()), "{t:?}");
        assert!(t.contains(&"hello".to_string()), "{t:?}");
        assert!(!token_names(MSG.as_bytes()).contains(&"mime:base64-text".to_string()));
    }

    #[test]
    fn html_text_as_the_reader_sees_it() {
        let m = "From: a@b.example\r\nContent-Type: text/html\r\n\r\n\
<p><b>V</b>iag<font color=red>ra</font> &#86;&#x49;&#65;GRA caf&eacute; &amp; tea&nbsp;time</p>\
<p>end</p><div>of</div>line\r\n";
        let t = token_names(m.as_bytes());
        assert_has(
            &t,
            &[
                "viagra",
                "html:encoded-letters",
                "tea",
                "time",
                "end",
                "of",
                "line",
            ],
        );
        // block-level tags still separate words; unknown entities stay as they are
        assert!(!t.contains(&"endof".to_string()), "{t:?}");
        assert!(t.contains(&"caf".to_string()), "{t:?}");
        // a broken reference and multi-byte text after '&' are no trouble
        let m = "From: a@b.example\r\nContent-Type: text/html\r\n\r\n\
&#xZZ; &#99999999; &\u{d074}\u{d0ad}\u{d558}; ok\r\n";
        assert!(token_names(m.as_bytes()).contains(&"ok".to_string()));
    }

    #[test]
    fn mailing_list_footers_are_cut() {
        let with = "From: a@b.example\r\nSubject: patch\r\n\r\nthe patch looks good\r\n\
_______________________________________________\r\n\
Exmh-workers mailing list\r\n\
https://listman.example/mailman/listinfo/exmh-workers\r\n";
        let t = token_names(with.as_bytes());
        assert!(t.contains(&"patch".to_string()), "{t:?}");
        for gone in ["exmh-workers", "mailing", "uh:listman.example"] {
            assert!(!t.contains(&gone.to_string()), "{gone} in {t:?}");
        }
        // a line of underscores that is no list footer stays text
        let rule = "From: a@b.example\r\n\r\nabove\r\n______________________\r\nbelow here\r\n";
        assert!(token_names(rule.as_bytes()).contains(&"below".to_string()));
        // nor does a "footer" with a whole body after it
        let hiding = format!(
            "From: a@b.example\r\n\r\nhi\r\n______________________\r\nmailing list\r\n{}\r\n",
            "viagra ".repeat(100)
        );
        assert!(token_names(hiding.as_bytes()).contains(&"viagra".to_string()));
    }

    #[test]
    fn never_dates_or_received_timestamps() {
        let t = token_names(MSG.as_bytes());
        for banned in [
            "2002",
            "aug",
            "tue",
            "fri",
            "monday",
            "06",
            "48",
            "11",
            "0530",
            "0400",
            "num:2002",
            "mx.example",
            "gw",
        ] {
            assert!(
                !t.iter()
                    .any(|x| x == banned || x.ends_with(&format!(":{banned}"))),
                "date/received token {banned} in {t:?}"
            );
        }
        // Changing only the dates and Received lines changes no feature.
        let other = MSG
            .replace("Tue Aug  6 11:51:02 2002", "Wed Jan  1 00:00:00 2031")
            .replace(
                "Tue, 6 Aug 2002 06:48:09 -0400",
                "Wed, 1 Jan 2031 00:00:00 +0000",
            )
            .replace(
                "Fri, 02 Aug 2002 23:37:59 +0530",
                "Sun, 05 Mar 2028 10:11:12 -0800",
            )
            .replace("mx.example [192.0.2.1]", "relay.other [198.51.100.7]");
        assert_eq!(
            tokenize(MSG.as_bytes(), None),
            tokenize(other.as_bytes(), None)
        );
    }

    #[test]
    fn hashes_are_stable_and_prefixed() {
        assert_eq!(hash("", "free"), hash("", "free"));
        assert_ne!(hash("s:", "free"), hash("", "free"));
        assert_ne!(hash("s:", "free"), hash("s", ":free"));
        // a fixed value: stored models depend on it
        assert_eq!(hash("", "free"), 0xe608_3892_f845_c06c);
    }

    #[test]
    fn registered_domains() {
        assert_eq!(crate::registered_domain("a.b.example.com"), "example.com");
        assert_eq!(crate::registered_domain("www.bbc.co.uk"), "bbc.co.uk");
        assert_eq!(crate::registered_domain("example.com"), "example.com");
        assert_eq!(crate::registered_domain("localhost"), "localhost");
    }

    #[test]
    fn garbage_and_huge_input_are_bounded() {
        assert!(!tokenize(b"\x00\x01 not a mail", None).is_empty());
        let big = format!(
            "From: a@b.example\r\nSubject: x\r\n\r\n{}",
            "word ".repeat(200_000)
        );
        let t = tokenize(big.as_bytes(), None);
        assert!(t.len() < 100);
    }
}
