//! The SMTP listener: accepts connections, speaks ESMTP, and answers at the end of DATA
//! with the pipeline's verdict.
//!
//! SECURITY: this is the internet-facing part. It reads untrusted bytes from anyone; every
//! buffer is bounded (command line length, message size, recipients, bad commands,
//! idle and total timeouts, connections in all and per IP). Relay control is in
//! [`address`]. After STARTTLS, anything the client pipelined in plaintext is discarded
//! and the session starts over (RFC 3207 §4.2).
//!
//! STANDARDS: RFC 5321 (SMTP), 1869/1870 (ESMTP, SIZE), 2920 (PIPELINING), 3207 (STARTTLS),
//! 6152 (8BITMIME), 6531 (SMTPUTF8), 2034/3463 (ENHANCEDSTATUSCODES), 3030 (CHUNKING/BDAT).

pub mod address;
pub mod body;
pub mod listener;
pub mod reply;
pub mod session;
pub mod stream;
pub mod tls;
pub mod verify;

#[cfg(test)]
mod dialog_tests;
