//! The patterns a rule's conditions are written in, compiled once at config load.
//!
//! Addresses (envelope sender, recipient, header From): an exact address, `@domain`,
//! `.parent` (every subdomain of parent), a glob (`*`, `?`), or a regex written `~…`.
//! Everything matches case-insensitively; the facts side is lowercased once per message,
//! so matching allocates nothing.

use regex::{Regex, RegexBuilder};

/// Compiled regexes may use at most this much memory each: a rule set is configuration,
/// but a careless `~(a{1000}){1000}` must not take the gateway's memory at load.
pub const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A glob over bytes: `*` any run (also empty), `?` one byte; everything else literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: Vec<u8>,
    /// The literal bytes before the first wildcard and after the last one: most texts
    /// are refused by comparing these, without the general match.
    prefix: usize,
    suffix: usize,
}

impl Glob {
    /// `text` lowercased; an empty pattern is refused (it would match only "").
    pub fn new(text: &str) -> Result<Glob, String> {
        if text.is_empty() {
            return Err("an empty glob matches nothing".into());
        }
        let pattern = text.to_ascii_lowercase().into_bytes();
        let wild = |c: &u8| *c == b'*' || *c == b'?';
        let prefix = pattern.iter().position(wild).unwrap_or(pattern.len());
        let suffix = pattern.iter().rev().position(wild).unwrap_or(pattern.len());
        Ok(Glob {
            pattern,
            prefix,
            suffix,
        })
    }

    /// The literal text after the last wildcard when it is all in the domain of every
    /// address the glob matches: it starts with the only `@` (`news-*@example.org`), or
    /// a `@` comes before it (`*@*.example.org`). For the rules' index.
    pub fn address_suffix(&self) -> Option<&str> {
        let p = &self.pattern;
        if self.suffix == 0 || self.suffix == p.len() {
            return None;
        }
        let (head, suffix) = p.split_at(p.len() - self.suffix);
        let at_in_suffix = suffix.iter().filter(|&&c| c == b'@').count();
        let in_domain =
            (suffix[0] == b'@' && at_in_suffix == 1) || (head.contains(&b'@') && at_in_suffix == 0);
        in_domain
            .then(|| std::str::from_utf8(suffix).ok())
            .flatten()
    }

    /// Whether `text` (already lowercase) matches. Iterative, remembering only the last
    /// `*`: O(pattern × text) at worst, without recursion.
    pub fn matches(&self, text: &str) -> bool {
        let (p, t) = (&self.pattern, text.as_bytes());
        if !t.starts_with(&p[..self.prefix]) || !t.ends_with(&p[p.len() - self.suffix..]) {
            return false;
        }
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == b'*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|&c| c == b'*')
    }
}

/// A regex of a rule: case-insensitive, size-capped.
pub fn regex(text: &str) -> Result<Regex, String> {
    RegexBuilder::new(text)
        .case_insensitive(true)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| format!("bad regex {text:?}: {e}"))
}

/// One address pattern.
#[derive(Debug, Clone)]
pub enum AddressPattern {
    /// `user@example.org` (lowercase); `<>` is the null sender.
    Exact(String),
    /// `@example.org`: the domain exactly.
    Domain(String),
    /// `.example.org`: every subdomain of example.org (not example.org itself).
    Subdomains(String),
    /// `*@*.example.org`, `news-?@example.org`.
    Glob(Glob),
    /// `~^bill(ing)?@`.
    Regex(Regex),
}

impl AddressPattern {
    pub fn parse(text: &str) -> Result<AddressPattern, String> {
        let t = text.trim();
        if let Some(re) = t.strip_prefix('~') {
            return regex(re).map(AddressPattern::Regex);
        }
        if t.contains(['*', '?']) {
            return Glob::new(t).map(AddressPattern::Glob);
        }
        let lower = t.trim_end_matches('.').to_ascii_lowercase();
        let valid_domain = |d: &str| !d.is_empty() && !d.contains(['@', ' ', '[', ']']);
        if let Some(d) = lower.strip_prefix('@') {
            return if valid_domain(d) {
                Ok(AddressPattern::Domain(d.to_string()))
            } else {
                Err(format!("{text:?}: `@` must be followed by a domain"))
            };
        }
        if let Some(d) = lower.strip_prefix('.') {
            return if valid_domain(d) {
                Ok(AddressPattern::Subdomains(format!(".{d}")))
            } else {
                Err(format!("{text:?}: `.` must be followed by a domain"))
            };
        }
        if lower == "<>" {
            return Ok(AddressPattern::Exact(String::new()));
        }
        match lower.rsplit_once('@') {
            Some((local, domain)) if !local.is_empty() && valid_domain(domain) => {
                Ok(AddressPattern::Exact(lower))
            }
            _ => Err(format!(
                "{text:?} is not an address, @domain, .parent, glob or ~regex"
            )),
        }
    }

