//! What a proxy changes in the headers on the way through: hop-by-hop headers (and those
//! the `Connection` header names) stop here; upstreams learn the client's address, scheme
//! and host through `X-Forwarded-For` (appended), `X-Forwarded-Proto` and `X-Forwarded-Host`,
//! which the upstream side writes as it encodes the request head. Everything
//! else, `traceparent` included, passes untouched. Behind proxies it trusts
//! (`TRUSTED_PROXIES`), the gateway reads the client's address from `X-Forwarded-For`.

use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr,
};

use ipnet::IpNet;

use axum::http::{HeaderMap, HeaderName, HeaderValue, header};

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// W3C `traceparent`.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Removes hop-by-hop headers, including every header `Connection` names. Most messages
/// carry none, or only a `Connection` of `keep-alive` or `close`: one pass over the names
/// finds out, and then nothing is allocated or looked up by a name that is not there.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !has_hop_by_hop(headers) {
        return;
    }
    if names_no_header(headers) {
        headers.remove(header::CONNECTION);
        if !has_hop_by_hop(headers) {
            return;
        }
    }
    let named: Vec<&str> = connection_options(headers).collect();
    let doomed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            HOP_BY_HOP.contains(name)
                || named
                    .iter()
                    .any(|option| option.eq_ignore_ascii_case(name.as_str()))
        })
        .cloned()
        .collect();
    for name in doomed {
        headers.remove(name);
    }
}

fn has_hop_by_hop(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| HOP_BY_HOP.contains(name))
}

/// Whether the `Connection` options are only `keep-alive` and `close` (the `Keep-Alive`
/// header they might name is hop-by-hop anyway).
fn names_no_header(headers: &HeaderMap) -> bool {
    let mut options = ConnectionOptions::default();
    headers
        .get_all(header::CONNECTION)
        .iter()
        .all(|value| options.add(value.as_bytes()))
}

/// What a message's `Connection` headers say about the connection.
#[derive(Debug, Default)]
pub struct ConnectionOptions {
    /// `close` was listed.
    pub close: bool,
    /// `keep-alive` was listed.
    pub keep_alive: bool,
}

impl ConnectionOptions {
    /// Adds one `Connection` value's options; answers whether they were only `close` and
    /// `keep-alive` (no header named).
    pub fn add(&mut self, value: &[u8]) -> bool {
        let mut plain = true;
        for option in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            if option.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if option.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if !option.is_empty() {
                plain = false;
            }
        }
        plain
    }
}

/// The options a message's `Connection` headers list (`close`, `keep-alive`, header names).
pub fn connection_options(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// A client connection's peer, with its address made into an `X-Forwarded-For` entry once
/// per connection instead of once per request.
#[derive(Debug, Clone)]
pub struct Client {
    /// The peer's address and port.
    pub addr: SocketAddr,
    forwarded_for: HeaderValue,
}

impl Client {
    /// The client connected from `addr`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            forwarded_for: HeaderValue::try_from(addr.ip().to_string())
                .expect("an address is header-safe"),
        }
    }

    /// The peer's address.
    pub fn ip(&self) -> IpAddr {
        self.addr.ip()
    }

    /// The peer's address as an `X-Forwarded-For` entry.
    pub fn forwarded_for(&self) -> &HeaderValue {
        &self.forwarded_for
    }
}

