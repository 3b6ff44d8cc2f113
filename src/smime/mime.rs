//! The MIME plumbing of S/MIME: split an entity into header and body, read its
//! Content-Type, split `multipart/signed` into the signed bytes and the signature, and write
//! the base64 bodies and entities OpenSSL's CMS wrapper cannot write (it has no
//! `SMIME_write_CMS`).
//!
//! Everything works on raw bytes: a signature covers the signed part byte for byte, so no
//! step here may re-encode what it passes on.

use mail_parser::{HeaderName, MessageParser};
use std::borrow::Cow;
use std::sync::LazyLock;

use memchr::memmem::Finder;

/// Header fields that describe an entity's content (they move with the content when it is
/// wrapped or unwrapped); every other field belongs to the message.
const CONTENT_FIELDS: &[&str] = &[
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "content-id",
    "content-description",
    "content-language",
    "content-location",
    "content-md5",
];

/// An entity split at its first empty line.
pub struct Split<'a> {
    /// Header block including its final CRLF (without the empty line).
    pub header: &'a [u8],
    /// Everything after the empty line.
    pub body: &'a [u8],
}

/// Split at the first empty line (CRLF CRLF, or LF LF from a sloppy producer). An entity
/// without an empty line is all header (RFC 5322 allows no body).
pub fn split(entity: &[u8]) -> Split<'_> {
    if entity.starts_with(b"\r\n") {
        return Split {
            header: &[],
            body: &entity[2..],
        };
    }
    if entity.starts_with(b"\n") {
        return Split {
            header: &[],
            body: &entity[1..],
        };
    }
    // Finders built once: building one per call cost as much as the search on a header.
    static BLANK_CRLF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\r\n\r\n"));
    static BLANK_LF: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\n\n"));
    let crlf = BLANK_CRLF.find(entity).map(|i| (i + 2, i + 4));
    // A bare-LF blank line counts only before the CRLF one: no need to scan the body.
    let lf_region = crlf.map_or(entity, |(h, _)| &entity[..h]);
    let lf = BLANK_LF.find(lf_region).map(|i| (i + 1, i + 2));
    let cut = match (crlf, lf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    };
    match cut {
        Some((h, b)) => Split {
            header: &entity[..h],
            body: &entity[b..],
        },
        None => Split {
            header: entity,
            body: &[],
        },
    }
}

/// The header fields of a header block, unfolded lines kept as written (with their CRLF).
pub(crate) fn fields(header: &[u8]) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < header.len() {
        if header[i] == b'\n' {
            let next = header.get(i + 1);
            let continues = matches!(next, Some(b' ') | Some(b'\t'));
            if !continues {
                out.push(&header[start..=i]);
                start = i + 1;
            }
        }
        i += 1;
    }
    if start < header.len() {
        out.push(&header[start..]);
    }
    out
}

/// `content` as a MIME entity. Content that does not open with a header block — only
/// header fields up to the first empty line, as `openssl cms -encrypt` without `-text` and
/// several libraries produce — is the body of a `text/plain` entity (the RFC 2045
/// defaults, written out), so no line of it ever lands in the message's header block.
pub fn as_entity(content: Vec<u8>) -> Vec<u8> {
    if opens_with_header_block(&content) {
        return content;
    }
    const HEADER: &[u8] = b"Content-Type: text/plain; charset=us-ascii\r\n\r\n";
    let mut out = Vec::with_capacity(HEADER.len() + content.len());
    out.extend_from_slice(HEADER);
    out.extend_from_slice(&content);
    out
}

/// Whether every line before the first empty line is a header field (RFC 5322 §2.2: a
/// name of printable characters without a colon, then a colon) or folds one.
fn opens_with_header_block(entity: &[u8]) -> bool {
    if entity.is_empty() {
        return false;
    }
    let header = split(entity).header;
    fields(header).into_iter().all(|f| {
        let Some(colon) = memchr::memchr(b':', f) else {
            return false;
        };
        colon > 0 && f[..colon].iter().all(|&b| (33..=126).contains(&b))
    })
}

/// A field's name as written (blanks around it trimmed); compare it ignoring ASCII case.
fn field_name(field: &[u8]) -> &[u8] {
    let end = memchr::memchr(b':', field).unwrap_or(0);
    field[..end].trim_ascii()
}

