//! Text from mail (subjects, names, previews, certificate subjects) made inert before it
//! reaches the terminal: every control character (C0, DEL, C1 — ESC among them, so no escape
//! sequence survives) and every character that reorders or hides text (bidi embeddings,
//! overrides and isolates, directional marks, zero-width characters, line and paragraph
//! separators) becomes a visible `\u{…}`.
//!
//! The form matches the gateway's own escaping, and escaping is idempotent: escaped text holds
//! only printable ASCII where the escapes are, so text the gateway already escaped is shown
//! as it came.

use std::fmt::Write;

use serde::{Deserialize, Deserializer};

/// Whether `c` must be shown escaped (line feeds and tabs included: see [`text`]).
pub fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'                    // Arabic letter mark
            | '\u{200B}'..='\u{200F}'     // zero-width space and joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}'     // line and paragraph separators
            | '\u{202A}'..='\u{202E}'     // bidi embeddings and overrides
            | '\u{2060}'..='\u{2069}'     // word joiner, invisible operators, bidi isolates
            | '\u{FEFF}'                  // zero-width no-break space
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
        )
}

fn push_escaped(out: &mut String, c: char) {
    let _ = write!(out, "\\u{{{:x}}}", c as u32);
}

/// One line: every hidden character escaped, line feeds and tabs too.
pub fn line(s: &str) -> String {
    if !s.chars().any(hidden) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if hidden(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// Multi-line text (a preview): line feeds kept, CRLF made LF, tabs made spaces (a tab's
/// width depends on the terminal), everything else hidden escaped.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => out.push('\n'),
            '\t' => out.push_str("    "),
            c if hidden(c) => push_escaped(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

/// A string from the API that is shown to the operator: sanitized ([`line`]) as it is read,
/// so no screen can print it raw.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Safe(String);

impl Safe {
    pub fn new(s: &str) -> Safe {
        Safe(line(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Deref for Safe {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Safe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Safe {
    fn from(s: &str) -> Safe {
        Safe::new(s)
    }
}

impl<'de> Deserialize<'de> for Safe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Safe, D::Error> {
        // `null` reads as empty: the server's optional strings are shown as nothing.
        let s: Option<String> = Option::deserialize(d)?;
        Ok(Safe::new(s.as_deref().unwrap_or("")))
    }
}

/// Multi-line text from the API (a preview body): sanitized with [`text`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SafeText(String);

impl SafeText {
    pub fn new(s: &str) -> SafeText {
        SafeText(text(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SafeText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SafeText, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        Ok(SafeText::new(s.as_deref().unwrap_or("")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_escape_sequences_become_inert() {
        assert_eq!(line("\x1b[31mred\x1b[0m"), "\\u{1b}[31mred\\u{1b}[0m");
        // An OSC title change and a hyperlink lose their introducer and terminator.
        assert_eq!(line("\x1b]0;owned\x07"), "\\u{1b}]0;owned\\u{7}");
        assert!(!line("\x1b]8;;http://x\x1b\\link").contains('\x1b'));
    }

    #[test]
    fn bidi_overrides_and_invisible_characters_are_shown() {
        assert_eq!(line("invoice\u{202E}fdp.exe"), "invoice\\u{202e}fdp.exe");
        assert_eq!(
            line("a\u{2066}b\u{2069}c\u{200B}d\u{FEFF}"),
            "a\\u{2066}b\\u{2069}c\\u{200b}d\\u{feff}"
        );
        assert_eq!(line("x\u{200F}y\u{061C}"), "x\\u{200f}y\\u{61c}");
        assert_eq!(line("p\u{2028}q"), "p\\u{2028}q");
    }

    #[test]
    fn c0_and_c1_controls_are_escaped() {
        assert_eq!(line("a\0b\x08c\x7fd"), "a\\u{0}b\\u{8}c\\u{7f}d");
        // C1: CSI (U+009B) is a one-character escape introducer on some terminals.
        assert_eq!(line("\u{9b}31m\u{85}"), "\\u{9b}31m\\u{85}");
        assert_eq!(line("two\nlines\tand tab"), "two\\u{a}lines\\u{9}and tab");
    }

    #[test]
    fn ordinary_text_is_untouched_and_escaping_is_idempotent() {
        assert_eq!(line("Grüße 日本 — ok"), "Grüße 日本 — ok");
        let once = line("\x1b[2J\u{202E}");
        assert_eq!(line(&once), once);
    }

    #[test]
    fn multi_line_text_keeps_lines_only() {
        assert_eq!(
            text("one\r\ntwo\tthree\x1b[1m\n"),
            "one\ntwo    three\\u{1b}[1m\n"
        );
        assert_eq!(text("a\rb"), "a\\u{d}b");
    }

    #[test]
    fn safe_strings_are_sanitized_when_read() {
        let s: Safe = serde_json::from_str("\"hi\\u001b[31m\"").unwrap();
        assert_eq!(s.as_str(), "hi\\u{1b}[31m");
        let n: Safe = serde_json::from_str("null").unwrap();
        assert!(n.is_empty());
        let t: SafeText = serde_json::from_str("\"l1\\r\\nl2\\u202e\"").unwrap();
        assert_eq!(t.as_str(), "l1\nl2\\u{202e}");
    }
}
