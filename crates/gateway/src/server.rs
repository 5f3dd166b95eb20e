//! The client side of a connection. Nearly every request through the gateway is simple:
//! HTTP/1.1, no body, for a proxied route. Those are read, proxied and answered here, with
//! no machinery between the socket and the proxy. The first request that is anything else
//! (a body, `Expect`, an upgrade, another version, a `Connection` other than keep-alive, one
//! of the gateway's own routes, a head that does not parse or is too long) hands the
//! connection to hyper's server for the rest of its life, with the bytes read so far: hyper
//! reads that request from its first byte, so whatever is not simple, or not valid, gets
//! hyper's full handling.

use std::{
    io,
    mem::MaybeUninit,
    pin::{Pin, pin},
    rc::Rc,
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};

use axum::{
    body::{Body, Bytes},
    extract::Request,
    http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version, header},
    response::Response,
};
use bytes::{Buf as _, BytesMut};
use http_body_util::BodyExt as _;
use hyper::{body::Body as _, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf},
    net::TcpStream,
};
use tokio_util::sync::CancellationToken;

use crate::{
    App,
    client::{COALESCE_BYTES, Line, poll_now, put_header},
    edge,
    forwarding::Client,
    is_own,
    limits::ConnectionPlace,
    timer::Sleep,
};

/// A longer head is not simple (hyper has its own limit for it).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Nor is a head with more header lines.
const MAX_HEADERS: usize = 64;
/// How much room each read makes in the buffer.
const READ_SIZE: usize = 8 * 1024;

/// What the connection's buffered bytes begin with.
#[derive(Debug)]
// The request moves once, to the proxy: boxing it would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Parsed {
    /// Not yet a whole head.
    Incomplete,
    /// A simple request, taken off the buffer.
    Simple(Request),
    /// Any other request, left in the buffer.
    Other,
}

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
    let service = service_fn(move |request| app.call(request, &client));
    let mut served = pin!(http.serve_connection(io, service));
    tokio::select! {
        _ = served.as_mut() => {}
        () = stopped => {
            served.as_mut().graceful_shutdown();
            let _ = served.await;
        }
    }
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

/// Takes a simple request off `buffer` when the buffer begins with one. `lines` is room for
/// where its header lines are.
pub(crate) fn parse_request(buffer: &mut BytesMut, lines: &mut Vec<Line>) -> Parsed {
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
/// as it is, not copied. While the body has nothing to send, `gone` is watched: a client that
/// left ends the answer (a quiet event stream would otherwise hold its place for ever).
pub(crate) async fn write_response<W: AsyncWrite + Unpin>(
    stream: &mut W,
    out: &mut Vec<u8>,
    response: Response,
    head_only: bool,
    mut gone: Pin<&mut impl Future<Output = ()>>,
) -> io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    let (mut declared, mut dated, mut keep_alive) = (None, false, true);
    for (name, value) in &parts.headers {
        if name == header::TRANSFER_ENCODING {
            // The body is framed here.
            continue;
        }
        if name == header::CONTENT_LENGTH {
            match value.to_str().ok().and_then(|v| v.parse::<u64>().ok()) {
                Some(length) if declared.is_none_or(|d| d == length) => declared = Some(length),
                _ => continue,
            }
        }
        dated |= name == header::DATE;
        if name == header::CONNECTION && value.as_bytes().eq_ignore_ascii_case(b"close") {
            keep_alive = false;
        }
        put_header(out, name.as_str(), value.as_bytes());
    }
    if !dated {
        put_header(out, "date", http_date().as_bytes());
    }
    let bodiless = head_only
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless {
        out.extend_from_slice(b"\r\n");
        stream.write_all(out).await?;
        return Ok(keep_alive);
    }
    let length = declared.or_else(|| {
        let exact = body.size_hint().exact()?;
        put_header(out, "content-length", exact.to_string().as_bytes());
        Some(exact)
    });
    if length.is_none() {
        put_header(out, "transfer-encoding", b"chunked");
    }
    out.extend_from_slice(b"\r\n");

    let mut written = 0u64;
    let complete = loop {
        let frame = match poll_now(&mut body) {
            Some(frame) => frame,
            None => {
                flush(stream, out).await?;
                tokio::select! {
                    biased;
                    frame = body.frame() => frame,
                    () = gone.as_mut() => {
                        return Err(io::ErrorKind::ConnectionAborted.into());
                    }
                }
            }
        };
        let mut data = match frame {
            None => break true,
            // The body failed (its upstream went away): what was sent is all there is, and
            // the connection cannot say so but by closing.
            Some(Err(_)) => break false,
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if !data.is_empty() => data,
                _ => continue,
            },
        };
        if let Some(length) = length
            && written + data.len() as u64 > length
        {
            // More than the head declared: the rest cannot be sent on this connection.
            data.truncate(usize::try_from(length - written).unwrap_or(0));
            if !data.is_empty() {
                flush(stream, out).await?;
                stream.write_all(&data).await?;
            }
            break false;
        }
        written += data.len() as u64;
        if length.is_none() {
            out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
        }
        if out.len() + data.len() <= COALESCE_BYTES {
            out.extend_from_slice(&data);
        } else {
            flush(stream, out).await?;
            stream.write_all(&data).await?;
        }
        if length.is_none() {
            out.extend_from_slice(b"\r\n");
        }
    };
    if complete && length.is_none() {
        out.extend_from_slice(b"0\r\n\r\n");
    }
    flush(stream, out).await?;
    Ok(keep_alive && complete && length.is_none_or(|length| length == written))
}