pub(crate) fn is_field(field: &[u8], name: &str) -> bool {
    field_name(field).eq_ignore_ascii_case(name.as_bytes())
}

fn is_content_field(field: &[u8]) -> bool {
    CONTENT_FIELDS.iter().any(|name| is_field(field, name))
}

/// The entity's Content-Type as far as S/MIME cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContentType {
    /// Lowercase `type/subtype`; `text/plain` when absent (RFC 2045 default).
    pub mime_type: String,
    /// Lowercase parameter names with their values.
    pub params: Vec<(String, String)>,
    /// Lowercase Content-Transfer-Encoding, "7bit" when absent.
    pub transfer_encoding: String,
    /// The filename of a Content-Disposition or the `name` parameter, if any.
    pub file_name: Option<String>,
    /// The lowercase Content-Disposition type (`inline`, `attachment`), if any.
    pub disposition: Option<String>,
}

impl ContentType {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether the Content-Type or Content-Disposition of `header` could make the entity
/// S/MIME: a cheap look before [`content_type`]'s full parse, which runs on every message
/// (most of them not S/MIME) and on every layer's content. `false` only when neither field
/// says "pkcs7" or "p7m" (any case) and neither uses a syntax that could spell them some
/// other way: RFC 2231 parameters (`*`), quoted pairs (`\`), comments, encoded words.
pub fn may_be_smime(header: &[u8]) -> bool {
    fields(header).into_iter().any(|field| {
        if !is_field(field, "content-type") && !is_field(field, "content-disposition") {
            return false;
        }
        let value = memchr::memchr(b':', field).map_or(&[][..], |colon| &field[colon + 1..]);
        memchr::memchr3(b'*', b'\\', b'(', value).is_some()
            || value.windows(2).any(|w| w == b"=?")
            || contains_ignoring_case(value, b"pkcs7")
            || contains_ignoring_case(value, b"p7m")
    })
}

/// `needle` (lowercase) in `haystack`, ASCII case ignored.
fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

/// Read the Content-Type (and transfer encoding) of an entity's header block. mail-parser
/// does the RFC 2045/2231 parameter parsing (quoting, folding, continuations).
pub fn content_type(header: &[u8]) -> ContentType {
    // Only the three fields read below go to the parser: a message's own header (trace
    // fields, dates, addresses) would be parsed for nothing.
    let mut block = Vec::with_capacity(256);
    for f in fields(header).into_iter().filter(|f| {
        [
            "content-type",
            "content-transfer-encoding",
            "content-disposition",
        ]
        .iter()
        .any(|name| is_field(f, name))
    }) {
        block.extend_from_slice(f);
        if !f.ends_with(b"\n") {
            block.extend_from_slice(b"\r\n");
        }
    }
    block.extend_from_slice(b"\r\n");
    let mut ct = ContentType {
        mime_type: "text/plain".into(),
        params: Vec::new(),
        transfer_encoding: "7bit".into(),
        file_name: None,
        disposition: None,
    };
    let Some(msg) = MessageParser::default().parse_headers(&block) else {
        return ct;
    };
    let declared = msg
        .headers()
        .iter()
        .rev()
        .find(|h| h.name == HeaderName::ContentType)
        .and_then(|h| h.value.as_content_type());
    if let Some(c) = declared {
        ct.mime_type = match c.subtype() {
            Some(s) => format!("{}/{}", c.ctype(), s),
            None => c.ctype().to_string(),
        }
        .to_ascii_lowercase();
        for a in c.attributes().unwrap_or_default() {
            ct.params
                .push((a.name.to_ascii_lowercase(), a.value.to_string()));
        }
    }
    for h in msg.headers() {
        if h.name == HeaderName::ContentTransferEncoding
            && let Some(t) = h.value.as_text()
        {
            ct.transfer_encoding = t.trim().to_ascii_lowercase();
        }
        if h.name == HeaderName::ContentDisposition
            && let Some(c) = h.value.as_content_type()
        {
            ct.disposition = Some(c.ctype().to_ascii_lowercase());
            if let Some(f) = c.attribute("filename") {
                ct.file_name = Some(f.to_string());
            }
        }
    }
    if ct.file_name.is_none() {
        ct.file_name = ct.param("name").map(str::to_string);
    }
    ct
}

/// The two parts of a `multipart/signed` body.
pub struct SignedParts<'a> {
    /// The first part exactly as signed: from after the first delimiter line to the CRLF
    /// that belongs to the next delimiter (RFC 1847 §2.1, RFC 2046 §5.1.1).
    pub content: &'a [u8],
    /// The second part (header and body of the signature entity).
    pub signature: &'a [u8],
}

