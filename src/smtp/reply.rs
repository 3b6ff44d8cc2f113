//! Every reply the SMTP listener gives, in one table, and the reply for a verdict.
//!
//! What the client sees is generic (it reveals no policy or configuration); the specific
//! reason goes to the log.

use filters::{Action, ScoreCard};

/// One SMTP reply: code, enhanced status code (RFC 3463), text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: &'static str,
    pub text: &'static str,
}

impl Reply {
    pub const fn new(code: u16, enhanced: &'static str, text: &'static str) -> Reply {
        Reply {
            code,
            enhanced,
            text,
        }
    }

    pub fn write_to(&self, out: &mut Vec<u8>) {
        write_reply(out, self.code, self.enhanced, self.text);
    }
}

/// Write one reply line; `text` must not contain CR or LF.
pub fn write_reply(out: &mut Vec<u8>, code: u16, enhanced: &str, text: &str) {
    use std::io::Write;
    if enhanced.is_empty() {
        let _ = write!(out, "{code} {text}\r\n");
    } else {
        let _ = write!(out, "{code} {enhanced} {text}\r\n");
    }
}

pub const OK: Reply = Reply::new(250, "2.0.0", "Ok");
/// Followed by the queue ids of the stored copies ([`queued`]).
pub const QUEUED: Reply = Reply::new(250, "2.0.0", "Ok: queued as");
pub const SENDER_OK: Reply = Reply::new(250, "2.1.0", "Ok");
pub const RCPT_OK: Reply = Reply::new(250, "2.1.5", "Ok");
pub const START_DATA: Reply = Reply::new(354, "", "End data with <CR><LF>.<CR><LF>");
pub const READY_TLS: Reply = Reply::new(220, "2.0.0", "Ready to start TLS");
pub const BYE: Reply = Reply::new(221, "2.0.0", "Bye");
pub const HELP: Reply = Reply::new(214, "2.0.0", "See RFC 5321");

pub const TOO_MANY_CONNECTIONS: Reply =
    Reply::new(421, "4.7.0", "Too many connections, try again later");
pub const TOO_MANY_FROM_IP: Reply = Reply::new(
    421,
    "4.7.0",
    "Too many connections from your address, try again later",
);
pub const TIMEOUT: Reply = Reply::new(421, "4.4.2", "Timeout exceeded, closing connection");
pub const TOO_MANY_ERRORS: Reply = Reply::new(421, "4.7.0", "Too many errors, closing connection");
pub const SHUTTING_DOWN: Reply = Reply::new(421, "4.3.2", "Service shutting down, try again later");
pub const TOO_MANY_RECIPIENTS: Reply = Reply::new(452, "4.5.3", "Too many recipients");
pub const TEMPFAIL: Reply = Reply::new(451, "4.7.1", "Temporary failure, please try again later");
pub const QUEUE_ERROR: Reply = Reply::new(
    451,
    "4.3.0",
    "Temporary local problem, please try again later",
);

pub const LINE_TOO_LONG: Reply = Reply::new(500, "5.5.2", "Line too long");
pub const UNKNOWN_COMMAND: Reply = Reply::new(500, "5.5.2", "Command not recognized");
pub const SYNTAX: Reply = Reply::new(501, "5.5.4", "Syntax error in parameters or arguments");
pub const BAD_SENDER: Reply = Reply::new(501, "5.1.7", "Bad sender address syntax");
pub const BAD_RECIPIENT: Reply = Reply::new(501, "5.1.3", "Bad recipient address syntax");
pub const CONTROL_IN_SENDER: Reply = Reply::new(
    553,
    "5.1.7",
    "Control characters are not allowed in the sender address",
);
pub const CONTROL_IN_RECIPIENT: Reply = Reply::new(
    553,
    "5.1.3",
    "Control characters are not allowed in the recipient address",
);
pub const BAD_HELO: Reply = Reply::new(501, "5.5.4", "Syntax: EHLO hostname");
pub const NOT_IMPLEMENTED: Reply = Reply::new(502, "5.5.1", "Command not implemented");
pub const VRFY_DISABLED: Reply = Reply::new(502, "5.5.1", "VRFY command is disabled");
pub const NEED_HELO: Reply = Reply::new(503, "5.5.1", "Send EHLO or HELO first");
pub const NESTED_MAIL: Reply = Reply::new(503, "5.5.1", "Nested MAIL command");
pub const NEED_MAIL: Reply = Reply::new(503, "5.5.1", "Need MAIL command first");
pub const NEED_RCPT: Reply = Reply::new(554, "5.5.1", "No valid recipients");
pub const TLS_ACTIVE: Reply = Reply::new(503, "5.5.1", "TLS already active");
pub const TLS_UNAVAILABLE: Reply = Reply::new(454, "4.7.0", "TLS not available");
pub const MUST_STARTTLS: Reply = Reply::new(530, "5.7.0", "Must issue a STARTTLS command first");
pub const NEED_VERIFIED_CERT: Reply =
    Reply::new(530, "5.7.0", "A verified client certificate is required");
