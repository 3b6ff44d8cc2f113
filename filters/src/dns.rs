//! The one place a DNS resolver is configured: `dns_servers` from the config (`ip:port`),
//! else the system's (`/etc/resolv.conf`). The auth stage and the gateway's MX lookups
//! both start from here and add their own options.

use std::net::SocketAddr;

use mail_auth::hickory_resolver::config::{NameServerConfig, ResolverConfig};
use mail_auth::hickory_resolver::net::runtime::TokioRuntimeProvider;
use mail_auth::hickory_resolver::{ResolverBuilder, TokioResolver};

pub fn resolver_builder(
    servers: &[SocketAddr],
) -> Result<ResolverBuilder<TokioRuntimeProvider>, String> {
    if servers.is_empty() {
        return TokioResolver::builder_tokio()
            .map_err(|e| format!("cannot read the system DNS configuration: {e}"));
    }
    let name_servers = servers
        .iter()
        .map(|s| {
            let mut ns = NameServerConfig::udp_and_tcp(s.ip());
            for c in &mut ns.connections {
                c.port = s.port();
            }
            ns
        })
        .collect();
    Ok(TokioResolver::builder_with_config(
        ResolverConfig::from_name_servers(name_servers),
        TokioRuntimeProvider::default(),
    ))
}
