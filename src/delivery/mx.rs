//! Where outbound mail for a domain goes: MX lookup (RFC 5321 §5.1) with hickory.

use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

/// A resolution failure: permanent ones bounce, temporary ones are retried.
#[derive(Debug, Clone)]
pub struct RouteError {
    pub permanent: bool,
    pub message: String,
}

/// Most addresses tried per delivery (RFC 5321 §5.1 asks for a bounded list).
const MAX_TARGETS: usize = 10;

/// The resolver for MX lookups: the configured servers (`dns_servers`), else the
/// system's (`/etc/resolv.conf`); an error says why there is none.
pub fn resolver(servers: &[SocketAddr]) -> Result<TokioResolver, String> {
    filters::dns::resolver_builder(servers)?
        .build()
        .map_err(|e| format!("cannot build the DNS resolver: {e}"))
}

/// Addresses to try for `domain`, best first, each with the host name for TLS.
pub async fn targets(
    resolver: &TokioResolver,
    domain: &str,
    port: u16,
) -> Result<Vec<(SocketAddr, String)>, RouteError> {
    if let Some(literal) = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')) {
        let ip: IpAddr = literal
            .trim_start_matches("IPv6:")
            .parse()
            .map_err(|_| RouteError {
                permanent: true,
                message: format!("bad address literal {domain}"),
            })?;
        return Ok(vec![(SocketAddr::new(ip, port), literal.to_string())]);
    }
    let fqdn = format!("{domain}.");
    let hosts: Vec<String> = match resolver.mx_lookup(fqdn.as_str()).await {
        Ok(lookup) => {
            let mut mx: Vec<(u16, String)> = lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::MX(m) => Some((m.preference, m.exchange.to_ascii())),
                    _ => None,
                })
                .collect();
            if mx.len() == 1 && (mx[0].1 == "." || mx[0].1.is_empty()) {
                return Err(RouteError {
                    permanent: true,
                    message: format!("556 5.1.10 {domain} does not accept mail (null MX)"),
                });
            }
            mx.sort();
            if mx.is_empty() {
                vec![fqdn.clone()]
            } else {
                mx.into_iter().map(|(_, h)| h).collect()
            }
        }
        Err(e) if e.is_nx_domain() => {
            return Err(RouteError {
                permanent: true,
                message: format!("550 5.1.2 domain {domain} does not exist"),
            });
        }
        // No MX record: the domain itself is the implicit MX.
        Err(e) if e.is_no_records_found() => vec![fqdn.clone()],
        Err(e) => {
            return Err(RouteError {
                permanent: false,
                message: format!("451 4.4.3 MX lookup for {domain} failed: {e}"),
            });
        }
    };
    let mut out = Vec::new();
    let mut last_error = String::new();
    for host in hosts {
        match resolver.lookup_ip(host.as_str()).await {
            Ok(ips) => {
                let name = host.trim_end_matches('.').to_string();
                out.extend(
                    ips.iter()
                        .map(|ip| (SocketAddr::new(ip, port), name.clone())),
                );
            }
            Err(e) => last_error = format!("{host}: {e}"),
        }
        if out.len() >= MAX_TARGETS {
            break;
        }
    }
    out.truncate(MAX_TARGETS);
    if out.is_empty() {
        return Err(RouteError {
            permanent: false,
            message: format!("451 4.4.4 no address for the mail hosts of {domain} ({last_error})"),
        });
    }
    Ok(out)
}
