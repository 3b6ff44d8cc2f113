//! Text from a held message made safe to show: control characters and the characters that
//! reorder or hide text (bidi overrides and isolates, zero-width marks) become a visible
//! `\u{…}`, so a subject cannot spoof its direction or smuggle a terminal escape into an
//! operator's console.

/// Whether `c` must be shown escaped. Line feeds and tabs are kept in multi-line text.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'                    // Arabic letter mark
            | '\u{200B}'..='\u{200F}'     // zero-width space/joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}'     // line and paragraph separators
            | '\u{202A}'..='\u{202E}'     // bidi embeddings and overrides
            | '\u{2060}'..='\u{2069}'     // word joiner, invisible operators, bidi isolates
            | '\u{FEFF}'                  // zero-width no-break space
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
        )
}

fn push_escaped(out: &mut String, c: char) {
    out.push_str(&format!("\\u{{{:x}}}", c as u32));
}

/// One line of text: every hidden character escaped, at most `max_chars` characters kept
/// (an ellipsis marks a cut).
pub fn line(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars * 2));
    for (n, c) in s.chars().enumerate() {
        if n == max_chars {
            out.push('…');
            break;
        }
        if hidden(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    out
}

/// Multi-line text: line feeds and tabs kept (CRLF becomes LF), everything else hidden
/// escaped.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' | '\t' => out.push(c),
            c if hidden(c) => push_escaped(&mut out, c),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_visible() {
        assert_eq!(line("a\u{202E}b\x1b[31m", 100), "a\\u{202e}b\\u{1b}[31m");
        assert_eq!(line("x\u{2066}y\u{200B}", 100), "x\\u{2066}y\\u{200b}");
        assert_eq!(line("abcdef", 3), "abc…");
        assert_eq!(text("one\r\ntwo\tthree\x07\n"), "one\ntwo\tthree\\u{7}\n");
        assert_eq!(line("tab\there", 100), "tab\\u{9}here");
        assert_eq!(line("Grüße 日本", 100), "Grüße 日本");
    }
}
