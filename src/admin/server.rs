//! The admin API over HTTP/1 on the Unix socket `data_dir/admin.sock`: routes, the
//! caller's role from the socket's peer credentials, an audit line per change, JSON errors
//! that name the field at fault, and the OpenAPI description generated from the handlers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use axum::Json;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, Path as UrlPath, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::net::UnixListener;
use tokio::sync::Semaphore;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::access::{self, Access, Role};
use super::error::ApiError;
use super::ops::{Caller, Ops, user_name};
use super::types::*;
use crate::config::Config;

/// The socket of a data directory.
pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join(crate::config::defaults::ADMIN_SOCKET)
}

/// The peer credentials of a connection (`SO_PEERCRED`).
#[derive(Debug, Clone)]
struct Peer(Option<Caller>);

impl Peer {
    fn of(stream: &tokio::net::UnixStream) -> Peer {
        Peer(stream.peer_cred().ok().map(|c| Caller {
            uid: c.uid(),
            gid: c.gid(),
            user: user_name(c.uid()),
        }))
    }
}

#[derive(Clone)]
struct App {
    ops: Ops,
    access: Arc<Access>,
    permits: Arc<Semaphore>,
    openapi: Arc<String>,
}

/// The running admin server: removes its socket when dropped.
pub struct AdminServer {
    path: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl AdminServer {
    pub fn socket(&self) -> &Path {
        &self.path
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Portcullis admin API",
        description = "The mail gateway's admin API on the Unix socket data_dir/admin.sock. \
                       Errors are {\"error\": {\"code\", \"message\", \"field\"}}."
    ),
    tags(
        (name = "gateway", description = "Health and dashboard figures"),
        (name = "queue", description = "The delivery queue"),
        (name = "certs", description = "The S/MIME certificate and key store"),
        (name = "trust", description = "The level of trust and operators' pins"),
        (name = "lists", description = "Allow and block lists"),
        (name = "quarantine", description = "Held messages: search, show, preview, release, delete, learn"),
    )
)]
struct ApiDoc;

/// Every route of `/v1` with its OpenAPI description.
fn routes() -> OpenApiRouter<App> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(counters))
        .routes(routes!(whoami))
        .routes(routes!(config_reload))
        .routes(routes!(queue_list))
        .routes(routes!(queue_show, queue_delete))
        .routes(routes!(queue_retry))
        .routes(routes!(certs_list, certs_import))
        .routes(routes!(certs_trust_ca))
        .routes(routes!(certs_import_crls))
        .routes(routes!(cert_show, cert_delete))
        .routes(routes!(cert_pem))
        .routes(routes!(trust_list))
        .routes(routes!(trust_show))
        .routes(routes!(trust_pin, trust_unpin))
        .routes(routes!(lists_all, lists_add))
        .routes(routes!(lists_show, lists_remove))
        .routes(routes!(quarantine_list))
        .routes(routes!(quarantine_bulk))
        .routes(routes!(quarantine_show))
        .routes(routes!(quarantine_preview))
        .routes(routes!(quarantine_raw))
        .routes(routes!(quarantine_release))
        .routes(routes!(quarantine_delete))
        .routes(routes!(quarantine_learn))
        .routes(routes!(quarantine_list_sender))
        .routes(routes!(digest_send))
        .routes(routes!(digest_recipients))
        .routes(routes!(digest_set))
}

/// The OpenAPI description of `/v1`, as served at `/v1/openapi.json`.
pub fn openapi_json() -> String {
    let (_, api) = routes().split_for_parts();
    api.to_pretty_json().unwrap_or_else(|_| "{}".into())
}

