//! The admin API: HTTP/JSON on the Unix socket `data_dir/admin.sock` (no TCP port).
//!
//! - [`types`]: every request and response body (serde, OpenAPI schemas).
//! - [`ops`]: the operations, one function each, used by the server and by the offline CLI.
//! - [`server`]: routes, roles from the socket's peer credentials, audit lines, JSON errors,
//!   `/v1/openapi.json`.
//! - [`client`]: the typed client of the socket (the CLI's, a console's).
//! - [`access`]: who may do what (`[admin] operator_group`, `audit_group`).

pub mod access;
pub mod client;
pub mod error;
pub mod ops;
pub mod server;
pub mod types;

pub use error::ApiError;
pub use ops::{Caller, Live, Ops};
pub use server::{AdminServer, serve, socket_path};
