//! The upstream side: HTTP/1.1 to the upstreams, spoken on the task of the request that
//! uses the connection.
//!
//! A proxied exchange writes the request head (and body) and reads the response head on the
//! downstream connection's own task; the response body is then read from the upstream
//! socket by whoever polls it, which is that same task writing it to the client. No task of
//! its own per upstream connection, no channel between the two sides: one proxied request
//! wakes one task. This module owns the connection and the exchange; `request` encodes the
//! request head, `response` parses the response head and decides its framing, and
//! `response_body` decodes the body as it streams.

mod request;
mod response;
mod response_body;

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, Waker},
};

use axum::{
    body::{Body, Bytes},
    http::{Method, StatusCode},
};
use bytes::BytesMut;
use http_body_util::BodyExt as _;
use hyper::body::{Body as _, Frame};
use tokio::{io::AsyncWriteExt as _, net::TcpStream};

pub(in crate::http1) use request::put_header;
pub use request::{Forwarding, Outgoing};
pub(in crate::http1) use response::Line;
use response::parse_response;

/// The most a response head may take.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most header lines a response may carry.
const MAX_HEADERS: usize = 128;
/// The most a chunk-size or trailer line may take.
const MAX_LINE_BYTES: usize = 4 * 1024;
/// How much room each read makes in the buffer.
const READ_SIZE: usize = 16 * 1024;
/// Request bodies up to this size go out in the same write as the head when they are ready.
pub(in crate::http1) const COALESCE_BYTES: usize = 16 * 1024;

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
pub struct UpstreamConnection {
    stream: TcpStream,
    buffer: BytesMut,
    reusable: bool,
    /// Where the last response head's lines were; kept for the next head.
    lines: Vec<Line>,
}

impl UpstreamConnection {
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

/// A response whose head has arrived; its body is read on demand.
pub struct ResponseHead {
    head: axum::http::response::Parts,
    framing: Framing,
    /// Whether the upstream keeps the connection open after this response.
    keep_alive: bool,
}

/// Sends `outgoing` with `body` on `connection` and reads the response head.
pub async fn exchange(
    connection: &mut UpstreamConnection,
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
    connection: &mut UpstreamConnection,
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
    connection: &mut UpstreamConnection,
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
async fn take_interim(
    connection: &mut UpstreamConnection,
    method: &Method,
) -> Result<bool, ExchangeError> {
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
pub(in crate::http1) fn poll_now(
    body: &mut Body,
) -> Option<Option<Result<Frame<Bytes>, axum::Error>>> {
    match Pin::new(body).poll_frame(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(frame) => Some(frame),
        Poll::Pending => None,
    }
}

/// Reads the response head, skipping interim responses.
async fn read_head(
    connection: &mut UpstreamConnection,
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

#[cfg(test)]
mod tests;