/// Bind `data_dir/admin.sock` (mode 0660, group `[admin] socket_group`), let the group
/// reach it through the data directory, and serve the API until the server is dropped.
pub async fn serve(config: &Config, ops: Ops, service_uid: u32) -> anyhow::Result<AdminServer> {
    use std::os::unix::fs::PermissionsExt;
    let access = Access::from_config(&config.admin, service_uid)?;
    let gid = access::socket_gid(&config.admin)?;
    let path = socket_path(&config.data_dir);
    if path.exists() {
        if tokio::net::UnixStream::connect(&path).await.is_ok() {
            anyhow::bail!(
                "another gateway serves {} (its admin socket {} answers): stop it first",
                config.data_dir.display(),
                path.display()
            );
        }
        // Left by a gateway that did not stop cleanly.
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot create the admin socket {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot set mode 0660 on {}", path.display()))?;
    nix::unistd::chown(&path, None, Some(gid)).with_context(|| {
        format!(
            "cannot give {} to group {gid} (key `admin.socket_group`; the gateway's user must be a member of it)",
            path.display()
        )
    })?;
    // The group may pass through the data directory to the socket (and read nothing:
    // every file in it is the service user's alone).
    let dir = &config.data_dir;
    nix::unistd::chown(dir, None, Some(gid))
        .with_context(|| format!("cannot give {} to group {gid}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o710))
        .with_context(|| format!("cannot set mode 0710 on {}", dir.display()))?;

    let (router, api) = routes().split_for_parts();
    let app = App {
        ops,
        access: Arc::new(access),
        permits: Arc::new(Semaphore::new(config.admin.max_concurrent_requests)),
        openapi: Arc::new(api.to_pretty_json().context("OpenAPI description")?),
    };
    let router = router
        .route("/v1/openapi.json", axum::routing::get(openapi))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .layer(DefaultBodyLimit::max(config.admin.max_request_bytes))
        .with_state(app);
    let bounds = ConnectionBounds {
        open: Arc::new(Semaphore::new(config.admin.max_connections)),
        header_timeout: std::time::Duration::from_secs(config.admin.header_timeout_secs),
    };
    let task = tokio::spawn(accept_loop(listener, router, bounds));
    tracing::info!(socket = %path.display(), "admin API ready");
    Ok(AdminServer { path, task })
}

/// What one local client may hold: open connections, and time to send a request's header
/// (or to stay idle between requests).
struct ConnectionBounds {
    open: Arc<Semaphore>,
    header_timeout: std::time::Duration,
}

/// Accept connections within the bounds and serve each over HTTP/1 with the caller's
/// credentials attached to every request.
async fn accept_loop(listener: UnixListener, router: axum::Router, bounds: ConnectionBounds) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "admin socket: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = bounds.open.clone().try_acquire_owned() else {
            tracing::warn!(
                "admin socket: a connection closed, all `admin.max_connections` are open"
            );
            continue;
        };
        let peer = Peer::of(&stream);
        let service = router.clone().layer(axum::Extension(ConnectInfo(peer)));
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(bounds.header_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            let connection = http.serve_connection(
                hyper_util::rt::TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            );
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "admin socket: connection ended");
            }
        });
    }
}

/// Role check, one request at a time per permit, and the audit line.
async fn guard(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(caller) = peer.0 else {
        return ApiError::forbidden("the caller's credentials are unknown (SO_PEERCRED failed)")
            .into_response();
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let role = app.access.role(&caller);
    let reads = method == Method::GET || method == Method::HEAD;
    let allowed = match role {
        Some(Role::Operator) => true,
        Some(Role::Auditor) => reads,
        None => false,
    };
    if !allowed {
        tracing::warn!(
            target: "portcullis::audit",
            uid = caller.uid,
            gid = caller.gid,
            user = caller.user.as_deref().unwrap_or("?"),
            %method,
            path,
            "admin request refused"
        );
        return ApiError::forbidden(app.access.refusal(&caller, role)).into_response();
    }
    let Ok(_permit) = app.permits.clone().acquire_owned().await else {
        return ApiError::unavailable("the admin API is stopping").into_response();
    };
    req.extensions_mut().insert(caller.clone());
    req.extensions_mut()
        .insert(MayChange(role == Some(Role::Operator)));
    let response = next.run(req).await;
    let status = response.status().as_u16();
    if reads {
        tracing::debug!(
            target: "portcullis::audit",
            uid = caller.uid, gid = caller.gid, user = caller.user.as_deref().unwrap_or("?"),
            %method, path, status, "admin request"
        );
    } else {
        tracing::info!(
            target: "portcullis::audit",
            uid = caller.uid, gid = caller.gid, user = caller.user.as_deref().unwrap_or("?"),
            %method, path, status, "admin request"
        );
    }
    response
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no endpoint {method} {} (see GET /v1/openapi.json)",
        uri.path()
    ))
}

async fn openapi(State(app): State<App>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        app.openapi.as_str().to_owned(),
    )
        .into_response()
}

/// A JSON request body; a bad one is refused naming the field at fault.
struct Body<T>(T);

