//! Sender authentication: SPF, DKIM, DMARC and ARC (with mail-auth) → symbols and one
//! `Authentication-Results:` header.
//!
//! Runs on inbound mail only (outbound mail is ours). For each message:
//! - **SPF** (RFC 7208) for the MAIL FROM identity, or the HELO identity when MAIL FROM is
//!   the null sender;
//! - **DKIM** (RFC 6376): every `DKIM-Signature` is verified;
//! - **ARC** (RFC 8617): the chain of `ARC-Seal`/`ARC-Message-Signature` sets;
//! - **DMARC** (RFC 7489): alignment of the SPF and DKIM results with the From domain, and
//!   the domain's policy. A failure under `p=reject` / `p=quarantine` carries the
//!   configured forced action (reject / quarantine by default, see [`AuthStage`]);
//! - one `Authentication-Results:` field (RFC 8601) with our host name as authserv-id,
//!   returned through [`Stage::check_with_headers`]. Forged fields claiming our authserv-id
//!   are removed by the gateway (`crate::result_fields::strip_forged_verdicts`).
//!
//! ## What is a stage failure and what is a symbol
//! - **DNS trouble** (timeout, SERVFAIL, unreachable server: mail-auth's `TempError`) in SPF,
//!   in any DKIM signature, in DMARC or in ARC is a *stage failure* (`Err(StageError)`), so
//!   the stage's fail mode applies: `451` by default, `STAGE_FAILED_OPEN` with
//!   `fail_mode = "open"`. Why: an undetermined result is neither pass nor fail; scoring it
//!   as nothing would be a silent pass — a `p=reject` domain whose DNS is slow (or made
//!   slow) would be delivered. The sending server retries, and the next try usually gets an
//!   answer (or a cached one).
//! - **Except when DMARC passed anyway**: then the From domain is authenticated and the
//!   undetermined check could only move a few points, so it becomes a `*_TEMPERROR` symbol
//!   (0 points, shown in Authentication-Results). Otherwise one extra signature from a
//!   domain with dead name servers (a permanent SERVFAIL) would defer authenticated mail
//!   until it bounces.
//! - **Everything the DNS answered** is a *symbol*, including broken records (`PERMERROR`:
//!   the domain owner's mistake, the same on every retry, so retrying would only delay the
//!   mail), `NONE` (no record / no signature) and every failure.
//! - The whole stage also runs under a deadline (`timeout`); hitting it is a stage failure.
//!
//! SECURITY: reads untrusted header fields of the message and untrusted DNS answers; both are
//! parsed by mail-auth. Header values we write (domains, selectors) are sanitized by
//! mail-auth's Authentication-Results writer. STANDARDS: RFC 7208, 6376, 7489, 8617, 8601.

mod bounds;
mod cache;
pub mod recorded;

pub use bounds::AuthLimits;
pub use cache::TtlCache;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    AuthenticatedMessage, AuthenticationResults, DkimResult, DmarcResult, MX, MessageAuthenticator,
    Parameters, RecordSet, SpfOutput, SpfResult, Txt,
};

use crate::{
    Action, Direction, Findings, FindingsFuture, MessageContext, Stage, StageError, StageFuture,
    Symbol,
};

/// Shortest time a negative DNS answer (NXDOMAIN / no record) is cached.
const NEGATIVE_MIN_TTL: Duration = Duration::from_secs(30);

/// The DNS side of authentication, built once and shared by all sessions: the resolver and
/// a bounded cache per record type, consulted by mail-auth before it asks the resolver.
/// The caches keep parsed records until their DNS TTL ends.
pub struct AuthDns {
    authenticator: MessageAuthenticator,
    txt: TtlCache<Box<str>, Txt>,
    mx: TtlCache<Box<str>, RecordSet<MX>>,
    ipv4: TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    ipv6: TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    ptr: TtlCache<IpAddr, RecordSet<Box<str>>>,
}