pub const UNSUPPORTED_PARAM: Reply = Reply::new(555, "5.5.4", "Unsupported MAIL or RCPT parameter");
pub const UTF8_WITHOUT_EHLO: Reply = Reply::new(555, "5.5.4", "SMTPUTF8 requires EHLO");
pub const TOO_BIG: Reply = Reply::new(552, "5.3.4", "Message size exceeds fixed limit");
pub const BARE_LINE_ENDING: Reply = Reply::new(
    554,
    "5.5.2",
    "Bare CR or LF in the message; end every line with CRLF",
);
pub const UNKNOWN_RECIPIENT: Reply =
    Reply::new(550, "5.1.1", "Recipient address rejected: user unknown");
pub const VERIFY_UNAVAILABLE: Reply = Reply::new(
    450,
    "4.1.1",
    "Recipient address verification unavailable, try again later",
);
pub const RELAY_DENIED: Reply = Reply::new(550, "5.7.1", "Relay access denied");
pub const ROUTING_DENIED: Reply = Reply::new(
    550,
    "5.7.1",
    "Source routes and routing characters are not accepted",
);
pub const REJECTED: Reply = Reply::new(550, "5.7.1", "Message rejected by policy");
/// A rule or a block-list entry refused the recipient at RCPT TO (a rule's own text
/// replaces this one).
pub const RECIPIENT_REFUSED_BY_RULE: Reply =
    Reply::new(550, "5.7.1", "Recipient refused by policy");
pub const VIRUS: Reply = Reply::new(554, "5.7.1", "Message contains a virus");
// S/MIME policy refusals go to our own users (internal clients): they name the reason.
pub const SMIME_NO_CERTIFICATE: Reply = Reply::new(
    550,
    "5.7.1",
    "Encryption required by policy, but there is no usable S/MIME certificate for this recipient",
);
pub const SMIME_USER_PROTECTED: Reply = Reply::new(
    550,
    "5.7.1",
    "Message already encrypted or signed by you; policy requires the gateway to sign/encrypt (send it unprotected)",
);
pub const SMIME_NO_SIGNING_KEY: Reply = Reply::new(
    550,
    "5.7.1",
    "Signing required by policy, but there is no S/MIME signing certificate for your address or domain",
);
pub const DATA_THEN_BDAT: Reply = Reply::new(503, "5.5.1", "Do not mix DATA and BDAT");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_single_well_formed_lines() {
        let all = [
            OK,
            QUEUED,
            SENDER_OK,
            RCPT_OK,
            START_DATA,
            READY_TLS,
            BYE,
            HELP,
            TOO_MANY_CONNECTIONS,
            TOO_MANY_FROM_IP,
            TIMEOUT,
            TOO_MANY_ERRORS,
            SHUTTING_DOWN,
            TOO_MANY_RECIPIENTS,
            TEMPFAIL,
            QUEUE_ERROR,
            LINE_TOO_LONG,
            UNKNOWN_COMMAND,
            SYNTAX,
            BAD_SENDER,
            BAD_RECIPIENT,
            CONTROL_IN_SENDER,
            CONTROL_IN_RECIPIENT,
            BARE_LINE_ENDING,
            UNKNOWN_RECIPIENT,
            VERIFY_UNAVAILABLE,
            BAD_HELO,
            NOT_IMPLEMENTED,
            VRFY_DISABLED,
            NEED_HELO,
            NESTED_MAIL,
            NEED_MAIL,
            NEED_RCPT,
            VIRUS,
            TLS_ACTIVE,
            TLS_UNAVAILABLE,
            MUST_STARTTLS,
            NEED_VERIFIED_CERT,
            UNSUPPORTED_PARAM,
            UTF8_WITHOUT_EHLO,
            TOO_BIG,
            RELAY_DENIED,
            ROUTING_DENIED,
            REJECTED,
            DATA_THEN_BDAT,
        ];
        for r in all {
            let mut out = Vec::new();
            r.write_to(&mut out);
            let s = String::from_utf8(out).unwrap();
            assert!(s.ends_with("\r\n") && s.matches('\n').count() == 1, "{s:?}");
            assert!((200..600).contains(&r.code));
            if !r.enhanced.is_empty() {
                // enhanced class matches the reply class (RFC 3463)
                assert_eq!(
                    r.enhanced.as_bytes()[0],
                    b'0' + (r.code / 100) as u8,
                    "{s:?}"
                );
            }
        }
    }
}

