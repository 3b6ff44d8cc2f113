//! Content encryption (AES-CBC, AES-GCM, 3DES) with ciphers fetched from OpenSSL's
//! provider once, instead of `openssl::symm`'s legacy cipher objects: OpenSSL 3.0 fetches
//! the provider's implementation of a legacy cipher again on every initialisation, under a
//! lock every thread shares (about 1 % of an S/MIME message with both cores busy, perf).
//! Same calls and answers as `openssl::symm::{encrypt, decrypt, encrypt_aead,
//! decrypt_aead}`; a cipher that cannot be fetched goes through those.

use std::sync::OnceLock;

use openssl::cipher::{Cipher as Fetched, CipherRef};
use openssl::cipher_ctx::CipherCtx;
use openssl::error::ErrorStack;
use openssl::nid::Nid;
use openssl::symm::Cipher;

/// The content ciphers S/MIME mail uses.
const USED: [fn() -> Cipher; 7] = [
    Cipher::aes_128_cbc,
    Cipher::aes_192_cbc,
    Cipher::aes_256_cbc,
    Cipher::des_ede3_cbc,
    Cipher::aes_128_gcm,
    Cipher::aes_192_gcm,
    Cipher::aes_256_gcm,
];

fn fetched(cipher: Cipher) -> Option<&'static CipherRef> {
    static FETCHED: OnceLock<Vec<(Nid, Fetched)>> = OnceLock::new();
    FETCHED
        .get_or_init(|| {
            USED.iter()
                .filter_map(|make| {
                    let c = make();
                    let fetched = Fetched::fetch(None, c.nid().short_name().ok()?, None).ok()?;
                    Some((c.nid(), fetched))
                })
                .collect()
        })
        .iter()
        .find(|(nid, _)| *nid == cipher.nid())
        .map(|(_, f)| &**f)
}

/// Refuse what `CipherCtx` would panic on: a key or IV shorter than the cipher needs
/// (GCM nonces have the length they are given: no IV to check).
fn check_sizes(cipher: &CipherRef, key: &[u8], iv: Option<&[u8]>) -> Result<(), ErrorStack> {
    if key.len() < cipher.key_length() || iv.is_some_and(|iv| iv.len() < cipher.iv_length()) {
        return Err(ErrorStack::get());
    }
    Ok(())
}

/// CBC decryption with PKCS#7 padding removed.
pub fn decrypt(cipher: Cipher, key: &[u8], iv: &[u8], data: &[u8]) -> Result<Vec<u8>, ErrorStack> {
    cbc(cipher, Direction::Decrypt, key, iv, data)
}

/// CBC encryption with PKCS#7 padding.
pub fn encrypt(cipher: Cipher, key: &[u8], iv: &[u8], data: &[u8]) -> Result<Vec<u8>, ErrorStack> {
    cbc(cipher, Direction::Encrypt, key, iv, data)
}

#[derive(Clone, Copy, PartialEq)]
enum Direction {
    Encrypt,
    Decrypt,
}

fn cbc(
    cipher: Cipher,
    direction: Direction,
    key: &[u8],
    iv: &[u8],
    data: &[u8],
) -> Result<Vec<u8>, ErrorStack> {
    let Some(f) = fetched(cipher) else {
        return match direction {
            Direction::Encrypt => openssl::symm::encrypt(cipher, key, Some(iv), data),
            Direction::Decrypt => openssl::symm::decrypt(cipher, key, Some(iv), data),
        };
    };
    check_sizes(f, key, Some(iv))?;
    let mut ctx = CipherCtx::new()?;
    match direction {
        Direction::Encrypt => ctx.encrypt_init(Some(f), Some(key), Some(iv))?,
        Direction::Decrypt => ctx.decrypt_init(Some(f), Some(key), Some(iv))?,
    }
    let mut out = Vec::with_capacity(data.len() + f.block_size());
    ctx.cipher_update_vec(data, &mut out)?;
    ctx.cipher_final_vec(&mut out)?;
    Ok(out)
}

