//! Certificate revocation lists: reading them (DER or PEM), checking a verified chain
//! against the CRLs the store holds, and fetching a CRL from a certificate's distribution
//! point (plain `http://`, as RFC 5280 CRL distribution points are; bounded in time and
//! size). The store ([`super::store`]) keeps the CRLs and decides what an unknown status
//! means (`[certs] revocation`).
//!
//! Scope: complete CRLs signed by the certificate's issuer itself (what CAs publish at their
//! distribution points). Delta CRLs and indirect CRLs are not read; a certificate covered
//! only by those has no known status.

use std::time::Duration;

use anyhow::{Context, bail};
use openssl::asn1::{Asn1Time, Asn1TimeRef};
use openssl::x509::{CrlStatus, X509, X509Crl, X509Ref};
use serde::Serialize;

use super::info;

/// A certificate's revocation status, as far as the store can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "lowercase")]
pub enum Revocation {
    /// Not checked (`[certs] revocation = "off"`).
    Off,
    /// Every certificate below the anchor is absent from a current CRL of its issuer.
    Good,
    /// A certificate of the chain is revoked; the text names it when it is a CA's.
    Revoked(String),
    /// No current CRL for some certificate of the chain; the text says which and why.
    Unknown(String),
}

impl Revocation {
    /// As `certs show` prints it.
    pub fn text(&self) -> String {
        match self {
            Revocation::Off => "not checked ([certs] revocation = \"off\")".into(),
            Revocation::Good => "not revoked (current CRLs checked)".into(),
            Revocation::Revoked(why) => format!("REVOKED ({why})"),
            Revocation::Unknown(why) => format!("unknown ({why})"),
        }
    }
}

/// A CRL the store holds: verified with its issuer's key when it was stored.
pub struct HeldCrl {
    pub crl: X509Crl,
    pub issuer_fingerprint: String,
    pub this_update: i64,
    pub next_update: Option<i64>,
}

/// Unix seconds of an ASN.1 time.
pub fn unix(t: &Asn1TimeRef) -> anyhow::Result<i64> {
    let epoch = Asn1Time::from_unix(0)?;
    let d = epoch.diff(t)?;
    Ok(i64::from(d.days) * 86_400 + i64::from(d.secs))
}

/// The CRLs of a file or download: DER, or PEM with one or more `X509 CRL` blocks.
pub fn read_crls(bytes: &[u8], name: &str) -> anyhow::Result<Vec<X509Crl>> {
    const BEGIN: &[u8] = b"-----BEGIN X509 CRL-----";
    const END: &[u8] = b"-----END X509 CRL-----";
    let find = |hay: &[u8], needle: &[u8], from: usize| {
        hay.get(from..)?
            .windows(needle.len())
            .position(|w| w == needle)
            .map(|p| p + from)
    };
    if find(bytes, BEGIN, 0).is_none() {
        return X509Crl::from_der(bytes)
            .map(|c| vec![c])
            .map_err(|e| anyhow::anyhow!("{name} is not a CRL (PEM or DER): {e}"));
    }
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(start) = find(bytes, BEGIN, at) {
        let Some(end) = find(bytes, END, start) else {
            bail!("{name}: a PEM CRL has no END line");
        };
        let block = &bytes[start..end + END.len()];
        out.push(
            X509Crl::from_pem(block)
                .map_err(|e| anyhow::anyhow!("{name}: a PEM CRL does not parse: {e}"))?,
        );
        at = end + END.len();
    }
    Ok(out)
}

/// Whether `issuer` issued `crl`: its subject is the CRL's issuer and its key made the
/// CRL's signature.
pub fn issued_by(crl: &X509Crl, issuer: &X509Ref) -> bool {
    let same_name = match (crl.issuer_name().to_der(), issuer.subject_name().to_der()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    same_name
        && issuer
            .public_key()
            .ok()
            .and_then(|k| crl.verify(&k).ok())
            .unwrap_or(false)
}

/// The `http://` CRL distribution points of a certificate (others, e.g. ldap, are skipped).
pub fn http_distribution_points(cert: &X509Ref) -> Vec<String> {
    let mut out = Vec::new();
    for dp in cert.crl_distribution_points().into_iter().flatten() {
        let Some(names) = dp.distpoint().and_then(|n| n.fullname()) else {
            continue;
        };
        for n in names {
            if let Some(uri) = n.uri()
                && uri.len() > 7
                && uri[..7].eq_ignore_ascii_case("http://")
            {
                out.push(uri.to_string());
            }
        }
    }
    out
}

/// One certificate of a path without a usable CRL.
#[derive(Debug, Clone)]
pub struct Missing {
    /// Its position in the path (0 = the end-entity certificate).
    pub position: usize,
    pub why: String,
    pub urls: Vec<String>,
}

/// What the held CRLs say about a verified `path` (the certificate first, its anchor
/// last). The anchor is not checked (it is trusted as configured). `crl_of` gives the held
/// CRL of an issuer, by the issuer certificate's fingerprint.
pub fn check_path<'a>(
    path: &[X509],
    crl_of: impl Fn(&str) -> Option<&'a HeldCrl>,
    now: i64,
) -> Result<Vec<Missing>, String> {
    let mut missing = Vec::new();
    for (i, pair) in path.windows(2).enumerate() {
        let (cert, issuer) = (&pair[0], &pair[1]);
        let issuer_fp = info::fingerprint(issuer).unwrap_or_default();
        let issuer_name = info::name_text(issuer.subject_name());
        let why = match crl_of(&issuer_fp) {
            None => format!("no CRL of {issuer_name}"),
            Some(held) => {
                if let CrlStatus::Revoked(_) = held.crl.get_by_serial(cert.serial_number()) {
                    return Err(if i == 0 {
                        "certificate revoked".to_string()
                    } else {
                        format!(
                            "certificate revoked: CA {}",
                            info::name_text(cert.subject_name())
                        )
                    });
                }
                match held.next_update {
                    Some(next) if next < now => {
                        format!(
                            "the CRL of {issuer_name} expired on {}",
                            info::date_text(next)
                        )
                    }
                    _ => continue,
                }
            }
        };
        missing.push(Missing {
            position: i,
            why,
            urls: http_distribution_points(cert),
        });
    }
    Ok(missing)
}

