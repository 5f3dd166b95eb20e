//! Reading a simple request off a downstream connection's buffer, its target and header
//! values sharing the head's bytes.

use std::mem::MaybeUninit;

use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version},
};
use bytes::BytesMut;

use crate::is_own;

use crate::http1::upstream::Line;

/// A head with more header lines is not simple.
const MAX_HEADERS: usize = 64;

/// What the connection's buffered bytes begin with.
#[derive(Debug)]
// The request moves once, to the proxy: boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub(super) enum Parsed {
    /// Not yet a whole head.
    Incomplete,
    /// A simple request, taken off the buffer.
    Simple(Request),
    /// Any other request, left in the buffer.
    Other,
}

/// Takes a simple request off `buffer` when the buffer begins with one. `lines` is room for
/// where its header lines are.
pub(super) fn parse_request(buffer: &mut BytesMut, lines: &mut Vec<Line>) -> Parsed {
    let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut request,
        buffer,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(_) => return Parsed::Other,
    };
    let (Some(method), Some(path), Some(1)) = (request.method, request.path, request.version)
    else {
        return Parsed::Other;
    };
    let route = path.split_once('?').map_or(path, |(route, _)| route);
    if method == "CONNECT" || !path.starts_with('/') || is_own(route) {
        return Parsed::Other;
    }
    if !request
        .headers
        .iter()
        .all(|h| is_simple_header(h.name, h.value))
    {
        return Parsed::Other;
    }
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parsed::Other;
    };
    let path = Line::offset(buffer, path.as_bytes());
    Line::locate(buffer, request.headers, lines);

    // The head's bytes, frozen: the target and header values share them.
    let head = buffer.split_to(length).freeze();
    match build(&head, method, path, lines) {
        Some(request) => Parsed::Simple(request),
        None => {
            // Not valid after all: hyper answers it, from its first byte.
            let mut whole = BytesMut::with_capacity(head.len() + buffer.len());
            whole.extend_from_slice(&head);
            whole.extend_from_slice(buffer);
            *buffer = whole;
            Parsed::Other
        }
    }
}

/// Whether a request with this header can still be simple: no body (a `Content-Length` of 0
/// at most, no `Transfer-Encoding`), no `Expect`, no `Upgrade`, and a `Connection` of only
/// `keep-alive`.
fn is_simple_header(name: &str, value: &[u8]) -> bool {
    let is = |wanted: &str| name.eq_ignore_ascii_case(wanted);
    if is("content-length") {
        value == b"0"
    } else if is("connection") {
        value.eq_ignore_ascii_case(b"keep-alive")
    } else {
        !(is("transfer-encoding") || is("expect") || is("upgrade"))
    }
}

/// The request out of its head's bytes; `None` when a part is not valid.
fn build(head: &Bytes, method: Method, path: (usize, usize), lines: &[Line]) -> Option<Request> {
    let range = |(from, len): (usize, usize)| from..from + len;
    let uri = Uri::from_maybe_shared(head.slice(range(path))).ok()?;
    let mut headers = HeaderMap::with_capacity(lines.len());
    for line in lines {
        let name = HeaderName::from_bytes(&head[range(line.name)]).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice(range(line.value))).ok()?;
        headers.append(name, value);
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(request)
}

/// Ready once the client has closed its side of the connection. What it sends meanwhile (a
#[cfg(test)]
mod tests {
    use super::*;

    use hyper::body::Body as _;

    fn parse(bytes: &[u8]) -> (Parsed, BytesMut) {
        let mut buffer = BytesMut::from(bytes);
        (parse_request(&mut buffer, &mut Vec::new()), buffer)
    }

    fn simple(bytes: &[u8]) -> (Request, BytesMut) {
        match parse(bytes) {
            (Parsed::Simple(request), rest) => (request, rest),
            (other, _) => panic!("{other:?} for {:?}", String::from_utf8_lossy(bytes)),
        }
    }

    fn is_other(bytes: &[u8]) {
        let (parsed, rest) = parse(bytes);
        assert!(matches!(parsed, Parsed::Other), "{parsed:?}");
        assert_eq!(&rest[..], bytes, "hyper must get every byte");
    }

    #[test]
    fn a_simple_request_is_taken_off_the_buffer_and_the_next_one_left() {
        let (request, rest) = simple(
            b"GET /v1/carts/crt_1?x=1 HTTP/1.1\r\nHost: shop\r\nX-Customer-Id: c-9\r\nConnection: keep-alive\r\n\r\nGET /next",
        );
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "/v1/carts/crt_1?x=1");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["host"], "shop");
        assert_eq!(request.headers()["x-customer-id"], "c-9");
        assert_eq!(request.headers().len(), 3);
        assert_eq!(request.body().size_hint().exact(), Some(0));
        assert_eq!(&rest[..], b"GET /next");
    }

    #[test]
    fn a_head_still_arriving_is_incomplete() {
        let (parsed, rest) = parse(b"GET /v1/carts HTTP/1.1\r\nHost: sh");
        assert!(matches!(parsed, Parsed::Incomplete), "{parsed:?}");
        assert_eq!(rest.len(), 32);
    }

    #[test]
    fn a_content_length_of_zero_is_still_simple() {
        let (request, _) = simple(b"POST /v1/carts HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(request.method(), Method::POST);
    }

    #[test]
    fn anything_but_a_simple_request_is_left_whole_for_hyper() {
        for request in [
            &b"POST /v1/carts HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"[..],
            b"POST /v1/carts HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            b"POST /v1/carts HTTP/1.1\r\nContent-Length: 00\r\n\r\n",
            b"PUT /v1/carts HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n",
            b"GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            b"GET /v1/carts HTTP/1.1\r\nConnection: close\r\n\r\n",
            b"GET /v1/carts HTTP/1.0\r\n\r\n",
            b"GET http://shop/v1/carts HTTP/1.1\r\n\r\n",
            b"CONNECT shop:443 HTTP/1.1\r\n\r\n",
            b"GET /admin/flags HTTP/1.1\r\n\r\n",
            b"GET /metrics?x HTTP/1.1\r\n\r\n",
            b"GET /v1/carts HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET /v1/carts HTTP/1.1\r\nX: a\x01b\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            is_other(request);
        }
    }
}
