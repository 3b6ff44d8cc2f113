//! The symbol registry: every symbol a stage can report, with its default points and what
//! it means. Points are defaults; `[symbols]` in the gateway config overrides them.

/// (name, default points, description)
#[rustfmt::skip]
pub const REGISTRY: &[(&str, f64, &str)] = &[
    ("HDR_MISSING_FROM",       3.0, "no From: header (required by RFC 5322)"),
    ("HDR_MISSING_DATE",       1.0, "no Date: header (required by RFC 5322)"),
    ("HDR_MISSING_MESSAGE_ID", 1.0, "no Message-ID: header"),
    ("HDR_DUPLICATE",          2.0, "a header that may occur once occurs more than once"),
    ("HDR_8BIT_NO_SMTPUTF8",   2.0, "raw 8-bit bytes in headers without SMTPUTF8"),
    ("HDR_UNPARSEABLE",        5.0, "the message has no parseable header block"),
    ("BAYES_SPAM",            10.0, "Bayes: spam probability at or above bayes.spam_threshold; half the points at the threshold (= tag), all at p=1 (detail: p)"),
    ("BAYES_LEAN_SPAM",        5.0, "Bayes: probability between 0.5 and bayes.spam_threshold; from 0 at 0.5 to all the points just below the threshold, with the log-odds (detail: p)"),
    ("BAYES_LEAN_HAM",        -1.5, "Bayes: probability between bayes.ham_threshold and 0.5; from 0 at 0.5 to all the points just above the threshold, with the log-odds (detail: p)"),
    ("BAYES_HAM",             -3.0, "Bayes: spam probability at or below bayes.ham_threshold; half the points at the threshold, all at p=0 (detail: p)"),
    // Content heuristics: points chosen inside the public training corpus by grouped
    // cross-validation (corpus/fit_points.py); a shape too rare there to move the result
    // keeps 0 and is reported for rules and the quarantine view. EXECUTABLE and
    // DOUBLE_EXTENSION never occur there: their points are set from practice.
    ("CONTENT_LINK_MISMATCH",  0.0, "content: a link's visible text names another domain than its target (detail: both)"),
    ("CONTENT_HTML_ONLY",      0.5, "content: HTML without a plain-text alternative"),
    ("CONTENT_IMAGE_ONLY",     0.0, "content: HTML of pictures with almost no text (detail: images, words)"),
    ("CONTENT_EXECUTABLE",     3.0, "content: an attachment that is a program, by content or by a Windows-run extension (detail: file name)"),
    ("CONTENT_DOUBLE_EXTENSION", 4.0, "content: an attachment named like a document that runs as a program, e.g. invoice.pdf.exe (detail: file name)"),
    ("CONTENT_DISPLAY_NAME_ADDRESS", 0.0, "content: the From display name shows an address of another domain than the sender's (detail: shown address)"),
    ("CONTENT_REPLYTO_FREEMAIL", 0.0, "content: Reply-To is a free-mail mailbox, From another domain (detail: Reply-To)"),
    ("CONTENT_OBFUSCATED",     2.5, "content: zero-width characters inside words, or words mixing Latin with Cyrillic/Greek look-alikes (detail: what)"),
    ("CONTENT_BULK_NO_UNSUBSCRIBE", 0.0, "content: bulk-mail shape (10+ links in HTML, or Precedence: bulk) without List-Unsubscribe"),
    ("LIST_ALLOW",           -20.0, "lists: an operator's allow entry covers the (authenticated) sender and every recipient; the spam filters are skipped (detail: entry)"),
    ("LIST_BLOCK",             0.0, "lists: an operator's block entry covers the sender and a recipient; forces reject (detail: entry)"),
    ("STAGE_FAILED_OPEN",      0.0, "a stage failed and its fail mode let the message pass"),
    ("TLS_NONE",               0.0, "the sending server used no TLS (still common: no malus by default)"),
    ("TLS_NO_CLIENT_CERT",     0.0, "TLS without a client certificate (the usual case)"),
    ("TLS_CERT_UNTRUSTED",     0.0, "client certificate presented, chain does not verify"),
    ("TLS_CERT_VALID",        -0.5, "client certificate with a verified chain"),
    ("TLS_CERT_NAME_MATCH",   -1.5, "verified client certificate naming the HELO host or the sender's domain"),
    ("TLS_CERT_CHANGED",       0.5, "the sending domain's servers always showed a verified certificate; this one is verified but new (renewal or a new server: worth a look)"),
    ("TLS_DOWNGRADE",          3.0, "the sending domain always showed a verified client certificate; this session did not (plaintext, none, or unverified)"),
    ("TRUST_CORRESPONDENT",   -3.0, "trust: our recipient has written to this authenticated sender; scaled by how often and how recently"),
    ("TRUST_KNOWN_DOMAIN",    -1.5, "trust: our users write to this authenticated sender's domain; scaled by how often and how recently"),
    ("TRUST_KNOWN_SERVER",    -1.0, "trust: this server's network has delivered authenticated mail for the sender's domain before"),
    ("TRUST_NEW_SERVER",       0.0, "trust: a network not seen before for a domain with known servers (no trust added)"),
    ("TRUST_PINNED",          -4.0, "trust: operator's pinned level for the authenticated domain (high = all points, medium half, low a quarter, none 0 and no learned trust)"),
    ("TRUST_UNAUTHENTICATED",  0.0, "trust: the From domain is one we trust, but the sender is not authenticated for it (no trust given)"),
    ("CLAM_VIRUS",             0.0, "ClamAV found a virus (detail: signature); forces the configured action"),
    ("CLAM_UNSCANNED",         0.0, "larger than clamd's stream limit, passed unscanned by config"),
    ("SPF_PASS",              -0.5, "SPF: the client may send for the MAIL FROM (or HELO) domain (detail: identity)"),
    ("SPF_FAIL",               3.0, "SPF: the domain says this client may not send for it (-all)"),
    ("SPF_SOFTFAIL",           1.5, "SPF: the domain says this client probably may not send for it (~all)"),
    ("SPF_NEUTRAL",            0.5, "SPF: the domain makes no statement about this client (?all)"),
    ("SPF_NONE",               0.5, "SPF: the domain publishes no SPF record"),
    ("SPF_PERMERROR",          1.0, "SPF: the domain's SPF record is broken"),
    ("SPF_HELO_PASS",          0.0, "SPF of the HELO name: the client may use that name (reported, no points)"),
    ("SPF_HELO_FAIL",          1.0, "SPF of the HELO name: the name's domain says this client may not use it (-all)"),
    ("SPF_HELO_SOFTFAIL",      0.5, "SPF of the HELO name: probably not this client (~all)"),
    ("DKIM_PASS",             -1.0, "DKIM: at least one signature verifies (detail: d= s= of each)"),
    ("DKIM_FAIL",              2.0, "DKIM: a signature does not verify (changed header or body; detail: d= s= and why)"),
    ("DKIM_PERMERROR",         1.0, "DKIM: a signature or its key record is broken or unusable"),
    ("DKIM_NONE",              0.5, "DKIM: the message is not signed"),
    ("DMARC_PASS",            -1.5, "DMARC: SPF or DKIM passed aligned with the From domain (detail: domain)"),
    ("DMARC_POLICY_REJECT",    6.0, "DMARC: failed, the From domain says p=reject; forces auth.dmarc_reject_action"),
    ("DMARC_POLICY_QUARANTINE", 4.0, "DMARC: failed, the From domain says p=quarantine; forces auth.dmarc_quarantine_action"),
    ("DMARC_POLICY_NONE",      1.0, "DMARC: failed, the From domain only monitors (p=none)"),
    ("DMARC_NONE",             0.0, "DMARC: the From domain publishes no DMARC record"),
    ("DMARC_PERMERROR",        0.5, "DMARC: the From domain's DMARC record is unusable"),
    ("ARC_PASS",              -0.5, "ARC: the chain of ARC sets verifies (detail: number of sets)"),
    ("ARC_FAIL",               1.0, "ARC: the ARC chain is broken or does not verify"),
    ("ARC_NONE",               0.0, "ARC: no ARC sets"),
    ("SPF_TEMPERROR",          0.0, "SPF: DNS trouble; reported only when DMARC passed anyway, else the auth stage fails"),
    ("DKIM_TEMPERROR",         0.0, "DKIM: DNS trouble for a signature's key; only when DMARC passed anyway, else the stage fails"),
    ("ARC_TEMPERROR",          0.0, "ARC: DNS trouble for an ARC key; only when DMARC passed anyway, else the stage fails"),
    ("SMIME_SIGNED_VALID",    -1.0, "S/MIME: a signature verifies and its chain leads to a trusted CA (detail: signer)"),
    ("SMIME_SIGNED_UNTRUSTED_CHAIN", 0.5, "S/MIME: the signature verifies, the signer's certificate does not (unknown CA, expired; detail: signer, why)"),
    ("SMIME_SIGNED_INVALID",   3.0, "S/MIME: a signature does not verify (content changed or forged; detail: why)"),
    ("SMIME_DECRYPTED",        0.0, "S/MIME: decrypted with our key; the filters saw the plaintext (detail: layers)"),
    ("SMIME_UNDECRYPTABLE",    0.0, "S/MIME: encrypted, and none of our keys opens it; forces smime.undecryptable_action"),
    ("SMIME_MALFORMED",        1.0, "S/MIME: broken, truncated or garbled CMS; forces smime.undecryptable_action"),
    ("SMIME_NOT_UNWRAPPED",    0.0, "S/MIME: certs-only, a signed receipt or other non-MIME content; delivered as sent (detail: what)"),
    ("SMIME_USER_PROTECTED",   0.0, "S/MIME (outbound): the user encrypted or signed the mail already; forces reject with smime.block_user_protected"),
    ("SMIME_NO_SIGNING_KEY",   0.0, "S/MIME (outbound): policy requires signing and the sender has no signing identity; forces reject"),
    ("SMIME_SIGNED_OUT",       0.0, "S/MIME (outbound): signed by the gateway (detail: certificate's address)"),
    ("SMIME_ENCRYPTED_OUT",    0.0, "S/MIME (outbound): encrypted by the gateway (detail: recipients and ciphers)"),
    ("DISCLAIMER_ADDED",       0.0, "rules: the disclaimer was added (detail: the parts that got it)"),
    ("DISCLAIMER_SKIPPED_PROTECTED", 0.0, "rules: no disclaimer, the user signed or encrypted the content (S/MIME, PGP)"),
    ("DISCLAIMER_NOT_ADDED",   0.0, "rules: no disclaimer: no text body part, an unknown charset or encoding, or a message beyond limits.max_mime_parts/max_mime_depth (detail: why)"),
    ("ATTACHMENT_SIGNED",      0.0, "rules: attachments got a detached CMS signature (detail: file names)"),
    ("ATTACHMENT_NOT_SIGNED",  0.0, "rules: chosen attachments were not signed: no signing identity, protected content, limits (detail: why)"),
    ("ARCHIVED",               0.0, "rules: a journal copy was kept (detail: address or directory)"),
];

/// Default points of a registered symbol. An unregistered name is a programming error
/// caught by the registry test; in production it scores 0.
pub fn default_points(name: &str) -> f64 {
    REGISTRY
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, p, _)| *p)
        .unwrap_or(0.0)
}

pub fn is_registered(name: &str) -> bool {
    REGISTRY.iter().any(|(n, _, _)| *n == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_upper_snake() {
        for (i, (name, _, desc)) in REGISTRY.iter().enumerate() {
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                "{name} is not UPPER_SNAKE"
            );
            assert!(!desc.is_empty(), "{name} has no description");
            assert!(
                !REGISTRY[i + 1..].iter().any(|(n, _, _)| n == name),
                "{name} registered twice"
            );
        }
        assert_eq!(default_points("HDR_MISSING_DATE"), 1.0);
        assert_eq!(default_points("NO_SUCH_SYMBOL"), 0.0);
    }
}
