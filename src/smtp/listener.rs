//! The accept loop: connection limits, then one task per session.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

use super::reply::{self, Reply};
use super::session::{ListenerSettings, Load, Session, Shared};

/// What a client counts as for `max_connections_per_ip`: its IPv4 address, or its IPv6
/// network of `ipv6_prefix_len` bits (a host usually holds a whole /64, so counting exact
/// IPv6 addresses would let one host open any number of sessions). An IPv4-mapped IPv6
/// address counts as the IPv4 address.
pub fn client_key(ip: IpAddr, ipv6_prefix_len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let bits = u32::from(ipv6_prefix_len.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            IpAddr::V6(std::net::Ipv6Addr::from(u128::from(v6) & mask))
        }
    }
}

/// Sessions per client IP (or IPv6 network), decremented when a session ends.
#[derive(Default, Clone)]
struct PerIp(Arc<Mutex<HashMap<IpAddr, usize>>>);

struct PerIpGuard {
    map: PerIp,
    ip: IpAddr,
}

impl PerIp {
    fn enter(&self, ip: IpAddr, limit: usize) -> Option<PerIpGuard> {
        let mut m = self.0.lock().unwrap();
        let n = m.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(PerIpGuard {
            map: self.clone(),
            ip,
        })
    }
}

impl Drop for PerIpGuard {
    fn drop(&mut self) {
        let mut m = self.map.0.lock().unwrap();
        if let Some(n) = m.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.ip);
            }
        }
    }
}

/// Accept connections on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    settings: Arc<ListenerSettings>,
    mut shutdown: watch::Receiver<bool>,
) {
    // The number of slots is fixed while the gateway runs (`limits.max_connections` needs a
    // restart); the per-address limit and the grace period follow a reload.
    let max_connections = shared.live.config().limits.max_connections;
    let slots = Arc::new(Semaphore::new(max_connections));
    let per_ip = PerIp::default();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let refuse = |mut tcp: tokio::net::TcpStream, r: Reply| {
            tokio::spawn(async move {
                let mut out = Vec::new();
                r.write_to(&mut out);
                let _ =
                    tokio::time::timeout(std::time::Duration::from_secs(5), tcp.write_all(&out))
                        .await;
            });
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            shared.metrics.connection_refused("max_connections");
            refuse(tcp, reply::TOO_MANY_CONNECTIONS);
            continue;
        };
        let limits = &shared.live.config().limits;
        let key = client_key(peer.ip(), limits.ipv6_prefix_len);
        let Some(ip_guard) = per_ip.enter(key, limits.max_connections_per_ip) else {
            shared.metrics.connection_refused("max_connections_per_ip");
            tracing::info!(client = %peer, "per-IP connection limit reached");
            refuse(tcp, reply::TOO_MANY_FROM_IP);
            continue;
        };
        let session = Session::new(
            shared.clone(),
            settings.clone(),
            tcp,
            peer,
            shutdown.clone(),
        )
        .with_load(Load {
            slots: slots.clone(),
            capacity: max_connections,
        });
        let metrics = shared.metrics.clone();
        metrics.connection_opened();
        tokio::spawn(async move {
            session.run().await;
            // Release the slots first: once the gauge says a session is gone, its slots are.
            drop(ip_guard);
            drop(slot);
            metrics.connection_closed();
        });
    }
    // Stopped accepting: give the open sessions the grace period to finish (they say 421
    // at their next command wait; a message in transfer is completed first).
    let grace = std::time::Duration::from_secs(shared.live.config().limits.shutdown_grace_secs);
    let all = max_connections.min(u32::MAX as usize) as u32;
    if tokio::time::timeout(grace, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("sessions still open after the shutdown grace period; closing them");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_count_per_prefix() {
        let k = |a: &str, len| client_key(a.parse().unwrap(), len);
        assert_eq!(k("2001:db8:1:2:aaaa::1", 64), k("2001:db8:1:2:ffff::9", 64));
        assert_ne!(k("2001:db8:1:2::1", 64), k("2001:db8:1:3::1", 64));
        assert_eq!(k("2001:db8:1:2::1", 64), k("2001:db8:1:2::", 128));
        assert_ne!(k("2001:db8:1:2::1", 128), k("2001:db8:1:2::2", 128));
        assert_eq!(k("2001:db8:1:2::1", 48), k("2001:db8:1:ff::1", 48));
        assert_eq!(k("192.0.2.7", 64), k("::ffff:192.0.2.7", 64));
        assert_ne!(k("192.0.2.7", 64), k("192.0.2.8", 64));
        assert_eq!(k("::1", 1), k("7fff::", 1));
    }

    #[test]
    fn the_per_prefix_count_is_one_budget() {
        let per = PerIp::default();
        let a = client_key("2001:db8::1".parse().unwrap(), 64);
        let b = client_key("2001:db8::2".parse().unwrap(), 64);
        let g1 = per.enter(a, 2).unwrap();
        let _g2 = per.enter(b, 2).unwrap();
        assert!(
            per.enter(b, 2).is_none(),
            "a third session from the same /64"
        );
        drop(g1);
        assert!(per.enter(a, 2).is_some());
    }
}
