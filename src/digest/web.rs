//! The HTTPS endpoint of the report links (`[digest] http_bind`). It serves nothing but
//! the action pages:
//!
//! - `GET` (and `HEAD`) `/a/<token>` only shows what the link would do, with one button, and
//!   sets a `SameSite=Strict` cookie holding a fresh nonce that the page's form repeats. Link
//!   scanners (Safe Links, Proofpoint, headless browsers) open every link: opening changes
//!   nothing.
//! - `POST /a/<token>` with the form's nonce equal to the cookie's does the action, once per
//!   link, and writes the audit row as "<recipient> via report".
//!
//! Requests are limited per client address and per link; wrong, changed or expired links
//! get a plain page saying so.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use openssl::ssl::{Ssl, SslAcceptor};
use quarantine::digest as sql;
use quarantine::{Entry, State as HeldState};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::DigestService;
use super::token::{Claim, LinkAction, Refused, token_hash};
use crate::actions::disclaimer::escape_html as html;
use crate::admin::ops::Ops;
use crate::config::{Config, HeldReason};
use crate::queue::unix_now;

const NONCE_COOKIE: &str = "portcullis_nonce";
/// Time to complete the TLS handshake and to send a request's header.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Requests per window of a minute, per key.
struct Limiter {
    per_minute: u32,
    hits: Mutex<HashMap<String, (i64, u32)>>,
}

impl Limiter {
    fn new(per_minute: u32) -> Limiter {
        Limiter {
            per_minute,
            hits: Mutex::new(HashMap::new()),
        }
    }

    fn allow(&self, key: &str, now: i64) -> bool {
        let window = now.div_euclid(60);
        let mut hits = self.hits.lock().unwrap();
        if hits.len() > 100_000 {
            hits.retain(|_, (w, _)| *w == window);
        }
        let slot = hits.entry(key.to_string()).or_insert((window, 0));
        if slot.0 != window {
            *slot = (window, 0);
        }
        slot.1 += 1;
        slot.1 <= self.per_minute
    }
}

#[derive(Clone)]
struct Web {
    service: DigestService,
    ops: Ops,
    by_address: Arc<Limiter>,
    by_link: Arc<Limiter>,
}

/// The running endpoint.
pub struct DigestWeb {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DigestWeb {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bind and serve the endpoint when `[digest] http_bind` is set (the port is bound at
/// start, before privileges are dropped, like the SMTP listeners: see `listener`).
pub async fn serve(
    config: &Config,
    listener: TcpListener,
    acceptor: SslAcceptor,
    service: DigestService,
    ops: Ops,
) -> anyhow::Result<DigestWeb> {
    let addr = listener.local_addr()?;
    let d = &config.digest;
    let web = Web {
        service,
        ops,
        by_address: Arc::new(Limiter::new(d.rate_per_minute)),
        by_link: Arc::new(Limiter::new(d.token_rate_per_minute)),
    };
    let router = Router::new()
        .route("/a/{token}", axum::routing::get(show).post(act))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(4096))
        .with_state(web);
    let open = Arc::new(Semaphore::new(d.max_connections));
    let acceptor = Arc::new(acceptor);
    let task = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "report links: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(permit) = open.clone().try_acquire_owned() else {
                continue;
            };
            let (acceptor, router) = (acceptor.clone(), router.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let Ok(ssl) = Ssl::new(acceptor.context()) else {
                    return;
                };
                let Ok(mut tls) = tokio_openssl::SslStream::new(ssl, tcp) else {
                    return;
                };
                let handshake = std::pin::Pin::new(&mut tls).accept();
                if !matches!(
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await,
                    Ok(Ok(()))
                ) {
                    return;
                }
                let service = router.layer(axum::Extension(ConnectInfo(peer)));
                let mut http = hyper::server::conn::http1::Builder::new();
                http.timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HANDSHAKE_TIMEOUT);
                let _ = http
                    .serve_connection(
                        hyper_util::rt::TokioIo::new(tls),
                        hyper_util::service::TowerToHyperService::new(service),
                    )
                    .await;
            });
        }
    });
    tracing::info!(%addr, "quarantine report links served");
    Ok(DigestWeb { addr, task })
}