/// Limits of one CRL download.
#[derive(Debug, Clone, Copy)]
pub struct FetchLimits {
    pub connect: Duration,
    pub read: Duration,
    pub max_bytes: usize,
}

/// GET an `http://` URL (no redirects): the body of a 200 answer, at most
/// `limits.max_bytes`, within the connect and download timeouts.
pub async fn fetch(url: &str, limits: FetchLimits) -> anyhow::Result<Vec<u8>> {
    use http_body_util::{BodyExt, Empty, Limited};
    let uri: hyper::Uri = url
        .parse()
        .with_context(|| format!("{url}: not a plain http URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!("{url}: only http:// distribution points are fetched");
    }
    let (Some(host), Some(authority)) = (uri.host(), uri.authority()) else {
        bail!("{url}: not a plain http URL");
    };
    if authority.as_str().contains('@') {
        bail!("{url}: not a plain http URL");
    }
    let connect_host = host.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(80);
    let tcp = tokio::time::timeout(
        limits.connect,
        tokio::net::TcpStream::connect((connect_host, port)),
    )
    .await
    .map_err(|_| anyhow::anyhow!("{url}: connect timed out"))?
    .with_context(|| format!("{url}: cannot connect"))?;
    let request = hyper::Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
        .header(hyper::header::HOST, authority.as_str())
        .header(hyper::header::USER_AGENT, "portcullis")
        .header(hyper::header::ACCEPT, "application/pkix-crl, */*")
        .body(Empty::<hyper::body::Bytes>::new())?;
    let download = async {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp)).await?;
        // The connection is driven beside the request and ends with it.
        tokio::spawn(connection);
        let answer = sender.send_request(request).await?;
        if answer.status() != hyper::StatusCode::OK {
            bail!("{url}: HTTP answer {}", answer.status());
        }
        match Limited::new(answer.into_body(), limits.max_bytes)
            .collect()
            .await
        {
            Ok(body) => Ok(body.to_bytes().to_vec()),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => bail!(
                "{url}: larger than {} bytes (key `certs.crl_max_bytes`)",
                limits.max_bytes
            ),
            Err(e) => Err(anyhow::anyhow!("{url}: {e}")),
        }
    };
    tokio::time::timeout(limits.read, download)
        .await
        .map_err(|_| anyhow::anyhow!("{url}: download timed out"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Serve one raw HTTP answer on 127.0.0.1; the URL of it.
    async fn serve_once(answer: Vec<u8>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await;
            let _ = s.write_all(&answer).await;
        });
        format!("http://{addr}/ca.crl")
    }

    #[tokio::test]
    async fn chunked_bodies_are_joined() {
        let limits = FetchLimits {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(5),
            max_bytes: 1000,
        };
        let url = serve_once(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
                .to_vec(),
        )
        .await;
        assert_eq!(fetch(&url, limits).await.unwrap(), b"abcde");
        let url =
            serve_once(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nff\r\nabc".to_vec())
                .await;
        assert!(fetch(&url, limits).await.is_err());
    }

    #[tokio::test]
    async fn only_http_is_fetched_and_a_closed_port_fails_fast() {
        let limits = FetchLimits {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(2),
            max_bytes: 1000,
        };
        let e = fetch("ldap://x/y", limits).await.unwrap_err().to_string();
        assert!(e.contains("only http://"), "{e}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e = fetch(&format!("http://127.0.0.1:{port}/ca.crl"), limits)
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("cannot connect"), "{e:#}");
    }

    #[tokio::test]
    async fn a_download_over_the_size_cap_is_refused() {
        let body = vec![b'x'; 100_000];
        let mut answer =
            format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        answer.extend_from_slice(&body);
        let url = serve_once(answer).await;
        let limits = FetchLimits {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(5),
            max_bytes: 1000,
        };
        let e = fetch(&url, limits).await.unwrap_err().to_string();
        assert!(e.contains("crl_max_bytes"), "{e}");
    }
}
