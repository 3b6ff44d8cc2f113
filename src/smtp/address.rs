//! Relay control: which recipients this gateway accepts, from whom.
//!
//! SECURITY: this module decides whether the gateway is an open relay. A recipient is
//! accepted when its domain is one of `local_domains` (inbound), or when the client is in
//! `internal_networks` (outbound). Everything else is refused with 550 5.7.1, including
//! addresses that hide another destination: source routes (`<@a:u@b>`), the %-hack
//! (`u%other@local`), bang paths (`other!u@local`) and quoted local parts that carry those.

use crate::config::Config;

/// Where an accepted recipient goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// One of our domains: to the internal mail server.
    Internal,
    /// Anywhere else: out by MX or smarthost. Only for internal clients.
    External,
}

/// Why a recipient was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not parseable as local@domain.
    Syntax,
    /// Source route or routing characters in the local part.
    HiddenRoute,
    /// Not ours, and the client may not send outbound.
    RelayDenied,
}

/// An accepted recipient: the address as we deliver it (domain lowercased, no trailing dot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub address: String,
    pub route: Route,
}

/// Classify a RCPT TO address. `raw_path` is the text between `TO:` and the end of the
/// command, as the client sent it (to see source routes the parser strips).
pub fn classify_recipient(
    config: &Config,
    client_is_internal: bool,
    address: &str,
    raw_path: &str,
) -> Result<Accepted, Refusal> {
    // The parser skips white space inside <...>, so "< @a:u@b>" must count as a route too.
    let inner = raw_path.trim_start();
    let inner = inner.strip_prefix('<').unwrap_or(inner);
    if inner.trim_start_matches([' ', '\t', '\r']).starts_with('@') {
        return Err(Refusal::HiddenRoute);
    }
    let (local, domain) = if address.is_empty() {
        // The parser turns <postmaster> (RFC 5321 §4.5.1: must be accepted) into "".
        if raw_path
            .trim()
            .trim_start_matches('<')
            .trim_end_matches('>')
            .eq_ignore_ascii_case("postmaster")
        {
            let domain = config.local_domains.first().ok_or(Refusal::RelayDenied)?;
            (
                "postmaster".to_string(),
                domain.trim_start_matches('.').to_string(),
            )
        } else {
            return Err(Refusal::Syntax);
        }
    } else {
        let (local, domain) = address.rsplit_once('@').ok_or(Refusal::Syntax)?;
        (local.to_string(), normalize_domain(domain)?)
    };
    if local.is_empty() || local.len() > 64 || has_control(&local) {
        return Err(Refusal::Syntax);
    }
    let is_local = !domain.starts_with('[') && config.is_local_domain(&domain);
    if is_local {
        if local.contains(['@', '%', '!']) {
            return Err(Refusal::HiddenRoute);
        }
        return Ok(Accepted {
            address: format!("{local}@{domain}"),
            route: Route::Internal,
        });
    }
    if client_is_internal {
        return Ok(Accepted {
            address: format!("{local}@{domain}"),
            route: Route::External,
        });
    }
    Err(Refusal::RelayDenied)
}

/// Lowercase a domain, drop one trailing dot, and check its shape: letters, digits,
/// hyphens and dots in non-empty labels, or an address literal in brackets.
fn normalize_domain(domain: &str) -> Result<String, Refusal> {
    let d = domain
        .strip_suffix('.')
        .unwrap_or(domain)
        .to_ascii_lowercase();
    if d.starts_with('[') {
        return if d.ends_with(']') && d.len() > 2 {
            Ok(d)
        } else {
            Err(Refusal::Syntax)
        };
    }
    let ok = !d.is_empty()
        && d.len() <= 255
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
        });
    if ok { Ok(d) } else { Err(Refusal::Syntax) }
}

/// True when an address holds a control character (C0, including NUL, CR and LF, or DEL):
/// such a byte has no place in a mailbox, and written into a command to the next hop it
/// could end or extend that command.
pub fn has_control(address: &str) -> bool {
    address.bytes().any(|b| b < 0x20 || b == 0x7f)
}

/// True when the path of a MAIL or RCPT command line, from its first `<` to its last `>`,
/// holds a control character. The parser drops some of them (a CR inside a quoted local
/// part), so the address it returns is not enough to tell.
pub fn path_has_control(line: &[u8]) -> bool {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(start) = line.iter().position(|&b| b == b'<') else {
        return false;
    };
    let end = line.iter().rposition(|&b| b == b'>').unwrap_or(line.len());
    line.get(start..end)
        .is_some_and(|path| path.iter().any(|&b| b < 0x20 || b == 0x7f))
}

/// The address as it is written in a `MAIL FROM:<...>` or `RCPT TO:<...>` path (RFC 5321
/// §4.1.2). The parser hands us the local part unquoted, so a local part that is not a
/// dot-atom is quoted again, with `"` and `\` escaped; otherwise a quoted local part such
/// as `"a> NOTIFY=SUCCESS"` would reach the next hop as command parameters.
/// `None` when the address holds a control character: it cannot be written safely.
pub fn smtp_path(address: &str) -> Option<String> {
    if has_control(address) {
        return None;
    }
    let Some((local, domain)) = address.rsplit_once('@') else {
        // The null sender, or a bare `postmaster`.
        return Some(if address.is_empty() || is_dot_atom(address) {
            address.to_string()
        } else {
            quoted(address)
        });
    };
    if is_dot_atom(local) {
        return Some(address.to_string());
    }
    Some(format!("{}@{domain}", quoted(local)))
}