    /// A key of the rules' index that every address this pattern matches has: (0, the
    /// address), (1, its domain) or (2, a `.parent` suffix of its domain). `None`: no such
    /// key (a regex, most globs).
    pub fn index_key(&self) -> Option<(usize, &str)> {
        match self {
            AddressPattern::Exact(a) => Some((0, a)),
            AddressPattern::Domain(d) => Some((1, d)),
            AddressPattern::Subdomains(s) => Some((2, s)),
            // `*@*.example.org`: the domain ends with ".example.org";
            // `news-*@example.org`: the domain is example.org.
            AddressPattern::Glob(g) => match g.address_suffix()? {
                s if s.starts_with('@') && s.len() > 1 => Some((1, &s[1..])),
                s if s.starts_with('.') && s.len() > 1 => Some((2, s)),
                _ => None,
            },
            AddressPattern::Regex(_) => None,
        }
    }

    /// `address` lowercase, `domain` its domain (lowercase, no final dot).
    pub fn matches(&self, address: &str, domain: &str) -> bool {
        match self {
            AddressPattern::Exact(a) => a == address,
            AddressPattern::Domain(d) => d == domain,
            AddressPattern::Subdomains(suffix) => {
                domain.len() > suffix.len() && domain.ends_with(suffix.as_str())
            }
            AddressPattern::Glob(g) => g.matches(address),
            AddressPattern::Regex(r) => r.is_match(address),
        }
    }
}

/// A lowercase address with its domain, prepared once per message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    pub address: String,
    /// Byte offset of the domain in `address` (its length when there is none).
    domain_at: usize,
}

impl Address {
    pub fn new(raw: &str) -> Address {
        let address = raw.trim().trim_end_matches('.').to_ascii_lowercase();
        let domain_at = address.rfind('@').map_or(address.len(), |i| i + 1);
        Address { address, domain_at }
    }

    pub fn domain(&self) -> &str {
        &self.address[self.domain_at..]
    }

    pub fn matches(&self, pattern: &AddressPattern) -> bool {
        pattern.matches(&self.address, self.domain())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, address: &str) -> bool {
        Address::new(address).matches(&AddressPattern::parse(pattern).unwrap())
    }

    #[test]
    fn address_forms() {
        assert!(m("Ann@Example.ORG", "ann@example.org"));
        assert!(!m("ann@example.org", "anna@example.org"));
        assert!(m("@example.org", "x@EXAMPLE.org"));
        assert!(!m("@example.org", "x@sub.example.org"));
        assert!(m(".example.org", "x@sub.example.org"));
        assert!(!m(".example.org", "x@example.org"));
        assert!(!m(".example.org", "x@badexample.org"));
        assert!(m("*@*.example.org", "x@mx.example.org"));
        assert!(m("news-?@example.org", "news-1@example.org"));
        assert!(!m("news-?@example.org", "news-12@example.org"));
        assert!(m("~^bill(ing)?-[0-9]+@", "BILLING-42@partner.test"));
        assert!(!m("~^bill(ing)?-[0-9]+@", "xbilling-42@partner.test"));
        assert!(m("<>", ""));
        assert!(!m("<>", "a@b.test"));
    }

    #[test]
    fn bad_patterns_say_what_is_wrong() {
        for bad in ["~(unclosed", "@", ".", "nodomain", "a@", "~a{99999}{99999}"] {
            assert!(AddressPattern::parse(bad).is_err(), "{bad}");
        }
        assert!(Glob::new("").is_err());
    }

    #[test]
    fn globs() {
        let g = Glob::new("*.Example.org").unwrap();
        assert!(g.matches("mx1.example.org"));
        assert!(!g.matches("example.org"));
        assert!(Glob::new("*").unwrap().matches(""));
        assert!(Glob::new("a*b*c").unwrap().matches("axxbyyc"));
        assert!(!Glob::new("a*b*c").unwrap().matches("axxbyy"));
        // index keys: what every matching address has
        let key = |p: &str| {
            AddressPattern::parse(p)
                .unwrap()
                .index_key()
                .map(|(k, s)| (k, s.to_string()))
        };
        assert_eq!(
            key("*@*.blocked.example"),
            Some((2, ".blocked.example".into()))
        );
        assert_eq!(key("news-*@example.org"), Some((1, "example.org".into())));
        assert_eq!(key("*.example.org"), None);
        assert_eq!(key("*@example.*"), None);
        assert_eq!(key("~^a@b$"), None);
        // no exponential blow-up on many stars
        let long = "a".repeat(4000);
        assert!(!Glob::new("*a*a*a*a*a*a*a*b").unwrap().matches(&long));
    }
}
