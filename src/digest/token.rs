//! Action links: a token names one (entry, recipient, action) and when it expires, signed
//! with HMAC-SHA256 under a key in the data directory (`digest.key`, mode 0600, made on
//! first use). The token is not secret from its recipient, only unforgeable: changing any
//! byte of it breaks the signature.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::Signer;

/// What a link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkAction {
    /// Release to this recipient only.
    Release,
    /// Release to this recipient and teach the filter it is not spam.
    ReleaseLearn,
    /// Delete for this recipient.
    Delete,
    /// Allow the sender for this recipient from now on (and release this one).
    AllowSender,
    /// Ask an operator to release it (for what users may not release themselves).
    RequestRelease,
}

impl LinkAction {
    pub const ALL: [LinkAction; 5] = [
        LinkAction::Release,
        LinkAction::ReleaseLearn,
        LinkAction::Delete,
        LinkAction::AllowSender,
        LinkAction::RequestRelease,
    ];

    fn code(self) -> u8 {
        match self {
            LinkAction::Release => b'r',
            LinkAction::ReleaseLearn => b'l',
            LinkAction::Delete => b'd',
            LinkAction::AllowSender => b'a',
            LinkAction::RequestRelease => b'q',
        }
    }

    fn of_code(c: u8) -> Option<LinkAction> {
        LinkAction::ALL.into_iter().find(|a| a.code() == c)
    }

    /// The button's words.
    pub fn label(self) -> &'static str {
        match self {
            LinkAction::Release => "Release to me",
            LinkAction::ReleaseLearn => "Release to me, it is not spam",
            LinkAction::Delete => "Delete",
            LinkAction::AllowSender => "Always allow this sender for me",
            LinkAction::RequestRelease => "Ask an administrator to release it",
        }
    }

    /// What the result page says.
    pub fn done(self) -> &'static str {
        match self {
            LinkAction::Release => "The message was released to you. It arrives in a moment.",
            LinkAction::ReleaseLearn => {
                "The message was released to you, and the filter learned that it is not spam."
            }
            LinkAction::Delete => "The message was deleted.",
            LinkAction::AllowSender => {
                "The sender is now allowed for you, and this message was released to you."
            }
            LinkAction::RequestRelease => {
                "Your request was passed to the administrators. You will get the message if they release it."
            }
        }
    }
}

/// What a valid token names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub entry: i64,
    pub action: LinkAction,
    /// Unix seconds; the link is refused after.
    pub expires_at: i64,
    pub recipient: String,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not a token, or a changed one.
    Invalid,
    Expired,
}

const CONTEXT: &[u8] = b"portcullis digest link v1\0";
/// Tokens longer than this are not read (a recipient address is at most 320 bytes).
pub const MAX_TOKEN_LEN: usize = 1024;

/// The signing key.
pub struct LinkKey {
    key: PKey<Private>,
}