/// The TLS acceptor of the endpoint: `[digest] tls_cert`/`tls_key`, else the first
/// listener's certificate, else the gateway's self-signed one.
pub fn acceptor(config: &Config) -> anyhow::Result<SslAcceptor> {
    let d = &config.digest;
    let (cert, key) = match (&d.tls_cert, &d.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ => match config
            .listeners
            .iter()
            .find_map(|l| Some((l.cert.clone()?, l.key.clone()?)))
        {
            Some(pair) => pair,
            None => crate::smtp::tls::ensure_self_signed(&config.data_dir, &config.hostname)?,
        },
    };
    crate::smtp::tls::acceptor(&cert, &key, None)
        .with_context(|| format!("[digest] certificate {}", cert.display()))
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:2em auto;padding:0 1em}}\
         th{{text-align:left;padding-right:1em}}button{{font-size:1.1em;padding:.4em 1em}}</style>\
         </head><body><h1>{title}</h1>{body}</body></html>",
        title = html(title)
    );
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::HeaderName::from_static("x-robots-tag"),
        HeaderValue::from_static("noindex"),
    );
    r
}

async fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        "<p>There is nothing here.</p>",
    )
}

fn too_many() -> Response {
    page(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many requests",
        "<p>Please wait a minute and try again.</p>",
    )
}

/// The checks both methods make: rate, token, entry. `Err` is the page to answer.
async fn checked(
    web: &Web,
    peer: SocketAddr,
    token: &str,
) -> Result<(Claim, Entry, HeldReason), Response> {
    let now = unix_now();
    if !web.by_address.allow(&peer.ip().to_string(), now) {
        return Err(too_many());
    }
    let Some(key) = web.service.link_key() else {
        return Err(not_found().await);
    };
    let claim = key.check(token, now).map_err(|e| match e {
        Refused::Invalid => page(
            StatusCode::BAD_REQUEST,
            "This link is not valid",
            "<p>The link is incomplete or was changed. Use the link from your quarantine report as it is.</p>",
        ),
        Refused::Expired => page(
            StatusCode::GONE,
            "This link has expired",
            "<p>The message it was for is no longer kept.</p>",
        ),
    })?;
    if !web.by_link.allow(token, now) {
        return Err(too_many());
    }
    let gone = || {
        page(
            StatusCode::GONE,
            "The message is no longer held",
            "<p>It was released, deleted or has expired.</p>",
        )
    };
    let entry = sql::entry(web.service.pool(), claim.entry)
        .await
        .map_err(|e| unavailable(&e))?
        .ok_or_else(gone)?;
    if !entry.recipient.eq_ignore_ascii_case(&claim.recipient) {
        return Err(page(
            StatusCode::BAD_REQUEST,
            "This link is not valid",
            "<p>The link does not belong to this message.</p>",
        ));
    }
    let reason = HeldReason::of_rule(&quarantine::rule_of(&entry.reason));
    if !DigestService::actions_for(reason).contains(&claim.action) {
        return Err(page(
            StatusCode::FORBIDDEN,
            "Not allowed",
            "<p>This action is not offered for this message.</p>",
        ));
    }
    let spent = sql::is_spent(web.service.pool(), &token_hash(token))
        .await
        .map_err(|e| unavailable(&e))?;
    if spent {
        return Err(page(
            StatusCode::CONFLICT,
            "This link was used already",
            "<p>Each link of a report works once.</p>",
        ));
    }
    if entry.state != HeldState::Held {
        return Err(gone());
    }
    if claim.action == LinkAction::RequestRelease && entry.release_requested_at.is_some() {
        return Err(page(
            StatusCode::CONFLICT,
            "Already requested",
            "<p>The administrators were asked already.</p>",
        ));
    }
    Ok((claim, entry, reason))
}

