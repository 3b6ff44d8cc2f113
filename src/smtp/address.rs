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
    if local.is_empty() || local.len() > 64 || local.bytes().any(|b| b < 0x20 || b == 0x7f) {
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
}