/// The field a serde error is about: its path, plus the name a "missing field" or
/// "unknown field" message gives.
fn error_field(path: &str, message: &str) -> String {
    let named = ["missing field `", "unknown field `"]
        .iter()
        .find_map(|p| message.split(p).nth(1))
        .and_then(|rest| rest.split('`').next());
    match (path, named) {
        (p, Some(n)) if p == n || p.ends_with(&format!(".{n}")) => p.to_string(),
        (".", Some(n)) | ("", Some(n)) => n.to_string(),
        (p, Some(n)) => format!("{p}.{n}"),
        (".", None) | ("", None) => "body".to_string(),
        (p, None) => p.to_string(),
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json {
            return Err(ApiError::unsupported(
                "send the request body as JSON (Content-Type: application/json)",
            ));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::too_large("the request body is larger than [admin] max_request_bytes")
                } else {
                    ApiError::bad_request(format!("cannot read the request body: {e}"))
                }
            })?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map(Body).map_err(|e| {
            let path = e.path().to_string();
            let message = e.into_inner().to_string();
            ApiError::field(error_field(&path, &message), message)
        })
    }
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::field("query", e.body_text()))
}

type ApiResult<T> = Result<Json<T>, ApiError>;

#[utoipa::path(get, path = "/v1/health", tag = "gateway",
    responses((status = 200, body = Health)))]
async fn health(State(app): State<App>) -> ApiResult<Health> {
    Ok(Json(app.ops.health()))
}

/// Whether the caller's role allows changes (set by the role check).
#[derive(Debug, Clone, Copy)]
struct MayChange(bool);

/// The caller as the socket's peer credentials say, and its role: a console greys out
/// what it may not do before the operator tries.
#[utoipa::path(get, path = "/v1/whoami", tag = "gateway",
    responses((status = 200, body = WhoAmI)))]
async fn whoami(
    State(app): State<App>,
    axum::Extension(caller): axum::Extension<Caller>,
    axum::Extension(MayChange(may_change)): axum::Extension<MayChange>,
) -> ApiResult<WhoAmI> {
    Ok(Json(app.ops.whoami(&caller, may_change)))
}

#[utoipa::path(get, path = "/v1/counters", tag = "gateway",
    responses((status = 200, body = Counters)))]
async fn counters(State(app): State<App>) -> ApiResult<Counters> {
    Ok(Json(app.ops.counters().await?))
}

/// Read the config file again and put it in force, as SIGHUP does: new sessions use it;
/// keys that need a restart are reported and keep their running value.
#[utoipa::path(post, path = "/v1/config/reload", tag = "gateway",
    responses((status = 200, body = ReloadResult), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
async fn config_reload(State(app): State<App>) -> ApiResult<ReloadResult> {
    Ok(Json(app.ops.config_reload().await?))
}

#[utoipa::path(get, path = "/v1/queue", tag = "queue",
    responses((status = 200, body = [QueueMessage])))]
async fn queue_list(State(app): State<App>) -> ApiResult<Vec<QueueMessage>> {
    Ok(Json(app.ops.queue_list().await?))
}

#[utoipa::path(get, path = "/v1/queue/{id}", tag = "queue",
    params(("id" = String, Path, description = "queue id (hex)")),
    responses((status = 200, body = QueueMessage), (status = 404, body = ErrorBody)))]
async fn queue_show(
    State(app): State<App>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<QueueMessage> {
    Ok(Json(app.ops.queue_show(&id).await?))
}

#[utoipa::path(post, path = "/v1/queue/{id}/retry", tag = "queue",
    params(("id" = String, Path, description = "queue id (hex)")),
    responses((status = 200, body = QueueActionResult), (status = 404, body = ErrorBody)))]
async fn queue_retry(
    State(app): State<App>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<QueueActionResult> {
    Ok(Json(app.ops.queue_retry(&id).await?))
}

#[utoipa::path(delete, path = "/v1/queue/{id}", tag = "queue",
    params(("id" = String, Path, description = "queue id (hex)")),
    responses((status = 200, body = QueueActionResult), (status = 404, body = ErrorBody)))]
async fn queue_delete(
    State(app): State<App>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<QueueActionResult> {
    Ok(Json(app.ops.queue_delete(&id).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
struct CertsQuery {
    /// Only this domain's certificates.
    domain: Option<String>,
}

#[utoipa::path(get, path = "/v1/certs", tag = "certs", params(CertsQuery),
    responses((status = 200, body = CertList)))]
async fn certs_list(
    State(app): State<App>,
    q: Result<Query<CertsQuery>, QueryRejection>,
) -> ApiResult<CertList> {
    let q = query(q)?;
    Ok(Json(app.ops.certs_list(q.domain.as_deref()).await?))
}

#[utoipa::path(post, path = "/v1/certs", tag = "certs", request_body = CertUpload,
    responses((status = 200, body = ImportReport), (status = 400, body = ErrorBody)))]
