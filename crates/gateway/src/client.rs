//! HTTP/1.1 to the upstreams, spoken on the task of the request that uses the connection.
//!
//! A proxied exchange writes the request head (and body) and reads the response head on the
//! client connection's own task; the response body is then read from the upstream socket
//! by whoever polls it, which is that same task writing it to the client. No task of its own
//! per upstream connection, no channel between the two sides: one proxied request wakes one
//! task. Framing follows RFC 9112: response bodies by `Transfer-Encoding: chunked`,
//! `Content-Length` or the connection's close; request bodies by their known length or
//! chunked; interim (1xx) responses are skipped.

use std::{
    io,
    mem::MaybeUninit,
    pin::Pin,
    task::{Context, Poll, Waker, ready},
};

use axum::{
    body::{Body, Bytes},
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header, request},
    response::Response,
};
use bytes::{Buf as _, BytesMut};
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Frame, SizeHint};
use tokio::{io::AsyncWriteExt as _, net::TcpStream};

use crate::{forwarding, pool::Pooled};

/// The most a response head may take.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most header lines a response may carry.
const MAX_HEADERS: usize = 128;
/// The most a chunk-size or trailer line may take.
const MAX_LINE_BYTES: usize = 4 * 1024;
/// How much room each read makes in the buffer.
const READ_SIZE: usize = 16 * 1024;
/// Request bodies up to this size go out in the same write as the head when they are ready.
pub(crate) const COALESCE_BYTES: usize = 16 * 1024;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    /// Reading the client's request body failed (or it went past its cap).
    #[error("reading the request body failed")]
    RequestBody(#[source] axum::Error),
    /// The connection failed. `answered` says whether any of the response had arrived.
    #[error("the upstream connection failed")]
    Io {
        /// The cause.
        #[source]
        error: io::Error,
        /// Whether any response byte had arrived.
        answered: bool,
    },
    /// The upstream closed the connection before its response head ended.
    #[error("the upstream closed the connection before answering")]
    Closed {
        /// Whether any response byte had arrived.
        answered: bool,
    },
    /// The response head is not HTTP/1.1.
    #[error("the upstream's response is malformed: {0}")]
    Malformed(&'static str),
}

impl ExchangeError {
    /// Whether the upstream went away before answering anything: on a kept-alive connection
    /// that is the upstream closing it as the request went out, and a request with no body
    /// can be sent again on a new connection.
    pub fn is_stale_connection(&self) -> bool {
        matches!(
            self,
            Self::Io {
                answered: false,
                ..
            } | Self::Closed { answered: false }
        )
    }
}

/// How a message's body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body.
    Empty,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// One kept-alive connection to an upstream, with what has been read from it and not yet
/// consumed.
pub struct Connection {
    stream: TcpStream,
    buffer: BytesMut,
    reusable: bool,
    /// Where the last response head's lines were; kept for the next head.
    lines: Vec<Line>,
}

impl Connection {
    /// A connection over `stream`.
    pub fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            buffer: BytesMut::with_capacity(READ_SIZE),
            reusable: true,
            lines: Vec::new(),
        }
    }

    /// Whether an idle connection can carry another exchange: not when the upstream closed
    /// it (or sent something nobody asked for). Costs no system call unless the event loop
    /// saw the socket become readable.
    pub fn is_usable(&self) -> bool {
        if !self.reusable || !self.buffer.is_empty() {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        match self.stream.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Whether the connection can go back to the pool.
    pub fn is_reusable(&self) -> bool {
        self.reusable
    }

    /// Reads what the socket has into the buffer: the number of bytes, 0 at its end. A read
    /// shorter than the room given drained the socket, and tokio then waits for the next
    /// readiness event instead of trying again (no read that finds nothing).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.buffer.reserve(READ_SIZE);
        tokio_util::io::poll_read_buf(Pin::new(&mut self.stream), cx, &mut self.buffer)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ExchangeError> {
        self.stream.write_all(bytes).await.map_err(|error| {
            self.reusable = false;
            ExchangeError::Io {
                error,
                answered: false,
            }
        })
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }
}

/// A request head encoded for the wire, and what its body needs.
pub struct Outgoing {
    head: Vec<u8>,
    framing: Framing,
    method: Method,
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

pub(crate) fn put_header(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// A response whose head has arrived; its body is read on demand.
pub struct ResponseHead {
    head: axum::http::response::Parts,
    framing: Framing,
    /// Whether the upstream keeps the connection open after this response.
    keep_alive: bool,
}

/// Sends `outgoing` with `body` on `connection` and reads the response head.
pub async fn exchange(
    connection: &mut Connection,
    outgoing: &Outgoing,
    body: &mut Body,
) -> Result<ResponseHead, ExchangeError> {
    match send(connection, outgoing, body).await {
        Ok(()) => read_head(connection, &outgoing.method).await,
        // An upstream may answer before it has read the whole request (a 413 to a large
        // upload) and close: the write then fails, but its answer is what the client gets.
        Err(sending @ ExchangeError::Io { .. }) => read_head(connection, &outgoing.method)
            .await
            .map_err(|_| sending),
        Err(e) => Err(e),
    }
}

/// Writes the request. Body data that is already there joins the head (or the data before
/// it) in one write; a write goes out when the body has nothing ready or what waits passes
/// `COALESCE_BYTES`, so a small request takes one system call and a large one streams.
///
/// While a body goes out, the upstream may answer first (a 413 or a 401 before it reads an
/// upload) and then read no more: the rest of the body is not sent, the connection is not
/// reused, and the answer is read as usual instead of the write waiting out the timeout. An
/// interim answer (`100 Continue`, `103 Early Hints`) is taken off and the body goes on.
async fn send(
    connection: &mut Connection,
    outgoing: &Outgoing,
    body: &mut Body,
) -> Result<(), ExchangeError> {
    let chunked = match outgoing.framing {
        Framing::Empty | Framing::UntilClose => return connection.write(&outgoing.head).await,
        Framing::Length(_) => false,
        Framing::Chunked => true,
    };
    let mut waiting = Vec::with_capacity(outgoing.head.len() + COALESCE_BYTES);
    waiting.extend_from_slice(&outgoing.head);
    loop {
        let sent = send_body(connection, body, chunked, &mut waiting).await;
        match sent {
            Ok(Sent::Whole) => return Ok(()),
            Ok(Sent::Answered) => match take_interim(connection, &outgoing.method).await {
                Ok(true) => continue,
                Ok(false) => {
                    connection.reusable = false;
                    return Ok(());
                }
                Err(e) => {
                    connection.reusable = false;
                    return Err(e);
                }
            },
            Err(e) => {
                connection.reusable = false;
                return Err(e);
            }
        }
    }
}

/// How far the request went out.
enum Sent {
    Whole,
    /// The upstream said something first.
    Answered,
}

/// Writes `waiting` and the rest of `body` until the body ends or the upstream says
/// something. Every write is a single `write` whose bytes then leave `waiting`, so stopping
/// between two loses and repeats nothing.
async fn send_body(
    connection: &mut Connection,
    body: &mut Body,
    chunked: bool,
    waiting: &mut Vec<u8>,
) -> Result<Sent, ExchangeError> {
    let (mut reader, mut writer) = connection.stream.split();
    let mut probe = [0u8; 1];
    // Ready once the upstream has sent something (or closed).
    let mut answered = std::pin::pin!(reader.peek(&mut probe));
    let mut ended = false;
    loop {
        if !ended && (waiting.len() < COALESCE_BYTES) {
            // Data that is already there joins what waits.
            match poll_now(body) {
                Some(frame) => {
                    ended = take_frame(frame, chunked, waiting)?;
                    continue;
                }
                None if waiting.is_empty() => {
                    let frame = tokio::select! {
                        biased;
                        _ = answered.as_mut() => return Ok(Sent::Answered),
                        frame = body.frame() => frame,
                    };
                    ended = take_frame(frame, chunked, waiting)?;
                    continue;
                }
                None => {}
            }
        }
        if waiting.is_empty() {
            return Ok(Sent::Whole);
        }
        tokio::select! {
            biased;
            _ = answered.as_mut() => return Ok(Sent::Answered),
            written = writer.write(waiting) => match written {
                Ok(0) => return Err(ExchangeError::Io {
                    error: io::ErrorKind::WriteZero.into(),
                    answered: false,
                }),
                Ok(n) => drop(waiting.drain(..n)),
                Err(error) => return Err(ExchangeError::Io { error, answered: false }),
            },
        }
    }
}

/// Adds a body frame to `waiting`, framed; answers whether the body ended.
fn take_frame(
    frame: Option<Result<Frame<Bytes>, axum::Error>>,
    chunked: bool,
    waiting: &mut Vec<u8>,
) -> Result<bool, ExchangeError> {
    let data = match frame {
        Some(Ok(frame)) => match frame.into_data() {
            Ok(data) if !data.is_empty() => data,
            // Trailers are not forwarded, and an empty piece would end a chunked body.
            _ => return Ok(false),
        },
        Some(Err(e)) => return Err(ExchangeError::RequestBody(e)),
        None => {
            if chunked {
                waiting.extend_from_slice(b"0\r\n\r\n");
            }
            return Ok(true);
        }
    };
    if chunked {
        waiting.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
    }
    waiting.extend_from_slice(&data);
    if chunked {
        waiting.extend_from_slice(b"\r\n");
    }
    Ok(false)
}

/// After the upstream said something mid-request: takes an interim response off the
/// connection and answers `true`; `false` when it is the final answer (left to be read) or
/// the connection closed.
async fn take_interim(connection: &mut Connection, method: &Method) -> Result<bool, ExchangeError> {
    loop {
        if !connection.buffer.is_empty() {
            // Parsing a copy: a final answer stays in the buffer for `read_head`.
            let mut copy = connection.buffer.clone();
            match parse_response(&mut copy, &mut connection.lines, method)? {
                Some(head)
                    if head.head.status.is_informational()
                        && head.head.status != StatusCode::SWITCHING_PROTOCOLS =>
                {
                    connection.buffer = copy;
                    if connection.buffer.is_empty() {
                        return Ok(true);
                    }
                    // More has come after it: the next answer, interim or not.
                    continue;
                }
                Some(_) => return Ok(false),
                None if connection.buffer.len() > MAX_HEAD_BYTES => return Ok(false),
                None => {}
            }
        }
        match connection.fill().await {
            Ok(0) | Err(_) => return Ok(false),
            Ok(_) => {}
        }
    }
}

/// The body's next frame if it is already there; `None` when it would have to be waited for.
pub(crate) fn poll_now(body: &mut Body) -> Option<Option<Result<Frame<Bytes>, axum::Error>>> {
    match Pin::new(body).poll_frame(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(frame) => Some(frame),
        Poll::Pending => None,
    }
}

/// Reads the response head, skipping interim responses.
async fn read_head(
    connection: &mut Connection,
    method: &Method,
) -> Result<ResponseHead, ExchangeError> {
    let mut answered = false;
    loop {
        if !connection.buffer.is_empty() {
            answered = true;
            let parsed = parse_response(&mut connection.buffer, &mut connection.lines, method)
                .inspect_err(|_| connection.reusable = false)?;
            if let Some(incoming) = parsed {
                if incoming.head.status.is_informational()
                    && incoming.head.status != StatusCode::SWITCHING_PROTOCOLS
                {
                    continue;
                }
                if incoming.head.status == StatusCode::SWITCHING_PROTOCOLS {
                    connection.reusable = false;
                    return Err(ExchangeError::Malformed(
                        "protocol upgrades are not proxied",
                    ));
                }
                // A 2xx to CONNECT turns the connection into a tunnel: whatever follows on it
                // is not HTTP, and must never serve another request.
                if *method == Method::CONNECT && incoming.head.status.is_success() {
                    connection.reusable = false;
                    return Err(ExchangeError::Malformed("tunnels are not proxied"));
                }
                if incoming.framing == Framing::UntilClose || !incoming.keep_alive {
                    connection.reusable = false;
                }
                return Ok(incoming);
            }
            if connection.buffer.len() > MAX_HEAD_BYTES {
                connection.reusable = false;
                return Err(ExchangeError::Malformed("the response head is too large"));
            }
        }
        match connection.fill().await {
            Ok(0) => {
                connection.reusable = false;
                return Err(ExchangeError::Closed { answered });
            }
            Ok(_) => {}
            Err(error) => {
                connection.reusable = false;
                return Err(ExchangeError::Io { error, answered });
            }
        }
    }
}

/// Takes a whole response head off `buffer`; `None` while it is incomplete. `lines` is room
/// for where its header lines are, kept between heads.
fn parse_response(
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
pub(crate) struct Line {
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
fn parse_head(
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
fn response_framing(
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

/// Where a response body's decoding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decoder {
    /// This many bytes are left.
    Length(u64),
    /// Inside a chunked body.
    Chunk(Chunk),
    /// Everything until the close.
    UntilClose,
    /// The body has ended.
    Done,
}

/// Where a chunked body's decoding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// This many bytes of the chunk are left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// Reading (and dropping) trailer lines until the empty one.
    Trailers,
}

/// A response body read from the upstream connection as it is polled.
struct UpstreamBody {
    connection: Option<Pooled>,
    decoder: Decoder,
}

impl UpstreamBody {
    fn new(connection: Pooled, decoder: Decoder) -> Self {
        Self {
            connection: Some(connection),
            decoder,
        }
    }

    /// The body ended: a reusable connection goes back to its pool.
    fn finish(&mut self) {
        self.decoder = Decoder::Done;
        if let Some(connection) = self.connection.take() {
            connection.give_back();
        }
    }

    /// A broken body: the connection is closed, not reused.
    fn fail(&mut self, error: io::Error) -> io::Error {
        self.connection = None;
        self.decoder = Decoder::Done;
        error
    }
}

/// The next piece of body out of what is buffered, if it holds one; `decoder` moves on.
fn decode(decoder: &mut Decoder, buffer: &mut BytesMut) -> Result<Option<Bytes>, io::Error> {
    loop {
        match *decoder {
            Decoder::Done => return Ok(None),
            Decoder::Length(0) => {
                *decoder = Decoder::Done;
                return Ok(None);
            }
            Decoder::Length(left) => {
                let Some((data, left)) = take_up_to(buffer, left) else {
                    return Ok(None);
                };
                *decoder = Decoder::Length(left);
                return Ok(Some(data));
            }
            Decoder::UntilClose => {
                if buffer.is_empty() {
                    return Ok(None);
                }
                return Ok(Some(buffer.split().freeze()));
            }
            Decoder::Chunk(Chunk::Size) => {
                let Some(line) = take_line(buffer)? else {
                    return Ok(None);
                };
                let size = line[..].split(|&b| b == b';').next().unwrap_or_default();
                // 1*HEXDIG, then optional whitespace before any extension (RFC 9112 §7.1).
                // Leading zeros are allowed, however many: only the value must fit.
                let size = std::str::from_utf8(size)
                    .ok()
                    .map(|s| s.trim_end_matches([' ', '\t']))
                    .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit()))
                    .map(|s| match s.trim_start_matches('0') {
                        "" => "0",
                        digits => digits,
                    })
                    .filter(|s| is_number(s, 16, u8::is_ascii_hexdigit))
                    .and_then(|s| u64::from_str_radix(s, 16).ok())
                    .ok_or_else(|| malformed("a chunk size is invalid"))?;
                *decoder = Decoder::Chunk(if size == 0 {
                    Chunk::Trailers
                } else {
                    Chunk::Data(size)
                });
            }
            Decoder::Chunk(Chunk::Data(left)) => {
                let Some((data, left)) = take_up_to(buffer, left) else {
                    return Ok(None);
                };
                *decoder = Decoder::Chunk(if left == 0 {
                    Chunk::DataEnd
                } else {
                    Chunk::Data(left)
                });
                return Ok(Some(data));
            }
            Decoder::Chunk(Chunk::DataEnd) => {
                let Some(line) = take_line(buffer)? else {
                    return Ok(None);
                };
                if !line.is_empty() {
                    return Err(malformed("a chunk is longer than its size"));
                }
                *decoder = Decoder::Chunk(Chunk::Size);
            }
            Decoder::Chunk(Chunk::Trailers) => {
                let Some(line) = take_line(buffer)? else {
                    return Ok(None);
                };
                if line.is_empty() {
                    *decoder = Decoder::Done;
                    return Ok(None);
                }
            }
        }
    }
}

/// Whether `s` is 1 to `max` digits, as `digit` tells them (no sign, no whitespace: what
/// `parse` would also accept is not enough for a length on the wire).
fn is_number(s: &str, max: usize, digit: fn(&u8) -> bool) -> bool {
    (1..=max).contains(&s.len()) && s.as_bytes().iter().all(digit)
}

fn malformed(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Takes up to `left` bytes off the front of `buffer`, and answers how many are still to
/// come; `None` when the buffer is empty.
fn take_up_to(buffer: &mut BytesMut, left: u64) -> Option<(Bytes, u64)> {
    if buffer.is_empty() {
        return None;
    }
    let take = buffer
        .len()
        .min(usize::try_from(left).unwrap_or(usize::MAX));
    Some((buffer.split_to(take).freeze(), left - take as u64))
}

/// Takes one CRLF-terminated line off the front of `buffer`, without its CRLF.
fn take_line(buffer: &mut BytesMut) -> Result<Option<BytesMut>, io::Error> {
    match buffer.windows(2).position(|w| w == b"\r\n") {
        Some(end) => {
            let line = buffer.split_to(end);
            buffer.advance(2);
            Ok(Some(line))
        }
        None if buffer.len() > MAX_LINE_BYTES => Err(malformed("a chunk line is too long")),
        None => Ok(None),
    }
}

impl hyper::body::Body for UpstreamBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        loop {
            let Some(pooled) = this.connection.as_mut() else {
                return Poll::Ready(None);
            };
            let connection = pooled.connection();
            match decode(&mut this.decoder, &mut connection.buffer) {
                Err(e) => return Poll::Ready(Some(Err(this.fail(e)))),
                Ok(Some(data)) => {
                    if this.decoder == Decoder::Length(0) {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Ok(None) if this.decoder == Decoder::Done => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(None) => {}
            }
            match ready!(connection.poll_fill(cx)) {
                Ok(0) if this.decoder == Decoder::UntilClose => {
                    connection.reusable = false;
                    this.finish();
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    let e = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the upstream closed the connection before the body ended",
                    );
                    return Poll::Ready(Some(Err(this.fail(e))));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(this.fail(e)))),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.decoder, Decoder::Done | Decoder::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder {
            Decoder::Length(n) => SizeHint::with_exact(n),
            Decoder::Done => SizeHint::with_exact(0),
            Decoder::Chunk(_) | Decoder::UntilClose => SizeHint::default(),
        }
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
