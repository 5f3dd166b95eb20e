//! The request head as it goes to an upstream: target, headers, the forwarding headers and
//! the body's framing, encoded straight into bytes.

use axum::http::{HeaderValue, Method, header, request};
use hyper::body::SizeHint;

use super::Framing;
use crate::forwarding;

/// A request head encoded for the wire, and what its body needs.
pub struct Outgoing {
    pub(super) head: Vec<u8>,
    pub(super) framing: Framing,
    pub(super) method: Method,
}

/// What a proxied request's head says about its way here, written as it is encoded: the
/// upstream's `Host`, the client's address appended to `X-Forwarded-For`, the client's
/// `Host` as `X-Forwarded-Host`, `X-Forwarded-Proto`, and the gateway's `traceparent` when it
/// has one. The client's own values of those headers are replaced, as are its `Host` and
/// `Content-Length`.
pub struct Forwarding<'a> {
    /// The upstream's `Host`.
    pub host: &'a HeaderValue,
    /// Who sent the request.
    pub client: &'a forwarding::Client,
    /// The gateway's own trace context, when tracing is exported.
    pub traceparent: Option<HeaderValue>,
}

impl Outgoing {
    /// Encodes `parts` (origin-form target, headers as they are to go out) for a body of
    /// `size`; any `Content-Length` of the client's is replaced by the body's own framing.
    /// The proxy always forwards; the encoder's own rules are tested through this.
    #[cfg(test)]
    pub fn new(parts: &request::Parts, size: &SizeHint) -> Self {
        Self::encode(parts, size, None)
    }

    /// Encodes `parts` as `new` does, with the headers `forwarding` sets (its hop-by-hop
    /// headers must be gone already).
    pub fn forwarded(parts: &request::Parts, size: &SizeHint, forwarding: &Forwarding) -> Self {
        Self::encode(parts, size, Some(forwarding))
    }

    fn encode(parts: &request::Parts, size: &SizeHint, proxied: Option<&Forwarding>) -> Self {
        let framing = match size.exact() {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::Chunked,
        };
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let mut head = Vec::with_capacity(256);
        head.extend_from_slice(parts.method.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(target.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        if let Some(proxied) = proxied {
            put_header(&mut head, "host", proxied.host.as_bytes());
        }
        // The client's values that forwarding replaces: its Host, and a forwarded host.
        let (mut client_host, mut forwarded_host, mut forwarded_for) = (None, None, false);
        for (name, value) in &parts.headers {
            if name == header::CONTENT_LENGTH {
                continue;
            }
            if let Some(proxied) = proxied {
                if name == header::HOST {
                    client_host = Some(value);
                    continue;
                }
                if name == forwarding::X_FORWARDED_HOST {
                    forwarded_host = Some(value);
                    continue;
                }
                if name == forwarding::X_FORWARDED_FOR {
                    forwarded_for = true;
                    continue;
                }
                if name == forwarding::X_FORWARDED_PROTO
                    || (proxied.traceparent.is_some() && name == forwarding::TRACEPARENT)
                {
                    continue;
                }
            }
            put_header(&mut head, name.as_str(), value.as_bytes());
        }
        if let Some(proxied) = proxied {
            // One X-Forwarded-For line: the addresses before ours, then the client's.
            head.extend_from_slice(b"x-forwarded-for: ");
            if forwarded_for {
                for earlier in parts.headers.get_all(forwarding::X_FORWARDED_FOR) {
                    head.extend_from_slice(earlier.as_bytes());
                    head.extend_from_slice(b", ");
                }
            }
            head.extend_from_slice(proxied.client.forwarded_for().as_bytes());
            head.extend_from_slice(b"\r\n");
            put_header(&mut head, "x-forwarded-proto", b"http");
            if let Some(host) = client_host.or(forwarded_host) {
                put_header(&mut head, "x-forwarded-host", host.as_bytes());
            }
            if let Some(traceparent) = &proxied.traceparent {
                put_header(&mut head, "traceparent", traceparent.as_bytes());
            }
        }
        match framing {
            Framing::Length(n) => {
                head.extend_from_slice(b"content-length: ");
                head.extend_from_slice(n.to_string().as_bytes());
                head.extend_from_slice(b"\r\n");
            }
            Framing::Chunked => head.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            // A method that carries a body says it is empty, as the client's request would.
            Framing::Empty
                if parts.headers.contains_key(header::CONTENT_LENGTH)
                    || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH) =>
            {
                head.extend_from_slice(b"content-length: 0\r\n");
            }
            Framing::Empty | Framing::UntilClose => {}
        }
        head.extend_from_slice(b"\r\n");
        Self {
            head,
            framing,
            method: parts.method.clone(),
        }
    }

    /// Whether the request may go out again after the upstream dropped a kept-alive
    /// connection under it: no body to replay, and a method that is safe to repeat.
    pub fn is_retryable(&self) -> bool {
        self.framing == Framing::Empty && self.method.is_idempotent()
    }
}

pub(in crate::http1) fn put_header(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}
