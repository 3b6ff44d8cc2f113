//! The text of a body part: its transfer encoding and its charset, both ways.

use std::borrow::Cow;

use encoding_rs::Encoding;

/// A Content-Transfer-Encoding the actions can read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEncoding {
    SevenBit,
    EightBit,
    Binary,
    QuotedPrintable,
    Base64,
}

impl TransferEncoding {
    /// `None`: an encoding we do not know (the part is left as it is).
    pub fn parse(name: &str) -> Option<TransferEncoding> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "" | "7bit" => TransferEncoding::SevenBit,
            "8bit" => TransferEncoding::EightBit,
            "binary" => TransferEncoding::Binary,
            "quoted-printable" => TransferEncoding::QuotedPrintable,
            "base64" => TransferEncoding::Base64,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            TransferEncoding::SevenBit => "7bit",
            TransferEncoding::EightBit => "8bit",
            TransferEncoding::Binary => "binary",
            TransferEncoding::QuotedPrintable => "quoted-printable",
            TransferEncoding::Base64 => "base64",
        }
    }
}

/// The body's bytes under its transfer encoding.
pub fn decode(body: &[u8], encoding: TransferEncoding) -> Result<Vec<u8>, String> {
    match encoding {
        TransferEncoding::SevenBit | TransferEncoding::EightBit | TransferEncoding::Binary => {
            Ok(body.to_vec())
        }
        TransferEncoding::QuotedPrintable => {
            quoted_printable::decode(body, quoted_printable::ParseMode::Robust)
                .map_err(|e| format!("quoted-printable body: {e}"))
        }
        TransferEncoding::Base64 => {
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Vec::new());
            }
            crate::smime::mime::decode_body(body, "base64")
        }
    }
}

/// `data` in `encoding`, lines ending in CRLF. The body ends without a final line end:
/// the CRLF before a following delimiter belongs to the delimiter.
pub fn encode(data: &[u8], encoding: TransferEncoding) -> Vec<u8> {
    match encoding {
        TransferEncoding::SevenBit | TransferEncoding::EightBit | TransferEncoding::Binary => {
            data.to_vec()
        }
        TransferEncoding::QuotedPrintable => {
            let crlf = crate::smime::mime::as_crlf(data);
            quoted_printable::encode_with_options(
                &*crlf,
                quoted_printable::Options::default().input_mode(quoted_printable::InputMode::Text),
            )
            .into_bytes()
        }
        TransferEncoding::Base64 => {
            let mut out = Vec::new();
            crate::smime::mime::put_base64_lines(&mut out, data);
            if out.ends_with(b"\r\n") {
                out.truncate(out.len() - 2);
            }
            out
        }
    }
}

/// A part's charset as far as writing into it goes.
#[derive(Debug, Clone, Copy)]
pub enum Charset {
    /// us-ascii (also the RFC 2045 default when none is named).
    Ascii,
    /// iso-8859-1 taken strictly: one byte per code point up to U+00FF (encoding_rs reads
    /// the label as windows-1252, which would write `€` as 0x80, a control character to
    /// every reader that takes the label at its word).
    Latin1,
    Utf8,
    Other(&'static Encoding),
}

impl Charset {
    /// `None`: a charset we do not know.
    pub fn from_label(label: Option<&str>) -> Option<Charset> {
        let label = label.map(|l| l.trim().to_ascii_lowercase());
        Some(match label.as_deref() {
            None | Some("" | "us-ascii" | "ascii" | "us" | "ansi_x3.4-1968" | "iso646-us") => {
                Charset::Ascii
            }
            Some("iso-8859-1" | "iso8859-1" | "iso_8859-1" | "latin1" | "l1" | "latin-1") => {
                Charset::Latin1
            }
            Some("utf-8" | "utf8") => Charset::Utf8,
            Some(other) => match Encoding::for_label(other.as_bytes())? {
                e if e == encoding_rs::UTF_8 => Charset::Utf8,
                // Not ASCII-compatible: the markers searched for (`</body>`) and the bytes
                // appended would not be what they seem.
                e if e.output_encoding() != e => return None,
                e => Charset::Other(e),
            },
        })
    }

