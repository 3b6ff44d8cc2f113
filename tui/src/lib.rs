//! # The Portcullis operator console
//!
//! `portcullis tui`: a terminal client of the gateway's admin API (and of nothing else).
//!
//! - [`api`]: the API on its Unix socket, one method per call, tolerant typed answers.
//! - [`worker`]: every call in a background task; progress of long actions.
//! - [`app`]: the state, and what keys, replies and ticks do to it.
//! - [`keys`]: every key in one table (dispatch and help come from it).
//! - [`screens`]: Dashboard, Quarantine, Certificates, Trust, Queue, Lists.
//! - [`action`]: what an operator asks the gateway to do (confirmed when destructive).
//! - [`sanitize`]: mail text made inert before it reaches the terminal.
//! - [`ui`]: theme (`NO_COLOR`), tables that fit, popups, formatting.

pub mod action;
pub mod api;
pub mod app;
pub mod keys;
pub mod sanitize;
pub mod screens;
mod terminal;
pub mod ui;
pub mod worker;

#[cfg(test)]
mod fixtures;

pub use terminal::run;