async fn flush<W: AsyncWrite + Unpin>(stream: &mut W, out: &mut Vec<u8>) -> io::Result<()> {
    if !out.is_empty() {
        stream.write_all(out).await?;
        out.clear();
    }
    Ok(())
}

/// Now as an HTTP date, formatted once a second on each thread.
fn http_date() -> Rc<str> {
    thread_local! {
        static DATE: std::cell::RefCell<(u64, Rc<str>)> = std::cell::RefCell::new((0, "".into()));
    }
    let now = SystemTime::now();
    let second = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, date)| {
        if *at != second || date.is_empty() {
            *at = second;
            *date = httpdate::fmt_http_date(now).into();
        }
        date.clone()
    })
}

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

#[cfg(test)]
mod tests {
    use super::*;

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

    async fn written(response: Response, head_only: bool) -> (String, bool) {
        let (mut wire, mut out) = (Vec::new(), Vec::new());
        let still_there = pin!(std::future::pending());
        let reusable = write_response(&mut wire, &mut out, response, head_only, still_there)
            .await
            .unwrap();
        (String::from_utf8(wire).unwrap(), reusable)
    }

    fn streamed(pieces: Vec<Result<&'static str, io::Error>>) -> Body {
        Body::from_stream(futures_util::stream::iter(
            pieces.into_iter().map(|piece| piece.map(Bytes::from)),
        ))
    }

    #[tokio::test]
    async fn a_body_of_known_size_gets_its_length_and_a_date() {
        let response = Response::builder()
            .status(StatusCode::CREATED)
            .header("content-type", "application/json")
            .body(Body::from("{\"ok\":true}"))
            .unwrap();
        let (wire, reusable) = written(response, false).await;
        let (head, body) = wire.split_once("\r\n\r\n").unwrap();
        let mut lines = head.lines();
        assert_eq!(lines.next(), Some("HTTP/1.1 201 Created"));
        let mut lines: Vec<&str> = lines.collect();
        lines.sort_unstable();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[0], "content-length: 11");
        assert_eq!(lines[1], "content-type: application/json");
        assert!(lines[2].starts_with("date: ") && lines[2].ends_with(" GMT"));
        assert_eq!(body, "{\"ok\":true}");
        assert!(reusable);
    }

    #[tokio::test]
    async fn a_body_of_unknown_size_is_chunked_and_its_date_kept() {
        let response = Response::builder()
            .header("date", "Tue, 01 Dec 2026 10:00:00 GMT")
            .header("transfer-encoding", "gzip, chunked")
            .body(streamed(vec![Ok("ab"), Ok(""), Ok("cde")]))
            .unwrap();
        let (wire, reusable) = written(response, false).await;
        assert_eq!(
            wire,
            "HTTP/1.1 200 OK\r\ndate: Tue, 01 Dec 2026 10:00:00 GMT\r\n\
             transfer-encoding: chunked\r\n\r\n2\r\nab\r\n3\r\ncde\r\n0\r\n\r\n"
        );
        assert!(reusable);
    }

    #[tokio::test]
    async fn a_large_piece_is_written_whole_after_the_head() {
        let large = "x".repeat(3 * COALESCE_BYTES);
        let (wire, reusable) = written(Response::new(Body::from(large.clone())), false).await;
        assert!(wire.ends_with(&format!("content-length: {}\r\n\r\n{large}", large.len())));
        assert!(reusable);
    }

    #[tokio::test]
    async fn a_head_answer_or_a_no_content_carries_no_body() {
        let response = Response::builder()
            .header("content-length", "11")
            .body(Body::from("{\"ok\":true}"))
            .unwrap();
        let (wire, reusable) = written(response, true).await;
        assert!(wire.contains("\r\ncontent-length: 11\r\n"), "{wire}");
        assert!(wire.ends_with("\r\n\r\n"), "{wire}");
        assert!(reusable);

        let response = Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::empty())
            .unwrap();
        let (wire, _) = written(response, false).await;
        assert!(wire.starts_with("HTTP/1.1 204 No Content\r\n"));
        assert!(!wire.contains("content-length") && !wire.contains("transfer-encoding"));
        assert!(wire.ends_with("\r\n\r\n"));
    }

    #[tokio::test]
    async fn a_body_that_fails_or_falls_short_closes_the_connection() {
        let failing = streamed(vec![Ok("ab"), Err(io::Error::other("upstream gone"))]);
        let (wire, reusable) = written(Response::new(failing), false).await;
        assert!(
            wire.ends_with("\r\n\r\n2\r\nab\r\n"),
            "no last chunk: {wire}"
        );
        assert!(!reusable);

        let short = Response::builder()
            .header("content-length", "10")
            .body(streamed(vec![Ok("abc")]))
            .unwrap();
        let (wire, reusable) = written(short, false).await;
        assert!(wire.contains("\r\ncontent-length: 10\r\n"), "{wire}");
        assert!(wire.ends_with("\r\n\r\nabc"), "{wire}");
        assert!(!reusable);
    }

    #[tokio::test]
    async fn a_body_longer_than_its_length_is_cut_there_and_closes() {
        let long = Response::builder()
            .header("content-length", "4")
            .body(streamed(vec![Ok("abc"), Ok("def")]))
            .unwrap();
        let (wire, reusable) = written(long, false).await;
        assert!(wire.ends_with("\r\n\r\nabcd"), "{wire}");
        assert!(!reusable);
    }

    #[tokio::test]
    async fn a_response_that_says_close_closes() {
        let response = Response::builder()
            .header("connection", "close")
            .body(Body::empty())
            .unwrap();
        let (wire, reusable) = written(response, false).await;
        assert!(wire.contains("connection: close\r\n"));
        assert!(!reusable);
    }
}
