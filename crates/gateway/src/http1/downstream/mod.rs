//! The downstream side: a client's connection. Nearly every request through the gateway is
//! simple: HTTP/1.1, no body, for a proxied route. Those are read (`read`), proxied and
//! answered (`write`) here, with no machinery between the socket and the proxy. The first
//! request that is anything else (a body, `Expect`, an upgrade, another version, a
//! `Connection` other than keep-alive, one of the gateway's own routes, a head that does not
//! parse or is too long) hands the connection to hyper's server for the rest of its life,
//! with the bytes read so far: hyper reads that request from its first byte, so whatever is
//! not simple, or not valid, gets hyper's full handling.

mod read;
mod write;

use std::{
    io,
    pin::{Pin, pin},
    rc::Rc,
    task::{Context, Poll},
    time::{Duration, Instant},
};

use axum::{
    body::Bytes,
    extract::Request,
    http::{HeaderValue, Method, header},
};
use bytes::{Buf as _, BytesMut};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

use crate::{App, edge, forwarding::Client, limits::ConnectionPlace};

use super::{timer::Sleep, upstream::Line};

use read::{Parsed, parse_request};
use write::{http_date, write_response};

/// A longer head is not simple (hyper has its own limit for it).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How much room each read makes in the buffer.
const READ_SIZE: usize = 8 * 1024;

/// How long a refused connection is read from (and what it sends thrown away) before it is
/// closed, so the close is not a reset that loses the answer.
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Answers a connection whose client already holds its share of connections: 429, then
/// close.
pub(crate) async fn refuse_connection(mut stream: TcpStream) {
    let body = r#"{"type":"/problems/too-many-connections","title":"Too many connections","status":429,"detail":"This client holds as many connections as it may; reuse one"}"#;
    let answer = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/problem+json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\ndate: {}\r\n\r\n{body}",
        body.len(),
        http_date(),
    );
    if stream.write_all(answer.as_bytes()).await.is_err() {
        return;
    }
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Serves the connection from `client` until it closes, it times out waiting for a request
/// head, or `shutdown` is cancelled (requests in flight are answered first). `_place` is the
/// connection's place under the per-client cap, given back when the connection ends.
pub(crate) async fn serve(
    _place: ConnectionPlace,
    stream: TcpStream,
    app: Rc<App>,
    client: Client,
    http: Rc<http1::Builder>,
    shutdown: CancellationToken,
) {
    let mut stopped = pin!(shutdown.cancelled());
    let mut connection = Simple {
        stream,
        buffer: BytesMut::new(),
        lines: Vec::new(),
        out: Vec::new(),
    };
    loop {
        let mut request = match connection.next_request(stopped.as_mut()).await {
            Next::Request(request) => request,
            Next::Other => break,
            Next::Done => return,
        };
        let head_only = request.method() == Method::HEAD;
        let mut response = match edge::screen(&mut request) {
            Ok(()) => app.proxy(request, &client).await,
            Err(refused) => refused,
        };
        if shutdown.is_cancelled() {
            // The last answer on this connection says so.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let Simple {
            stream,
            buffer,
            out,
            ..
        } = &mut connection;
        let (mut reader, mut writer) = stream.split();
        let gone = pin!(client_gone(&mut reader, buffer));
        match write_response(&mut writer, out, response, head_only, gone).await {
            Ok(true) => {}
            _ => return,
        }
    }

    let io = TokioIo::new(Rewind {
        read: connection.buffer.freeze(),
        stream: connection.stream,
    });
    crate::hyper_server::serve_io(io, app, client, &http, stopped).await;
}

/// A connection while its requests are simple.
struct Simple {
    stream: TcpStream,
    /// Bytes read and not yet taken by a request.
    buffer: BytesMut,
    /// Room for where a head's header lines are, kept between requests.
    lines: Vec<Line>,
    /// Room for response heads, kept between responses.
    out: Vec<u8>,
}

#[allow(clippy::large_enum_variant)] // As `Parsed`.
enum Next {
    Request(Request),
    /// A request for hyper, whose bytes are in the buffer.
    Other,
    /// The client closed, went quiet for too long, or the gateway is stopping.
    Done,
}

impl Simple {
    /// The next request, read within `HEADER_READ_TIMEOUT`. While no byte of it has arrived,
    /// `stopped` ends the wait.
    async fn next_request(&mut self, mut stopped: Pin<&mut impl Future<Output = ()>>) -> Next {
        let mut deadline = pin!(Sleep::until(Instant::now() + crate::HEADER_READ_TIMEOUT));
        loop {
            if !self.buffer.is_empty() {
                match parse_request(&mut self.buffer, &mut self.lines) {
                    Parsed::Simple(request) => return Next::Request(request),
                    Parsed::Other => return Next::Other,
                    Parsed::Incomplete if self.buffer.len() > MAX_HEAD_BYTES => return Next::Other,
                    Parsed::Incomplete => {}
                }
            }
            self.buffer.reserve(READ_SIZE);
            let idle = self.buffer.is_empty();
            tokio::select! {
                biased;
                read = self.stream.read_buf(&mut self.buffer) => match read {
                    Ok(0) | Err(_) => return Next::Done,
                    Ok(_) => {}
                },
                () = deadline.as_mut() => return Next::Done,
                () = stopped.as_mut(), if idle => return Next::Done,
            }
        }
    }
}

/// Ready once the client has closed its side of the connection. What it sends meanwhile (a
/// pipelined request) is kept in `buffer` for the next turn, up to a head's worth.
async fn client_gone<R: AsyncRead + Unpin>(reader: &mut R, buffer: &mut BytesMut) {
    loop {
        if buffer.len() > MAX_HEAD_BYTES {
            // Enough for the next request: the socket is read again after this answer.
            std::future::pending::<()>().await;
        }
        buffer.reserve(READ_SIZE);
        match reader.read_buf(buffer).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Writes `response` (its head alone when `head_only`, as for a `HEAD`); answers whether the
/// connection can carry another request. The body goes by its `Content-Length`, its known
/// size, or chunked. Data already there joins the head in one write; large data is written
/// The connection's socket, after the bytes already read from it.
struct Rewind {
    read: Bytes,
    stream: TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read.is_empty() {
            return Pin::new(&mut this.stream).poll_read(cx, buf);
        }
        let n = this.read.len().min(buf.remaining());
        buf.put_slice(&this.read[..n]);
        this.read.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