type CachedParameters<'x, P> = Parameters<
    'x,
    P,
    TtlCache<Box<str>, Txt>,
    TtlCache<Box<str>, RecordSet<MX>>,
    TtlCache<Box<str>, RecordSet<Ipv4Addr>>,
    TtlCache<Box<str>, RecordSet<Ipv6Addr>>,
    TtlCache<IpAddr, RecordSet<Box<str>>>,
>;

impl AuthDns {
    /// A resolver asking `servers` (`ip:port`), else the system's (`/etc/resolv.conf`).
    /// `timeout` is per query attempt (two attempts per server); `cache_entries` bounds each
    /// of the five record caches.
    pub fn new(
        servers: &[SocketAddr],
        timeout: Duration,
        cache_entries: usize,
    ) -> Result<AuthDns, String> {
        let mut builder = crate::dns::resolver_builder(servers)?;
        let opts = builder.options_mut();
        opts.timeout = timeout;
        opts.attempts = 2;
        // mail-auth caches only records it found; "no such record" (the DMARC tree walk asks
        // `_dmarc.<parent>` for every message) is left to hickory's cache, which keeps a
        // negative answer for its SOA TTL — and not at all when the server sends no SOA.
        // A short floor keeps those lookups off the wire under load.
        opts.negative_min_ttl = Some(NEGATIVE_MIN_TTL);
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        Ok(AuthDns {
            authenticator: MessageAuthenticator(resolver),
            txt: TtlCache::new(cache_entries),
            mx: TtlCache::new(cache_entries),
            ipv4: TtlCache::new(cache_entries),
            ipv6: TtlCache::new(cache_entries),
            ptr: TtlCache::new(cache_entries),
        })
    }

    /// The forward-confirmed reverse DNS name of `ip` (a PTR name whose A/AAAA records
    /// include `ip`), lowercase without the final dot; `None` when there is none or DNS
    /// fails (a missing name is no evidence of anything, so errors are not reported).
    pub async fn confirmed_reverse_name(&self, ip: IpAddr) -> Option<String> {
        let names = self
            .authenticator
            .ptr_lookup(ip, Some(&self.ptr))
            .await
            .ok()?;
        for name in names.rrset.iter().take(3) {
            let addrs = self
                .authenticator
                .ip_lookup(
                    name,
                    mail_auth::IpLookupStrategy::Ipv4thenIpv6,
                    10,
                    Some(&self.ipv4),
                    Some(&self.ipv6),
                )
                .await
                .unwrap_or_default();
            if addrs.contains(&ip) {
                return Some(name.trim_end_matches('.').to_ascii_lowercase());
            }
        }
        None
    }

    /// mail-auth parameters with all our caches attached.
    fn params<P>(&self, p: P) -> CachedParameters<'_, P> {
        Parameters::new(p)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.ipv4)
            .with_ipv6_cache(&self.ipv6)
            .with_ptr_cache(&self.ptr)
    }

    /// (entries, hits, misses) of the TXT cache, where SPF, DKIM keys and DMARC live.
    pub fn txt_cache_stats(&self) -> (usize, u64, u64) {
        self.txt.stats()
    }
}

/// The authentication stage. See the module doc for what it checks and how it fails.
pub struct AuthStage {
    pub dns: Arc<AuthDns>,
    /// Our host name: the authserv-id of our Authentication-Results, and SPF's receiver.
    pub hostname: String,
    /// Forced action for a DMARC failure under `p=reject`; `None`: points only.
    pub dmarc_reject_action: Option<Action>,
    /// Forced action for a DMARC failure under `p=quarantine`; `None`: points only.
    pub dmarc_quarantine_action: Option<Action>,
    /// Deadline for all lookups of one message.
    pub timeout: Duration,
    /// Caps on the DKIM and ARC work a message may ask for.
    pub limits: AuthLimits,
}

