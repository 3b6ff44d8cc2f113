//! Content heuristics: structural checks that mail administrators know from practice, each
//! a symbol with its reason in one line (see [`crate::symbols`] for the points):
//!
//! | symbol | what it means |
//! |---|---|
//! | `CONTENT_LINK_MISMATCH` | a link's visible text names one domain, its target another (the phishing shape) |
//! | `CONTENT_HTML_ONLY` | HTML without a plain-text alternative (mail programs write both; bulk senders often not) |
//! | `CONTENT_IMAGE_ONLY` | HTML that is pictures with almost no text (text hidden from filters in an image) |
//! | `CONTENT_EXECUTABLE` | an attachment that is a program, by content or by a Windows-run extension |
//! | `CONTENT_DOUBLE_EXTENSION` | an attachment named like a document that is run as a program (`invoice.pdf.exe`) |
//! | `CONTENT_DISPLAY_NAME_ADDRESS` | the From display name carries an address of another domain than the sender's |
//! | `CONTENT_REPLYTO_FREEMAIL` | replies go to a free-mail mailbox while From names another domain |
//! | `CONTENT_OBFUSCATED` | zero-width characters inside words, or words mixing Latin with Cyrillic or Greek look-alikes |
//! | `CONTENT_BULK_NO_UNSUBSCRIBE` | bulk-mail shape (many links or a bulk precedence) without `List-Unsubscribe` |
//!
//! Untrusted input: bounded work per message — at most `max_parts` of the parts mail-parser
//! made from the message (the gateway passes `limits.max_mime_parts`), at most
//! [`MAX_SCAN_BYTES`] of each text or HTML part, at most [`MAX_LINKS`] links; attached
//! messages are not descended into.

use mail_parser::{Message, MimeHeaders, PartType};

use crate::sniff::{Kind, kinds_of};
use crate::{MessageContext, Stage, StageFuture, Symbol, registered_domain};

/// Bytes of one text or HTML part that are looked at.
pub const MAX_SCAN_BYTES: usize = 256 * 1024;
/// Links of one message that are compared with their text.
pub const MAX_LINKS: usize = 500;
/// Links from which an HTML message has a bulk-mail shape.
const BULK_LINKS: usize = 10;
/// Visible words under which HTML with pictures counts as image-only.
const IMAGE_ONLY_WORDS: usize = 20;

/// Extensions Windows runs (or opens in a script host) on a double click.
const EXECUTABLE_EXTENSIONS: &[&str] = &[
    "exe", "scr", "pif", "com", "bat", "cmd", "vbs", "vbe", "js", "jse", "wsf", "wsh", "hta",
    "lnk", "msi", "jar", "ps1", "cpl", "reg",
];
/// Extensions of documents a double extension pretends to be.
const DOCUMENT_EXTENSIONS: &[&str] = &[
    "pdf", "doc", "docx", "xls", "xlsx", "ppt", "pptx", "txt", "rtf", "jpg", "jpeg", "png", "gif",
    "zip", "htm", "html", "csv",
];
/// Free-mail domains: anybody can open a mailbox there.
const FREEMAIL: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "yahoo.co.uk",
    "yahoo.fr",
    "yahoo.de",
    "ymail.com",
    "hotmail.com",
    "hotmail.co.uk",
    "hotmail.fr",
    "outlook.com",
    "live.com",
    "msn.com",
    "aol.com",
    "gmx.com",
    "gmx.net",
    "gmx.de",
    "web.de",
    "mail.com",
    "mail.ru",
    "yandex.ru",
    "yandex.com",
    "icloud.com",
    "me.com",
    "protonmail.com",
    "proton.me",
    "zoho.com",
    "qq.com",
    "163.com",
    "126.com",
    "excite.com",
    "lycos.com",
    "netscape.net",
];

pub struct Content {
    /// Parts looked at, in order; the rest of a message with more is not scanned.
    pub max_parts: usize,
}

impl Stage for Content {
    fn name(&self) -> &'static str {
        "content"
    }

    fn is_spam_filter(&self) -> bool {
        true
    }

    fn check<'a>(&'a self, ctx: &'a MessageContext<'a>) -> StageFuture<'a> {
        Box::pin(async move {
            Ok(ctx
                .parsed
                .map(|m| inspect(m, self.max_parts))
                .unwrap_or_default())
        })
    }
}

