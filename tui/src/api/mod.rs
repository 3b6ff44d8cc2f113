//! The console's only window on the gateway: the admin API on its Unix socket. Screens never
//! see HTTP; they see [`Api`], one method per call, and the typed answers of [`types`].

mod client;
pub mod types;

use std::future::Future;
use std::path::PathBuf;

pub use client::UnixClient;
use types::*;

/// Why a call did not give an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// No socket, or nobody listens on it.
    NotRunning(PathBuf),
    /// The socket or the data directory is not open to this user.
    PermissionDenied(PathBuf),
    /// Any other failure to talk to the socket.
    Connect(PathBuf, String),
    /// No answer within the time a call is given.
    Timeout,
    /// The API answered an error (`{"error": {"code", "message"}}`).
    Status {
        status: u16,
        code: String,
        message: String,
    },
    /// An answer the console cannot read.
    BadAnswer(String),
    /// A problem on this side (a file to import that cannot be read).
    Local(String),
}

impl ApiError {
    /// The caller's role may not do this (an auditor acting).
    pub fn is_forbidden(&self) -> bool {
        matches!(self, ApiError::Status { status: 403, .. })
    }

    /// The gateway cannot be reached at all: every screen shows this instead of its data.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ApiError::NotRunning(_)
                | ApiError::PermissionDenied(_)
                | ApiError::Connect(..)
                | ApiError::Timeout
        )
    }

    /// What to do about it, for the operator.
    pub fn advice(&self) -> &'static str {
        match self {
            ApiError::NotRunning(_) => {
                "Start the gateway (portcullis run --config FILE); the console reconnects by itself."
            }
            ApiError::PermissionDenied(_) => {
                "Add your user to the socket's group ([admin] socket_group), log in again, restart the console."
            }
            ApiError::Connect(..) | ApiError::Timeout => {
                "The console keeps trying; check the gateway's log."
            }
            ApiError::Status { status: 403, .. } => {
                "Your role may only read: ask for [admin] operator_group to act."
            }
            ApiError::Status { .. } | ApiError::BadAnswer(_) | ApiError::Local(_) => "",
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::NotRunning(p) => write!(
                f,
                "the gateway is not running (nothing answers on {})",
                p.display()
            ),
            ApiError::PermissionDenied(p) => {
                write!(f, "permission denied on the admin socket {}", p.display())
            }
            ApiError::Connect(p, e) => write!(f, "cannot connect to {}: {e}", p.display()),
            ApiError::Timeout => write!(f, "the gateway did not answer in time"),
            ApiError::Status {
                status,
                code,
                message,
            } => write!(f, "{status} {code}: {message}"),
            ApiError::BadAnswer(e) => write!(f, "unexpected answer from the gateway: {e}"),
            ApiError::Local(e) => f.write_str(e),
        }
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

/// One method per admin API call the console makes.
pub trait Api: Send + Sync + 'static {
    fn health(&self) -> impl Future<Output = ApiResult<Health>> + Send;
    fn counters(&self) -> impl Future<Output = ApiResult<Counters>> + Send;
    /// The caller's role: an auditor's console starts read-only.
    fn whoami(&self) -> impl Future<Output = ApiResult<WhoAmI>> + Send;

    /// A page of held entries, newest first.
    fn held_list(
        &self,
        query: &HeldQuery,
        limit: u32,
        after: Option<&str>,
    ) -> impl Future<Output = ApiResult<HeldPage>> + Send;
    fn held_show(&self, message: &str) -> impl Future<Output = ApiResult<HeldMessage>> + Send;
    fn held_preview(&self, message: &str) -> impl Future<Output = ApiResult<Preview>> + Send;
    /// Release into the delivery queue; `learn`: teach Bayes it is ham.
    fn held_release(
        &self,
        target: &HeldTarget,
        learn: bool,
    ) -> impl Future<Output = ApiResult<ActionReport>> + Send;
    /// Delete without delivering; `learn`: teach Bayes it is spam.
    fn held_delete(
        &self,
        target: &HeldTarget,
        learn: bool,
    ) -> impl Future<Output = ApiResult<ActionReport>> + Send;

    /// An allow entry for the sender of held message `message`, for `recipient`.
    fn held_allow_sender(
        &self,
        message: &str,
        recipient: &str,
    ) -> impl Future<Output = ApiResult<ListAdded>> + Send;

    fn queue_list(&self) -> impl Future<Output = ApiResult<Vec<QueueMessage>>> + Send;
    fn queue_retry(&self, id: &str) -> impl Future<Output = ApiResult<QueueActionResult>> + Send;
    fn queue_delete(&self, id: &str) -> impl Future<Output = ApiResult<QueueActionResult>> + Send;

    fn certs_list(&self) -> impl Future<Output = ApiResult<CertList>> + Send;
    fn cert_import(
        &self,
        upload: &CertUpload,
    ) -> impl Future<Output = ApiResult<ImportReport>> + Send;
    fn cert_trust_ca(
        &self,
        upload: &CertUpload,
    ) -> impl Future<Output = ApiResult<ImportReport>> + Send;
    fn cert_delete(&self, fingerprint: &str)
    -> impl Future<Output = ApiResult<CertDeleted>> + Send;

    fn trust_list(&self) -> impl Future<Output = ApiResult<Vec<TrustDomain>>> + Send;
    /// Pin (`Some`) or back to learned trust (`None`).
    fn trust_pin(
        &self,
        domain: &str,
        level: Option<PinLevel>,
    ) -> impl Future<Output = ApiResult<PinResult>> + Send;

    /// A recipient's quarantine report frequency (`off`, `hourly`, `daily`, `weekly`), or
    /// (`None`) back to the gateway's schedule.
    fn digest_set(
        &self,
        recipient: &str,
        frequency: Option<&str>,
    ) -> impl Future<Output = ApiResult<DigestRecipient>> + Send;

    fn lists_all(&self) -> impl Future<Output = ApiResult<Vec<ListEntry>>> + Send;
    fn lists_add(&self, entry: &NewListEntry) -> impl Future<Output = ApiResult<ListAdded>> + Send;
    fn lists_remove(&self, id: i64) -> impl Future<Output = ApiResult<ListEntry>> + Send;
}
