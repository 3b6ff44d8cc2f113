//! How much DKIM and ARC work a message may ask for, decided before any of it is done.
//!
//! Verifying a DKIM signature hashes the header fields named in its `h=` tag, and finding
//! each name means a walk over the header block: the work grows with
//! signatures × names per `h=` × header fields, all three chosen by the sender. A message of
//! a few MB with one signature naming thousands of absent fields and hundreds of thousands
//! of filler fields costs seconds of CPU, and a timer cannot interrupt CPU work. So the
//! header block is counted first (one linear pass), and a message past any cap is not handed
//! to the verifier at all: its DKIM and ARC results are a permanent error, never a pass.

/// The caps (`[auth]` in the config; see `examples/portcullis.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    /// Header fields of the whole message.
    pub max_header_fields: usize,
    /// `DKIM-Signature` fields.
    pub max_dkim_signatures: usize,
    /// ARC sets, counted as `ARC-Seal` fields (RFC 8617 allows at most 50 hops).
    pub max_arc_sets: usize,
    /// Names in one `h=` tag of a DKIM or ARC message signature.
    pub max_signed_headers: usize,
}

impl Default for AuthLimits {
    fn default() -> Self {
        AuthLimits {
            max_header_fields: 1000,
            max_dkim_signatures: 10,
            max_arc_sets: 16,
            max_signed_headers: 100,
        }
    }
}

/// Which check a cap stops, and why (the symbol's detail).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OverLimit {
    /// DKIM verification is skipped: the reason.
    pub dkim: Option<String>,
    /// ARC verification is skipped: the reason.
    pub arc: Option<String>,
}

/// Count the header block of `raw` against `limits` (one pass, stops at the first blank
/// line of either kind, and as soon as the field count is over).
pub fn check(raw: &[u8], limits: &AuthLimits) -> OverLimit {
    let mut fields = 0usize;
    let mut dkim = 0usize;
    let mut arc_seals = 0usize;
    let mut widest_dkim_h = 0usize;
    let mut widest_arc_h = 0usize;
    for (s, e) in crate::result_fields::header_fields(raw) {
        fields += 1;
        if fields > limits.max_header_fields {
            break;
        }
        let field = &raw[s..e];
        let Some(colon) = field.iter().position(|&b| b == b':') else {
            continue;
        };
        let name = field[..colon].trim_ascii();
        if name.eq_ignore_ascii_case(b"dkim-signature") {
            dkim += 1;
            widest_dkim_h = widest_dkim_h.max(signed_header_count(&field[colon + 1..]));
        } else if name.eq_ignore_ascii_case(b"arc-message-signature") {
            widest_arc_h = widest_arc_h.max(signed_header_count(&field[colon + 1..]));
        } else if name.eq_ignore_ascii_case(b"arc-seal") {
            arc_seals += 1;
        }
    }

    let mut over = OverLimit::default();
    if fields > limits.max_header_fields {
        let why = format!(
            "more than {} header fields (auth.max_header_fields)",
            limits.max_header_fields
        );
        over.dkim = Some(why.clone());
        over.arc = Some(why);
        return over;
    }
    if dkim > limits.max_dkim_signatures {
        over.dkim = Some(format!(
            "{dkim} DKIM signatures, more than {} (auth.max_dkim_signatures)",
            limits.max_dkim_signatures
        ));
    } else if widest_dkim_h > limits.max_signed_headers {
        over.dkim = Some(format!(
            "a DKIM signature names {widest_dkim_h} header fields, more than {} \
             (auth.max_signed_headers)",
            limits.max_signed_headers
        ));
    }
    if arc_seals > limits.max_arc_sets {
        over.arc = Some(format!(
            "{arc_seals} ARC sets, more than {} (auth.max_arc_sets)",
            limits.max_arc_sets
        ));
    } else if widest_arc_h > limits.max_signed_headers {
        over.arc = Some(format!(
            "an ARC message signature names {widest_arc_h} header fields, more than {} \
             (auth.max_signed_headers)",
            limits.max_signed_headers
        ));
    }
    over
}

/// The number of names in the `h=` tag of a DKIM-style tag list (0 without one).
fn signed_header_count(value: &[u8]) -> usize {
    for tag in value.split(|&b| b == b';') {
        let Some(eq) = tag.iter().position(|&b| b == b'=') else {
            continue;
        };
        let name: Vec<u8> = tag[..eq]
            .iter()
            .copied()
            .filter(|b| !b.is_ascii_whitespace())
            .collect();
        if name == b"h" {
            return tag[eq + 1..].split(|&b| b == b':').count();
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AuthLimits {
        AuthLimits {
            max_header_fields: 10,
            max_dkim_signatures: 2,
            max_arc_sets: 1,
            max_signed_headers: 5,
        }
    }

    #[test]
    fn an_ordinary_message_is_within_the_caps() {
        let raw = b"DKIM-Signature: v=1; a=rsa-sha256; d=x.test; s=s;\r\n\
\th=from:to:subject:date; bh=abc; b=def\r\nFrom: a@x.test\r\nSubject: hi\r\n\r\nbody\r\n";
        assert_eq!(check(raw, &limits()), OverLimit::default());
    }

    #[test]
    fn too_many_fields_stop_dkim_and_arc() {
        let mut raw = Vec::new();
        for i in 0..11 {
            raw.extend_from_slice(format!("X-Filler-{i}: x\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\nbody");
        let over = check(&raw, &limits());
        assert!(over.dkim.unwrap().contains("auth.max_header_fields"));
        assert!(over.arc.is_some());
        // a field count in the body does not count
        let mut ok = b"A: 1\n\n".to_vec();
        ok.extend(raw);
        assert_eq!(check(&ok, &limits()), OverLimit::default());
    }

    #[test]
    fn too_many_signatures_or_names_stop_dkim_only() {
        let sig = b"DKIM-Signature: v=1; d=x.test; h=from; b=x\r\n";
        let raw = [&sig[..], sig, sig, b"\r\n"].concat();
        let over = check(&raw, &limits());
        assert!(over.dkim.unwrap().contains("3 DKIM signatures"));
        assert!(over.arc.is_none());

        let raw = b"DKIM-Signature: v=1; d=x.test;\r\n h = a:b:c:\r\n d:e:f; b=x\r\n\r\n";
        let over = check(raw, &limits());
        assert!(over.dkim.unwrap().contains("names 6 header fields"));
    }

    #[test]
    fn arc_sets_and_arc_names_are_counted() {
        let raw = b"ARC-Seal: i=1; cv=none\r\nARC-Seal: i=2; cv=pass\r\n\r\n";
        assert!(check(raw, &limits()).arc.unwrap().contains("2 ARC sets"));
        let raw = b"ARC-Message-Signature: i=1; h=a:b:c:d:e:f; b=x\r\n\r\n";
        assert!(
            check(raw, &limits())
                .arc
                .unwrap()
                .contains("6 header fields")
        );
        assert!(check(raw, &limits()).dkim.is_none());
    }
}
