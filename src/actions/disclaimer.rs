//! `disclaimer`: a text appended to the message's body text — to text/plain, inserted
//! before `</body>` in text/html — once, and never into what the user signed or encrypted.
//!
//! Which parts: the body a reader sees. A single text part; both alternatives of a
//! multipart/alternative; in any other multipart (mixed, related, ...) the first part, and
//! so on down. Never an attachment (a part with `Content-Disposition: attachment` or a file
//! name), never inside an attached message (message/rfc822).
//!
//! How: the part's body is decoded (quoted-printable, base64, 7bit, 8bit, binary), the
//! disclaimer appended in the part's charset — and when the charset cannot hold it, the
//! part's text is converted to UTF-8 and the part says so; in HTML a character the charset
//! cannot hold is written as a character reference instead — and the body encoded again
//! as it was (7bit that gains 8-bit characters becomes quoted-printable). Every byte outside
//! the changed parts stays as it was.
//!
//! Once: a part whose text already holds the disclaimer is left alone, so mail that passes
//! the gateway twice (out to an internal server that forwards it out again) gets it once.
//! The `X-Portcullis-Disclaimer` field the message gets is for people and filters
//! downstream; it is never taken as proof that the disclaimer is there: anyone can write a
//! header field (a sender from outside; on outbound mail any internal client), and honouring
//! it would let them send without the disclaimer. Only the disclaimer text itself counts.

use filters::Symbol;

use super::mime_tree::{self, Edits, Entity, MimeLimits};
use super::text::{self, Charset, TransferEncoding};

/// The field added to a message that got the disclaimer.
pub const MARKER_FIELD: &str = "X-Portcullis-Disclaimer";

/// What to add: `text` to text/plain parts; `html` to text/html parts (else `text`,
/// escaped, its lines kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disclaimer {
    pub text: String,
    pub html: Option<String>,
}

/// What [`add`] did.
#[derive(Debug)]
pub enum DisclaimerOutcome {
    /// The new message; `parts` names the parts that got it (e.g. `text/plain`).
    Added {
        message: Vec<u8>,
        parts: Vec<String>,
    },
    /// Every body part holds the disclaimer already.
    AlreadyPresent,
    /// The user signed or encrypted the content (S/MIME, PGP/MIME, inline PGP): changing
    /// it would break the signature or could not reach the text.
    Protected(String),
    /// Nothing to add it to, or a message the gateway will not change (why).
    NotAdded(String),
}

impl DisclaimerOutcome {
    /// The symbol for the score card (none when the disclaimer was there already).
    pub fn symbol(&self) -> Option<Symbol> {
        match self {
            DisclaimerOutcome::Added { parts, .. } => {
                Some(Symbol::new("DISCLAIMER_ADDED", parts.join(", ")))
            }
            DisclaimerOutcome::AlreadyPresent => None,
            DisclaimerOutcome::Protected(why) => {
                Some(Symbol::new("DISCLAIMER_SKIPPED_PROTECTED", why.clone()))
            }
            DisclaimerOutcome::NotAdded(why) => {
                Some(Symbol::new("DISCLAIMER_NOT_ADDED", why.clone()))
            }
        }
    }
}

/// Add `disclaimer` to `message` (a whole message, header and body).
pub fn add(message: &[u8], disclaimer: &Disclaimer, limits: MimeLimits) -> DisclaimerOutcome {
    let tree = match mime_tree::parse(message, limits) {
        Ok(tree) => tree,
        Err(e) => return DisclaimerOutcome::NotAdded(e.to_string()),
    };
    let mut targets = Vec::new();
    if let Err(why) = body_parts(&tree, &mut targets) {
        return DisclaimerOutcome::Protected(why);
    }
    if targets.is_empty() {
        return DisclaimerOutcome::NotAdded("no text/plain or text/html body part".into());
    }
    let mut edits = Edits::default();
    let mut parts = Vec::new();
    let mut problems = Vec::new();
    let mut present = 0;
    for part in targets {
        match rewrite_part(message, part, std::ptr::eq(part, &tree), disclaimer) {
            Ok(Rewrite::Changed { header, body, what }) => {
                if let Some(header) = header {
                    edits.replace(part.start, part.header_end, header);
                }
                edits.replace(part.body_start, part.end, body);
                parts.push(what);
            }
            Ok(Rewrite::Present) => present += 1,
            Ok(Rewrite::Protected(why)) => return DisclaimerOutcome::Protected(why),
            Err(why) => problems.push(format!("{}: {why}", part.ct.mime_type)),
        }
    }
    if parts.is_empty() {
        return if problems.is_empty() && present > 0 {
            DisclaimerOutcome::AlreadyPresent
        } else {
            DisclaimerOutcome::NotAdded(problems.join("; "))
        };
    }
    if !has_field(tree.header(message), MARKER_FIELD) {
        edits.replace(0, 0, format!("{MARKER_FIELD}: added\r\n").into_bytes());
    }
    DisclaimerOutcome::Added {
        message: edits.apply(message),
        parts,
    }
}

/// The parts a reader sees as the body; `Err` when the way to them goes through content the
/// user signed or encrypted.
fn body_parts<'a>(e: &'a Entity, out: &mut Vec<&'a Entity>) -> Result<(), String> {
    if e.is_protected() {
        return Err(format!("the content is {}", e.ct.mime_type));
    }
    match e.ct.mime_type.as_str() {
        "text/plain" | "text/html" if !e.is_attachment() => out.push(e),
        "multipart/alternative" if e.is_multipart() => {
            for alternative in &e.parts {
                body_parts(alternative, out)?;
            }
        }
        m if m.starts_with("multipart/") && e.is_multipart() => {
            if let Some(first) = e.parts.first() {
                body_parts(first, out)?;
            }
        }
        _ => {}
    }
    Ok(())
}