impl Stage for AuthStage {
    fn name(&self) -> &'static str {
        "auth"
    }

    fn check<'a>(&'a self, ctx: &'a MessageContext<'a>) -> StageFuture<'a> {
        Box::pin(async move { Ok(self.check_with_headers(ctx).await?.symbols) })
    }

    fn check_with_headers<'a>(&'a self, ctx: &'a MessageContext<'a>) -> FindingsFuture<'a> {
        Box::pin(async move {
            if ctx.envelope.direction != Direction::Inbound {
                return Ok(Findings::default());
            }
            let work = tokio::time::timeout(self.timeout, self.authenticate(ctx));
            // Hashing header fields for DKIM and ARC is CPU work a timer cannot interrupt;
            // even within the caps it should not hold a reactor thread that other sessions'
            // I/O needs. `block_in_place` hands this thread's other tasks to a fresh worker
            // while the check runs here (only possible on the multi-threaded runtime the
            // gateway runs; a single-threaded test runtime just awaits).
            let on_many_threads = tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
            let outcome = if on_many_threads {
                tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(work))
            } else {
                work.await
            };
            match outcome {
                Ok(r) => r,
                Err(_) => Err(StageError(format!(
                    "authentication lookups took longer than {} ms",
                    self.timeout.as_millis()
                ))),
            }
        })
    }
}

