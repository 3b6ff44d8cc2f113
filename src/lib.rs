//! # Portcullis — a mail gateway appliance
//!
//! Mail comes in over SMTP ([`smtp`]), passes one ordered [`pipeline`] of stages (the
//! content stages live in the `filters` crate), gets its verdict *in the SMTP dialog*, and
//! is stored durably in the [`queue`] before the 250. [`delivery`] workers hand it to the
//! internal mail server (inbound) or to the MX/smarthost (outbound).
//!
//! ## Layout
//! - [`config`]: TOML → validated config; every limit named in `config::defaults`.
//! - [`smtp`]: listener, session state machine, relay control, STARTTLS, replies.
//! - [`pipeline`]: the inbound and outbound stage order, and the verdict.
//! - [`actions`]: the rules' message actions (disclaimer, attachment signatures, archive),
//!   applied in the pipeline's store phase.
//! - [`store`]: the one database: opened, migrated, handed to its owners.
//! - [`queue`]: what is stored for a verdict (`queue::admit`), queue rows (small bodies
//!   inline, large ones as spool files), group commit, delivery jobs.
//! - [`delivery`]: SMTP client workers, MX lookup, retries, DSNs.
//! - [`quarantine_ops`]: release, delete, list, preview of held messages (storage in the
//!   `quarantine` crate), and their retention.
//! - [`certs`]: the certificate and key store (import, harvest, anchors, revocation).
//! - [`smime`]: S/MIME — the CMS engine (decrypt, verify, sign, encrypt) and its pipeline
//!   steps.
//! - [`bayes`]: the Bayes model in the store, learning, training, eval and cross-validation.
//! - [`trust`]: the level of trust's tables, and learning from stored messages.
//! - [`clock`]: seconds since the epoch and RFC 5322 dates.
//! - [`metrics`]: Prometheus counters; [`telemetry`]: logs.
//! - [`lists`]: operators' allow and block lists on disk (the stage is `filters::lists`).
//! - [`admin`]: the admin API on a Unix socket, its operations and its client.
//! - [`gateway`]: wires the parts together and reloads the configuration; [`live`]: the
//!   configuration in force and what is built from it; [`cli`]: the `portcullis` command.

pub mod actions;
pub mod admin;
pub mod bayes;
pub mod certs;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod digest;
pub mod gateway;
pub mod lists;
pub mod live;
pub mod metrics;
pub mod pipeline;
pub mod quarantine_ops;
pub mod queue;
pub mod rules;
pub mod service;
pub mod smime;
pub mod smtp;
pub mod store;
pub mod telemetry;
pub mod trust;
