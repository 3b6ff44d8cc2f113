//! A client of the admin API on its Unix socket (hyper, HTTP/1), with one typed method per
//! endpoint. The CLI uses it when the gateway runs; a console can use it as it is.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! use portcullis::admin::client::Client;
//! let client = Client::connect("/var/lib/portcullis/admin.sock").await?;
//! let counters = client.counters().await?;
//! println!("{} queued", counters.queue.queued);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use axum::http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::types::*;

/// Largest response read (a queue of many thousand messages, the OpenAPI description).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// Why the socket cannot be used.
#[derive(Debug)]
pub enum Unreachable {
    /// No socket file: the gateway is not running (or `[admin] enabled = false`).
    Missing(PathBuf),
    /// The file is there but nobody listens: a gateway that did not stop cleanly.
    Refused(PathBuf),
    /// The socket or the data directory is not open to this user.
    PermissionDenied(PathBuf),
    Other(PathBuf, std::io::Error),
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreachable::Missing(p) => {
                write!(
                    f,
                    "the gateway is not running (no socket at {})",
                    p.display()
                )
            }
            Unreachable::Refused(p) => write!(
                f,
                "the gateway is not running (nobody answers on {})",
                p.display()
            ),
            Unreachable::PermissionDenied(p) => write!(
                f,
                "permission denied on the admin socket {}: add yourself to the socket's group \
                 ([admin] socket_group) and log in again",
                p.display()
            ),
            Unreachable::Other(p, e) => write!(f, "cannot connect to {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for Unreachable {}

/// A connection-less client: each call opens the socket, sends one request, reads the
/// answer. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

/// A path segment or query value, percent-encoded (everything but unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The API's error in an answer (or, when the body is not one, the status and the text).
fn error_of(status: StatusCode, bytes: &[u8]) -> ApiError {
    match serde_json::from_slice::<ErrorBody>(bytes) {
        Ok(b) => ApiError {
            status,
            detail: b.error,
        },
        Err(_) => ApiError {
            status: if status.is_client_error() || status.is_server_error() {
                status
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            },
            detail: ErrorDetail {
                code: "internal".into(),
                message: format!(
                    "the gateway answered {status}: {}",
                    String::from_utf8_lossy(bytes)
                ),
                field: None,
            },
        },
    }
}

/// A search as a query string (absent fields left out).
fn search_query(search: &QuarantineSearch) -> String {
    let value = serde_json::to_value(search).unwrap_or_default();
    let mut parts = Vec::new();
    if let Some(map) = value.as_object() {
        for (k, v) in map {
            let text = match v {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            parts.push(format!("{k}={}", encode(&text)));
        }
    }
    parts.join("&")
}

impl Client {
    /// A client of `socket`, after checking that a gateway answers there.
    pub async fn connect(socket: impl AsRef<Path>) -> Result<Client, Unreachable> {
        let socket = socket.as_ref().to_path_buf();
        match tokio::net::UnixStream::connect(&socket).await {
            Ok(_) => Ok(Client { socket }),
            Err(e) => Err(match e.kind() {
                std::io::ErrorKind::NotFound => Unreachable::Missing(socket),
                std::io::ErrorKind::ConnectionRefused => Unreachable::Refused(socket),
                std::io::ErrorKind::PermissionDenied => Unreachable::PermissionDenied(socket),
                _ => Unreachable::Other(socket, e),
            }),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// One request; the status and the body.
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(StatusCode, Bytes), ApiError> {
        let unavailable = |e: &dyn std::fmt::Display| {
            ApiError::unavailable(format!("admin socket {}: {e}", self.socket.display()))
        };
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| unavailable(&e))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unavailable(&e))?;
        let driver = tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "portcullis");
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unavailable(&e))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| unavailable(&e))?
            .to_bytes();
        driver.abort();
        Ok((status, bytes))
    }