impl AuthStage {
    async fn authenticate(&self, ctx: &MessageContext<'_>) -> Result<Findings, StageError> {
        let env = ctx.envelope;
        let dns = &self.dns;
        let auth = &dns.authenticator;
        let ip = env.client_ip;
        let helo = env.helo.as_str();
        let mail_from = env.mail_from.as_str();
        let mut found = Vec::new();
        let mut temp_errors = Vec::new();

        // SPF: MAIL FROM, or HELO for the null sender (RFC 7208 §2.3, §2.4). An address
        // literal or bare IP as HELO is no identity to check: "none" (not a permerror).
        let helo_is_literal = helo.starts_with('[') || helo.parse::<IpAddr>().is_ok();
        let spf = if mail_from.is_empty() && helo_is_literal {
            SpfOutput::new(helo.to_string())
        } else if mail_from.is_empty() {
            auth.verify_spf(dns.params(SpfParameters::verify_ehlo(ip, helo, &self.hostname)))
                .await
        } else {
            auth.verify_spf(dns.params(SpfParameters::verify_mail_from(
                ip,
                helo,
                &self.hostname,
                mail_from,
            )))
            .await
        };
        let identity = if mail_from.is_empty() {
            format!("smtp.helo={helo}")
        } else {
            format!("smtp.mailfrom={}", spf.domain())
        };
        let spf_symbol = match spf.result() {
            SpfResult::Pass => "SPF_PASS",
            SpfResult::Fail => "SPF_FAIL",
            SpfResult::SoftFail => "SPF_SOFTFAIL",
            SpfResult::Neutral => "SPF_NEUTRAL",
            SpfResult::None => "SPF_NONE",
            SpfResult::PermError => "SPF_PERMERROR",
            SpfResult::TempError => {
                temp_errors.push(("SPF_TEMPERROR", identity.clone()));
                ""
            }
        };
        if !spf_symbol.is_empty() {
            found.push(Symbol::new(spf_symbol, identity));
        }
        // The HELO identity too, separately (RFC 7208 §2.3 recommends it): a server whose
        // own name's SPF record disowns it is suspect whatever the MAIL FROM says. Only a
        // clear verdict is reported; "none" is the common case and DNS trouble here is no
        // reason to hold mail up.
        let helo_spf = if !mail_from.is_empty() && !helo_is_literal && helo.contains('.') {
            let out = auth
                .verify_spf(dns.params(SpfParameters::verify_ehlo(ip, helo, &self.hostname)))
                .await;
            let name = match out.result() {
                SpfResult::Pass => Some("SPF_HELO_PASS"),
                SpfResult::Fail => Some("SPF_HELO_FAIL"),
                SpfResult::SoftFail => Some("SPF_HELO_SOFTFAIL"),
                _ => None,
            };
            if let Some(name) = name {
                found.push(Symbol::new(name, format!("smtp.helo={helo}")));
            }
            name.map(|_| out)
        } else {
            None
        };

        // The message as mail-auth sees it; unparseable → no DKIM/ARC/DMARC to evaluate.
        // The wire bytes: DKIM/ARC sign what was sent, i.e. the encrypted form of S/MIME.
        let parsed = AuthenticatedMessage::parse(ctx.wire);
        let empty = AuthenticatedMessage::default();
        let msg = parsed.as_ref().unwrap_or(&empty);
        // Past a cap the verifier is not run at all (see `bounds`): a permanent error.
        let over = bounds::check(ctx.wire, &self.limits);

        // DKIM: every signature.
        let dkim = match &over.dkim {
            None => auth.verify_dkim(dns.params(msg)).await,
            Some(_) => Vec::new(),
        };
        let (mut pass, mut fail, mut perm) = (Vec::new(), Vec::new(), Vec::new());
        for out in &dkim {
            let d = out
                .signature()
                .map(|s| format!("d={} s={}", s.d, s.s))
                .unwrap_or_default();
            match out.result() {
                DkimResult::Pass => pass.push(d),
                // A changed body is `Neutral(FailedBodyHashMatch)` in mail-auth: a failure.
                DkimResult::Fail(e) | DkimResult::Neutral(e) => fail.push(format!("{d} ({e})")),
                DkimResult::PermError(e) => perm.push(format!("{d} ({e})")),
                DkimResult::TempError(e) => {
                    temp_errors.push(("DKIM_TEMPERROR", format!("{d} ({e})")))
                }
                DkimResult::None => {}
            }
        }
        if !pass.is_empty() {
            found.push(Symbol::new("DKIM_PASS", pass.join(", ")));
        }
        if !fail.is_empty() {
            found.push(Symbol::new("DKIM_FAIL", fail.join(", ")));
        }
        if !perm.is_empty() {
            found.push(Symbol::new("DKIM_PERMERROR", perm.join(", ")));
        }
        if let Some(why) = &over.dkim {
            found.push(Symbol::new("DKIM_PERMERROR", why.clone()));
        } else if dkim.is_empty() {
            found.push(Symbol::new("DKIM_NONE", ""));
        }

        // ARC: the chain as a whole.
        let arc = match &over.arc {
            None => auth.verify_arc(dns.params(msg)).await,
            Some(why) => {
                found.push(Symbol::new("ARC_FAIL", why.clone()));
                // Shown as arc=permerror in Authentication-Results.
                mail_auth::ArcOutput::default()
                    .with_result(DkimResult::PermError(mail_auth::Error::ParseError))
            }
        };
        match arc.result() {
            _ if over.arc.is_some() => {}
            DkimResult::Pass => {
                found.push(Symbol::new("ARC_PASS", format!("i={}", arc.sets().len())))
            }
            DkimResult::None => found.push(Symbol::new("ARC_NONE", "")),
            DkimResult::TempError(e) => temp_errors.push(("ARC_TEMPERROR", e.to_string())),
            DkimResult::Fail(e) | DkimResult::Neutral(e) | DkimResult::PermError(e) => {
                found.push(Symbol::new("ARC_FAIL", e.to_string()))
            }
        }

        // DMARC: alignment with the From domain and the domain's policy. The SPF domain is
        // the MAIL FROM domain, or the HELO name for the null sender (RFC 7489 §3.1.2).
        let spf_domain = if mail_from.is_empty() {
            helo
        } else {
            spf.domain()
        };
        let dmarc = auth
            .verify_dmarc(dns.params(DmarcParameters::new(msg, &dkim, spf_domain, &spf)))
            .await;
        let from_domain = dmarc.domain().to_string();
        match dmarc.result() {
            DmarcResult::Pass => found.push(Symbol::new("DMARC_PASS", from_domain.clone())),
            DmarcResult::None => found.push(Symbol::new("DMARC_NONE", from_domain.clone())),
            DmarcResult::PermError(e) => found.push(Symbol::new(
                "DMARC_PERMERROR",
                format!("{from_domain} ({e})"),
            )),
            DmarcResult::TempError(e) => {
                temp_errors.push(("DMARC_TEMPERROR", format!("{from_domain} ({e})")))
            }
            DmarcResult::Fail(_) => {
                let (name, forced) = match dmarc.policy() {
                    Policy::Reject => ("DMARC_POLICY_REJECT", self.dmarc_reject_action),
                    Policy::Quarantine => ("DMARC_POLICY_QUARANTINE", self.dmarc_quarantine_action),
                    Policy::None | Policy::Unspecified => ("DMARC_POLICY_NONE", None),
                };
                let mut s = Symbol::new(name, from_domain.clone());
                if let Some(action) = forced {
                    s = s.forcing(action);
                }
                found.push(s);
            }
        }

        // DNS trouble: a stage failure, unless DMARC passed anyway (see the module doc).
        let dmarc_passed = dmarc.result() == DmarcResult::Pass;
        if !temp_errors.is_empty() && !dmarc_passed {
            let what: Vec<String> = temp_errors
                .iter()
                .map(|(name, detail)| format!("{name} {detail}"))
                .collect();
            return Err(StageError(format!(
                "DNS temporary error: {}",
                what.join("; ")
            )));
        }
        for (name, detail) in temp_errors {
            found.push(Symbol::new(name, detail));
        }

        // One Authentication-Results field (RFC 8601) with our authserv-id.
        let header_from = msg.from.first().map(String::as_str).unwrap_or("");
        let mut ar =
            AuthenticationResults::new(&self.hostname).with_dkim_results(&dkim, header_from);
        ar = if mail_from.is_empty() {
            ar.with_spf_ehlo_result(&spf, ip, helo)
        } else {
            ar.with_spf_mailfrom_result(&spf, ip, mail_from, helo)
        };
        if let Some(helo_spf) = &helo_spf {
            ar = ar.with_spf_ehlo_result(helo_spf, ip, helo);
        }
        ar = ar.with_arc_result(&arc, ip).with_dmarc_result(&dmarc);
        let mut header = format!("Authentication-Results: {ar}");
        if over.dkim.is_some() {
            header.push_str(";\r\n\tdkim=permerror (too many signatures or signed fields)");
        } else if dkim.is_empty() {
            header.push_str(";\r\n\tdkim=none");
        }
        // The authenticated sender domain, for trust: DMARC's verdict where the domain
        // publishes a record, else the same alignment test without a record.
        let authenticated_domain = match dmarc.result() {
            DmarcResult::Pass => Some(from_domain.to_ascii_lowercase()),
            DmarcResult::None => {
                let spf_ok = spf.result() == SpfResult::Pass;
                aligned_without_record(
                    &from_domain,
                    spf_ok.then_some(spf_domain),
                    dkim.iter()
                        .filter(|o| o.result() == &DkimResult::Pass)
                        .filter_map(|o| o.signature().map(|s| s.d.as_str())),
                )
            }
            _ => None,
        };
        Ok(Findings {
            symbols: found,
            headers: vec![header],
            facts: crate::Facts {
                authenticated_domain,
                ..crate::Facts::default()
            },
        })
    }
}

