//! The one integration test binary: the real gateway on 127.0.0.1, real SMTP on both sides.
//!
//! - `smtp_dialog`: commands, sequence errors, pipelining, BDAT, replies.
//! - `relay`: relay control battery (no open relay).
//! - `limits`: size, recipients, line length, bad commands, timeouts, connection caps.
//! - `starttls`: TLS upgrade, state reset, command injection, swaks as independent client.
//! - `delivery`: to the next hop, retries while it is down, DSNs, held and rejected verdicts.
//! - `delivery_tls`: outbound `[[tls_policy]]`: no plaintext fallback, verified chains and names.
//! - `durability`: kill -9 during a load; nothing acknowledged is lost.
//! - `explain`: `portcullis explain --json` agrees with the live gateway (verdict, symbols,
//!   reply) on a clean, a spam-scored and a refused message.
//! - `cli`: check-config and queue commands; metrics endpoint.
//! - `auth`: SPF, DKIM (dkimpy as the independent signer), DMARC policies, ARC, our
//!   Authentication-Results; DNS from dnsmasq on loopback.
//! - `smime`: S/MIME interop with `openssl cms` and `gpgsm` both ways, policy refusals,
//!   an encrypted virus, broken CMS.
//! - `content`: the content heuristics in the live gateway: points, overrides, the stage off.
//! - `bayes`: no opinion while untrained; `bayes train`/`learn` change the next verdict; eval.
//! - `quarantine`: held by score, listed, released to one recipient and deleted for the
//!   other (audited), release teaching Bayes, bulk actions by filter, held outbound mail, the
//!   migration of held queue rows.
//! - `trust`: a conversation earns trust for authenticated senders only; pins via the CLI.
//! - `admin`: the admin API on its Unix socket: JSON errors naming the field, OpenAPI,
//!   counters, a key imported through it in use at once, roles by group (the CLI run as
//!   another user), the CLI offline.
//! - `lists`: allow and block lists: a blocked sender refused in the dialog, an allowed
//!   partner only when authenticated.
//! - `reload`: SIGHUP under load: a good config applies to new sessions, nothing is lost;
//!   a bad one is refused and the old one stays.
//! - `rules`: `[[rules]]`: a refusal at RCPT TO, two outcomes in one DATA (the refused
//!   recipient's copy held), skipped stages, added header fields, quarantine, check-config.
//! - `actions`: the rules' message actions: a disclaimer in every MIME shape (read with
//!   Python's `email`), an attachment signature the openssl CLI verifies, archive copies.
//! - `digest`: quarantine reports at the sink with working links; headless Chromium opens
//!   one (nothing changes) and presses its button (released to that recipient only); HEAD,
//!   a scanner's GET, a used or altered link change nothing; a virus only "asks".
//! - `console`: `portcullis tui` in tmux against a running gateway: a held message
//!   released with a key reaches the next hop, another deleted after the confirmation, a
//!   subject with an ANSI escape sequence shown inert; a clear screen without a gateway; an
//!   auditor (`nobody` via `setpriv`) who reads and cannot act; the console's API client
//!   against every answer it reads.
//! - `certs`: the S/MIME certificate store CLI on openssl-made fixtures (legacy PKCS#12,
//!   expired and wrong-usage certificates, sealed keys, trust anchors).

mod harness;

mod actions;
mod admin;
mod auth;
mod bayes;
mod certs;
mod clamav;
mod cli;
mod console;
mod content;
mod delivery;
mod delivery_tls;
mod digest;
mod durability;
mod explain;
mod faults;
mod limits;
mod lists;
mod package;
mod quarantine;
mod relay;
mod reload;
mod rules;
mod service;
mod smime;
mod smtp_dialog;
mod starttls;
mod tls_policy;
mod trust;