impl LinkKey {
    /// The key file of `data_dir`, made (32 random bytes, 0600) when missing; refused when
    /// others may read it.
    pub fn open(data_dir: &Path) -> anyhow::Result<LinkKey> {
        let path = key_path(data_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => {
                let mode = std::fs::metadata(&path)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    anyhow::bail!(
                        "{} has mode {mode:o}: others may forge report links; chmod 600 it",
                        path.display()
                    );
                }
                b
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => make_key(&path)?,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        if bytes.len() < 32 {
            anyhow::bail!(
                "{} is shorter than 32 bytes: remove it to make a new one (links sent so far stop working)",
                path.display()
            );
        }
        Ok(LinkKey {
            key: PKey::hmac(&bytes)?,
        })
    }

    fn mac(&self, payload: &[u8]) -> Vec<u8> {
        let mut signer = Signer::new(MessageDigest::sha256(), &self.key).expect("HMAC signer");
        signer.update(CONTEXT).expect("HMAC");
        signer.update(payload).expect("HMAC");
        signer.sign_to_vec().expect("HMAC")
    }

    /// The token for `claim`.
    pub fn token(&self, claim: &Claim) -> String {
        let mut payload = Vec::with_capacity(17 + claim.recipient.len());
        payload.extend_from_slice(&claim.entry.to_be_bytes());
        payload.push(claim.action.code());
        payload.extend_from_slice(&claim.expires_at.to_be_bytes());
        payload.extend_from_slice(claim.recipient.as_bytes());
        let b64 = base64_simd::URL_SAFE_NO_PAD;
        format!(
            "{}.{}",
            b64.encode_to_string(&payload),
            b64.encode_to_string(self.mac(&payload))
        )
    }

    /// What `token` names, when it is ours, unchanged and not expired at `now`.
    pub fn check(&self, token: &str, now: i64) -> Result<Claim, Refused> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(Refused::Invalid);
        }
        let (payload, mac) = token.split_once('.').ok_or(Refused::Invalid)?;
        let b64 = base64_simd::URL_SAFE_NO_PAD;
        let payload = b64
            .decode_to_vec(payload.as_bytes())
            .map_err(|_| Refused::Invalid)?;
        let mac = b64
            .decode_to_vec(mac.as_bytes())
            .map_err(|_| Refused::Invalid)?;
        let expected = self.mac(&payload);
        if mac.len() != expected.len() || !openssl::memcmp::eq(&mac, &expected) {
            return Err(Refused::Invalid);
        }
        if payload.len() < 17 {
            return Err(Refused::Invalid);
        }
        let entry = i64::from_be_bytes(payload[..8].try_into().unwrap());
        let action = LinkAction::of_code(payload[8]).ok_or(Refused::Invalid)?;
        let expires_at = i64::from_be_bytes(payload[9..17].try_into().unwrap());
        let recipient = String::from_utf8(payload[17..].to_vec()).map_err(|_| Refused::Invalid)?;
        if now > expires_at {
            return Err(Refused::Expired);
        }
        Ok(Claim {
            entry,
            action,
            expires_at,
            recipient,
        })
    }
}

/// SHA-256 of a token: what the spent-links table keeps.
pub fn token_hash(token: &str) -> Vec<u8> {
    openssl::sha::sha256(token.as_bytes()).to_vec()
}

pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("digest.key")
}

fn make_key(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = vec![0u8; 32];
    openssl::rand::rand_bytes(&mut bytes)?;
    let made = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path);
    match made {
        Ok(mut f) => {
            f.write_all(&bytes)?;
            f.sync_all()?;
            Ok(bytes)
        }
        // Made by another process meanwhile: use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(std::fs::read(path)?),
        Err(e) => Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_claim_and_refuse_changes_and_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let key = LinkKey::open(dir.path()).unwrap();
        let mode = std::fs::metadata(key_path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let claim = Claim {
            entry: 42,
            action: LinkAction::ReleaseLearn,
            expires_at: 2_000,
            recipient: "ann@example.test".into(),
        };
        let token = key.token(&claim);
        assert_eq!(key.check(&token, 1_000), Ok(claim.clone()));
        assert_eq!(key.check(&token, 2_001), Err(Refused::Expired));
        // The same key file gives the same key.
        let again = LinkKey::open(dir.path()).unwrap();
        assert_eq!(again.check(&token, 1_000), Ok(claim.clone()));
        // Any changed character is refused.
        for i in 0..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(bytes).unwrap();
            if changed != token {
                assert!(key.check(&changed, 1_000).is_err(), "changed at {i}");
            }
        }
        // Another recipient's or action's claim under the same payload layout needs the key.
        let other = Claim {
            recipient: "bob@example.test".into(),
            ..claim
        };
        let (_, mac) = token.split_once('.').unwrap();
        let forged = format!("{}.{mac}", key.token(&other).split_once('.').unwrap().0);
        assert_eq!(key.check(&forged, 1_000), Err(Refused::Invalid));
        assert_eq!(key.check("nonsense", 0), Err(Refused::Invalid));
        assert_eq!(key.check(&"x".repeat(5000), 0), Err(Refused::Invalid));
        // A key others may read is refused.
        std::fs::set_permissions(key_path(dir.path()), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert!(LinkKey::open(dir.path()).is_err());
    }
}