/// The reply to a recipient that relay control refuses at RCPT TO.
pub fn for_recipient_refusal(refusal: super::address::Refusal) -> Reply {
    use super::address::Refusal;
    match refusal {
        Refusal::Syntax => BAD_RECIPIENT,
        Refusal::HiddenRoute => ROUTING_DENIED,
        Refusal::RelayDenied => RELAY_DENIED,
    }
}

/// `[[rules]]` decided at RCPT TO (envelope and connection only): a `reject` refuses the
/// recipient (550 5.7.1, with the rule's text when it has one), a `tempfail` defers it
/// (451 4.7.1). The reply, its text and the deciding rule's name; `None`: accepted.
pub fn for_rule_at_rcpt(eval: &crate::rules::Evaluation) -> Option<(Reply, String, String)> {
    let (verdict, rule) = eval.verdict.as_ref()?;
    let r = match verdict.action {
        Action::Reject => RECIPIENT_REFUSED_BY_RULE,
        Action::Tempfail => TEMPFAIL,
        _ => return None,
    };
    let text = match &verdict.text {
        Some(t) if verdict.action == Action::Reject => t.clone(),
        _ => r.text.to_string(),
    };
    Some((r, text, rule.clone()))
}

/// The reply to the end of DATA once the copies are stored under `ids`.
pub fn queued(ids: &[String]) -> (Reply, String) {
    (QUEUED, format!("{} {}", QUEUED.text, ids.join(" ")))
}

/// The reply to the end of DATA for what the pipeline decided: the refusal, or `None` when
/// the message is to be stored (then [`queued`], once it is on disk). The session and
/// `portcullis explain` both answer with this.
pub fn for_outcome(outcome: &crate::pipeline::Outcome) -> Option<(Reply, String)> {
    match (outcome.action, &outcome.refusal_text) {
        // A rule's own text, with the code of every policy refusal.
        (Action::Reject, Some(text)) => Some((REJECTED, text.clone())),
        _ => refusal(outcome.action, &outcome.card),
    }
}

/// The DATA reply for a refusing action; `None` means the message is stored (250).
/// A virus is named (the sender's admin needs to know); other reasons stay generic.
pub fn refusal(action: Action, card: &ScoreCard) -> Option<(Reply, String)> {
    match action {
        Action::Reject => Some(
            match card
                .symbols
                .iter()
                .find(|s| s.name == "CLAM_VIRUS" && s.forced_action == Some(Action::Reject))
            {
                Some(virus) => (
                    VIRUS,
                    format!(
                        "{} ({})",
                        VIRUS.text,
                        crate::queue::trace::printable(&virus.detail)
                    ),
                ),
                None => {
                    let forced_by = |name: &str| {
                        card.symbols
                            .iter()
                            .any(|s| s.name == name && s.forced_action == Some(Action::Reject))
                    };
                    let r = if forced_by("SMIME_USER_PROTECTED") {
                        SMIME_USER_PROTECTED
                    } else if forced_by("SMIME_NO_SIGNING_KEY") {
                        SMIME_NO_SIGNING_KEY
                    } else {
                        REJECTED
                    };
                    (r, r.text.to_string())
                }
            },
        ),
        Action::Tempfail => Some((TEMPFAIL, TEMPFAIL.text.to_string())),
        Action::Accept | Action::Tag | Action::Quarantine => None,
    }
}

#[cfg(test)]
mod refusal_tests {
    use super::*;
    use filters::Symbol;

    #[test]
    fn refusing_actions_get_their_reply_and_a_virus_is_named() {
        let mut c = ScoreCard::default();
        c.add(Symbol::new("HDR_UNPARSEABLE", "").forcing(Action::Reject));
        assert_eq!(refusal(Action::Reject, &c).unwrap().0.code, 550);
        assert_eq!(refusal(Action::Tempfail, &c).unwrap().0.code, 451);
        assert!(refusal(Action::Quarantine, &c).is_none());
        c.add(Symbol::new("CLAM_VIRUS", "Eicar-Test-Signature").forcing(Action::Reject));
        let (r, text) = refusal(Action::Reject, &c).unwrap();
        assert_eq!((r.code, r.enhanced), (554, "5.7.1"));
        assert!(text.ends_with("(Eicar-Test-Signature)"), "{text}");
    }
}
