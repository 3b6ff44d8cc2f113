//! [`Api`] over HTTP/1 on the gateway's Unix socket (`data_dir/admin.sock`): one connection
//! per call, a time limit per call, the body size bounded, the API's JSON errors read.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Method, Request, header};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::types::*;
use super::{Api, ApiError, ApiResult};

/// Largest answer read: a page of held messages or the whole delivery queue.
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;
/// A read is given this long.
const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// A change (release, import) is given this long: it may train Bayes or parse a file.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// The admin API on a Unix socket. Cheap to clone; connects per call, so a gateway that
/// starts after the console is found at the next call.
#[derive(Debug, Clone)]
pub struct UnixClient {
    socket: PathBuf,
}

/// A path segment or query value, percent-encoded (everything but unreserved characters).
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl UnixClient {
    pub fn new(socket: impl Into<PathBuf>) -> UnixClient {
        UnixClient {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn connect_error(&self, e: std::io::Error) -> ApiError {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::NotFound | ErrorKind::ConnectionRefused => {
                ApiError::NotRunning(self.socket.clone())
            }
            ErrorKind::PermissionDenied => ApiError::PermissionDenied(self.socket.clone()),
            _ => ApiError::Connect(self.socket.clone(), e.to_string()),
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> ApiResult<Bytes> {
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|e| self.connect_error(e))?;
        let broken =
            |e: &dyn std::fmt::Display| ApiError::Connect(self.socket.clone(), e.to_string());
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| broken(&e))?;
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
            .map_err(|e| ApiError::BadAnswer(e.to_string()))?;
        let response = sender.send_request(request).await.map_err(|e| broken(&e))?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| broken(&e))?
            .to_bytes();
        driver.abort();
        if status.is_success() {
            return Ok(bytes);
        }
        Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) if !b.error.code.is_empty() => ApiError::Status {
                status: status.as_u16(),
                code: b.error.code,
                message: b.error.message.to_string(),
            },
            _ => ApiError::Status {
                status: status.as_u16(),
                code: status.canonical_reason().unwrap_or("error").to_string(),
                message: crate::sanitize::line(&String::from_utf8_lossy(
                    &bytes[..bytes.len().min(300)],
                )),
            },
        })
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> ApiResult<T> {
        let limit = if method == Method::GET {
            READ_TIMEOUT
        } else {
            WRITE_TIMEOUT
        };
        let bytes = tokio::time::timeout(limit, self.exchange(method, path, body))
            .await
            .map_err(|_| ApiError::Timeout)??;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::BadAnswer(e.to_string()))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> ApiResult<T> {
        self.call(Method::GET, path, None).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &impl Serialize,
    ) -> ApiResult<T> {
        let body = serde_json::to_vec(body).map_err(|e| ApiError::BadAnswer(e.to_string()))?;
        self.call(method, path, Some(body)).await
    }
}

/// The body of a quarantine release or delete.
#[derive(Serialize)]
struct HeldAction<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    recipient: Option<&'a str>,
    learn: bool,
}

impl Api for UnixClient {
    async fn health(&self) -> ApiResult<Health> {
        self.get("/v1/health").await
    }

    async fn counters(&self) -> ApiResult<Counters> {
        self.get("/v1/counters").await
    }

    async fn whoami(&self) -> ApiResult<WhoAmI> {
        self.get("/v1/whoami").await
    }

    async fn held_list(
        &self,
        query: &HeldQuery,
        limit: u32,
        after: Option<&str>,
    ) -> ApiResult<HeldPage> {
        let mut path = format!("/v1/quarantine?limit={limit}");
        for (name, value) in query.pairs() {
            path.push_str(&format!("&{name}={}", encode(&value)));
        }
        if let Some(after) = after {
            path.push_str(&format!("&after={}", encode(after)));
        }
        self.get(&path).await
    }

    async fn held_show(&self, message: &str) -> ApiResult<HeldMessage> {
        self.get(&format!("/v1/quarantine/{}", encode(message)))
            .await
    }

    async fn held_preview(&self, message: &str) -> ApiResult<Preview> {
        self.get(&format!("/v1/quarantine/{}/preview", encode(message)))
            .await
    }

    async fn held_release(&self, target: &HeldTarget, learn: bool) -> ApiResult<ActionReport> {
        let body = HeldAction {
            recipient: target.recipient.as_deref(),
            learn,
        };
        let path = format!("/v1/quarantine/{}/release", encode(&target.message));
        self.send(Method::POST, &path, &body).await
    }

    async fn held_delete(&self, target: &HeldTarget, learn: bool) -> ApiResult<ActionReport> {
        let body = HeldAction {
            recipient: target.recipient.as_deref(),
            learn,
        };
        let path = format!("/v1/quarantine/{}/delete", encode(&target.message));
        self.send(Method::POST, &path, &body).await
    }