async fn certs_import(
    State(app): State<App>,
    Body(u): Body<CertUpload>,
) -> ApiResult<ImportReport> {
    Ok(Json(app.ops.cert_import(&u).await?))
}

#[utoipa::path(post, path = "/v1/certs/trust-ca", tag = "certs", request_body = CertUpload,
    responses((status = 200, body = ImportReport), (status = 400, body = ErrorBody)))]
async fn certs_trust_ca(
    State(app): State<App>,
    Body(u): Body<CertUpload>,
) -> ApiResult<ImportReport> {
    Ok(Json(app.ops.cert_trust_ca(&u).await?))
}

#[utoipa::path(post, path = "/v1/certs/crls", tag = "certs", request_body = CertUpload,
    responses((status = 200, body = [StoredCrl]), (status = 400, body = ErrorBody)))]
async fn certs_import_crls(
    State(app): State<App>,
    Body(u): Body<CertUpload>,
) -> ApiResult<Vec<StoredCrl>> {
    Ok(Json(app.ops.cert_import_crls(&u).await?))
}

#[utoipa::path(get, path = "/v1/certs/{fingerprint}", tag = "certs",
    params(("fingerprint" = String, Path, description = "SHA-256 fingerprint or a unique prefix")),
    responses((status = 200, body = Cert), (status = 404, body = ErrorBody)))]
async fn cert_show(State(app): State<App>, UrlPath(fp): UrlPath<String>) -> ApiResult<Cert> {
    Ok(Json(app.ops.cert_show(&fp).await?))
}

#[utoipa::path(get, path = "/v1/certs/{fingerprint}/pem", tag = "certs",
    params(("fingerprint" = String, Path, description = "SHA-256 fingerprint or a unique prefix")),
    responses((status = 200, body = CertPem), (status = 404, body = ErrorBody)))]
async fn cert_pem(State(app): State<App>, UrlPath(fp): UrlPath<String>) -> ApiResult<CertPem> {
    Ok(Json(app.ops.cert_export(&fp).await?))
}

#[utoipa::path(delete, path = "/v1/certs/{fingerprint}", tag = "certs",
    params(("fingerprint" = String, Path, description = "the full SHA-256 fingerprint")),
    responses((status = 200, body = CertDeleted), (status = 404, body = ErrorBody)))]
async fn cert_delete(
    State(app): State<App>,
    UrlPath(fp): UrlPath<String>,
) -> ApiResult<CertDeleted> {
    Ok(Json(app.ops.cert_delete(&fp).await?))
}

#[utoipa::path(get, path = "/v1/trust", tag = "trust",
    responses((status = 200, body = [TrustDomain])))]
async fn trust_list(State(app): State<App>) -> ApiResult<Vec<TrustDomain>> {
    Ok(Json(app.ops.trust_list().await?))
}

#[utoipa::path(get, path = "/v1/trust/{domain}", tag = "trust",
    params(("domain" = String, Path)),
    responses((status = 200, body = TrustDetails), (status = 404, body = ErrorBody)))]
async fn trust_show(
    State(app): State<App>,
    UrlPath(d): UrlPath<String>,
) -> ApiResult<TrustDetails> {
    Ok(Json(app.ops.trust_show(&d).await?))
}

#[utoipa::path(put, path = "/v1/trust/{domain}/pin", tag = "trust",
    params(("domain" = String, Path)), request_body = PinRequest,
    responses((status = 200, body = PinResult), (status = 400, body = ErrorBody)))]
async fn trust_pin(
    State(app): State<App>,
    UrlPath(d): UrlPath<String>,
    Body(p): Body<PinRequest>,
) -> ApiResult<PinResult> {
    Ok(Json(app.ops.trust_pin(&d, Some(p.level)).await?))
}

#[utoipa::path(delete, path = "/v1/trust/{domain}/pin", tag = "trust",
    params(("domain" = String, Path)),
    responses((status = 200, body = PinResult)))]
async fn trust_unpin(State(app): State<App>, UrlPath(d): UrlPath<String>) -> ApiResult<PinResult> {
    Ok(Json(app.ops.trust_pin(&d, None).await?))
}

#[utoipa::path(get, path = "/v1/lists", tag = "lists",
    responses((status = 200, body = [ListEntry])))]
