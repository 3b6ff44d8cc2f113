//! `portcullis doctor`: checks a live installation from outside, the way an operator would
//! by hand — the configuration, the SMTP ports, the admin socket, DNS, clamd, the database,
//! file permissions, certificate expiry, free disk — and says what to fix for each finding.
//! Exit code 1 when a check failed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use crate::config::Config;

/// How long a network check may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Free space in the data directory below which mail soon gets 451.
const DISK_FAIL_BYTES: u64 = 512 * 1024 * 1024;
const DISK_WARN_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Certificate days left that warn.
const CERT_WARN_DAYS: i64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

/// One check's finding.
#[derive(Debug, Clone)]
pub struct Finding {
    pub level: Level,
    pub check: &'static str,
    pub text: String,
}

fn finding(level: Level, check: &'static str, text: impl Into<String>) -> Finding {
    Finding {
        level,
        check,
        text: text.into(),
    }
}

/// Run every check against the installation `config` describes.
pub async fn examine(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    for l in &config.listeners {
        out.push(smtp_port(l.bind).await);
    }
    out.push(admin_socket(config).await);
    out.push(dns(config).await);
    out.push(clamd(config).await);
    out.push(database(&config.data_dir).await);
    out.extend(permissions(config));
    out.extend(certificates(config));
    out.push(disk(&config.data_dir));
    out
}

/// Print the findings; the exit code: 1 when one failed.
pub fn report(findings: &[Finding]) -> i32 {
    for f in findings {
        let tag = match f.level {
            Level::Ok => "ok  ",
            Level::Warn => "WARN",
            Level::Fail => "FAIL",
        };
        println!("{tag} {:<12} {}", f.check, f.text);
    }
    let failed = findings.iter().filter(|f| f.level == Level::Fail).count();
    let warned = findings.iter().filter(|f| f.level == Level::Warn).count();
    println!(
        "{failed} failed, {warned} warning(s), {} checks",
        findings.len()
    );
    i32::from(failed > 0)
}

/// Where to reach a listener bound to `bind` from this machine.
fn reachable(bind: SocketAddr) -> SocketAddr {
    match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), bind.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), bind.port())
        }
        _ => bind,
    }
}

async fn smtp_port(bind: SocketAddr) -> Finding {
    let addr = reachable(bind);
    let greeting = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf[..n]).trim_end().to_string())
    };
    match tokio::time::timeout(TIMEOUT, greeting).await {
        Ok(Ok(g)) if g.starts_with("220") => finding(Level::Ok, "smtp", format!("{bind}: {g}")),
        Ok(Ok(g)) => finding(
            Level::Fail,
            "smtp",
            format!("{bind} answers {g:?}, not a 220 greeting: is another server on the port?"),
        ),
        Ok(Err(e)) => finding(
            Level::Fail,
            "smtp",
            format!("{bind}: {e}: start the gateway (systemctl start portcullis) and read its log"),
        ),
        Err(_) => finding(
            Level::Fail,
            "smtp",
            format!("{bind}: no greeting within {TIMEOUT:?}: the gateway is stuck or overloaded"),
        ),
    }
}

async fn admin_socket(config: &Config) -> Finding {
    if !config.admin.enabled {
        return finding(
            Level::Ok,
            "admin",
            "the admin API is off ([admin] enabled = false)",
        );
    }
    let path = config.data_dir.join("admin.sock");
    let health = async {
        let c = crate::admin::client::Client::connect(&path)
            .await
            .map_err(|e| e.to_string())?;
        c.health().await.map_err(|e| e.to_string())
    };
    match tokio::time::timeout(TIMEOUT, health).await {
        Ok(Ok(h)) => finding(
            Level::Ok,
            "admin",
            format!(
                "{} answers: Portcullis {} on {}, up {} s",
                path.display(),
                h.version,
                h.hostname,
                h.uptime_secs
            ),
        ),
        Ok(Err(e)) => finding(Level::Fail, "admin", format!("{}: {e}", path.display())),
        Err(_) => finding(
            Level::Fail,
            "admin",
            format!("{}: no answer within {TIMEOUT:?}", path.display()),
        ),
    }
}

async fn dns(config: &Config) -> Finding {
    let servers = if config.dns_servers.is_empty() {
        "the system resolver".to_string()
    } else {
        format!("{:?}", config.dns_servers)
    };
    let resolver = match crate::delivery::mx::resolver(&config.dns_servers) {
        Ok(r) => r,
        Err(e) => return finding(Level::Fail, "dns", e),
    };
    let name = format!("{}.", config.hostname.trim_end_matches('.'));
    match tokio::time::timeout(TIMEOUT * 3, resolver.mx_lookup(name.as_str())).await {
        Ok(Ok(_)) => finding(Level::Ok, "dns", format!("{servers} answers")),
        Ok(Err(e)) if e.is_nx_domain() || e.is_no_records_found() => {
            finding(Level::Ok, "dns", format!("{servers} answers"))
        }
        Ok(Err(e)) => finding(
            Level::Fail,
            "dns",
            format!(
                "{servers}: {e}: authentication and MX delivery tempfail; check dns_servers \
                 or /etc/resolv.conf"
            ),
        ),
        Err(_) => finding(
            Level::Fail,
            "dns",
            format!("{servers}: no answer: authentication and MX delivery tempfail"),
        ),
    }
}