/// Relaxed alignment for a From domain without a DMARC record: a passing SPF domain or
/// DKIM `d=` that is the From domain, its parent or its subdomain. (DMARC compares
/// organizational domains via the public suffix list; the label-boundary test here is the
/// stricter half of that: it never aligns two unrelated registrable domains.)
fn aligned_without_record<'a>(
    from_domain: &str,
    spf_pass_domain: Option<&str>,
    dkim_pass_domains: impl Iterator<Item = &'a str>,
) -> Option<String> {
    let from = from_domain.trim_end_matches('.').to_ascii_lowercase();
    if from.is_empty() {
        return None;
    }
    let related = |d: &str| {
        let d = d.trim_end_matches('.').to_ascii_lowercase();
        d == from || from.ends_with(&format!(".{d}")) || d.ends_with(&format!(".{from}"))
    };
    let aligned =
        spf_pass_domain.is_some_and(related) || dkim_pass_domains.into_iter().any(related);
    aligned.then_some(from)
}

/// Remove every `Authentication-Results:` field whose authserv-id is `authserv_id` (ours)
/// from the header block of `raw` (RFC 8601 §5: such fields from outside are forgeries).
/// `None` when there is none, so the caller keeps the original bytes.
pub fn strip_our_auth_results(raw: &[u8], authserv_id: &str) -> Option<Vec<u8>> {
    crate::result_fields::strip_fields(raw, |field| claims_authserv_id(field, authserv_id))
}