enum Rewrite {
    Changed {
        /// The part's new header block, when a field changed.
        header: Option<Vec<u8>>,
        body: Vec<u8>,
        what: String,
    },
    Present,
    Protected(String),
}

fn rewrite_part(
    message: &[u8],
    part: &Entity,
    is_root: bool,
    disclaimer: &Disclaimer,
) -> Result<Rewrite, String> {
    let te = TransferEncoding::parse(&part.ct.transfer_encoding).ok_or_else(|| {
        format!(
            "unknown Content-Transfer-Encoding {:?}",
            part.ct.transfer_encoding
        )
    })?;
    let label = part.ct.param("charset");
    let charset = Charset::from_label(label).ok_or_else(|| {
        format!(
            "charset {:?} is not one the gateway writes",
            label.unwrap_or("")
        )
    })?;
    let body = part.body(message);
    let decoded = text::decode(body, te)?;
    if memchr::memmem::find(&decoded, b"-----BEGIN PGP ").is_some() {
        return Ok(Rewrite::Protected("inline PGP in the body text".into()));
    }
    let current = charset.decode(&decoded);
    let eol = text::line_end_of(&decoded);
    let html = part.ct.mime_type == "text/html";
    let snippet = if html {
        html_snippet(disclaimer, eol)
    } else {
        lines(&disclaimer.text).join(eol)
    };
    if text::contains_loosely(&current, &snippet) {
        return Ok(Rewrite::Present);
    }

    let mut charset_changed = false;
    let new_text: Vec<u8> = if html {
        let at = last_body_close(&decoded).unwrap_or(decoded.len());
        let mut insert = eol.to_string();
        insert.push_str(&snippet);
        insert.push_str(eol);
        let mut out = decoded[..at].to_vec();
        out.extend_from_slice(&charset.encode_html(&insert));
        out.extend_from_slice(&decoded[at..]);
        out
    } else {
        let mut addition = String::new();
        if !decoded.is_empty() {
            if !decoded.ends_with(b"\n") {
                addition.push_str(eol);
            }
            addition.push_str(eol);
        }
        addition.push_str(&snippet);
        addition.push_str(eol);
        match charset.encode(&addition) {
            Some(bytes) => [decoded.as_slice(), &bytes].concat(),
            None => {
                // The charset cannot hold the disclaimer: the whole text becomes UTF-8.
                charset_changed = true;
                let mut all = current.into_owned();
                all.push_str(&addition);
                all.into_bytes()
            }
        }
    };

    let needs_qp = match te {
        TransferEncoding::SevenBit => !new_text.is_ascii() || has_long_line(&new_text),
        TransferEncoding::EightBit => has_long_line(&new_text),
        _ => false,
    };
    let new_te = if needs_qp {
        TransferEncoding::QuotedPrintable
    } else {
        te
    };
    let mut new_body = text::encode(&new_text, new_te);
    if (body.ends_with(b"\n") || new_te == TransferEncoding::Base64) && !new_body.ends_with(b"\n") {
        new_body.extend_from_slice(b"\r\n");
    }

    let header = (charset_changed || new_te != te).then(|| {
        let mut remove = vec!["content-transfer-encoding"];
        let mut added = Vec::new();
        if charset_changed {
            remove.push("content-type");
            let mut params: Vec<(String, String)> = part
                .ct
                .params
                .iter()
                .filter(|(n, _)| n != "charset")
                .cloned()
                .collect();
            params.insert(0, ("charset".into(), "utf-8".into()));
            added.push(mime_tree::content_type_field(&part.ct.mime_type, &params));
        }
        added.push(format!("Content-Transfer-Encoding: {}", new_te.name()));
        let header = part.header(message);
        if is_root && !has_field(header, "mime-version") {
            added.push("MIME-Version: 1.0".into());
        }
        mime_tree::rewrite_fields(header, &remove, &added)
    });
    let mut what = part.ct.mime_type.clone();
    if charset_changed {
        what.push_str(" (now utf-8)");
    }
    Ok(Rewrite::Changed {
        header,
        body: new_body,
        what,
    })
}

/// The disclaimer as HTML: the `html` variant as written, else the text escaped, each line
/// ending in `<br>`.
fn html_snippet(disclaimer: &Disclaimer, eol: &str) -> String {
    match &disclaimer.html {
        Some(html) => html.trim_end().to_string(),
        None => {
            let escaped: Vec<String> = lines(&disclaimer.text)
                .into_iter()
                .map(escape_html)
                .collect();
            format!(
                "<div class=\"portcullis-disclaimer\">{eol}{}{eol}</div>",
                escaped.join(&format!("<br>{eol}"))
            )
        }
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.trim_end_matches(['\r', '\n'])
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect()
}

pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Where the last `</body` (any case) starts.
fn last_body_close(html: &[u8]) -> Option<usize> {
    const CLOSE: &[u8] = b"</body";
    (0..html.len().saturating_sub(CLOSE.len() - 1))
        .rev()
        .find(|&i| html[i..i + CLOSE.len()].eq_ignore_ascii_case(CLOSE))
}

/// A line longer than RFC 5322's 998 octets (7bit and 8bit bodies may not have one).
fn has_long_line(data: &[u8]) -> bool {
    data.split(|&b| b == b'\n').any(|l| l.len() > 999)
}

fn has_field(header: &[u8], name: &str) -> bool {
    crate::smime::mime::fields(header)
        .into_iter()
        .any(|f| crate::smime::mime::is_field(f, name))
}

#[cfg(test)]
mod tests;
