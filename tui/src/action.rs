//! What an operator asks the gateway to do. An action is built by a screen, confirmed in a
//! popup when it destroys something (or touches many messages), then run by the worker.

use std::path::PathBuf;

use crate::api::types::{HeldTarget, NewListEntry, PinLevel};

/// A password typed into the console: never shown, never printed by `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// An allow entry to add after a release: the sender of held message `message`, for this
/// recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowSender {
    pub message: String,
    pub sender: String,
    pub recipient: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Release held entries; `learn`: as ham; `allow`: add these allow entries afterwards.
    Release {
        targets: Vec<HeldTarget>,
        learn: bool,
        allow: Vec<AllowSender>,
    },
    /// Delete held entries; `learn`: as spam.
    DeleteHeld {
        targets: Vec<HeldTarget>,
        learn: bool,
    },
    QueueRetry {
        id: String,
    },
    QueueDelete {
        id: String,
    },
    CertImport {
        path: PathBuf,
        password: Option<Secret>,
    },
    CertTrustCa {
        path: PathBuf,
    },
    CertDelete {
        fingerprint: String,
        subject: String,
        has_private_key: bool,
    },
    TrustPin {
        domain: String,
        level: Option<PinLevel>,
    },
    /// A recipient's quarantine report frequency; `None`: the gateway's schedule.
    DigestFrequency {
        recipient: String,
        frequency: Option<String>,
    },
    ListAdd(NewListEntry),
    ListRemove {
        id: i64,
        what: String,
    },
}

fn plural(n: usize, one: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {one}s")
    }
}

impl Action {
    /// Whether the operator confirms first: everything that destroys, and a release of more
    /// than one message at once.
    pub fn needs_confirmation(&self) -> bool {
        match self {
            Action::Release { targets, .. } => targets.len() > 1,
            Action::DeleteHeld { .. }
            | Action::QueueDelete { .. }
            | Action::CertDelete { .. }
            | Action::ListRemove { .. } => true,
            Action::QueueRetry { .. }
            | Action::CertImport { .. }
            | Action::CertTrustCa { .. }
            | Action::TrustPin { .. }
            | Action::DigestFrequency { .. }
            | Action::ListAdd(_) => false,
        }
    }

    /// The question of the confirmation popup.
    pub fn question(&self) -> String {
        match self {
            Action::Release {
                targets,
                learn,
                allow,
            } => {
                let mut q = format!(
                    "Release {} to the recipients",
                    plural(targets.len(), "held message")
                );
                if *learn {
                    q.push_str(" and teach Bayes they are ham");
                }
                if !allow.is_empty() {
                    q.push_str(" and always allow their senders");
                }
                q + "?"
            }
            Action::DeleteHeld { targets, learn } => format!(
                "Delete {}{}? They are not delivered and cannot be recovered.",
                plural(targets.len(), "held message"),
                if *learn {
                    " and teach Bayes they are spam"
                } else {
                    ""
                }
            ),
            Action::QueueDelete { id } => {
                format!("Delete queued message {id} without delivering it?")
            }
            Action::CertDelete {
                subject,
                fingerprint,
                has_private_key,
                ..
            } => format!(
                "Delete certificate {subject} ({})?{}",
                &fingerprint[..fingerprint.len().min(16)],
                if *has_private_key {
                    " Its private key goes too: mail encrypted to it can no longer be read."
                } else {
                    ""
                }
            ),
            Action::ListRemove { what, .. } => format!("Remove list entry {what}?"),
            other => other.progress_label(),
        }
    }

    /// What the status line says while it runs.
    pub fn progress_label(&self) -> String {
        match self {
            Action::Release { targets, .. } => {
                format!("releasing {}", plural(targets.len(), "message"))
            }
            Action::DeleteHeld { targets, .. } => {
                format!("deleting {}", plural(targets.len(), "message"))
            }
            Action::QueueRetry { id } => format!("retrying {id}"),
            Action::QueueDelete { id } => format!("deleting {id}"),
            Action::CertImport { path, .. } => format!("importing {}", path.display()),
            Action::CertTrustCa { path } => format!("trusting the CAs of {}", path.display()),
            Action::CertDelete { subject, .. } => format!("deleting {subject}"),
            Action::TrustPin {
                domain,
                level: Some(l),
            } => format!("pinning {domain} to {}", l.as_str()),
            Action::TrustPin {
                domain,
                level: None,
            } => format!("unpinning {domain}"),
            Action::DigestFrequency {
                recipient,
                frequency,
            } => format!(
                "setting the reports of {recipient} to {}",
                frequency.as_deref().unwrap_or("the schedule")
            ),
            Action::ListAdd(e) => format!("adding {}", e.sender),
            Action::ListRemove { what, .. } => format!("removing {what}"),
        }
    }

    /// How many steps it takes (one call each), for the progress bar.
    pub fn steps(&self) -> usize {
        match self {
            Action::Release { targets, allow, .. } => targets.len() + allow.len(),
            Action::DeleteHeld { targets, .. } => targets.len(),
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn targets(n: usize) -> Vec<HeldTarget> {
        (0..n)
            .map(|i| HeldTarget {
                message: format!("M{i}"),
                recipient: Some("u@example.test".into()),
            })
            .collect()
    }

    #[test]
    fn destroying_and_bulk_release_ask_first() {
        let one = Action::Release {
            targets: targets(1),
            learn: false,
            allow: vec![],
        };
        assert!(!one.needs_confirmation());
        let many = Action::Release {
            targets: targets(500),
            learn: true,
            allow: vec![],
        };
        assert!(many.needs_confirmation());
        assert_eq!(
            many.question(),
            "Release 500 held messages to the recipients and teach Bayes they are ham?"
        );
        let delete = Action::DeleteHeld {
            targets: targets(1),
            learn: false,
        };
        assert!(delete.needs_confirmation());
        assert!(Action::QueueDelete { id: "A".into() }.needs_confirmation());
        assert!(!Action::QueueRetry { id: "A".into() }.needs_confirmation());
    }

    #[test]
    fn a_password_is_never_printed() {
        let a = Action::CertImport {
            path: "/tmp/bob.p12".into(),
            password: Some(Secret("hunter2".into())),
        };
        assert!(!format!("{a:?}").contains("hunter2"));
    }
}