/// Split a `multipart/signed` body at its boundary.
pub fn signed_parts<'a>(body: &'a [u8], boundary: &str) -> Result<SignedParts<'a>, String> {
    let delim = format!("--{boundary}");
    let starts = delimiter_lines(body, delim.as_bytes());
    if starts.len() < 3 {
        return Err(format!(
            "multipart/signed with {} boundary lines (need an opening, a middle and a closing one)",
            starts.len()
        ));
    }
    let part = |i: usize| -> &'a [u8] {
        let (line_start, line_end) = starts[i];
        let _ = line_start;
        let next_start = starts[i + 1].0;
        // The CRLF before the next delimiter belongs to the delimiter.
        let mut end = next_start;
        if end >= 2 && &body[end - 2..end] == b"\r\n" {
            end -= 2;
        } else if end >= 1 && body[end - 1] == b'\n' {
            end -= 1;
        }
        &body[line_end.min(end)..end]
    };
    Ok(SignedParts {
        content: part(0),
        signature: part(1),
    })
}

/// (start of line, start of the next line) of every line that is a boundary delimiter.
pub(crate) fn delimiter_lines(body: &[u8], delim: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut line_start = 0;
    while line_start < body.len() {
        let line_end = memchr::memchr(b'\n', &body[line_start..])
            .map(|i| line_start + i + 1)
            .unwrap_or(body.len());
        let line = &body[line_start..line_end];
        if line.starts_with(delim) {
            let rest = &line[delim.len()..];
            let rest = rest.strip_prefix(b"--").unwrap_or(rest);
            if rest
                .iter()
                .all(|c| matches!(c, b' ' | b'\t' | b'\r' | b'\n'))
            {
                out.push((line_start, line_end));
            }
        }
        line_start = line_end;
    }
    out
}

/// Decode a body per its Content-Transfer-Encoding (base64, or binary/7bit/8bit as is).
pub fn decode_body(body: &[u8], transfer_encoding: &str) -> Result<Vec<u8>, String> {
    match transfer_encoding {
        "base64" => decode_base64(body),
        "7bit" | "8bit" | "binary" => Ok(body.to_vec()),
        other => Err(format!("unsupported Content-Transfer-Encoding {other:?}")),
    }
}