    /// `text` in this charset; `None` when a character has no encoding in it.
    pub fn encode(self, text: &str) -> Option<Vec<u8>> {
        match self {
            Charset::Ascii => text.is_ascii().then(|| text.as_bytes().to_vec()),
            Charset::Latin1 => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).ok())
                .collect(),
            Charset::Utf8 => Some(text.as_bytes().to_vec()),
            Charset::Other(e) => {
                let (bytes, _, unmappable) = e.encode(text);
                (!unmappable).then(|| bytes.into_owned())
            }
        }
    }

    /// `text` in this charset, characters it cannot hold as HTML character references.
    pub fn encode_html(self, text: &str) -> Vec<u8> {
        if let Some(bytes) = self.encode(text) {
            return bytes;
        }
        let mut out = Vec::with_capacity(text.len() + 16);
        let mut buf = [0u8; 4];
        for c in text.chars() {
            match self.encode(c.encode_utf8(&mut buf)) {
                Some(b) => out.extend_from_slice(&b),
                None => out.extend_from_slice(format!("&#{};", u32::from(c)).as_bytes()),
            }
        }
        out
    }

    /// The bytes as text (bytes that do not decode become U+FFFD).
    pub fn decode(self, bytes: &[u8]) -> Cow<'_, str> {
        match self {
            Charset::Ascii | Charset::Utf8 => String::from_utf8_lossy(bytes),
            Charset::Latin1 => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
            Charset::Other(e) => e.decode_without_bom_handling(bytes).0,
        }
    }
}

/// The line end a text uses: CRLF unless it has only bare LFs.
pub fn line_end_of(text: &[u8]) -> &'static str {
    if memchr::memmem::find(text, b"\r\n").is_none() && memchr::memchr(b'\n', text).is_some() {
        "\n"
    } else {
        "\r\n"
    }
}

/// Whether `needle` appears in `haystack` with every run of white space taken as one
/// space (a second pass through a client or server may re-wrap or re-indent).
pub fn contains_loosely(haystack: &str, needle: &str) -> bool {
    let squash = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let needle = squash(needle);
    !needle.is_empty() && squash(haystack).contains(&needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_encodings_round_trip() {
        let text = "Gr\u{fc}\u{df}e aus K\u{f6}ln = 100%\r\n".repeat(5);
        let latin1 = Charset::Latin1.encode(&text).unwrap();
        for te in [
            TransferEncoding::QuotedPrintable,
            TransferEncoding::Base64,
            TransferEncoding::EightBit,
        ] {
            let encoded = encode(&latin1, te);
            assert_eq!(decode(&encoded, te).unwrap(), latin1, "{te:?}");
            if te != TransferEncoding::EightBit {
                assert!(encoded.is_ascii());
                assert!(
                    encoded.split(|&b| b == b'\n').all(|l| l.len() <= 77),
                    "{te:?}"
                );
            }
        }
        assert_eq!(
            encode(b"caf\xe9\r\n", TransferEncoding::QuotedPrintable),
            b"caf=E9\r\n"
        );
    }

    #[test]
    fn charsets_hold_what_they_can() {
        assert!(Charset::Ascii.encode("caf\u{e9}").is_none());
        assert_eq!(Charset::Latin1.encode("caf\u{e9}").unwrap(), b"caf\xe9");
        assert!(Charset::Latin1.encode("5 \u{20ac}").is_none());
        let cp1252 = Charset::from_label(Some("windows-1252")).unwrap();
        assert_eq!(cp1252.encode("5 \u{20ac}").unwrap(), b"5 \x80");
        assert_eq!(Charset::Ascii.encode_html("5 \u{20ac}"), b"5 &#8364;");
        assert!(Charset::from_label(Some("utf-16")).is_none());
        assert!(Charset::from_label(Some("x-no-such")).is_none());
        assert!(matches!(Charset::from_label(None), Some(Charset::Ascii)));
        assert_eq!(Charset::Latin1.decode(b"\xe9"), "\u{e9}");
    }

    #[test]
    fn loose_containment_ignores_rewrapping() {
        assert!(contains_loosely(
            "hello\r\n\r\nThis message is\r\n  confidential.\r\n",
            "This message is confidential."
        ));
        assert!(!contains_loosely("hello", "This message"));
        assert!(!contains_loosely("hello", "  "));
    }
}