/// Every content symbol of a parsed message, from its first `max_parts` parts.
pub fn inspect(msg: &Message<'_>, max_parts: usize) -> Vec<Symbol> {
    let mut found = Vec::new();
    let body = Body::of(msg, max_parts);
    let from = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .and_then(domain_of)
        .map(|d| registered_domain(&d).to_string());

    if let Some((text, target)) = body.mismatched_link(from.as_deref()) {
        found.push(Symbol::new(
            "CONTENT_LINK_MISMATCH",
            format!("text {text}, target {target}"),
        ));
    }
    if body.html_parts > 0 && body.text_parts == 0 {
        found.push(Symbol::new("CONTENT_HTML_ONLY", ""));
        if body.images > 0 && body.html_words < IMAGE_ONLY_WORDS {
            found.push(Symbol::new(
                "CONTENT_IMAGE_ONLY",
                format!("{} images, {} words", body.images, body.html_words),
            ));
        }
    }
    if let Some(name) = &body.executable {
        found.push(Symbol::new("CONTENT_EXECUTABLE", name.clone()));
    }
    if let Some(name) = &body.double_extension {
        found.push(Symbol::new("CONTENT_DOUBLE_EXTENSION", name.clone()));
    }
    if let Some(shown) = display_name_address(msg, from.as_deref()) {
        found.push(Symbol::new("CONTENT_DISPLAY_NAME_ADDRESS", shown));
    }
    if let Some(reply) = freemail_reply_to(msg, from.as_deref()) {
        found.push(Symbol::new("CONTENT_REPLYTO_FREEMAIL", reply));
    }
    let subject_obfuscated = msg.subject().and_then(obfuscation);
    if let Some(what) = subject_obfuscated.or(body.obfuscation) {
        found.push(Symbol::new("CONTENT_OBFUSCATED", what));
    }
    let bulk_precedence = msg
        .header_raw("Precedence")
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("bulk"));
    let has_unsubscribe = msg.header_raw("List-Unsubscribe").is_some();
    if (body.links >= BULK_LINKS && body.html_parts > 0 || bulk_precedence) && !has_unsubscribe {
        found.push(Symbol::new(
            "CONTENT_BULK_NO_UNSUBSCRIBE",
            if bulk_precedence {
                "Precedence: bulk".to_string()
            } else {
                format!("{} links", body.links)
            },
        ));
    }
    found
}

/// What the body parts of the top-level message show.
#[derive(Default)]
struct Body {
    text_parts: usize,
    html_parts: usize,
    images: usize,
    html_words: usize,
    links: usize,
    /// (visible text's domain, target's domain) of every link whose text names a domain.
    named_links: Vec<(String, String)>,
    executable: Option<String>,
    double_extension: Option<String>,
    obfuscation: Option<String>,
}

impl Body {
    fn of(msg: &Message<'_>, max_parts: usize) -> Body {
        let mut b = Body::default();
        for part in msg.parts.iter().take(max_parts) {
            match &part.body {
                PartType::Text(t) if part.attachment_name().is_none() => {
                    b.text_parts += 1;
                    if b.obfuscation.is_none() {
                        b.obfuscation = obfuscation(clip(t));
                    }
                }
                PartType::Html(h) if part.attachment_name().is_none() => {
                    b.html_parts += 1;
                    b.html(clip(h));
                }
                PartType::Binary(data) | PartType::InlineBinary(data) => {
                    b.attachment(part.attachment_name().unwrap_or(""), data)
                }
                PartType::Text(t) => {
                    b.attachment(part.attachment_name().unwrap_or(""), t.as_bytes())
                }
                PartType::Html(h) => {
                    b.attachment(part.attachment_name().unwrap_or(""), h.as_bytes())
                }
                PartType::Message(_) | PartType::Multipart(_) => {}
            }
        }
        b
    }

    fn attachment(&mut self, name: &str, data: &[u8]) {
        let lower = name.trim().to_ascii_lowercase();
        let mut exts = lower.rsplit('.');
        let last = exts.next().unwrap_or("");
        let before = exts.next().map(str::trim);
        let runs = lower.contains('.') && EXECUTABLE_EXTENSIONS.contains(&last);
        if self.executable.is_none() && (runs || kinds_of(data).contains(Kind::Executable)) {
            self.executable = Some(name.to_string());
        }
        // "invoice.pdf.exe", also padded with spaces before the real extension.
        if self.double_extension.is_none()
            && runs
            && before.is_some_and(|b| DOCUMENT_EXTENSIONS.contains(&b))
            && lower.matches('.').count() >= 2
        {
            self.double_extension = Some(name.to_string());
        }
    }