async fn lists_all(State(app): State<App>) -> ApiResult<Vec<ListEntry>> {
    Ok(Json(app.ops.lists_all().await?))
}

#[utoipa::path(post, path = "/v1/lists", tag = "lists", request_body = NewListEntry,
    responses((status = 200, body = ListAdded), (status = 400, body = ErrorBody)))]
async fn lists_add(
    State(app): State<App>,
    axum::Extension(caller): axum::Extension<Caller>,
    Body(new): Body<NewListEntry>,
) -> ApiResult<ListAdded> {
    Ok(Json(app.ops.lists_add(&new, &caller).await?))
}

#[utoipa::path(post, path = "/v1/digest/send", tag = "digest", request_body = DigestSendRequest,
    responses((status = 200, body = [DigestReport]), (status = 400, body = ErrorBody)))]
async fn digest_send(
    State(app): State<App>,
    Body(request): Body<DigestSendRequest>,
) -> ApiResult<Vec<DigestReport>> {
    Ok(Json(app.ops.digest_send(&request).await?))
}

#[utoipa::path(get, path = "/v1/digest/recipients", tag = "digest",
    responses((status = 200, body = [DigestRecipient])))]
async fn digest_recipients(State(app): State<App>) -> ApiResult<Vec<DigestRecipient>> {
    Ok(Json(app.ops.digest_recipients().await?))
}

#[utoipa::path(put, path = "/v1/digest/recipients/{recipient}", tag = "digest",
    params(("recipient" = String, Path)), request_body = DigestFrequencyChange,
    responses((status = 200, body = DigestRecipient), (status = 400, body = ErrorBody)))]
async fn digest_set(
    State(app): State<App>,
    UrlPath(recipient): UrlPath<String>,
    Body(change): Body<DigestFrequencyChange>,
) -> ApiResult<DigestRecipient> {
    Ok(Json(app.ops.digest_set(&recipient, &change).await?))
}

fn entry_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::field("id", format!("{id:?} is not a list entry id (a number)")))
}

#[utoipa::path(get, path = "/v1/lists/{id}", tag = "lists",
    params(("id" = i64, Path)),
    responses((status = 200, body = ListEntry), (status = 404, body = ErrorBody)))]
async fn lists_show(State(app): State<App>, UrlPath(id): UrlPath<String>) -> ApiResult<ListEntry> {
    Ok(Json(app.ops.lists_show(entry_id(&id)?).await?))
}

#[utoipa::path(delete, path = "/v1/lists/{id}", tag = "lists",
    params(("id" = i64, Path)),
    responses((status = 200, body = ListEntry), (status = 404, body = ErrorBody)))]
async fn lists_remove(
    State(app): State<App>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<ListEntry> {
    Ok(Json(app.ops.lists_remove(entry_id(&id)?).await?))
}

#[utoipa::path(get, path = "/v1/quarantine", tag = "quarantine", params(QuarantineSearch),
    responses((status = 200, body = QuarantinePage), (status = 400, body = ErrorBody)))]
async fn quarantine_list(
    State(app): State<App>,
    q: Result<Query<QuarantineSearch>, QueryRejection>,
) -> ApiResult<QuarantinePage> {
    Ok(Json(app.ops.quarantine_list(&query(q)?).await?))
}

#[utoipa::path(get, path = "/v1/quarantine/{id}", tag = "quarantine",
    params(("id" = String, Path, description = "the held message's id (hex)")),
    responses((status = 200, body = QuarantineMessage), (status = 404, body = ErrorBody)))]
async fn quarantine_show(
    State(app): State<App>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<QuarantineMessage> {
    Ok(Json(app.ops.quarantine_show(&id).await?))
}

#[utoipa::path(get, path = "/v1/quarantine/{id}/preview", tag = "quarantine",
    params(("id" = String, Path)),
    responses((status = 200, body = QuarantinePreview), (status = 404, body = ErrorBody)))]
async fn quarantine_preview(
    State(app): State<App>,
    UrlPath(id): UrlPath<String>,
) -> ApiResult<QuarantinePreview> {
    Ok(Json(app.ops.quarantine_preview(&id).await?))
}

/// The held message as stored (`message/rfc822`), for download.
#[utoipa::path(get, path = "/v1/quarantine/{id}/raw", tag = "quarantine",
    params(("id" = String, Path)),
    responses((status = 200, content_type = "message/rfc822", body = Vec<u8>),
              (status = 404, body = ErrorBody)))]
