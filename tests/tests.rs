//! The one integration test binary: the real gateway on 127.0.0.1, real SMTP on both sides.
//!
//! - `smtp_dialog`: commands, sequence errors, pipelining, BDAT, replies.
//! - `relay`: relay control battery (no open relay).
//! - `limits`: size, recipients, line length, bad commands, timeouts, connection caps.
//! - `starttls`: TLS upgrade, state reset, command injection, swaks as independent client.
//! - `delivery`: to the next hop, retries while it is down, DSNs, held and rejected verdicts.
//! - `delivery_tls`: outbound `[[tls_policy]]`: no plaintext fallback, verified chains and names.
//! - `durability`: kill -9 during a load; nothing acknowledged is lost.
//! - `cli`: check-config and queue commands; metrics endpoint.
//! - `auth`: SPF, DKIM (dkimpy as the independent signer), DMARC policies, ARC, our
//!   Authentication-Results; DNS from dnsmasq on loopback.
//! - `smime`: S/MIME interop with `openssl cms` and `gpgsm` both ways, policy refusals,
//!   an encrypted virus, broken CMS.
//! - `bayes`: no opinion while untrained; `bayes train`/`learn` change the next verdict; eval.
//! - `trust`: a conversation earns trust for authenticated senders only; pins via the CLI.
//! - `rules`: `[[rules]]`: a refusal at RCPT TO, two outcomes in one DATA (the refused
//!   recipient's copy held), skipped stages, added header fields, quarantine, check-config.
//! - `actions`: the rules' message actions: a disclaimer in every MIME shape (read with
//!   Python's `email`), an attachment signature the openssl CLI verifies, archive copies.
//! - `certs`: the S/MIME certificate store CLI on openssl-made fixtures (legacy PKCS#12,
//!   expired and wrong-usage certificates, sealed keys, trust anchors).

mod harness;

mod actions;
mod auth;
mod bayes;
mod certs;
mod clamav;
mod cli;
mod delivery;
mod delivery_tls;
mod durability;
mod limits;
mod relay;
mod rules;
mod smime;
mod smtp_dialog;
mod starttls;
mod tls_policy;
mod trust;