    /// Links, pictures and visible words of an HTML part; one pass over the markup.
    fn html(&mut self, h: &str) {
        let mut rest = h;
        let mut visible = String::new();
        // The open link: its target's domain and the text seen since its tag.
        let mut open: Option<(String, String)> = None;
        while let Some(lt) = rest.find('<') {
            let text = &rest[..lt];
            visible.push_str(text);
            visible.push(' ');
            if let Some((_, t)) = &mut open {
                t.push_str(text);
            }
            let Some(gt) = rest[lt..].find('>') else {
                rest = "";
                break;
            };
            let tag = &rest[lt + 1..lt + gt];
            rest = &rest[lt + gt + 1..];
            let name: String = tag
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '/' || *c == '!')
                .collect::<String>()
                .to_ascii_lowercase();
            match name.as_str() {
                "a" => {
                    self.links += 1;
                    self.close_link(open.take());
                    open = attribute(tag, "href")
                        .and_then(link_domain)
                        .map(|d| (d, String::new()));
                }
                "/a" => self.close_link(open.take()),
                "img" => self.images += 1,
                _ => {}
            }
        }
        visible.push_str(rest);
        self.close_link(open.take());
        let decoded = visible.replace("&nbsp;", " ");
        self.html_words += decoded
            .split_whitespace()
            .filter(|w| w.chars().any(char::is_alphabetic))
            .count();
        if self.obfuscation.is_none() {
            self.obfuscation = obfuscation(&decoded);
        }
    }

    fn close_link(&mut self, link: Option<(String, String)>) {
        let Some((target, text)) = link else { return };
        if self.named_links.len() >= MAX_LINKS {
            return;
        }
        if let Some(named) = named_domain(&text) {
            self.named_links.push((named, target));
        }
    }

    /// The first link whose text names a registered domain other than its target's, where
    /// neither is the From domain (a sender's own redirector is not a disguise).
    fn mismatched_link(&self, from: Option<&str>) -> Option<(String, String)> {
        self.named_links
            .iter()
            .find(|(text, target)| {
                let (t, g) = (registered_domain(text), registered_domain(target));
                t != g && Some(g) != from
            })
            .cloned()
    }
}

fn clip(s: &str) -> &str {
    crate::clip_str(s, MAX_SCAN_BYTES)
}

/// The domain of an address, when it has one with a dot.
fn domain_of(address: &str) -> Option<String> {
    Some(crate::domain_of(address)).filter(|d| d.contains('.'))
}

/// The value of an attribute in a tag's text (`href="…"`, `href='…'` or bare).
fn attribute<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let lower = tag.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(name) {
        let at = from + i;
        from = at + name.len();
        let before_ok = at == 0 || lower.as_bytes()[at - 1].is_ascii_whitespace();
        let after = lower[from..].trim_start();
        if !before_ok || !after.starts_with('=') {
            continue;
        }
        let value_at = tag.len() - after.len() + 1;
        let value = tag[value_at..].trim_start();
        return Some(match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].split(q).next().unwrap_or(""),
            _ => value
                .split(|c: char| c.is_whitespace())
                .next()
                .unwrap_or(""),
        });
    }
    None
}

/// The host of an http(s) link, lowercase.
fn link_domain(href: &str) -> Option<String> {
    let href = href.trim();
    let lower = href.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))?;
    let host = rest
        .split(['/', '?', '#', ':'])
        .next()
        .unwrap_or("")
        .rsplit('@')
        .next()
        .unwrap_or("");
    is_domain(host).then(|| host.to_string())
}

/// A domain the link's visible text names: the text is a URL or a bare host name.
fn named_domain(text: &str) -> Option<String> {
    let t = text.trim().replace("&nbsp;", "");
    let t = t.trim().to_ascii_lowercase();
    if t.is_empty() || t.contains(char::is_whitespace) {
        return None;
    }
    let rest = t
        .strip_prefix("http://")
        .or_else(|| t.strip_prefix("https://"))
        .unwrap_or(&t);
    let host = rest.split(['/', '?', '#', ':']).next().unwrap_or("");
    // A bare word with a dot ("file.pdf", "v1.2") is not a domain: a URL or a www. name is.
    let looks_like_url = t.starts_with("http") || t.starts_with("www.");
    (looks_like_url && is_domain(host)).then(|| host.to_string())
}

fn is_domain(host: &str) -> bool {
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 2
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic()))
}

/// The address a From display name shows when it is of another domain than the sender's.
fn display_name_address(msg: &Message<'_>, from: Option<&str>) -> Option<String> {
    let name = msg.from()?.first()?.name()?;
    let shown = name
        .split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '(' | ')' | '"' | '\''))
        .find(|w| w.contains('@'))?;
    let shown_domain = domain_of(shown)?;
    (Some(registered_domain(&shown_domain)) != from).then(|| shown.to_string())
}