/// The proxies in front of the gateway (a load balancer, a CDN) whose `X-Forwarded-For` is
/// believed: nginx's `set_real_ip_from` with `real_ip_recursive on`. Without them, every
/// client behind a load balancer would be the balancer's address, one rate-limit bucket.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl FromStr for TrustedProxies {
    type Err = String;

    /// Comma-separated networks (`10.0.0.0/8`) or addresses (`192.0.2.7`).
    fn from_str(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| format!("{entry:?} is not an address or a network"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl TrustedProxies {
    /// The address of the client behind a request from `peer`: the peer itself unless it is
    /// a trusted proxy. From one, the `X-Forwarded-For` entries are walked from the nearest
    /// hop back, past trusted proxies, and the first address that is not one is the client;
    /// an entry that is not an address stops the walk at the last trusted hop. Entries a
    /// client wrote itself sit left of its own and are never reached.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.0.is_empty() || !self.trusts(peer) {
            return peer;
        }
        let mut client = peer;
        for value in headers.get_all(X_FORWARDED_FOR).iter().rev() {
            let Ok(value) = value.to_str() else {
                return client;
            };
            for entry in value.rsplit(',') {
                let Ok(hop) = entry.trim().parse::<IpAddr>() else {
                    return client;
                };
                client = hop;
                if !self.trusts(hop) {
                    return hop;
                }
            }
        }
        client
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(X_FORWARDED_FOR, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let headers = forwarded(&["203.0.113.7"]);
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_ip(ip("198.51.100.1"), &headers),
            ip("198.51.100.1")
        );
        let other: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        assert_eq!(
            other.client_ip(ip("198.51.100.1"), &headers),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn behind_trusted_proxies_the_nearest_untrusted_hop_is_the_client() {
        let trusted: TrustedProxies = "10.0.0.0/8, 192.0.2.7".parse().unwrap();
        // A client that forged two entries, then a CDN edge and a load balancer we trust.
        let headers = forwarded(&["1.1.1.1, 2.2.2.2", "203.0.113.7, 192.0.2.7"]);
        assert_eq!(
            trusted.client_ip(ip("10.1.2.3"), &headers),
            ip("203.0.113.7")
        );
        // An IPv4 peer seen through an IPv6 socket is still trusted.
        assert_eq!(
            trusted.client_ip(ip("::ffff:10.1.2.3"), &headers),
            ip("203.0.113.7")
        );
        // Only trusted hops: the farthest one is the client.
        let headers = forwarded(&["10.9.9.9, 192.0.2.7"]);
        assert_eq!(trusted.client_ip(ip("10.1.2.3"), &headers), ip("10.9.9.9"));
        // Nothing forwarded: the peer.
        assert_eq!(
            trusted.client_ip(ip("10.1.2.3"), &HeaderMap::new()),
            ip("10.1.2.3")
        );
    }

    #[test]
    fn a_malformed_entry_stops_the_walk_at_the_last_trusted_hop() {
        let trusted: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        let headers = forwarded(&["203.0.113.7, unknown, 10.4.4.4"]);
        assert_eq!(trusted.client_ip(ip("10.1.2.3"), &headers), ip("10.4.4.4"));
    }

    #[test]
    fn the_trusted_list_parses_networks_and_addresses_and_names_what_it_refuses() {
        let trusted: TrustedProxies = " 10.0.0.0/8 ,2001:db8::/32,192.0.2.7,".parse().unwrap();
        assert_eq!(trusted.0.len(), 3);
        assert!(trusted.trusts(ip("10.200.0.1")));
        assert!(trusted.trusts(ip("2001:db8::1")));
        assert!(!trusted.trusts(ip("192.0.2.8")));
        let error = "10.0.0.0/8, lb.internal"
            .parse::<TrustedProxies>()
            .unwrap_err();
        assert!(error.contains("lb.internal"), "{error}");
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_dropped() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("te", HeaderValue::from_static("trailers"));
        headers.insert("traceparent", HeaderValue::from_static("00-abc-def-01"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("traceparent"));
    }

    #[test]
    fn a_connection_of_keep_alive_or_close_goes_with_the_other_hop_by_hop_headers() {
        let mut headers = HeaderMap::new();
        headers.append("connection", HeaderValue::from_static("Keep-Alive"));
        headers.append("connection", HeaderValue::from_static("close"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert("upgrade", HeaderValue::from_static("h2c"));
        headers.insert("content-type", HeaderValue::from_static("text/plain"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("content-type"));

        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("keep-alive"));
        headers.insert("content-length", HeaderValue::from_static("11"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("content-length"));
    }

    #[test]
    fn a_connection_option_names_a_header_whatever_its_case() {
        let mut headers = HeaderMap::new();
        headers.insert("connection", HeaderValue::from_static("X-Hop"));
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("x-end", HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1);
        assert!(headers.contains_key("x-end"));
    }
}
