//! Private keys at rest: AES-256-GCM under a master key kept in a file only the service
//! user can read (mode 0600). The file is made on first use; a group- or world-readable one
//! is refused, since anyone who reads it can decrypt every stored key.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, bail};
use openssl::pkey::{PKey, Private};
use openssl::rand::rand_bytes;
use openssl::symm::{Cipher, decrypt_aead, encrypt_aead};

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// First byte of a sealed blob: the format, so a later one can be told apart.
const FORMAT_V1: u8 = 1;

/// The master key that seals stored private keys.
pub struct MasterKey {
    key: [u8; KEY_LEN],
    path: PathBuf,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.path.display())
    }
}

impl MasterKey {
    /// Read the key file, or create it (0600, 32 random bytes as hex) if it does not exist
    /// and `may_create` is true.
    pub fn load_or_create(path: &Path, may_create: bool) -> anyhow::Result<MasterKey> {
        match Self::load(path) {
            Err(e)
                if may_create
                    && e.downcast_ref::<std::io::Error>()
                        .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound) =>
            {
                Self::create(path)
            }
            other => other,
        }
    }

    fn load(path: &Path) -> anyhow::Result<MasterKey> {
        let meta = std::fs::metadata(path)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "the S/MIME key file {} can be read by group or others (mode {mode:o}); \
                 it protects every stored private key: run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the S/MIME key file {}", path.display()))?;
        let key = decode_hex(text.trim()).ok_or_else(|| {
            anyhow::anyhow!(
                "{} is not a Portcullis S/MIME key file (expected {} hex digits)",
                path.display(),
                KEY_LEN * 2
            )
        })?;
        Ok(MasterKey {
            key,
            path: path.to_path_buf(),
        })
    }

    fn create(path: &Path) -> anyhow::Result<MasterKey> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create directory {}", dir.display()))?;
        }
        let mut key = [0u8; KEY_LEN];
        rand_bytes(&mut key)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        let mut file = match file {
            Ok(f) => f,
            // Another process made it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Self::load(path),
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("cannot create the S/MIME key file {}", path.display())
                });
            }
        };
        writeln!(file, "{}", encode_hex(&key))?;
        file.sync_all()?;
        tracing::info!(path = %path.display(), "created the S/MIME master key file (back it up: stored private keys cannot be used without it)");
        Ok(MasterKey {
            key,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Encrypt `plaintext`; `context` (e.g. the certificate fingerprint) is authenticated,
    /// so a sealed key copied to another row does not open there.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand_bytes(&mut nonce)?;
        let mut tag = [0u8; TAG_LEN];
        let ciphertext = encrypt_aead(
            Cipher::aes_256_gcm(),
            &self.key,
            Some(&nonce),
            context,
            plaintext,
            &mut tag,
        )?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + TAG_LEN + ciphertext.len());
        out.push(FORMAT_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&tag);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Decrypt what [`seal`](Self::seal) made with the same `context`.
    pub fn open(&self, sealed: &[u8], context: &[u8]) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < 1 + NONCE_LEN + TAG_LEN || sealed[0] != FORMAT_V1 {
            bail!("stored private key is damaged (unknown format)");
        }
        let (nonce, rest) = sealed[1..].split_at(NONCE_LEN);
        let (tag, ciphertext) = rest.split_at(TAG_LEN);
        decrypt_aead(
            Cipher::aes_256_gcm(),
            &self.key,
            Some(nonce),
            context,
            ciphertext,
            tag,
        )
        .map_err(|_| {
            anyhow::anyhow!(
                "cannot decrypt a stored private key with {}: the key file is not the one \
                 the key was stored with (restore the original key file)",
                self.path.display()
            )
        })
    }

    /// Seal a private key (PKCS#8 DER inside).
    pub fn seal_key(&self, key: &PKey<Private>, context: &[u8]) -> anyhow::Result<Vec<u8>> {
        self.seal(&key.private_key_to_pkcs8()?, context)
    }

    /// Open a sealed private key.
    pub fn open_key(&self, sealed: &[u8], context: &[u8]) -> anyhow::Result<PKey<Private>> {
        PKey::private_key_from_pkcs8(&self.open(sealed, context)?)
            .context("stored private key does not parse")
    }
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(s: &str) -> Option<[u8; KEY_LEN]> {
    if s.len() != KEY_LEN * 2 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; KEY_LEN];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// Bumped on every change of the store's keys: whoever keeps something made from a key
/// (the S/MIME engine keeps OpenSSL contexts per worker thread) drops it when this moves, so
/// a deleted key does not live on in memory.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// The store's keys changed.
pub fn forget_all() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// How many times the store's keys changed since the process started.
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::rsa::Rsa;

    #[test]
    fn created_with_mode_0600_and_reloaded_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/certs.key");
        let k = MasterKey::load_or_create(&path, true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let sealed = k.seal(b"secret", b"fp1").unwrap();
        let again = MasterKey::load_or_create(&path, true).unwrap();
        assert_eq!(again.open(&sealed, b"fp1").unwrap(), b"secret");
    }

    #[test]
    fn missing_file_is_an_error_when_creating_is_not_allowed() {
        let dir = tempfile::tempdir().unwrap();
        assert!(MasterKey::load_or_create(&dir.path().join("k"), false).is_err());
    }

    #[test]
    fn readable_by_others_is_refused_naming_chmod() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("certs.key");
        MasterKey::load_or_create(&path, true).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = MasterKey::load_or_create(&path, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("chmod 600"), "{e}");
    }

    #[test]
    fn sealing_is_randomized_and_bound_to_its_context() {
        let dir = tempfile::tempdir().unwrap();
        let k = MasterKey::load_or_create(&dir.path().join("k"), true).unwrap();
        let a = k.seal(b"same plaintext", b"ctx").unwrap();
        let b = k.seal(b"same plaintext", b"ctx").unwrap();
        assert_ne!(a, b, "a fresh nonce per seal");
        assert!(!a.windows(5).any(|w| w == b"plain"));
        assert!(k.open(&a, b"other").is_err());
        let mut tampered = a.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(k.open(&tampered, b"ctx").is_err());
        assert!(k.open(&a[..10], b"ctx").is_err());
    }

    #[test]
    fn private_keys_round_trip_and_another_key_file_cannot_open_them() {
        let dir = tempfile::tempdir().unwrap();
        let k = MasterKey::load_or_create(&dir.path().join("a"), true).unwrap();
        let other = MasterKey::load_or_create(&dir.path().join("b"), true).unwrap();
        let key = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
        let sealed = k.seal_key(&key, b"fp").unwrap();
        assert!(k.open_key(&sealed, b"fp").unwrap().public_eq(&key));
        let e = other.open_key(&sealed, b"fp").unwrap_err().to_string();
        assert!(e.contains("restore the original key file"), "{e}");
    }

    #[test]
    fn a_file_that_is_not_a_key_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "hello\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = MasterKey::load_or_create(&path, true)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a Portcullis S/MIME key file"), "{e}");
    }
}