/// Base64 value of each byte; whitespace and padding marked, everything else refused.
const BASE64: [u8; 256] = {
    let mut t = [BASE64_BAD; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t[b' ' as usize] = BASE64_SPACE;
    t[b'\t' as usize] = BASE64_SPACE;
    t[b'\r' as usize] = BASE64_SPACE;
    t[b'\n' as usize] = BASE64_SPACE;
    t[b'=' as usize] = BASE64_PAD;
    t
};
const BASE64_BAD: u8 = 0xff;
const BASE64_SPACE: u8 = 0xfe;
const BASE64_PAD: u8 = 0xfd;

/// Decode a base64 body (RFC 2045 §6.8): whitespace anywhere is skipped, anything else
/// outside the alphabet is an error. This runs on every inbound S/MIME body (~19 KB for
/// a 10 KB signed and encrypted message): the usual shape goes through SIMD, anything
/// else through the careful decoder, which gives the answer for every input.
fn decode_base64(body: &[u8]) -> Result<Vec<u8>, String> {
    match decode_base64_lines_simd(body) {
        Some(decoded) => Ok(decoded),
        None => decode_base64_any(body),
    }
}

/// The shape every mail client writes — lines of whole four-character groups ending in
/// CRLF or LF, padding only at the very end — gathered into one buffer (a memcpy per
/// line) and decoded in place with SIMD (base64-simd): about ten times faster than
/// [`decode_base64_any`]. `None` when the body has any other shape (blanks inside a line,
/// missing padding, bad characters); the strict SIMD decoder accepts only input the careful
/// one decodes to the same bytes, so the fallback decides every other case.
fn decode_base64_lines_simd(body: &[u8]) -> Option<Vec<u8>> {
    let mut gathered = Vec::with_capacity(body.len());
    // Clients write lines of one width: where the first line's width ends a line again,
    // the line is taken without searching for its end.
    let mut width = None;
    let mut start = 0;
    while start < body.len() {
        let end = match width {
            Some(w) if body.get(start + w) == Some(&b'\n') => start + w,
            _ => memchr::memchr(b'\n', &body[start..]).map_or(body.len(), |i| start + i),
        };
        width.get_or_insert(end - start);
        let line = &body[start..end];
        gathered.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        start = end + 1;
    }
    if gathered.is_empty() {
        return None;
    }
    let decoded = base64_simd::STANDARD
        .decode_inplace(&mut gathered)
        .ok()?
        .len();
    gathered.truncate(decoded);
    Some(gathered)
}

/// Base64 of any shape RFC 2045 allows: four characters at a time where a line holds
/// whole groups, one at a time around whitespace and padding.
fn decode_base64_any(body: &[u8]) -> Result<Vec<u8>, String> {
    let corrupt = || "the base64 body is corrupt".to_string();
    // Written in place into a buffer of the largest possible size, cut to length at the end.
    let mut out = vec![0u8; body.len() / 4 * 3 + 3];
    let mut o = 0;
    let (mut acc, mut n, mut pad) = (0u32, 0usize, 0usize);
    let mut i = 0;
    while i < body.len() {
        if n == 0
            && let Some(&[a, b, c, d]) = body.get(i..i + 4)
        {
            let v = [a, b, c, d].map(|c| BASE64[c as usize] as u32);
            if (v[0] | v[1] | v[2] | v[3]) < 64 {
                let word = v[0] << 18 | v[1] << 12 | v[2] << 6 | v[3];
                out[o..o + 3].copy_from_slice(&word.to_be_bytes()[1..]);
                o += 3;
                i += 4;
                continue;
            }
        }
        match BASE64[body[i] as usize] {
            BASE64_SPACE => {}
            BASE64_PAD if n >= 2 => pad += 1,
            v if v < 64 && pad == 0 => {
                acc = acc << 6 | v as u32;
                n += 1;
                if n == 4 {
                    out[o..o + 3].copy_from_slice(&acc.to_be_bytes()[1..]);
                    o += 3;
                    (acc, n) = (0, 0);
                }
            }
            _ => return Err(corrupt()),
        }
        i += 1;
    }
    match (n, pad) {
        (0, 0) => {}
        (2, 0 | 2) => {
            out[o] = (acc >> 4) as u8;
            o += 1;
        }
        (3, 0 | 1) => {
            out[o..o + 2].copy_from_slice(&(acc >> 2).to_be_bytes()[2..]);
            o += 2;
        }
        _ => return Err(corrupt()),
    }
    if o == 0 {
        return Err("empty base64 body".into());
    }
    out.truncate(o);
    Ok(out)
}

/// Base64 in 76-character lines, each ending in CRLF (RFC 2045 §6.8): 57 bytes a line,
/// written straight into the lines (this runs on every outbound S/MIME blob).
pub fn base64_lines(data: &[u8]) -> String {
    let mut out = Vec::new();
    put_base64_lines(&mut out, data);
    // only ASCII was written
    String::from_utf8(out).unwrap_or_default()
}

/// [`base64_lines`] appended to `out`: encoded with SIMD (base64-simd) into the end of a
/// buffer of the final size, then each 76-character line moved forward to its place and
/// its CRLF written behind it. A line never overtakes the characters still to be moved:
/// line k moves from 2·lines + 76k to 78k.
pub fn put_base64_lines(out: &mut Vec<u8>, data: &[u8]) {
    const LINE: usize = 76;
    let chars = base64_simd::STANDARD.encoded_length(data.len());
    let lines = chars.div_ceil(LINE);
    let start = out.len();
    out.resize(start + chars + 2 * lines, 0);
    let buf = &mut out[start..];
    let encoded_at = 2 * lines;
    let written = base64_simd::STANDARD
        .encode(data, base64_simd::Out::from_slice(&mut buf[encoded_at..]))
        .len();
    debug_assert_eq!(written, chars);
    for k in 0..lines {
        let from = encoded_at + k * LINE;
        let len = LINE.min(chars - k * LINE);
        let to = k * (LINE + 2);
        buf.copy_within(from..from + len, to);
        buf[to + len..to + len + 2].copy_from_slice(b"\r\n");
    }
}

/// Bare LF → CRLF (a CMS producer may have used Unix line ends inside; SMTP needs CRLF).
pub fn to_crlf(data: &[u8]) -> Vec<u8> {
    as_crlf(data).into_owned()
}

/// [`to_crlf`] for data we own: returned as it is when it is CRLF already (nearly always).
pub fn into_crlf(data: Vec<u8>) -> Vec<u8> {
    if is_crlf(&data) { data } else { to_crlf(&data) }
}

/// [`to_crlf`] without a copy when there is nothing to change.
pub fn as_crlf(data: &[u8]) -> Cow<'_, [u8]> {
    if is_crlf(data) {
        return Cow::Borrowed(data);
    }
    let mut out = Vec::with_capacity(data.len() + data.len() / 40);
    let mut prev = 0u8;
    for &c in data {
        if c == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(c);
        prev = c;
    }
    Cow::Owned(out)
}