async fn quarantine_raw(
    State(app): State<App>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, ApiError> {
    let raw = app.ops.quarantine_raw(&id).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "message/rfc822".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{id}.eml\""),
            ),
        ],
        raw,
    )
        .into_response())
}

#[utoipa::path(post, path = "/v1/quarantine/{id}/release", tag = "quarantine",
    params(("id" = String, Path)), request_body = HeldAction,
    responses((status = 200, body = HeldActionResult), (status = 404, body = ErrorBody)))]
async fn quarantine_release(
    State(app): State<App>,
    axum::Extension(caller): axum::Extension<Caller>,
    UrlPath(id): UrlPath<String>,
    Body(request): Body<HeldAction>,
) -> ApiResult<HeldActionResult> {
    Ok(Json(
        app.ops.quarantine_release(&id, &request, &caller).await?,
    ))
}

#[utoipa::path(post, path = "/v1/quarantine/{id}/delete", tag = "quarantine",
    params(("id" = String, Path)), request_body = HeldAction,
    responses((status = 200, body = HeldActionResult), (status = 404, body = ErrorBody)))]
async fn quarantine_delete(
    State(app): State<App>,
    axum::Extension(caller): axum::Extension<Caller>,
    UrlPath(id): UrlPath<String>,
    Body(request): Body<HeldAction>,
) -> ApiResult<HeldActionResult> {
    Ok(Json(
        app.ops.quarantine_delete(&id, &request, &caller).await?,
    ))
}

#[utoipa::path(post, path = "/v1/quarantine/{id}/learn", tag = "quarantine",
    params(("id" = String, Path)), request_body = LearnRequest,
    responses((status = 200, body = HeldActionResult), (status = 404, body = ErrorBody)))]
async fn quarantine_learn(
    State(app): State<App>,
    axum::Extension(caller): axum::Extension<Caller>,
    UrlPath(id): UrlPath<String>,
    Body(request): Body<LearnRequest>,
) -> ApiResult<HeldActionResult> {
    Ok(Json(
        app.ops.quarantine_learn(&id, &request, &caller).await?,
    ))
}

#[utoipa::path(post, path = "/v1/quarantine/{id}/list", tag = "quarantine",
    params(("id" = String, Path)), request_body = ListFromHeld,
    responses((status = 200, body = ListAdded), (status = 400, body = ErrorBody)))]
async fn quarantine_list_sender(
    State(app): State<App>,
    axum::Extension(caller): axum::Extension<Caller>,
    UrlPath(id): UrlPath<String>,
    Body(request): Body<ListFromHeld>,
) -> ApiResult<ListAdded> {
    Ok(Json(
        app.ops
            .quarantine_list_sender(&id, &request, &caller)
            .await?,
    ))
}

#[utoipa::path(post, path = "/v1/quarantine/bulk", tag = "quarantine", request_body = BulkRequest,
    responses((status = 200, body = HeldActionResult), (status = 400, body = ErrorBody)))]
async fn quarantine_bulk(
    State(app): State<App>,
    axum::Extension(caller): axum::Extension<Caller>,
    Body(request): Body<BulkRequest>,
) -> ApiResult<HeldActionResult> {
    Ok(Json(app.ops.quarantine_bulk(&request, &caller).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_errors_name_the_field() {
        assert_eq!(
            error_field(".", "missing field `sender` at line 1"),
            "sender"
        );
        assert_eq!(error_field(".", "unknown field `sendr`, expected"), "sendr");
        assert_eq!(
            error_field("sendr", "unknown field `sendr`, expected"),
            "sendr"
        );
        assert_eq!(error_field("list", "unknown variant `maybe`"), "list");
        assert_eq!(
            error_field(".", "expected value at line 1 column 1"),
            "body"
        );
    }

    #[test]
    fn the_openapi_description_lists_every_endpoint() {
        let doc: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for p in [
            "/v1/health",
            "/v1/counters",
            "/v1/config/reload",
            "/v1/queue",
            "/v1/queue/{id}",
            "/v1/queue/{id}/retry",
            "/v1/certs",
            "/v1/certs/{fingerprint}",
            "/v1/certs/trust-ca",
            "/v1/trust/{domain}/pin",
            "/v1/lists",
            "/v1/lists/{id}",
            "/v1/quarantine",
            "/v1/quarantine/bulk",
            "/v1/quarantine/{id}/release",
            "/v1/quarantine/{id}/raw",
        ] {
            assert!(paths.contains_key(p), "{p} missing from {paths:?}");
        }
        assert!(doc["components"]["schemas"]["NewListEntry"].is_object());
    }
}