    async fn held_allow_sender(&self, message: &str, recipient: &str) -> ApiResult<ListAdded> {
        #[derive(Serialize)]
        struct FromHeld<'a> {
            list: ListName,
            recipient: &'a str,
            comment: &'a str,
        }
        let body = FromHeld {
            list: ListName::Allow,
            recipient,
            comment: "released from the quarantine",
        };
        let path = format!("/v1/quarantine/{}/list", encode(message));
        self.send(Method::POST, &path, &body).await
    }

    async fn queue_list(&self) -> ApiResult<Vec<QueueMessage>> {
        self.get("/v1/queue").await
    }

    async fn queue_retry(&self, id: &str) -> ApiResult<QueueActionResult> {
        let path = format!("/v1/queue/{}/retry", encode(id));
        self.call(Method::POST, &path, None).await
    }

    async fn queue_delete(&self, id: &str) -> ApiResult<QueueActionResult> {
        let path = format!("/v1/queue/{}", encode(id));
        self.call(Method::DELETE, &path, None).await
    }

    async fn certs_list(&self) -> ApiResult<CertList> {
        self.get("/v1/certs").await
    }

    async fn cert_import(&self, upload: &CertUpload) -> ApiResult<ImportReport> {
        self.send(Method::POST, "/v1/certs", upload).await
    }

    async fn cert_trust_ca(&self, upload: &CertUpload) -> ApiResult<ImportReport> {
        self.send(Method::POST, "/v1/certs/trust-ca", upload).await
    }

    async fn cert_delete(&self, fingerprint: &str) -> ApiResult<CertDeleted> {
        let path = format!("/v1/certs/{}", encode(fingerprint));
        self.call(Method::DELETE, &path, None).await
    }

    async fn trust_list(&self) -> ApiResult<Vec<TrustDomain>> {
        self.get("/v1/trust").await
    }

    async fn trust_pin(&self, domain: &str, level: Option<PinLevel>) -> ApiResult<PinResult> {
        #[derive(Serialize)]
        struct Pin {
            level: PinLevel,
        }
        let path = format!("/v1/trust/{}/pin", encode(domain));
        match level {
            Some(level) => self.send(Method::PUT, &path, &Pin { level }).await,
            None => self.call(Method::DELETE, &path, None).await,
        }
    }

    async fn digest_set(
        &self,
        recipient: &str,
        frequency: Option<&str>,
    ) -> ApiResult<DigestRecipient> {
        #[derive(Serialize)]
        struct Change<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            frequency: Option<&'a str>,
        }
        let path = format!("/v1/digest/recipients/{}", encode(recipient));
        self.send(Method::PUT, &path, &Change { frequency }).await
    }

    async fn lists_all(&self) -> ApiResult<Vec<ListEntry>> {
        self.get("/v1/lists").await
    }

    async fn lists_add(&self, entry: &NewListEntry) -> ApiResult<ListAdded> {
        self.send(Method::POST, "/v1/lists", entry).await
    }

    async fn lists_remove(&self, id: i64) -> ApiResult<ListEntry> {
        self.call(Method::DELETE, &format!("/v1/lists/{id}"), None)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_values_are_percent_encoded() {
        assert_eq!(encode("@x.example"), "%40x.example");
        assert_eq!(encode("a b/c?d"), "a%20b%2Fc%3Fd");
    }

    #[tokio::test]
    async fn a_missing_socket_means_the_gateway_is_not_running() {
        let dir = std::env::temp_dir().join(format!("tui-nosock-{}", std::process::id()));
        let client = UnixClient::new(dir.join("admin.sock"));
        let err = client.health().await.unwrap_err();
        assert!(matches!(err, ApiError::NotRunning(_)), "{err:?}");
        assert!(err.is_unreachable());
    }

    /// A one-shot HTTP server on a Unix socket answering `answer` to the first request.
    async fn serve_once(answer: &'static str) -> (tempfile::TempDir, PathBuf) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("admin.sock");
        let listener = tokio::net::UnixListener::bind(&path).unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let _ = s.read(&mut buf).await;
            s.write_all(answer.as_bytes()).await.unwrap();
        });
        (dir, path)
    }

    #[tokio::test]
    async fn an_api_error_body_is_read() {
        let body = r#"{"error":{"code":"forbidden","message":"uid 1001 may only read"}}"#;
        let answer: &'static str = Box::leak(
            format!(
                "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let (_dir, path) = serve_once(answer).await;
        let err = UnixClient::new(path).queue_retry("AB").await.unwrap_err();
        assert!(err.is_forbidden(), "{err:?}");
        assert!(err.to_string().contains("may only read"));
    }

    #[tokio::test]
    async fn an_answer_is_decoded() {
        let body =
            r#"{"status":"ok","version":"0.1.0","hostname":"mx.test","pid":1,"uptime_secs":9}"#;
        let answer: &'static str = Box::leak(
            format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_boxed_str(),
        );
        let (_dir, path) = serve_once(answer).await;
        let health = UnixClient::new(path).health().await.unwrap();
        assert_eq!(health.hostname.as_str(), "mx.test");
        assert_eq!(health.uptime_secs, 9);
    }
}
