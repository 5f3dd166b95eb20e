//! A response body as it streams from its upstream connection: decoded by its framing
//! (length, chunked, until the close) straight off the connection's buffer, the connection
//! going back to its pool at the body's end.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::body::Bytes;
use bytes::{Buf as _, BytesMut};
use hyper::body::{Frame, SizeHint};

use super::MAX_LINE_BYTES;
use crate::http1::pool::Pooled;

/// Where a response body's decoding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decoder {
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
pub(super) enum Chunk {
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
pub(super) struct UpstreamBody {
    connection: Option<Pooled>,
    decoder: Decoder,
}

impl UpstreamBody {
    pub(super) fn new(connection: Pooled, decoder: Decoder) -> Self {
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
pub(super) fn decode(
    decoder: &mut Decoder,
    buffer: &mut BytesMut,
) -> Result<Option<Bytes>, io::Error> {
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
pub(super) fn is_number(s: &str, max: usize, digit: fn(&u8) -> bool) -> bool {
    (1..=max).contains(&s.len()) && s.as_bytes().iter().all(digit)
}

pub(super) fn malformed(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

/// Takes up to `left` bytes off the front of `buffer`, and answers how many are still to
/// come; `None` when the buffer is empty.
pub(super) fn take_up_to(buffer: &mut BytesMut, left: u64) -> Option<(Bytes, u64)> {
    if buffer.is_empty() {
        return None;
    }
    let take = buffer
        .len()
        .min(usize::try_from(left).unwrap_or(usize::MAX));
    Some((buffer.split_to(take).freeze(), left - take as u64))
}

/// Takes one CRLF-terminated line off the front of `buffer`, without its CRLF.
pub(super) fn take_line(buffer: &mut BytesMut) -> Result<Option<BytesMut>, io::Error> {
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