/// Every LF preceded by a CR. A branch-free pass over each byte and its predecessor,
/// which the compiler vectorises: a memchr call per line cost more on mail-sized text.
fn is_crlf(data: &[u8]) -> bool {
    if data.first() == Some(&b'\n') {
        return false;
    }
    let bare_lf = data[1.min(data.len())..]
        .iter()
        .zip(data)
        .fold(false, |bad, (&c, &prev)| {
            bad | ((c == b'\n') & (prev != b'\r'))
        });
    !bare_lf
}

/// A message split into what stays with the message (From, To, Subject, trace fields...)
/// and its content entity (the Content-* fields and the body).
pub struct MessageParts {
    /// Non-content header fields, as written, each ending in CRLF; MIME-Version dropped
    /// (the writer adds its own).
    pub outer: Vec<u8>,
    /// The content as a MIME entity: content fields, empty line, body.
    pub entity: Vec<u8>,
}

/// Separate a message's own header fields from its content entity.
pub fn message_parts(message: &[u8]) -> MessageParts {
    let s = split(message);
    let mut content = Vec::with_capacity(s.header.len() + s.body.len() + 64);
    for f in fields(s.header).into_iter().filter(|f| is_content_field(f)) {
        content.extend_from_slice(f);
    }
    if !content.ends_with(b"\n") && !content.is_empty() {
        content.extend_from_slice(b"\r\n");
    }
    if content.is_empty() {
        content.extend_from_slice(b"Content-Type: text/plain; charset=us-ascii\r\n");
    }
    let mut entity = content;
    entity.extend_from_slice(b"\r\n");
    entity.extend_from_slice(s.body);
    MessageParts {
        outer: outer_fields(message),
        entity: into_crlf(entity),
    }
}

/// [`MessageParts::outer`] alone, without copying the body.
pub fn outer_fields(message: &[u8]) -> Vec<u8> {
    let header = split(message).header;
    let mut outer = Vec::with_capacity(header.len());
    for f in fields(header) {
        if !is_content_field(f) && !is_field(f, "mime-version") {
            outer.extend_from_slice(f);
        }
    }
    if !outer.ends_with(b"\n") && !outer.is_empty() {
        outer.extend_from_slice(b"\r\n");
    }
    into_crlf(outer)
}