async fn clamd(config: &Config) -> Finding {
    let resources = crate::pipeline::Resources::from_config(config);
    let Some(clamd) = resources.clamd else {
        return finding(
            Level::Ok,
            "clamd",
            "ClamAV is off ([clamav] enabled = false)",
        );
    };
    match clamd.health().await {
        Ok(h) => finding(
            Level::Ok,
            "clamd",
            format!(
                "{}: {}, signatures of {}",
                clamd.endpoint(),
                h.version,
                h.signature_date.as_deref().unwrap_or("(not reported)")
            ),
        ),
        Err(e) => finding(
            Level::Fail,
            "clamd",
            format!("{e}: mail is tempfailed; start clamd (systemctl start clamav-daemon)"),
        ),
    }
}

/// `PRAGMA quick_check` on a read-only connection: safe beside the running gateway.
async fn database(data_dir: &Path) -> Finding {
    use sqlx::ConnectOptions;
    use sqlx::sqlite::SqliteConnectOptions;
    let path = data_dir.join("queue.db");
    if !path.exists() {
        return finding(
            Level::Fail,
            "database",
            format!(
                "{} does not exist: has the gateway ever started here?",
                path.display()
            ),
        );
    }
    let check = async {
        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .read_only(true)
            .busy_timeout(TIMEOUT)
            .connect()
            .await?;
        let rows: Vec<(String,)> = sqlx::query_as("PRAGMA quick_check")
            .fetch_all(&mut conn)
            .await?;
        Ok::<_, sqlx::Error>(rows.into_iter().map(|r| r.0).collect::<Vec<_>>())
    };
    match check.await {
        Ok(rows) if rows == ["ok"] => finding(
            Level::Ok,
            "database",
            format!("{}: quick_check ok", path.display()),
        ),
        Ok(rows) => finding(
            Level::Fail,
            "database",
            format!(
                "{} is damaged ({}): stop the gateway and restore it from a backup",
                path.display(),
                rows.join("; ")
            ),
        ),
        Err(e) => finding(Level::Fail, "database", format!("{}: {e}", path.display())),
    }
}

fn permissions(config: &Config) -> Vec<Finding> {
    let user = nix::unistd::User::from_name(&config.service.user)
        .ok()
        .flatten();
    let mut out: Vec<Finding> =
        crate::service::permission_warnings(&config.data_dir, user.as_ref())
            .into_iter()
            .map(|w| finding(Level::Warn, "permissions", w))
            .collect();
    if let Err(e) = crate::certs::store::check_config(&config.data_dir, &config.certs) {
        out.push(finding(Level::Fail, "permissions", format!("{e:#}")));
    }
    if out.is_empty() {
        out.push(finding(
            Level::Ok,
            "permissions",
            format!("{}: private", config.data_dir.display()),
        ));
    }
    out
}

/// Days until each listener certificate expires.
fn certificates(config: &Config) -> Vec<Finding> {
    let mut out = Vec::new();
    for l in &config.listeners {
        let path = match (&l.cert, l.tls) {
            (Some(c), _) => c.clone(),
            (None, crate::config::TlsMode::None) => continue,
            (None, _) => config.data_dir.join("tls/selfsigned-cert.pem"),
        };
        let cert = std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|pem| openssl::x509::X509::from_pem(&pem).map_err(|e| e.to_string()));
        let cert = match cert {
            Ok(c) => c,
            Err(e) => {
                out.push(finding(
                    Level::Fail,
                    "certificate",
                    format!("{}: {e}", path.display()),
                ));
                continue;
            }
        };
        let days = openssl::asn1::Asn1Time::days_from_now(0)
            .ok()
            .and_then(|now| now.diff(cert.not_after()).ok())
            .map_or(0, |d| i64::from(d.days));
        let (level, text) = if days < 0 {
            (
                Level::Fail,
                format!(
                    "expired {} days ago: clients refuse STARTTLS; renew it",
                    -days
                ),
            )
        } else if days < CERT_WARN_DAYS {
            (Level::Warn, format!("expires in {days} days: renew it"))
        } else {
            (Level::Ok, format!("valid for {days} more days"))
        };
        out.push(finding(
            level,
            "certificate",
            format!("{} ({}): {text}", path.display(), l.bind),
        ));
    }
    out
}

fn disk(data_dir: &Path) -> Finding {
    match rustix::fs::statvfs(data_dir) {
        Ok(s) => {
            let free = s.f_bavail * s.f_frsize;
            let total = s.f_blocks * s.f_frsize;
            let text = format!(
                "{}: {} MiB free of {} MiB",
                data_dir.display(),
                free / (1024 * 1024),
                total / (1024 * 1024)
            );
            if free < DISK_FAIL_BYTES {
                finding(
                    Level::Fail,
                    "disk",
                    format!("{text}: mail gets 451 when it is full; free space"),
                )
            } else if free < DISK_WARN_BYTES {
                finding(Level::Warn, "disk", format!("{text}: running low"))
            } else {
                finding(Level::Ok, "disk", text)
            }
        }
        Err(e) => finding(Level::Fail, "disk", format!("{}: {e}", data_dir.display())),
    }
}