fn unavailable(e: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %e, "report links: database error");
    page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "<p>The gateway cannot answer this now.</p>",
    )
}

fn details(entry: &Entry) -> String {
    let sender = if entry.from.is_empty() {
        &entry.mail_from
    } else {
        &entry.from
    };
    format!(
        "<table><tr><th>From</th><td>{}</td></tr><tr><th>Subject</th><td>{}</td></tr>\
         <tr><th>To</th><td>{}</td></tr><tr><th>Score</th><td>{:.1}</td></tr></table>",
        html(&quarantine::escape::line(sender, 160)),
        html(&quarantine::escape::line(&entry.subject, 200)),
        html(&entry.recipient),
        entry.score
    )
}

/// GET and HEAD: what the link would do, and its button. Nothing changes.
async fn show(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
) -> Response {
    let (claim, entry, _) = match checked(&web, peer, &token).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let mut nonce = [0u8; 16];
    if openssl::rand::rand_bytes(&mut nonce).is_err() {
        return unavailable(&"no random bytes");
    }
    let nonce = hex(&nonce);
    let body = format!(
        "{}<form method=\"post\" action=\"/a/{}\"><input type=\"hidden\" name=\"nonce\" value=\"{nonce}\">\
         <p><button type=\"submit\">{}</button></p></form>",
        details(&entry),
        html(&token),
        html(claim.action.label())
    );
    let mut r = page(StatusCode::OK, claim.action.label(), &body);
    let cookie = format!(
        "{NONCE_COOKIE}={nonce}; Path=/a/; Max-Age=1800; Secure; HttpOnly; SameSite=Strict"
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn cookie_nonce(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{NONCE_COOKIE}="))
                .map(str::to_string)
        })
}

fn form_nonce(body: &[u8]) -> Option<String> {
    std::str::from_utf8(body)
        .ok()?
        .split('&')
        .find_map(|kv| kv.strip_prefix("nonce=").map(str::to_string))
}

/// POST: the action, when the form's nonce matches the cookie's.
async fn act(
    State(web): State<Web>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (claim, entry, _) = match checked(&web, peer, &token).await {
        Ok(c) => c,
        Err(page) => return page,
    };
    let same = match (cookie_nonce(&headers), form_nonce(&body)) {
        (Some(c), Some(f)) => {
            c.len() == 32 && f.len() == 32 && openssl::memcmp::eq(c.as_bytes(), f.as_bytes())
        }
        _ => false,
    };
    if !same {
        return page(
            StatusCode::FORBIDDEN,
            "Please use the button",
            "<p>Open the link from your report again and press its button.</p>",
        );
    }
    if let Err(e) = web.ops.report_action(&entry, claim.action).await {
        tracing::error!(error = %e, entry = entry.entry, "report link action failed");
        return unavailable(&e);
    }
    if let Err(e) = sql::spend(
        web.service.pool(),
        &token_hash(&token),
        unix_now(),
        claim.expires_at,
    )
    .await
    {
        tracing::warn!(error = %e, "report link done but not marked used");
    }
    page(
        StatusCode::OK,
        "Done",
        &format!("<p>{}</p>", html(claim.action.done())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_count_per_key_and_minute() {
        let l = Limiter::new(2);
        assert!(l.allow("a", 60) && l.allow("a", 61));
        assert!(!l.allow("a", 62));
        assert!(l.allow("b", 62));
        assert!(l.allow("a", 120));
    }

    #[test]
    fn nonces_are_read_from_cookie_and_form() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("x=1; portcullis_nonce=abc; y=2"),
        );
        assert_eq!(cookie_nonce(&h).as_deref(), Some("abc"));
        assert_eq!(form_nonce(b"a=1&nonce=def").as_deref(), Some("def"));
        assert_eq!(form_nonce(b"a=1"), None);
    }
}