/// A message from its own header fields plus a content entity: `outer` + MIME-Version +
/// the entity's fields and body. `extra` fields (e.g. a result header) go first.
pub fn assemble(outer: &[u8], extra: &[String], entity: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(outer.len() + entity.len() + 128);
    for e in extra {
        out.extend_from_slice(e.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(outer);
    out.extend_from_slice(b"MIME-Version: 1.0\r\n");
    out.extend_from_slice(entity);
    out
}

/// `message` without the top-level header fields named `name` (case-insensitive);
/// `None` when it has none.
pub fn without_field(message: &[u8], name: &str) -> Option<Vec<u8>> {
    let s = split(message);
    let all = fields(s.header);
    if !all.iter().any(|f| is_field(f, name)) {
        return None;
    }
    let mut out = Vec::with_capacity(message.len());
    for f in all {
        if !is_field(f, name) {
            out.extend_from_slice(f);
        }
    }
    out.extend_from_slice(&message[s.header.len()..]);
    Some(out)
}

/// A boundary that does not occur in `content` (RFC 2046 §5.1.1 needs that).
pub fn boundary_for(content: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut n = 0u32;
    loop {
        let mut rnd = [0u8; 12];
        let _ = openssl::rand::rand_bytes(&mut rnd);
        let mut b = String::with_capacity(48);
        b.push_str("----=_smime_");
        for x in rnd {
            b.push(HEX[usize::from(x >> 4)] as char);
            b.push(HEX[usize::from(x & 15)] as char);
        }
        b.push('_');
        b.push_str(&n.to_string());
        if memchr::memmem::find(content, b.as_bytes()).is_none() {
            return b;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_ends_become_crlf_with_a_copy_only_when_one_changes() {
        assert_eq!(to_crlf(b"a\nb\r\nc\n"), b"a\r\nb\r\nc\r\n");
        assert_eq!(to_crlf(b"\n"), b"\r\n");
        assert!(matches!(as_crlf(b"a\r\nb\r\n"), Cow::Borrowed(_)));
        assert!(matches!(as_crlf(b"no line end"), Cow::Borrowed(_)));
        assert_eq!(into_crlf(b"x\ny".to_vec()), b"x\r\ny");
        let crlf = b"x\r\ny\r\n".to_vec();
        let at = crlf.as_ptr();
        let kept = into_crlf(crlf);
        assert_eq!(kept.as_ptr(), at, "kept, not copied");
    }

    #[test]
    fn multipart_signed_split_keeps_the_signed_bytes_exactly() {
        let body = b"preamble\r\n--b1\r\nContent-Type: text/plain\r\n\r\nhello\r\n\r\n--b1\r\nContent-Type: application/pkcs7-signature\r\n\r\nAAAA\r\n--b1--\r\n";
        let p = signed_parts(body, "b1").unwrap();
        assert_eq!(p.content, b"Content-Type: text/plain\r\n\r\nhello\r\n");
        assert_eq!(
            p.signature,
            b"Content-Type: application/pkcs7-signature\r\n\r\nAAAA"
        );
        assert!(signed_parts(b"--b1\r\nx\r\n", "b1").is_err());
        // a line that only starts with the delimiter is content, not a boundary
        let body = b"--b1\r\n\r\n--b1x is text\r\n--b1\r\n\r\nsig\r\n--b1--\r\n";
        assert_eq!(
            signed_parts(body, "b1").unwrap().content,
            b"\r\n--b1x is text"
        );
    }

    #[test]
    fn content_type_with_quoted_params_and_encoding() {
        let h = b"Content-Type: application/pkcs7-mime;\r\n\tsmime-type=\"enveloped-data\"; name=smime.p7m\r\nContent-Transfer-Encoding: Base64\r\n";
        let ct = content_type(h);
        assert_eq!(ct.mime_type, "application/pkcs7-mime");
        assert_eq!(ct.param("smime-type"), Some("enveloped-data"));
        assert_eq!(ct.transfer_encoding, "base64");
        assert_eq!(ct.file_name.as_deref(), Some("smime.p7m"));
        assert_eq!(content_type(b"Subject: x\r\n").mime_type, "text/plain");
    }

    #[test]
    fn message_parts_move_content_fields_only() {
        let m = b"From: a@b\r\nSubject: s\r\n t\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<p>x</p>\r\n";
        let p = message_parts(m);
        assert_eq!(p.outer, b"From: a@b\r\nSubject: s\r\n t\r\n");
        assert_eq!(
            p.entity,
            b"Content-Type: text/html\r\nContent-Transfer-Encoding: 8bit\r\n\r\n<p>x</p>\r\n"
        );
        let p = message_parts(b"From: a@b\n\nbody\n");
        assert_eq!(
            p.entity,
            b"Content-Type: text/plain; charset=us-ascii\r\n\r\nbody\r\n"
        );
        let whole = assemble(&p.outer, &["X-A: 1".into()], &p.entity);
        assert!(whole.starts_with(b"X-A: 1\r\nFrom: a@b\r\nMIME-Version: 1.0\r\nContent-Type"));
    }

    #[test]
    fn without_field_removes_only_that_top_level_field() {
        let m = b"X-Portcullis-SMIME: forged\r\nFrom: a@b\r\nx-portcullis-smime: again\r\n folded\r\n\r\nX-Portcullis-SMIME: body text\r\n";
        assert_eq!(
            without_field(m, "X-Portcullis-SMIME").unwrap(),
            b"From: a@b\r\n\r\nX-Portcullis-SMIME: body text\r\n"
        );
        assert!(without_field(b"From: a@b\r\n\r\nx\r\n", "X-Portcullis-SMIME").is_none());
    }

    #[test]
    fn base64_round_trip_in_76_column_lines() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let text = base64_lines(&data);
        assert!(text.lines().all(|l| l.len() <= 76));
        assert!(text.split("\r\n").count() > 10);
        assert_eq!(decode_body(text.as_bytes(), "base64").unwrap(), data);
        // Bare LF, trailing blanks, a tab and a space inside a line: all whitespace goes.
        let loose = text
            .replace("\r\n", " \n")
            .replacen('A', "\tA", 1)
            .replacen('B', "B ", 1);
        assert_eq!(decode_body(loose.as_bytes(), "base64").unwrap(), data);
        assert!(decode_body(b" \r\n\r\n", "base64").is_err());
        assert!(decode_body("Zm9v\u{e9}".as_bytes(), "base64").is_err());
        assert!(decode_body(b"!!!!", "base64").is_err());
        assert!(decode_body(b"x", "quoted-printable").is_err());
        // every length and padding, against OpenSSL's encoder
        for len in 1..70 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + len) as u8).collect();
            let text = openssl::base64::encode_block(&data);
            assert_eq!(
                decode_body(text.as_bytes(), "base64").unwrap(),
                data,
                "{len}"
            );
            let unpadded = text.trim_end_matches('=');
            assert_eq!(
                decode_body(unpadded.as_bytes(), "base64").unwrap(),
                data,
                "{len}"
            );
            let broken = format!("{}\r\n{}", &text[..text.len() / 2], &text[text.len() / 2..]);
            assert_eq!(
                decode_body(broken.as_bytes(), "base64").unwrap(),
                data,
                "{len}"
            );
        }
        // the encoder writes what OpenSSL writes, in 76-column lines
        for len in 0..200 {
            let data: Vec<u8> = (0..len).map(|i| (i * 91 + 7) as u8).collect();
            let lines = base64_lines(&data);
            assert_eq!(
                lines.replace("\r\n", ""),
                openssl::base64::encode_block(&data),
                "{len}"
            );
            assert!(lines.split("\r\n").all(|l| l.len() <= 76), "{len}");
            assert_eq!(lines.is_empty(), len == 0);
        }
        for bad in [&b"Zg=x"[..], b"Z===", b"Z", b"Zm9vZ", b"Zm=9v", b"===="] {
            assert!(decode_body(bad, "base64").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_simd_decoder_takes_client_shaped_bodies_and_agrees_with_the_careful_one() {
        let data: Vec<u8> = (0..5000u32).map(|i| (i * 131 % 251) as u8).collect();
        let crlf = base64_lines(&data);
        let lf = crlf.replace("\r\n", "\n");
        for shaped in [&crlf, &lf] {
            assert_eq!(decode_base64_lines_simd(shaped.as_bytes()).unwrap(), data);
        }
        // Every single-byte change and every cut of a short body: whenever the fast path
        // answers, it answers what the careful decoder answers.
        let short = base64_lines(&data[..100]);
        let mut answered = 0;
        for i in 0..short.len() {
            for b in [b' ', b'=', b'\n', b'\r', b'A', b'/', b'-', 0xe9] {
                let mut changed = short.clone().into_bytes();
                changed[i] = b;
                for body in [&changed[..], &changed[..i]] {
                    if let Some(fast) = decode_base64_lines_simd(body) {
                        answered += 1;
                        assert_eq!(Ok(fast), decode_base64_any(body), "{body:?}");
                    }
                }
            }
        }
        assert!(
            answered > 100,
            "the fast path should take most shapes: {answered}"
        );
    }
}
