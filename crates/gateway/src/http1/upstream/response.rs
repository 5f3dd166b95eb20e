//! The response head from an upstream: parsed out of the connection's buffer (its header
//! values sharing the buffer's bytes) and framed per RFC 9112 §6.3.

use std::mem::MaybeUninit;

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header},
    response::Response,
};
use bytes::BytesMut;

use super::{
    ExchangeError, Framing, MAX_HEAD_BYTES, MAX_HEADERS, ResponseHead,
    response_body::{Chunk, Decoder, UpstreamBody, is_number},
};
use crate::{forwarding, http1::pool::Pooled};

/// Takes a whole response head off `buffer`; `None` while it is incomplete. `lines` is room
/// for where its header lines are, kept between heads.
pub(super) fn parse_response(
    buffer: &mut BytesMut,
    lines: &mut Vec<Line>,
    method: &Method,
) -> Result<Option<ResponseHead>, ExchangeError> {
    // Uninitialised: zeroing room for every possible header line would cost more than
    // parsing the head.
    let mut headers = [const { MaybeUninit::<httparse::Header>::uninit() }; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut []);
    let length = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
        &mut response,
        buffer,
        &mut headers,
    ) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ExchangeError::Malformed("the response head does not parse")),
    };
    // The limit holds however the head arrived, in pieces or in one read.
    if length > MAX_HEAD_BYTES {
        return Err(ExchangeError::Malformed("the response head is too large"));
    }
    Line::locate(buffer, response.headers, lines);
    let (code, version) = (response.code, response.version);
    // The head's bytes, frozen: header values share them instead of copies.
    let bytes = buffer.split_to(length).freeze();
    parse_head(&bytes, code, version, lines, method).map(Some)
}

/// Where one header line's name and value sit in a head: (offset, length).
#[derive(Debug, Clone, Copy)]
pub(in crate::http1) struct Line {
    pub(crate) name: (usize, usize),
    pub(crate) value: (usize, usize),
}

impl Line {
    /// Where `part`, a slice of `head`, sits in it.
    pub(crate) fn offset(head: &[u8], part: &[u8]) -> (usize, usize) {
        (part.as_ptr() as usize - head.as_ptr() as usize, part.len())
    }

    /// Fills `lines` with where `headers`, parsed out of `head`, sit in it, so the head's
    /// bytes can be frozen and shared once the parser lets go of them.
    pub(crate) fn locate(head: &[u8], headers: &[httparse::Header<'_>], lines: &mut Vec<Line>) {
        lines.clear();
        lines.extend(headers.iter().map(|header| Line {
            name: Self::offset(head, header.name.as_bytes()),
            value: Self::offset(head, header.value),
        }));
    }
}

/// The response head out of its bytes, as httparse found it: status code, minor version and
/// header lines.
pub(super) fn parse_head(
    bytes: &Bytes,
    code: Option<u16>,
    version: Option<u8>,
    lines: &[Line],
    method: &Method,
) -> Result<ResponseHead, ExchangeError> {
    let status = code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(ExchangeError::Malformed("the status code is invalid"))?;
    let version = match version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::with_capacity(lines.len());
    let mut options = forwarding::ConnectionOptions::default();
    for &Line { name, value } in lines {
        let (name, value) = (name.0..name.0 + name.1, value.0..value.0 + value.1);
        // `Connection` and `Keep-Alive` are this hop's: read here, and left out when they
        // name no other header (when they do, the proxy's hop-by-hop strip takes them all).
        if (bytes[name.clone()].eq_ignore_ascii_case(b"connection")
            && options.add(&bytes[value.clone()]))
            || bytes[name.clone()].eq_ignore_ascii_case(b"keep-alive")
        {
            continue;
        }
        let name = HeaderName::from_bytes(&bytes[name])
            .map_err(|_| ExchangeError::Malformed("a header name is invalid"))?;
        let value = HeaderValue::from_maybe_shared(bytes.slice(value))
            .map_err(|_| ExchangeError::Malformed("a header value is invalid"))?;
        headers.append(name, value);
    }
    let framing = response_framing(status, method, &mut headers)?;
    let (mut head, ()) = Response::new(()).into_parts();
    head.status = status;
    head.version = version;
    head.headers = headers;
    // RFC 9112 §9.3: HTTP/1.1 persists unless it says `close`; 1.0 only when it says so.
    let keep_alive = match version {
        Version::HTTP_10 => options.keep_alive,
        _ => !options.close,
    };
    Ok(ResponseHead {
        head,
        framing,
        keep_alive,
    })
}

/// RFC 9112 §6.3: how the response body is delimited.
pub(super) fn response_framing(
    status: StatusCode,
    method: &Method,
    headers: &mut HeaderMap,
) -> Result<Framing, ExchangeError> {
    if method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Empty);
    }
    if headers.contains_key(header::TRANSFER_ENCODING) {
        // Transfer-Encoding overrides Content-Length; only chunked as the last coding frames
        // the body, anything else runs until the close.
        headers.remove(header::CONTENT_LENGTH);
        let chunked = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .is_some_and(|coding| coding.trim().eq_ignore_ascii_case("chunked"));
        return Ok(if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    let mut length = None;
    for value in headers.get_all(header::CONTENT_LENGTH) {
        let n = value
            .to_str()
            .ok()
            .filter(|v| is_number(v, 19, u8::is_ascii_digit))
            .and_then(|v| v.parse::<u64>().ok())
            .ok_or(ExchangeError::Malformed("the content length is invalid"))?;
        if length.is_some_and(|l| l != n) {
            return Err(ExchangeError::Malformed("the content lengths disagree"));
        }
        length = Some(n);
    }
    // Repeated equal lengths frame the same body; the client hears one, never two.
    if let Some(n) = length
        && headers
            .get_all(header::CONTENT_LENGTH)
            .iter()
            .nth(1)
            .is_some()
    {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    Ok(match length {
        Some(0) => Framing::Empty,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

impl ResponseHead {
    /// The response, its body read from `connection` as it is polled; the connection goes
    /// back to its pool at the body's end.
    pub fn into_response(self, connection: Pooled) -> (axum::http::response::Parts, Body) {
        let body = match self.framing {
            Framing::Empty => {
                connection.give_back();
                Body::empty()
            }
            Framing::Length(n) => Body::new(UpstreamBody::new(connection, Decoder::Length(n))),
            Framing::Chunked => {
                Body::new(UpstreamBody::new(connection, Decoder::Chunk(Chunk::Size)))
            }
            Framing::UntilClose => Body::new(UpstreamBody::new(connection, Decoder::UntilClose)),
        };
        (self.head, body)
    }
}