    /// One request; a JSON answer on success, the API's error otherwise.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ApiError> {
        let (status, bytes) = self.exchange(method, path, body).await?;
        if status.is_success() {
            serde_json::from_slice(&bytes)
                .map_err(|e| ApiError::internal(format!("unexpected answer from the gateway: {e}")))
        } else {
            Err(error_of(status, &bytes))
        }
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.call(Method::GET, path, None).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, ApiError> {
        let body = serde_json::to_vec(body).map_err(|e| ApiError::bad_request(e.to_string()))?;
        self.call(method, path, Some(body)).await
    }

    pub async fn health(&self) -> Result<Health, ApiError> {
        self.get("/v1/health").await
    }

    pub async fn counters(&self) -> Result<Counters, ApiError> {
        self.get("/v1/counters").await
    }

    /// The caller and its role.
    pub async fn whoami(&self) -> Result<WhoAmI, ApiError> {
        self.get("/v1/whoami").await
    }

    /// Re-read the config file and put it in force.
    pub async fn config_reload(&self) -> Result<ReloadResult, ApiError> {
        self.call(Method::POST, "/v1/config/reload", None).await
    }

    /// The OpenAPI description of `/v1`.
    pub async fn openapi(&self) -> Result<serde_json::Value, ApiError> {
        self.get("/v1/openapi.json").await
    }

    pub async fn queue_list(&self) -> Result<Vec<QueueMessage>, ApiError> {
        self.get("/v1/queue").await
    }

    pub async fn queue_show(&self, id: &str) -> Result<QueueMessage, ApiError> {
        self.get(&format!("/v1/queue/{}", encode(id))).await
    }

    pub async fn queue_retry(&self, id: &str) -> Result<QueueActionResult, ApiError> {
        self.call(
            Method::POST,
            &format!("/v1/queue/{}/retry", encode(id)),
            None,
        )
        .await
    }

    pub async fn queue_delete(&self, id: &str) -> Result<QueueActionResult, ApiError> {
        self.call(Method::DELETE, &format!("/v1/queue/{}", encode(id)), None)
            .await
    }

    pub async fn certs_list(&self, domain: Option<&str>) -> Result<CertList, ApiError> {
        match domain {
            Some(d) => self.get(&format!("/v1/certs?domain={}", encode(d))).await,
            None => self.get("/v1/certs").await,
        }
    }

    pub async fn cert_show(&self, fingerprint: &str) -> Result<Cert, ApiError> {
        self.get(&format!("/v1/certs/{}", encode(fingerprint)))
            .await
    }

    pub async fn cert_export(&self, fingerprint: &str) -> Result<CertPem, ApiError> {
        self.get(&format!("/v1/certs/{}/pem", encode(fingerprint)))
            .await
    }

    pub async fn cert_delete(&self, fingerprint: &str) -> Result<CertDeleted, ApiError> {
        self.call(
            Method::DELETE,
            &format!("/v1/certs/{}", encode(fingerprint)),
            None,
        )
        .await
    }

    pub async fn cert_import(&self, upload: &CertUpload) -> Result<ImportReport, ApiError> {
        self.send(Method::POST, "/v1/certs", upload).await
    }

    pub async fn cert_trust_ca(&self, upload: &CertUpload) -> Result<ImportReport, ApiError> {
        self.send(Method::POST, "/v1/certs/trust-ca", upload).await
    }

    pub async fn cert_import_crls(&self, upload: &CertUpload) -> Result<Vec<StoredCrl>, ApiError> {
        self.send(Method::POST, "/v1/certs/crls", upload).await
    }

    pub async fn trust_list(&self) -> Result<Vec<TrustDomain>, ApiError> {
        self.get("/v1/trust").await
    }

    pub async fn trust_show(&self, domain: &str) -> Result<TrustDetails, ApiError> {
        self.get(&format!("/v1/trust/{}", encode(domain))).await
    }

    /// Pin a domain (`Some`) or go back to learning (`None`).
    pub async fn trust_pin(
        &self,
        domain: &str,
        level: Option<PinLevel>,
    ) -> Result<PinResult, ApiError> {
        let path = format!("/v1/trust/{}/pin", encode(domain));
        match level {
            Some(level) => self.send(Method::PUT, &path, &PinRequest { level }).await,
            None => self.call(Method::DELETE, &path, None).await,
        }
    }

