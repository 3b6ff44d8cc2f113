//! RSA (PKCS#1 v1.5, PSS, OAEP) and ECDSA key operations through OpenSSL contexts kept per thread.
//!
//! Making a context anew for every operation (`EVP_PKEY_CTX_new`, `*_init`, the padding
//! and digest parameters) costs OpenSSL 3.0 algorithm fetches under locks that every
//! thread shares, and a walk over its whole name map: about 1 % of an inbound message
//! with both cores busy (perf). The S/MIME workers use the same few keys message after
//! message — our own keys, and the public keys of the partner certificates `x509_cache`
//! keeps — so each thread keeps the contexts it made, as `openssl speed` does.
//!
//! A context holds a reference to its key, so while a context is kept no other key can
//! have its address: the address names the key. A few are kept per thread, the oldest
//! dropped first; every change of the certificate store drops them all
//! (`certs::keys::generation` moves), so a deleted key does not live on in a worker's memory.

use std::cell::{Cell, RefCell};

use openssl::error::ErrorStack;
use openssl::md::MdRef;
use openssl::pkey::{PKey, Private, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;

/// Contexts kept per thread and kind of key: our keys and the partners' usual keys.
const KEPT_PER_THREAD: usize = 16;

/// What a context is set up for. Digests are compared by address: they are OpenSSL's
/// static method tables.
#[derive(Clone, Copy)]
pub enum Setup {
    SignRsaPkcs1(&'static MdRef),
    /// ECDSA over a digest made by the caller; the signature is DER (ECDSA-Sig-Value).
    SignEcdsa,
    VerifyRsaPkcs1(&'static MdRef),
    /// RSASSA-PSS (RFC 4055): the message digest, the MGF1 digest, the salt length.
    VerifyRsaPss {
        hash: &'static MdRef,
        mgf1: &'static MdRef,
        salt: i32,
    },
    VerifyEcdsa,
    DecryptRsaPkcs1,
    DecryptRsaOaep {
        hash: &'static MdRef,
        mgf1: &'static MdRef,
    },
    EncryptRsaPkcs1,
}

impl PartialEq for Setup {
    fn eq(&self, other: &Self) -> bool {
        use Setup::*;
        match (self, other) {
            (SignRsaPkcs1(a), SignRsaPkcs1(b)) | (VerifyRsaPkcs1(a), VerifyRsaPkcs1(b)) => {
                std::ptr::eq(*a, *b)
            }
            (DecryptRsaOaep { hash: a, mgf1: m }, DecryptRsaOaep { hash: b, mgf1: n }) => {
                std::ptr::eq(*a, *b) && std::ptr::eq(*m, *n)
            }
            (
                VerifyRsaPss {
                    hash: a,
                    mgf1: m,
                    salt: s,
                },
                VerifyRsaPss {
                    hash: b,
                    mgf1: n,
                    salt: t,
                },
            ) => std::ptr::eq(*a, *b) && std::ptr::eq(*m, *n) && s == t,
            (VerifyEcdsa, VerifyEcdsa)
            | (SignEcdsa, SignEcdsa)
            | (DecryptRsaPkcs1, DecryptRsaPkcs1)
            | (EncryptRsaPkcs1, EncryptRsaPkcs1) => true,
            _ => false,
        }
    }
}

struct Kept<T> {
    key: usize,
    setup: Setup,
    ctx: PkeyCtx<T>,
}

thread_local! {
    static PRIVATE: RefCell<Vec<Kept<Private>>> = const { RefCell::new(Vec::new()) };
    static PUBLIC: RefCell<Vec<Kept<Public>>> = const { RefCell::new(Vec::new()) };
    /// The [`GENERATION`] this thread's contexts were made in.
    static MADE_IN: Cell<u64> = const { Cell::new(0) };
}

/// A thread that sees a newer generation of the store's keys drops what it kept.
fn drop_if_outdated() {
    let now = crate::certs::keys::generation();
    if MADE_IN.get() != now {
        PRIVATE.with(|k| k.borrow_mut().clear());
        PUBLIC.with(|k| k.borrow_mut().clear());
        MADE_IN.set(now);
    }
}

/// Run `op` with this thread's context for `key` set up for `setup` (sign or decrypt).
pub fn with_private<R>(
    key: &PKey<Private>,
    setup: Setup,
    op: impl FnOnce(&mut PkeyCtx<Private>) -> Result<R, ErrorStack>,
) -> Result<R, ErrorStack> {
    drop_if_outdated();
    PRIVATE.with(|kept| with_kept(&mut kept.borrow_mut(), key, setup, set_up_private, op))
}

/// Run `op` with this thread's context for `key` set up for `setup` (verify or encrypt).
pub fn with_public<R>(
    key: &PKey<Public>,
    setup: Setup,
    op: impl FnOnce(&mut PkeyCtx<Public>) -> Result<R, ErrorStack>,
) -> Result<R, ErrorStack> {
    drop_if_outdated();
    PUBLIC.with(|kept| with_kept(&mut kept.borrow_mut(), key, setup, set_up_public_op, op))
}

fn with_kept<T, R>(
    kept: &mut Vec<Kept<T>>,
    key: &PKey<T>,
    setup: Setup,
    set_up: fn(&mut PkeyCtx<T>, Setup) -> Result<(), ErrorStack>,
    op: impl FnOnce(&mut PkeyCtx<T>) -> Result<R, ErrorStack>,
) -> Result<R, ErrorStack> {
    // A `PKeyRef` is the EVP_PKEY itself: its address is the key's.
    let address = std::ptr::from_ref::<openssl::pkey::PKeyRef<T>>(key) as usize;
    if let Some(k) = kept
        .iter_mut()
        .find(|k| k.key == address && k.setup == setup)
    {
        return op(&mut k.ctx);
    }
    let mut ctx = PkeyCtx::new(key)?;
    set_up(&mut ctx, setup)?;
    let result = op(&mut ctx);
    if kept.len() >= KEPT_PER_THREAD {
        kept.remove(0);
    }
    kept.push(Kept {
        key: address,
        setup,
        ctx,
    });
    result
}

fn set_up_private(ctx: &mut PkeyCtx<Private>, setup: Setup) -> Result<(), ErrorStack> {
    match setup {
        Setup::SignRsaPkcs1(md) => {
            ctx.sign_init()?;
            ctx.set_rsa_padding(Padding::PKCS1)?;
            ctx.set_signature_md(md)
        }
        Setup::SignEcdsa => ctx.sign_init(),
        Setup::DecryptRsaPkcs1 => {
            ctx.decrypt_init()?;
            ctx.set_rsa_padding(Padding::PKCS1)
        }
        Setup::DecryptRsaOaep { hash, mgf1 } => {
            ctx.decrypt_init()?;
            ctx.set_rsa_padding(Padding::PKCS1_OAEP)?;
            ctx.set_rsa_oaep_md(hash)?;
            ctx.set_rsa_mgf1_md(mgf1)
        }
        Setup::VerifyRsaPkcs1(_)
        | Setup::VerifyRsaPss { .. }
        | Setup::VerifyEcdsa
        | Setup::EncryptRsaPkcs1 => set_up_public_op(ctx, setup),
    }
}

/// The operations a public key does (a private key does them too).
fn set_up_public_op<T: openssl::pkey::HasPublic>(
    ctx: &mut PkeyCtx<T>,
    setup: Setup,
) -> Result<(), ErrorStack> {
    match setup {
        Setup::VerifyRsaPkcs1(md) => {
            ctx.verify_init()?;
            ctx.set_rsa_padding(Padding::PKCS1)?;
            ctx.set_signature_md(md)
        }
        Setup::VerifyRsaPss { hash, mgf1, salt } => {
            ctx.verify_init()?;
            ctx.set_rsa_padding(Padding::PKCS1_PSS)?;
            ctx.set_signature_md(hash)?;
            ctx.set_rsa_pss_saltlen(openssl::sign::RsaPssSaltlen::custom(salt))?;
            ctx.set_rsa_mgf1_md(mgf1)
        }
        Setup::VerifyEcdsa => ctx.verify_init(),
        Setup::EncryptRsaPkcs1 => {
            ctx.encrypt_init()?;
            ctx.set_rsa_padding(Padding::PKCS1)
        }
        // Private-key operations are set up by `set_up_private` only.
        Setup::SignRsaPkcs1(_)
        | Setup::SignEcdsa
        | Setup::DecryptRsaPkcs1
        | Setup::DecryptRsaOaep { .. } => Err(ErrorStack::get()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::md::Md;
    use openssl::rsa::Rsa;

    #[test]
    fn kept_contexts_give_the_answers_fresh_ones_give_and_never_mix_keys() {
        let a = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let b = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
        let public =
            |k: &PKey<Private>| PKey::public_key_from_der(&k.public_key_to_der().unwrap()).unwrap();
        let (a_pub, b_pub) = (public(&a), public(&b));
        let digest = [7u8; 32];
        for _ in 0..3 {
            for (key, key_pub, other_pub) in [(&a, &a_pub, &b_pub), (&b, &b_pub, &a_pub)] {
                let sig = with_private(key, Setup::SignRsaPkcs1(Md::sha256()), |c| {
                    let mut s = Vec::new();
                    c.sign_to_vec(&digest, &mut s)?;
                    Ok(s)
                })
                .unwrap();
                let verify = |k: &PKey<Public>, md| {
                    with_public(k, Setup::VerifyRsaPkcs1(md), |c| {
                        Ok(c.verify(&digest, &sig).unwrap_or(false))
                    })
                    .unwrap()
                };
                assert!(verify(key_pub, Md::sha256()));
                assert!(!verify(other_pub, Md::sha256()), "another key's context");
                assert!(!verify(key_pub, Md::sha512()), "another digest's context");

                let sealed = with_public(key_pub, Setup::EncryptRsaPkcs1, |c| {
                    let mut out = Vec::new();
                    c.encrypt_to_vec(b"content key", &mut out)?;
                    Ok(out)
                })
                .unwrap();
                let opened = with_private(key, Setup::DecryptRsaPkcs1, |c| {
                    let mut out = Vec::new();
                    c.decrypt_to_vec(&sealed, &mut out)?;
                    Ok(out)
                })
                .unwrap();
                assert_eq!(opened, b"content key");
                // A failed operation leaves the kept context usable.
                let garbage = with_private(key, Setup::DecryptRsaPkcs1, |c| {
                    let mut out = Vec::new();
                    c.decrypt_to_vec(&[1u8; 256], &mut out)?;
                    Ok(out)
                });
                assert!(garbage.is_err() || garbage.unwrap() != b"content key");
            }
        }
        // More keys than a thread keeps: the oldest go, the answers stay right.
        let many: Vec<_> = (0..KEPT_PER_THREAD + 2)
            .map(|_| PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap())
            .collect();
        for key in &many {
            let sig = with_private(key, Setup::SignRsaPkcs1(Md::sha256()), |c| {
                let mut s = Vec::new();
                c.sign_to_vec(&digest, &mut s)?;
                Ok(s)
            })
            .unwrap();
            let key_pub = public(key);
            let ok = with_public(&key_pub, Setup::VerifyRsaPkcs1(Md::sha256()), |c| {
                Ok(c.verify(&digest, &sig).unwrap_or(false))
            })
            .unwrap();
            assert!(ok);
        }
        // (`<=`: another test's store change may empty them meanwhile)
        PRIVATE.with(|k| assert!(k.borrow().len() <= KEPT_PER_THREAD));
        // A change of the store drops them all at this thread's next operation.
        crate::certs::keys::forget_all();
        let sig = with_private(&a, Setup::SignRsaPkcs1(Md::sha256()), |c| {
            let mut s = Vec::new();
            c.sign_to_vec(&digest, &mut s)?;
            Ok(s)
        })
        .unwrap();
        assert_eq!(sig.len(), 256);
        PRIVATE.with(|k| assert_eq!(k.borrow().len(), 1));
    }
}