/// Is `field` an Authentication-Results field whose authserv-id is `id`?
pub(crate) fn claims_authserv_id(field: &[u8], id: &str) -> bool {
    let Some(colon) = field.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = &field[..colon];
    if !name
        .trim_ascii()
        .eq_ignore_ascii_case(b"authentication-results")
    {
        return false;
    }
    // Skip folding whitespace and (nested) comments before the authserv-id.
    let value = &field[colon + 1..];
    let mut i = 0;
    let mut depth = 0usize;
    while i < value.len() {
        match value[i] {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b'\\' if depth > 0 => i += 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => break,
        }
        i += 1;
    }
    let rest = &value[i.min(value.len())..];
    let token_end = rest
        .iter()
        .position(|&b| matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n' | b'('))
        .unwrap_or(rest.len());
    let token = &rest[..token_end];
    // A quoted authserv-id is allowed (value := token / quoted-string).
    let token = token
        .strip_prefix(b"\"")
        .and_then(|t| t.strip_suffix(b"\""))
        .unwrap_or(token);
    token.eq_ignore_ascii_case(id.trim_end_matches('.').as_bytes())
        || token.eq_ignore_ascii_case(id.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_forged_auth_results_are_removed_others_kept() {
        let raw = b"Received: from x\r\n\
Authentication-Results: gw.portcullis.test; spf=pass\r\n\
Authentication-Results: other.example;\r\n\tdkim=pass header.d=x\r\n\
authentication-results:  (comment (nested)) GW.Portcullis.Test;\r\n\tdmarc=pass\r\n\
Subject: hi\r\n\
\r\n\
Authentication-Results: gw.portcullis.test; in the body stays\r\n";
        let out = strip_our_auth_results(raw, "gw.portcullis.test").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "Received: from x\r\n\
Authentication-Results: other.example;\r\n\tdkim=pass header.d=x\r\n\
Subject: hi\r\n\
\r\n\
Authentication-Results: gw.portcullis.test; in the body stays\r\n"
        );
    }

    #[test]
    fn alignment_without_a_record_needs_a_related_domain() {
        let none = std::iter::empty();
        assert_eq!(
            aligned_without_record("Example.org", Some("example.org"), none),
            Some("example.org".into())
        );
        assert_eq!(
            aligned_without_record("example.org", None, ["mail.example.org"].into_iter()),
            Some("example.org".into())
        );
        assert_eq!(
            aligned_without_record("news.example.org", None, ["example.org"].into_iter()),
            Some("news.example.org".into())
        );
        // a pass for another domain authenticates that domain, not the From
        assert_eq!(
            aligned_without_record(
                "bank.example",
                Some("evil.example"),
                ["notbank.example"].into_iter()
            ),
            None
        );
        assert_eq!(
            aligned_without_record("", Some("x.example"), std::iter::empty()),
            None
        );
    }

    #[test]
    fn nothing_to_remove_keeps_the_original() {
        let raw = b"Subject: x\r\nAuthentication-Results: gw.portcullis.testing; none\r\n\r\nb\r\n";
        assert!(strip_our_auth_results(raw, "gw.portcullis.test").is_none());
        assert!(strip_our_auth_results(b"", "gw.portcullis.test").is_none());
    }

    #[test]
    fn version_and_quoted_ids_are_recognised() {
        assert!(claims_authserv_id(
            b"Authentication-Results: gw.example 1; none\r\n",
            "gw.example"
        ));
        assert!(claims_authserv_id(
            b"Authentication-Results: \"gw.example\"; none\r\n",
            "gw.example"
        ));
        assert!(!claims_authserv_id(
            b"X-Authentication-Results: gw.example; none\r\n",
            "gw.example"
        ));
    }
}