    pub async fn digest_send(
        &self,
        request: &DigestSendRequest,
    ) -> Result<Vec<DigestReport>, ApiError> {
        self.send(Method::POST, "/v1/digest/send", request).await
    }

    pub async fn digest_recipients(&self) -> Result<Vec<DigestRecipient>, ApiError> {
        self.get("/v1/digest/recipients").await
    }

    pub async fn digest_set(
        &self,
        recipient: &str,
        change: &DigestFrequencyChange,
    ) -> Result<DigestRecipient, ApiError> {
        self.send(
            Method::PUT,
            &format!("/v1/digest/recipients/{}", encode(recipient)),
            change,
        )
        .await
    }

    pub async fn lists_all(&self) -> Result<Vec<ListEntry>, ApiError> {
        self.get("/v1/lists").await
    }

    pub async fn lists_show(&self, id: i64) -> Result<ListEntry, ApiError> {
        self.get(&format!("/v1/lists/{id}")).await
    }

    pub async fn lists_add(&self, entry: &NewListEntry) -> Result<ListAdded, ApiError> {
        self.send(Method::POST, "/v1/lists", entry).await
    }

    pub async fn lists_remove(&self, id: i64) -> Result<ListEntry, ApiError> {
        self.call(Method::DELETE, &format!("/v1/lists/{id}"), None)
            .await
    }

    /// A page of held entries.
    pub async fn quarantine_list(
        &self,
        search: &QuarantineSearch,
    ) -> Result<QuarantinePage, ApiError> {
        self.get(&format!("/v1/quarantine?{}", search_query(search)))
            .await
    }

    pub async fn quarantine_show(&self, id: &str) -> Result<QuarantineMessage, ApiError> {
        self.get(&format!("/v1/quarantine/{}", encode(id))).await
    }

    pub async fn quarantine_preview(&self, id: &str) -> Result<QuarantinePreview, ApiError> {
        self.get(&format!("/v1/quarantine/{}/preview", encode(id)))
            .await
    }

    /// The held message as stored.
    pub async fn quarantine_raw(&self, id: &str) -> Result<Vec<u8>, ApiError> {
        let (status, bytes) = self
            .exchange(
                Method::GET,
                &format!("/v1/quarantine/{}/raw", encode(id)),
                None,
            )
            .await?;
        if status.is_success() {
            Ok(bytes.to_vec())
        } else {
            Err(error_of(status, &bytes))
        }
    }

    pub async fn quarantine_release(
        &self,
        id: &str,
        request: &HeldAction,
    ) -> Result<HeldActionResult, ApiError> {
        let path = format!("/v1/quarantine/{}/release", encode(id));
        self.send(Method::POST, &path, request).await
    }

    pub async fn quarantine_delete(
        &self,
        id: &str,
        request: &HeldAction,
    ) -> Result<HeldActionResult, ApiError> {
        let path = format!("/v1/quarantine/{}/delete", encode(id));
        self.send(Method::POST, &path, request).await
    }

    pub async fn quarantine_learn(
        &self,
        id: &str,
        request: &LearnRequest,
    ) -> Result<HeldActionResult, ApiError> {
        let path = format!("/v1/quarantine/{}/learn", encode(id));
        self.send(Method::POST, &path, request).await
    }

    pub async fn quarantine_list_sender(
        &self,
        id: &str,
        request: &ListFromHeld,
    ) -> Result<ListAdded, ApiError> {
        let path = format!("/v1/quarantine/{}/list", encode(id));
        self.send(Method::POST, &path, request).await
    }

    pub async fn quarantine_bulk(
        &self,
        request: &BulkRequest,
    ) -> Result<HeldActionResult, ApiError> {
        self.send(Method::POST, "/v1/quarantine/bulk", request)
            .await
    }

    /// Any endpoint, with a raw JSON body: for tools and tests of the API itself.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<serde_json::Value, ApiError> {
        self.call(method, path, body).await
    }
}