/// GCM decryption of `data` with additional data `aad`, checked against `tag`.
pub fn decrypt_aead(
    cipher: Cipher,
    key: &[u8],
    nonce: &[u8],
    aad: &[u8],
    data: &[u8],
    tag: &[u8],
) -> Result<Vec<u8>, ErrorStack> {
    let Some(f) = fetched(cipher) else {
        return openssl::symm::decrypt_aead(cipher, key, Some(nonce), aad, data, tag);
    };
    let mut ctx = CipherCtx::new()?;
    ctx.decrypt_init(Some(f), None, None)?;
    ctx.set_iv_length(nonce.len())?;
    check_sizes(f, key, None)?;
    ctx.decrypt_init(None, Some(key), Some(nonce))?;
    if !aad.is_empty() {
        ctx.cipher_update(aad, None)?;
    }
    let mut out = Vec::with_capacity(data.len());
    ctx.cipher_update_vec(data, &mut out)?;
    ctx.set_tag(tag)?;
    ctx.cipher_final_vec(&mut out)?;
    Ok(out)
}

/// GCM encryption of `data` (no additional data); the tag is written to `tag`.
pub fn encrypt_aead(
    cipher: Cipher,
    key: &[u8],
    nonce: &[u8],
    data: &[u8],
    tag: &mut [u8],
) -> Result<Vec<u8>, ErrorStack> {
    let Some(f) = fetched(cipher) else {
        return openssl::symm::encrypt_aead(cipher, key, Some(nonce), &[], data, tag);
    };
    let mut ctx = CipherCtx::new()?;
    ctx.encrypt_init(Some(f), None, None)?;
    ctx.set_iv_length(nonce.len())?;
    check_sizes(f, key, None)?;
    ctx.encrypt_init(None, Some(key), Some(nonce))?;
    let mut out = Vec::with_capacity(data.len());
    ctx.cipher_update_vec(data, &mut out)?;
    ctx.cipher_final_vec(&mut out)?;
    ctx.tag(tag)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every cipher, both ways, against `openssl::symm`: same bytes out, same refusals.
    #[test]
    fn answers_as_openssl_symm_answers() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7) as u8).collect();
        for make in USED {
            let c = make();
            assert!(fetched(c).is_some(), "{:?} not fetched", c.nid());
            let key = vec![0x42; c.key_len()];
            if c.nid().short_name().unwrap().contains("GCM") {
                for nonce_len in [12, 16] {
                    let nonce = vec![9; nonce_len];
                    let (mut t1, mut t2) = ([0u8; 16], [0u8; 16]);
                    let ours = encrypt_aead(c, &key, &nonce, &data, &mut t1).unwrap();
                    let theirs =
                        openssl::symm::encrypt_aead(c, &key, Some(&nonce), &[], &data, &mut t2)
                            .unwrap();
                    assert_eq!((&ours, t1), (&theirs, t2));
                    let aad = b"authenticated attributes";
                    let mut t3 = [0u8; 16];
                    let with_aad =
                        openssl::symm::encrypt_aead(c, &key, Some(&nonce), aad, &data, &mut t3)
                            .unwrap();
                    assert_eq!(
                        decrypt_aead(c, &key, &nonce, aad, &with_aad, &t3).unwrap(),
                        data
                    );
                    let mut bad = t3;
                    bad[0] ^= 1;
                    assert!(decrypt_aead(c, &key, &nonce, aad, &with_aad, &bad).is_err());
                    assert!(decrypt_aead(c, &key, &nonce, b"other", &with_aad, &t3).is_err());
                }
            } else {
                let iv = vec![3; c.iv_len().unwrap()];
                let ours = encrypt(c, &key, &iv, &data).unwrap();
                assert_eq!(
                    ours,
                    openssl::symm::encrypt(c, &key, Some(&iv), &data).unwrap()
                );
                assert_eq!(decrypt(c, &key, &iv, &ours).unwrap(), data);
                // Short key or IV: an error, not CipherCtx's panic.
                assert!(decrypt(c, &key[1..], &iv, &ours).is_err());
                assert!(decrypt(c, &key, &iv[1..], &ours).is_err());
                assert!(decrypt(c, &key, &iv, &ours[..ours.len() - 1]).is_err());
            }
        }
    }
}
