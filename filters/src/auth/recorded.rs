//! Recorded authentication results, for offline evaluation only (`portcullis eval
//! --auth-results ID`): a corpus exported from a mail server carries that server's
//! `Authentication-Results` field, and its SPF, DKIM, ARC and DMARC results stand in for the
//! live checks, whose DNS answers are long gone for old mail. Never used by the running
//! gateway: there a sender could write such a field (which is why the gateway removes
//! fields claiming its own authserv-id).
//!
//! The topmost field naming the given authserv-id is read (the last server to add one);
//! each method's result becomes the live stage's symbol. A recorded DMARC failure carries
//! no policy, so it is `DMARC_POLICY_NONE` and forces nothing.

use crate::result_fields::header_fields;
use crate::{Facts, Findings, FindingsFuture, MessageContext, Stage, StageFuture, Symbol};

/// Longest field value read (a real one is a few hundred bytes).
const MAX_FIELD_BYTES: usize = 8 * 1024;

pub struct RecordedAuth {
    /// Whose results to believe: the authserv-id of the server that recorded them.
    pub authserv_id: String,
}

impl Stage for RecordedAuth {
    fn name(&self) -> &'static str {
        "auth"
    }

    fn check<'a>(&'a self, ctx: &'a MessageContext<'a>) -> StageFuture<'a> {
        Box::pin(async move { Ok(self.check_with_headers(ctx).await?.symbols) })
    }

    fn check_with_headers<'a>(&'a self, ctx: &'a MessageContext<'a>) -> FindingsFuture<'a> {
        Box::pin(async move {
            let (symbols, authenticated_domain) = recorded(ctx.wire, &self.authserv_id);
            Ok(Findings {
                symbols,
                facts: Facts {
                    authenticated_domain,
                    ..Facts::default()
                },
                ..Findings::default()
            })
        })
    }
}

/// The symbols of the recorded results, and the From domain when DMARC passed.
pub fn recorded(raw: &[u8], authserv_id: &str) -> (Vec<Symbol>, Option<String>) {
    let Some(value) = header_fields(raw)
        .map(|(s, e)| &raw[s..e])
        .find(|f| super::claims_authserv_id(f, authserv_id))
        .and_then(|f| f.iter().position(|&b| b == b':').map(|c| &f[c + 1..]))
    else {
        return (Vec::new(), None);
    };
    let value = String::from_utf8_lossy(&value[..value.len().min(MAX_FIELD_BYTES)]);
    let value = without_comments(&value);
    let mut found = Vec::new();
    let mut dkim = Vec::new();
    let mut authenticated = None;
    // The first element is the authserv-id (and version); then one method result each.
    for resinfo in value.split(';').skip(1) {
        let mut words = resinfo.split_whitespace();
        let Some((method, result)) = words.next().and_then(|w| w.split_once('=')) else {
            continue;
        };
        let props: Vec<(&str, &str)> = words.filter_map(|w| w.split_once('=')).collect();
        let prop = |name: &str| {
            props
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let result = result.to_ascii_lowercase();
        match method.to_ascii_lowercase().as_str() {
            "spf" => {
                let name = match result.as_str() {
                    "pass" => "SPF_PASS",
                    "fail" => "SPF_FAIL",
                    "softfail" => "SPF_SOFTFAIL",
                    "neutral" => "SPF_NEUTRAL",
                    "none" => "SPF_NONE",
                    "permerror" => "SPF_PERMERROR",
                    "temperror" => "SPF_TEMPERROR",
                    _ => continue,
                };
                let who = prop("smtp.mailfrom").or_else(|| prop("smtp.helo"));
                found.push(Symbol::new(name, who.unwrap_or_default()));
            }
            "dkim" => dkim.push((result, prop("header.d").or_else(|| prop("header.i")))),
            "arc" => {
                let name = match result.as_str() {
                    "pass" => "ARC_PASS",
                    "none" => "ARC_NONE",
                    "temperror" => "ARC_TEMPERROR",
                    _ => "ARC_FAIL",
                };
                found.push(Symbol::new(name, "recorded"));
            }
            "dmarc" => {
                let from = prop("header.from").unwrap_or_default();
                let name = match result.as_str() {
                    "pass" => {
                        authenticated = (!from.is_empty()).then(|| from.clone());
                        "DMARC_PASS"
                    }
                    "fail" => "DMARC_POLICY_NONE",
                    "none" => "DMARC_NONE",
                    "permerror" => "DMARC_PERMERROR",
                    _ => continue,
                };
                found.push(Symbol::new(name, from));
            }
            _ => {}
        }
    }
    let of = |r: &str| -> Vec<String> {
        dkim.iter()
            .filter(|(res, _)| res == r)
            .map(|(_, d)| d.clone().unwrap_or_default())
            .collect()
    };
    for (result, name) in [
        ("pass", "DKIM_PASS"),
        ("fail", "DKIM_FAIL"),
        ("permerror", "DKIM_PERMERROR"),
    ] {
        let domains = of(result);
        if !domains.is_empty() {
            found.push(Symbol::new(name, domains.join(", ")));
        }
    }
    if dkim.iter().all(|(r, _)| r == "none") && !dkim.is_empty() {
        found.push(Symbol::new("DKIM_NONE", ""));
    }
    (found, authenticated)
}

/// The text with (nested) comments removed (RFC 5322 CFWS).
fn without_comments(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut depth = 0usize;
    let mut escaped = false;
    for c in s.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if depth > 0 => escaped = true,
            '(' => depth += 1,
            ')' if depth > 0 => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(raw: &str, id: &str) -> (Vec<&'static str>, Option<String>) {
        let (s, d) = recorded(raw.as_bytes(), id);
        (s.into_iter().map(|s| s.name).collect(), d)
    }

    #[test]
    fn the_topmost_field_of_the_named_server_becomes_symbols() {
        let raw = "Authentication-Results: mx.example.org (Postfix);\r\n\
\tspf=pass (sender SPF authorized) smtp.mailfrom=news@shop.example;\r\n\
\tdkim=pass header.d=shop.example header.s=s1; dkim=fail header.d=other.example;\r\n\
\tarc=none; dmarc=pass (p=reject) header.from=shop.example\r\n\
Authentication-Results: mx.example.org; spf=fail smtp.mailfrom=x@y.example\r\n\
Authentication-Results: forged.example; dmarc=pass header.from=bank.example\r\n\
Subject: s\r\n\r\nbody\r\n";
        let (s, domain) = names(raw, "mx.example.org");
        assert_eq!(
            s,
            [
                "SPF_PASS",
                "ARC_NONE",
                "DMARC_PASS",
                "DKIM_PASS",
                "DKIM_FAIL"
            ]
        );
        assert_eq!(domain.as_deref(), Some("shop.example"));
        // Another server's field is not read; no field, no symbols.
        let (s, domain) = names(raw, "forged.example");
        assert_eq!(
            (s, domain.as_deref()),
            (vec!["DMARC_PASS"], Some("bank.example"))
        );
        assert_eq!(names(raw, "nobody.example"), (vec![], None));
    }

    #[test]
    fn a_recorded_dmarc_failure_forces_nothing() {
        let raw = "Authentication-Results: mx.example.org; dkim=none; dmarc=fail header.from=bank.example\r\n\r\nx";
        let (s, d) = recorded(raw.as_bytes(), "mx.example.org");
        let n: Vec<&str> = s.iter().map(|s| s.name).collect();
        assert_eq!(n, ["DMARC_POLICY_NONE", "DKIM_NONE"]);
        assert!(s.iter().all(|s| s.forced_action.is_none()));
        assert_eq!(d, None);
    }
}
