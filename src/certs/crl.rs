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
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// GET an `http://` URL (HTTP/1.0, no redirects): the body of a 200 answer.
pub async fn fetch(url: &str, limits: FetchLimits) -> anyhow::Result<Vec<u8>> {
    let rest = url
        .get(7..)
        .filter(|_| url[..7].eq_ignore_ascii_case("http://"))
        .with_context(|| format!("{url}: only http:// distribution points are fetched"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(']') => (
            h,
            p.parse::<u16>()
                .with_context(|| format!("{url}: bad port"))?,
        ),
        _ => (authority, 80),
    };
    if host.is_empty() || authority.contains(['@', ' ']) || path.contains([' ', '\r', '\n']) {
        bail!("{url}: not a plain http URL");
    }
    let connect_host = host.trim_start_matches('[').trim_end_matches(']');
    let mut stream = tokio::time::timeout(
        limits.connect,
        tokio::net::TcpStream::connect((connect_host, port)),
    )
    .await
    .map_err(|_| anyhow::anyhow!("{url}: connect timed out"))?
    .with_context(|| format!("{url}: cannot connect"))?;
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {authority}\r\nUser-Agent: portcullis\r\n\
         Accept: application/pkix-crl, */*\r\nConnection: close\r\n\r\n"
    );
    let read_all = async {
        stream.write_all(request.as_bytes()).await?;
        let mut buf = Vec::new();
        let mut chunk = vec![0u8; 64 * 1024];
        // the header block on top of the body
        let cap = limits.max_bytes.saturating_add(16 * 1024);
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.len() > cap {
                bail!(
                    "{url}: larger than {} bytes (key `certs.crl_max_bytes`)",
                    limits.max_bytes
                );
            }
        }
        Ok(buf)
    };
    let raw = tokio::time::timeout(limits.read, read_all)
        .await
        .map_err(|_| anyhow::anyhow!("{url}: download timed out"))??;
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        bail!("{url}: no HTTP answer");
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let status = head.lines().next().unwrap_or("");
    let code = status.split_whitespace().nth(1).unwrap_or("");
    if code != "200" {
        bail!("{url}: HTTP answer {status:?}");
    }
    let mut body = raw[end + 4..].to_vec();
    let field = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    };
    if field("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body).with_context(|| format!("{url}: bad chunked encoding"))?;
    } else if let Some(len) = field("content-length").and_then(|v| v.parse::<usize>().ok()) {
        if body.len() < len {
            bail!("{url}: the answer ended early");
        }
        body.truncate(len);
    }
    if body.len() > limits.max_bytes {
        bail!(
            "{url}: larger than {} bytes (key `certs.crl_max_bytes`)",
            limits.max_bytes
        );
    }
    Ok(body)
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            bail!("chunk longer than the answer");
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n").unwrap(),
            b"abcde"
        );
        assert!(dechunk(b"ff\r\nabc").is_err());
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut req = [0u8; 1024];
            let _ = s.read(&mut req).await;
            let body = vec![b'x'; 100_000];
            let _ = s
                .write_all(
                    format!("HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes(),
                )
                .await;
            let _ = s.write_all(&body).await;
        });
        let limits = FetchLimits {
            connect: Duration::from_secs(2),
            read: Duration::from_secs(5),
            max_bytes: 1000,
        };
        let e = fetch(&format!("http://{addr}/big.crl"), limits)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("crl_max_bytes"), "{e}");
    }
}
