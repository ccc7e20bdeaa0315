//! The client's address behind reverse proxies.
//!
//! Behind an ingress every connection comes from the proxy, so per-address rate limits, the
//! per-address lockout and the address in audit events would all see one address for every
//! client: one attacker's failures would throttle everyone. A proxy the operator trusts
//! (`trusted_proxies`) says whom it forwards for in `X-Forwarded-For`; each proxy appends the
//! address it received from. The client is therefore the nearest address in that list, read
//! from the right, that is not itself a trusted proxy. Entries left of it can be written by
//! the client and are never believed, and the header is ignored entirely on a connection that
//! does not come from a trusted proxy.

use axum::http::{HeaderMap, HeaderName};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// The address a request came from, resolved by [`TrustedProxies::client`]; every part of the
/// service that needs the client's address (rate limits, lockout, audit) reads this.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

/// The networks whose connections may name the client in `X-Forwarded-For`. Empty (the
/// default): the peer of the connection is the client.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client of a request that arrived from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.to_canonical();
        if !self.trusts(client) {
            return client;
        }
        // Right to left: the last header line's last entry was added by the nearest proxy.
        for line in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
            let Ok(line) = line.to_str() else {
                return client;
            };
            for hop in line.rsplit(',') {
                // An unreadable entry ends the walk: nothing to its left can be trusted.
                let Some(ip) = parse_hop(hop.trim()) else {
                    return client;
                };
                client = ip;
                if !self.trusts(ip) {
                    return client;
                }
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, or an address with a port (some proxies add it).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn forwarded(lines: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for line in lines {
            h.append(&X_FORWARDED_FOR, line.parse().unwrap());
        }
        h
    }

    fn ingress() -> TrustedProxies {
        TrustedProxies::new(vec![
            "10.0.0.0/8".parse().unwrap(),
            "fd00::1/128".parse().unwrap(),
        ])
    }

    #[test]
    fn without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says() {
        let h = forwarded(&["203.0.113.9"]);
        assert_eq!(
            TrustedProxies::default().client(ip("10.1.2.3"), &h),
            ip("10.1.2.3")
        );
        // A peer outside the trusted networks cannot name another client either.
        assert_eq!(ingress().client(ip("198.51.100.4"), &h), ip("198.51.100.4"));
    }

    #[test]
    fn a_trusted_peer_names_the_nearest_untrusted_hop() {
        // The client wrote a fake first entry; the ingress appended the real address.
        let h = forwarded(&["1.2.3.4, 203.0.113.9"]);
        assert_eq!(ingress().client(ip("10.1.2.3"), &h), ip("203.0.113.9"));
        // Two proxies in a row, over two header lines, with a port on one entry.
        let h = forwarded(&["1.2.3.4", "203.0.113.9:5123, 10.9.9.9"]);
        assert_eq!(ingress().client(ip("10.1.2.3"), &h), ip("203.0.113.9"));
        assert_eq!(
            ingress().client(ip("fd00::1"), &forwarded(&["2001:db8::7"])),
            ip("2001:db8::7")
        );
    }

    #[test]
    fn a_trusted_peer_without_a_usable_header_is_the_client() {
        let peer = ip("10.1.2.3");
        assert_eq!(ingress().client(peer, &HeaderMap::new()), peer);
        assert_eq!(ingress().client(peer, &forwarded(&["unknown"])), peer);
        // Garbage stops the walk at the last trusted hop, never left of it.
        assert_eq!(
            ingress().client(peer, &forwarded(&["203.0.113.9, garbage, 10.4.4.4"])),
            ip("10.4.4.4")
        );
        // Every hop trusted: the farthest one is the best known.
        assert_eq!(
            ingress().client(peer, &forwarded(&["10.5.5.5, 10.6.6.6"])),
            ip("10.5.5.5")
        );
    }

    #[test]
    fn ipv4_mapped_peers_match_ipv4_networks() {
        let h = forwarded(&["203.0.113.9"]);
        assert_eq!(
            ingress().client(ip("::ffff:10.1.2.3"), &h),
            ip("203.0.113.9")
        );
    }
}