/// RFC 5321 Dot-string: atoms of atext (plus UTF-8 under SMTPUTF8) joined by single dots.
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|atom| {
            !atom.is_empty()
                && atom.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
                })
        })
}

/// RFC 5321 Quoted-string: `"` and `\` as quoted pairs, everything else as it is.
fn quoted(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            q.push('\\');
        }
        q.push(c);
    }
    q.push('"');
    q
}

/// Domain part of an address, lowercased ("" for the null sender).
pub use filters::domain_of;

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> Config {
        Config::parse("local_domains = [\"example.test\"]\ninternal_networks = [\"10.0.0.0/8\"]")
            .unwrap()
    }

    #[test]
    fn local_recipient_is_inbound_from_anyone() {
        let a = classify_recipient(&cfg(), false, "User@Example.TEST.", "<User@Example.TEST.>")
            .unwrap();
        assert_eq!(a.address, "User@example.test");
        assert_eq!(a.route, Route::Internal);
    }

    #[test]
    fn remote_recipient_only_for_internal_clients() {
        assert_eq!(
            classify_recipient(&cfg(), false, "u@other.test", "<u@other.test>"),
            Err(Refusal::RelayDenied)
        );
        assert_eq!(
            classify_recipient(&cfg(), true, "u@other.test", "<u@other.test>")
                .unwrap()
                .route,
            Route::External
        );
    }

    #[test]
    fn hidden_routes_are_refused() {
        let c = cfg();
        for (addr, raw) in [
            ("u%other.test@example.test", "<u%other.test@example.test>"),
            ("other.test!u@example.test", "<other.test!u@example.test>"),
            (
                "u@other.test@example.test",
                "<\"u@other.test\"@example.test>",
            ),
            ("u@example.test", "<@example.test:u@example.test>"),
            ("u@other.test", "<@example.test,@x.test:u@other.test>"),
            ("u@example.test", "< @evil.test:u@example.test>"),
            ("u@example.test", "<\r@evil.test:u@example.test>"),
        ] {
            assert_eq!(
                classify_recipient(&c, false, addr, raw),
                Err(Refusal::HiddenRoute),
                "{raw}"
            );
        }
    }

    #[test]
    fn look_alike_and_literal_domains_are_not_local() {
        let c = cfg();
        for addr in [
            "u@example.test.evil",
            "u@evilexample.test",
            "u@[127.0.0.1]",
            "u@sub.example.test",
        ] {
            assert_eq!(
                classify_recipient(&c, false, addr, &format!("<{addr}>")),
                Err(Refusal::RelayDenied),
                "{addr}"
            );
        }
    }

    #[test]
    fn postmaster_without_domain_is_local() {
        let a = classify_recipient(&cfg(), false, "", "<postmaster>").unwrap();
        assert_eq!(a.address, "postmaster@example.test");
        assert_eq!(
            classify_recipient(&cfg(), false, "", "<>"),
            Err(Refusal::Syntax)
        );
    }

    #[test]
    fn malformed_domains_are_syntax_errors() {
        for addr in ["u@", "u@a..b", "u@-a.test", "u@a_b.test"] {
            assert_eq!(
                classify_recipient(&cfg(), true, addr, &format!("<{addr}>")),
                Err(Refusal::Syntax),
                "{addr}"
            );
        }
    }

    #[test]
    fn local_parts_that_are_not_dot_atoms_are_quoted_again() {
        for (addr, path) in [
            ("a.b@x.test", "a.b@x.test"),
            ("a+tag@x.test", "a+tag@x.test"),
            ("", ""),
            ("ceo> ENVID=x@evil.test", r#""ceo> ENVID=x"@evil.test"#),
            (
                "root> NOTIFY=SUCCESS@x.test",
                r#""root> NOTIFY=SUCCESS"@x.test"#,
            ),
            ("a..b@x.test", r#""a..b"@x.test"#),
            (".a@x.test", r#"".a"@x.test"#),
            (r#"say "hi"\@x.test"#, r#""say \"hi\"\\"@x.test"#),
            ("u@v@x.test", r#""u@v"@x.test"#),
            ("jörg@x.test", "jörg@x.test"),
        ] {
            assert_eq!(smtp_path(addr).as_deref(), Some(path), "{addr:?}");
        }
    }

    #[test]
    fn addresses_with_control_characters_cannot_be_written() {
        for addr in [
            "a\0b@x.test",
            "a\rb@x.test",
            "a\nb@x.test",
            "a\x7fb@x.test",
            "a\tb@x.test",
        ] {
            assert!(has_control(addr), "{addr:?}");
            assert_eq!(smtp_path(addr), None, "{addr:?}");
        }
        assert!(!has_control("a b@x.test"));
        assert!(path_has_control(b"MAIL FROM:<\"a\rb\"@x.test>\r\n"));
        assert!(!path_has_control(b"MAIL FROM:<a@x.test> SIZE=10\r\n"));
        assert!(!path_has_control(b"RCPT TO:<a@x.test>\n"));
    }
}
