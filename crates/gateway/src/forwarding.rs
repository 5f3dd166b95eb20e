//! What a proxy changes in the headers on the way through: hop-by-hop headers (and those
//! the `Connection` header names) stop here; upstreams learn the client's address, scheme
//! and host through `X-Forwarded-For` (appended), `X-Forwarded-Proto` and `X-Forwarded-Host`,
//! which `client::Outgoing::forwarded` writes as it encodes the request head. Everything
//! else, `traceparent` included, passes untouched.

use std::net::{IpAddr, SocketAddr};

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

#[cfg(test)]
mod tests {
    use super::*;

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