/// The Reply-To address when it is at a free-mail domain and From is not that domain.
fn freemail_reply_to(msg: &Message<'_>, from: Option<&str>) -> Option<String> {
    let reply = msg.reply_to()?.first()?.address()?;
    let domain = domain_of(reply)?;
    (FREEMAIL.contains(&domain.as_str()) && Some(registered_domain(&domain)) != from)
        .then(|| reply.to_string())
}

/// Zero-width characters between letters, or a word mixing Latin letters with Cyrillic or
/// Greek ones (look-alikes: a Cyrillic "а" in "pаypal").
fn obfuscation(text: &str) -> Option<String> {
    const ZERO_WIDTH: &[char] = &[
        '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}', '\u{00AD}',
    ];
    // One pass over the characters with the two before each: no copy of the text.
    let (mut before, mut middle) = (' ', ' ');
    for c in text.chars().take(MAX_SCAN_BYTES) {
        if ZERO_WIDTH.contains(&middle) && before.is_alphabetic() && c.is_alphabetic() {
            return Some(format!("zero-width U+{:04X} inside a word", middle as u32));
        }
        (before, middle) = (middle, c);
    }
    for word in text.split(|c: char| !c.is_alphabetic()).take(100_000) {
        let latin = word.chars().any(|c| c.is_ascii_alphabetic());
        let lookalike = word
            .chars()
            .any(|c| matches!(c, '\u{0370}'..='\u{03FF}' | '\u{0400}'..='\u{04FF}'));
        if latin && lookalike {
            return Some(format!(
                "mixed scripts in \"{}\"",
                word.chars().take(40).collect::<String>()
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn symbols(raw: &str) -> Vec<&'static str> {
        let raw = raw.replace('\n', "\r\n");
        let msg = mail_parser::MessageParser::default()
            .parse(raw.as_bytes())
            .unwrap();
        inspect(&msg, 1000).into_iter().map(|s| s.name).collect()
    }

    const PLAIN: &str =
        "From: Ann <ann@example.org>\nTo: bob@example.net\nSubject: lunch\n\nSee you at noon.\n";

    #[test]
    fn ordinary_mail_has_no_content_symbol() {
        assert!(symbols(PLAIN).is_empty());
        let both = "From: ann@example.org\nSubject: x\nMIME-Version: 1.0\n\
Content-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/plain\n\nHello, see https://example.org/a\n\
--b\nContent-Type: text/html\n\n<p>Hello, see <a href=\"https://example.org/a\">https://example.org/a</a></p>\n--b--\n";
        assert!(symbols(both).is_empty(), "{:?}", symbols(both));
    }

    #[test]
    fn link_text_naming_another_domain() {
        let m = "From: ann@example.org\nContent-Type: text/html\n\n\
<p>Log in at <a href=\"http://evil.example.net/login\">https://www.paypal.com/signin</a></p>\n";
        let s = symbols(m);
        assert!(s.contains(&"CONTENT_LINK_MISMATCH"), "{s:?}");
        assert!(s.contains(&"CONTENT_HTML_ONLY"), "{s:?}");
        // Text that is not a URL ("click here") and the sender's own redirector are fine.
        let m = "From: news@shop.example\nContent-Type: text/html\n\n\
<a href=\"http://evil.example.net/\">click here</a> <a href=\"https://t.shop.example/r?u=1\">www.other.example</a>\n";
        assert!(!symbols(m).contains(&"CONTENT_LINK_MISMATCH"));
    }

    #[test]
    fn image_only_html() {
        let m = "From: a@b.example\nContent-Type: text/html\n\n<html><img src=\"http://x.example/1.gif\"><br>Buy now</html>\n";
        assert_eq!(symbols(m), ["CONTENT_HTML_ONLY", "CONTENT_IMAGE_ONLY"]);
    }

    #[test]
    fn executables_and_double_extensions() {
        let att = |name: &str, body: &str| {
            format!(
                "From: a@b.example\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n--b\n\
Content-Type: text/plain\n\nsee attached\n--b\nContent-Type: application/octet-stream\n\
Content-Disposition: attachment; filename=\"{name}\"\nContent-Transfer-Encoding: base64\n\n{body}\n--b--\n"
            )
        };
        assert_eq!(
            symbols(&att("invoice.pdf.exe", "aGVsbG8=")),
            ["CONTENT_EXECUTABLE", "CONTENT_DOUBLE_EXTENSION"]
        );
        assert_eq!(
            symbols(&att("setup.exe", "aGVsbG8=")),
            ["CONTENT_EXECUTABLE"]
        );
        // A program by content, whatever its name says.
        let mut body = Body::default();
        body.attachment("report.pdf", &crate::sniff::samples::pe());
        assert_eq!(body.executable.as_deref(), Some("report.pdf"));
        assert_eq!(body.double_extension, None);
        assert!(symbols(&att("report.v2.pdf", "aGVsbG8=")).is_empty());
    }

    #[test]
    fn sender_disguises() {
        let m = "From: \"service@paypal.com\" <x@evil.example>\nSubject: s\n\nhi\n";
        assert_eq!(symbols(m), ["CONTENT_DISPLAY_NAME_ADDRESS"]);
        let own = "From: \"ann@example.org\" <ann@mail.example.org>\nSubject: s\n\nhi\n";
        assert!(symbols(own).is_empty());
        let m = "From: ceo@company.example\nReply-To: ceo.private@gmail.com\nSubject: s\n\nhi\n";
        assert_eq!(symbols(m), ["CONTENT_REPLYTO_FREEMAIL"]);
        let own = "From: ann@gmail.com\nReply-To: ann.other@gmail.com\nSubject: s\n\nhi\n";
        assert!(symbols(own).is_empty());
    }

    #[test]
    fn obfuscated_words() {
        let m = "From: a@b.example\nSubject: =?UTF-8?Q?V=E2=80=8Biagra?=\n\nhi\n";
        assert_eq!(symbols(m), ["CONTENT_OBFUSCATED"]);
        // "pаypal" with a Cyrillic а.
        let m = "From: a@b.example\nContent-Type: text/plain; charset=utf-8\n\nYour p\u{0430}ypal account\n";
        assert_eq!(symbols(m), ["CONTENT_OBFUSCATED"]);
        let russian =
            "From: a@b.example\nContent-Type: text/plain; charset=utf-8\n\nПривет, see you\n";
        assert!(symbols(russian).is_empty());
    }

    #[test]
    fn bulk_shape_without_unsubscribe() {
        let links: String = (0..12)
            .map(|i| format!("<a href=\"http://shop.example/{i}\">item {i}</a> "))
            .collect();
        let m = format!("From: a@shop.example\nContent-Type: text/html\n\n<p>{links}</p>\n");
        let s = symbols(&m);
        assert!(s.contains(&"CONTENT_BULK_NO_UNSUBSCRIBE"), "{s:?}");
        let m = format!(
            "From: a@shop.example\nList-Unsubscribe: <mailto:u@shop.example>\nContent-Type: text/html\n\n<p>{links}</p>\n"
        );
        assert!(!symbols(&m).contains(&"CONTENT_BULK_NO_UNSUBSCRIBE"));
        let m = "From: a@b.example\nPrecedence: bulk\nSubject: s\n\nhi\n";
        assert_eq!(symbols(m), ["CONTENT_BULK_NO_UNSUBSCRIBE"]);
    }

    #[test]
    fn only_the_first_max_parts_parts_are_looked_at() {
        let m =
            "From: a@b.example\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b\n\n\
--b\nContent-Type: text/plain\n\nhello\n--b\nContent-Type: application/octet-stream\n\
Content-Disposition: attachment; filename=\"setup.exe\"\n\nMZ\n--b--\n"
                .replace('\n', "\r\n");
        let msg = mail_parser::MessageParser::default()
            .parse(m.as_bytes())
            .unwrap();
        let names = |max| -> Vec<&str> { inspect(&msg, max).into_iter().map(|s| s.name).collect() };
        assert_eq!(names(100), ["CONTENT_EXECUTABLE"]);
        assert!(
            names(2).is_empty(),
            "the attachment is the third part (after the root)"
        );
    }

    #[test]
    fn huge_and_broken_html_is_bounded() {
        let mut h = String::from("From: a@b.example\nContent-Type: text/html\n\n");
        for _ in 0..100_000 {
            h.push_str("<a href='http://a.example/'>www.b.example</a><img <<<");
        }
        let started = std::time::Instant::now();
        let s = symbols(&h);
        assert!(s.contains(&"CONTENT_LINK_MISMATCH"));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert!(attribute("a href", "href").is_none());
        assert_eq!(attribute("a HREF = 'x y'", "href"), Some("x y"));
        assert_eq!(
            attribute("a data-href=\"no\" href=yes", "href"),
            Some("yes")
        );
    }
}
