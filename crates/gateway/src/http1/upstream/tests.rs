//! The upstream client against raw-socket stand-in upstreams.

use super::*;

use std::io;

use axum::http::{HeaderMap, HeaderName, HeaderValue, Version, header, request};

use crate::forwarding;
use bytes::BytesMut;
use hyper::body::SizeHint;
use tokio::net::TcpStream;

use super::{
    response::{parse_response, response_framing},
    response_body::{Chunk, Decoder, decode, take_line},
};

use std::time::Duration;

use axum::http::Request;
use tokio::{io::AsyncReadExt as _, net::TcpListener, task::JoinHandle};

// ---- helpers ----------------------------------------------------------------------------

/// A request head as the proxy hands it over.
fn request(method: Method, target: &str, headers: &[(&str, &str)]) -> request::Parts {
    let mut builder = Request::builder().method(method).uri(target);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap().into_parts().0
}

/// The request head `Outgoing::new` encodes, as text.
fn encoded(parts: &request::Parts, size: &SizeHint) -> String {
    String::from_utf8(Outgoing::new(parts, size).head).unwrap()
}

/// A header map with `lines`, in order, repeated names appended.
fn header_map(lines: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in lines {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

/// How a response of `status` to `method` with `lines` is framed, and its headers after.
fn framing_of(
    status: u16,
    method: Method,
    lines: &[(&str, &str)],
) -> (Result<Framing, ExchangeError>, HeaderMap) {
    let mut headers = header_map(lines);
    let framing = response_framing(StatusCode::from_u16(status).unwrap(), &method, &mut headers);
    (framing, headers)
}

/// Feeds `wire` to `decoder` `step` bytes at a time, as reads would hand it over, decoding
/// all it can after each piece (and nothing past the end of a length-delimited body, as the
/// streaming body does): the body handed out, and what is left in the buffer.
fn decode_in_pieces(
    decoder: &mut Decoder,
    wire: &[u8],
    step: usize,
) -> io::Result<(Vec<u8>, BytesMut)> {
    let mut buffer = BytesMut::new();
    let mut body = Vec::new();
    for piece in wire.chunks(step) {
        buffer.extend_from_slice(piece);
        while !matches!(decoder, Decoder::Done | Decoder::Length(0)) {
            match decode(decoder, &mut buffer)? {
                Some(data) => body.extend_from_slice(&data),
                None => break,
            }
        }
    }
    Ok((body, buffer))
}

/// Fails the test instead of hanging it when `future` does not finish.
async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .expect("timed out")
}

/// A loopback connection: the client's end, and the stand-in upstream's.
async fn connected() -> (UpstreamConnection, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
    (
        UpstreamConnection::new(client.unwrap()),
        accepted.unwrap().0,
    )
}

/// Reads from the stand-in's end until what has arrived ends with `end`.
async fn read_until(stream: &mut TcpStream, end: &[u8]) -> Vec<u8> {
    let mut received = Vec::new();
    let mut piece = [0u8; 4096];
    while !received.ends_with(end) {
        let n = stream.read(&mut piece).await.unwrap();
        assert_ne!(n, 0, "the client closed the connection mid-request");
        received.extend_from_slice(&piece[..n]);
    }
    received
}

/// A stand-in upstream that reads one body-less request, writes `response` and keeps the
/// connection open: the request, and its end of the connection.
fn answer(mut upstream: TcpStream, response: &'static [u8]) -> JoinHandle<(Vec<u8>, TcpStream)> {
    tokio::spawn(async move {
        let request = read_until(&mut upstream, b"\r\n\r\n").await;
        upstream.write_all(response).await.unwrap();
        (request, upstream)
    })
}

/// A stand-in upstream that reads one body-less request, writes `response` and closes the
/// connection.
fn answer_and_close(mut upstream: TcpStream, response: &'static [u8]) -> JoinHandle<()> {
    tokio::spawn(async move {
        read_until(&mut upstream, b"\r\n\r\n").await;
        upstream.write_all(response).await.unwrap();
    })
}

/// A body of unknown size whose pieces are sent on the channel; it ends when the sender
/// is dropped.
fn fed_body() -> (tokio::sync::mpsc::Sender<&'static [u8]>, Body) {
    let (sender, receiver) = tokio::sync::mpsc::channel::<&'static [u8]>(1);
    let pieces = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let piece = receiver.recv().await?;
        Some((Ok::<_, io::Error>(Bytes::from_static(piece)), receiver))
    });
    (sender, Body::from_stream(pieces))
}

/// A GET of `/` without a body.
fn get() -> Outgoing {
    let parts = request(Method::GET, "/", &[("host", "upstream")]);
    Outgoing::new(&parts, &SizeHint::with_exact(0))
}

/// Sends a GET of `/` on `connection` and reads the response head.
async fn send_get(connection: &mut UpstreamConnection) -> Result<ResponseHead, ExchangeError> {
    within(exchange(connection, &get(), &mut Body::empty())).await
}

/// Reads the rest of a response body off `connection`, as the streaming body does.
async fn read_body(connection: &mut UpstreamConnection, framing: Framing) -> Vec<u8> {
    let mut decoder = match framing {
        Framing::Empty => return Vec::new(),
        Framing::Length(n) => Decoder::Length(n),
        Framing::Chunked => Decoder::Chunk(Chunk::Size),
        Framing::UntilClose => Decoder::UntilClose,
    };
    let mut body = Vec::new();
    while !matches!(decoder, Decoder::Done | Decoder::Length(0)) {
        match decode(&mut decoder, &mut connection.buffer).unwrap() {
            Some(data) => body.extend_from_slice(&data),
            None if decoder == Decoder::Done => break,
            None => {
                if within(connection.fill()).await.unwrap() == 0 {
                    assert_eq!(decoder, Decoder::UntilClose, "the body was cut short");
                    break;
                }
            }
        }
    }
    body
}

// ---- decode: chunked --------------------------------------------------------------------

#[test]
fn a_chunked_body_split_anywhere_decodes_whole() {
    // A chunk whose data is itself a CRLF, an extension, a trailer, and the next response's
    // first bytes right behind the body.
    let wire: &[u8] = b"3\r\nabc\r\n\
        1a;name=value;flag\r\nabcdefghijklmnopqrstuvwxyz\r\n\
        2\r\n\r\n\r\n\
        0\r\nx-checksum: 42\r\n\r\n\
        HTTP/1.1 200 OK\r\n";
    for step in 1..=wire.len() {
        let mut decoder = Decoder::Chunk(Chunk::Size);
        let (body, rest) = decode_in_pieces(&mut decoder, wire, step).unwrap();
        assert_eq!(
            body, b"abcabcdefghijklmnopqrstuvwxyz\r\n",
            "pieces of {step} bytes"
        );
        assert_eq!(decoder, Decoder::Done, "pieces of {step} bytes");
        assert_eq!(&rest[..], b"HTTP/1.1 200 OK\r\n", "pieces of {step} bytes");
    }
}

#[test]
fn a_chunked_body_hands_out_data_before_its_chunk_is_complete() {
    let mut decoder = Decoder::Chunk(Chunk::Size);
    let mut buffer = BytesMut::from(&b"a\r\nhello"[..]);
    assert_eq!(
        decode(&mut decoder, &mut buffer).unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(decoder, Decoder::Chunk(Chunk::Data(5)));
    assert_eq!(decode(&mut decoder, &mut buffer).unwrap(), None);
}

#[test]
fn chunk_extensions_are_ignored() {
    let mut decoder = Decoder::Chunk(Chunk::Size);
    let wire = b"5;name=value\r\nhello\r\n6 ; quoted=\"a;b\"\r\n world\r\n0;last\r\n\r\n";
    let (body, rest) = decode_in_pieces(&mut decoder, wire, wire.len()).unwrap();
    assert_eq!(body, b"hello world");
    assert_eq!(decoder, Decoder::Done);
    assert!(rest.is_empty());
}

#[test]
fn trailers_are_read_and_dropped() {
    let mut decoder = Decoder::Chunk(Chunk::Size);
    let (body, rest) = decode_in_pieces(
        &mut decoder,
        b"5\r\nhello\r\n0\r\nx-checksum: 42\r\nexpires: never\r\n",
        1,
    )
    .unwrap();
    assert_eq!(body, b"hello");
    // Not done until the empty line ends the trailers, and no trailer came out as data.
    assert_eq!(decoder, Decoder::Chunk(Chunk::Trailers));
    assert!(rest.is_empty());

    let mut buffer = BytesMut::from(&b"\r\n"[..]);
    assert_eq!(decode(&mut decoder, &mut buffer).unwrap(), None);
    assert_eq!(decoder, Decoder::Done);
}

#[test]
fn an_invalid_chunk_size_is_an_error() {
    for line in [
        &b"zz"[..],
        b"",
        b";name=value",
        b"5 5",
        b"-5",
        b"0x5",
        b"10000000000000000", // 17 hex digits: past u64
    ] {
        let mut decoder = Decoder::Chunk(Chunk::Size);
        let mut buffer = BytesMut::from(line);
        buffer.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        let error = decode(&mut decoder, &mut buffer).unwrap_err();
        assert_eq!(
            error.kind(),
            io::ErrorKind::InvalidData,
            "{:?}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn chunk_data_longer_than_its_size_is_an_error() {
    let mut decoder = Decoder::Chunk(Chunk::Size);
    let error = decode_in_pieces(&mut decoder, b"5\r\nhelloworld\r\n0\r\n\r\n", 1).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn chunk_data_without_its_crlf_is_an_error() {
    let mut decoder = Decoder::Chunk(Chunk::Size);
    let error = decode_in_pieces(&mut decoder, b"5\r\nhello0\r\n\r\n", 3).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn an_over_long_chunk_size_line_is_an_error_before_it_ends() {
    let mut decoder = Decoder::Chunk(Chunk::Size);
    // A line as long as allowed is still waited for...
    let mut buffer = BytesMut::from(&vec![b'0'; MAX_LINE_BYTES][..]);
    assert_eq!(decode(&mut decoder, &mut buffer).unwrap(), None);
    // ...one byte more, with no end in sight, is refused.
    buffer.extend_from_slice(b"0");
    let error = decode(&mut decoder, &mut buffer).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
}

#[test]
fn an_over_long_trailer_line_is_an_error() {
    let mut decoder = Decoder::Chunk(Chunk::Trailers);
    let mut buffer = BytesMut::from(&b"x-long: "[..]);
    buffer.extend_from_slice(&vec![b'a'; MAX_LINE_BYTES]);
    let error = decode(&mut decoder, &mut buffer).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
}

/// BUG (RFC 9112 §7.1: `chunk-size = 1*HEXDIG`): `u64::from_str_radix` takes a leading `+`,
/// so `+5` is read as a chunk of 5 bytes where it should fail the body, and the size line is
/// trimmed on both sides, so leading whitespace passes too.
#[test]
fn a_chunk_size_with_a_sign_or_leading_space_is_an_error() {
    for line in [&b"+5"[..], b" 5"] {
        let mut decoder = Decoder::Chunk(Chunk::Size);
        let mut buffer = BytesMut::from(line);
        buffer.extend_from_slice(b"\r\nhello\r\n0\r\n\r\n");
        assert!(
            decode(&mut decoder, &mut buffer).is_err(),
            "{:?} was taken as a chunk size",
            String::from_utf8_lossy(line)
        );
    }
}

// ---- decode: length, until close, done ---------------------------------------------------

#[test]
fn a_length_body_stops_at_its_length_and_leaves_the_rest() {
    let mut decoder = Decoder::Length(5);
    let mut buffer = BytesMut::from(&b"helloHTTP/1.1 200 OK\r\n"[..]);
    assert_eq!(
        decode(&mut decoder, &mut buffer).unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(decoder, Decoder::Length(0));
    assert_eq!(&buffer[..], b"HTTP/1.1 200 OK\r\n");
}

#[test]
fn a_length_body_split_anywhere_decodes_whole() {
    let wire = b"0123456789NEXT";
    for step in 1..=wire.len() {
        let mut decoder = Decoder::Length(10);
        let (body, rest) = decode_in_pieces(&mut decoder, wire, step).unwrap();
        assert_eq!(body, b"0123456789", "pieces of {step} bytes");
        assert_eq!(decoder, Decoder::Length(0), "pieces of {step} bytes");
        assert_eq!(&rest[..], b"NEXT", "pieces of {step} bytes");
    }
}

#[test]
fn a_length_body_waits_on_an_empty_buffer() {
    let mut decoder = Decoder::Length(10);
    assert_eq!(decode(&mut decoder, &mut BytesMut::new()).unwrap(), None);
    assert_eq!(decoder, Decoder::Length(10));
}

#[test]
fn a_body_until_the_close_hands_out_everything() {
    let mut decoder = Decoder::UntilClose;
    let mut buffer = BytesMut::from(&b"5\r\nnot chunked\r\n0\r\n\r\nHTTP/1.1"[..]);
    assert_eq!(
        decode(&mut decoder, &mut buffer).unwrap().as_deref(),
        Some(&b"5\r\nnot chunked\r\n0\r\n\r\nHTTP/1.1"[..])
    );
    assert!(buffer.is_empty());
    assert_eq!(decoder, Decoder::UntilClose);
    assert_eq!(decode(&mut decoder, &mut buffer).unwrap(), None);
}

#[test]
fn a_finished_body_takes_nothing_more() {
    let mut decoder = Decoder::Done;
    let mut buffer = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
    assert_eq!(decode(&mut decoder, &mut buffer).unwrap(), None);
    assert_eq!(&buffer[..], b"HTTP/1.1 200 OK\r\n");
}

#[test]
fn a_line_is_taken_only_once_its_crlf_arrived() {
    let mut buffer = BytesMut::from(&b"abc\r"[..]);
    assert_eq!(take_line(&mut buffer).unwrap(), None);
    assert_eq!(&buffer[..], b"abc\r");
    buffer.extend_from_slice(b"\ndef");
    assert_eq!(
        take_line(&mut buffer).unwrap().as_deref(),
        Some(&b"abc"[..])
    );
    assert_eq!(&buffer[..], b"def");
}

// ---- response framing and keep-alive ----------------------------------------------------

#[test]
fn a_response_to_head_has_no_body_whatever_it_says() {
    for lines in [
        &[("content-length", "10")][..],
        &[("transfer-encoding", "chunked")],
        &[],
    ] {
        let (framing, _) = framing_of(200, Method::HEAD, lines);
        assert_eq!(framing.unwrap(), Framing::Empty, "{lines:?}");
    }
}

#[test]
fn no_content_not_modified_and_interim_responses_have_no_body() {
    for status in [100, 103, 204, 304] {
        let (framing, _) = framing_of(
            status,
            Method::GET,
            &[("content-length", "10"), ("transfer-encoding", "chunked")],
        );
        assert_eq!(framing.unwrap(), Framing::Empty, "{status}");
    }
}

#[test]
fn chunked_wins_over_content_length_which_is_removed() {
    let (framing, headers) = framing_of(
        200,
        Method::GET,
        &[("content-length", "10"), ("transfer-encoding", "chunked")],
    );
    assert_eq!(framing.unwrap(), Framing::Chunked);
    assert!(!headers.contains_key(header::CONTENT_LENGTH));
    assert_eq!(headers[header::TRANSFER_ENCODING], "chunked");
}

#[test]
fn only_chunked_as_the_last_coding_frames_the_body() {
    for (lines, expected) in [
        (
            &[("transfer-encoding", "gzip, chunked")][..],
            Framing::Chunked,
        ),
        (&[("transfer-encoding", "Chunked")], Framing::Chunked),
        (
            &[
                ("transfer-encoding", "gzip"),
                ("transfer-encoding", "chunked"),
            ],
            Framing::Chunked,
        ),
        (&[("transfer-encoding", "gzip")], Framing::UntilClose),
        (
            &[("transfer-encoding", "chunked, gzip")],
            Framing::UntilClose,
        ),
        (
            &[
                ("transfer-encoding", "chunked"),
                ("transfer-encoding", "gzip"),
            ],
            Framing::UntilClose,
        ),
        (
            &[("transfer-encoding", "gzip"), ("content-length", "10")],
            Framing::UntilClose,
        ),
    ] {
        let (framing, headers) = framing_of(200, Method::GET, lines);
        assert_eq!(framing.unwrap(), expected, "{lines:?}");
        assert!(!headers.contains_key(header::CONTENT_LENGTH), "{lines:?}");
    }
}

#[test]
fn equal_content_lengths_agree_and_different_ones_are_malformed() {
    let (framing, _) = framing_of(
        200,
        Method::GET,
        &[("content-length", "10"), ("content-length", "10")],
    );
    assert_eq!(framing.unwrap(), Framing::Length(10));

    let (framing, _) = framing_of(
        200,
        Method::GET,
        &[("content-length", "10"), ("content-length", "11")],
    );
    assert!(matches!(framing, Err(ExchangeError::Malformed(_))));
}

#[test]
fn an_invalid_content_length_is_malformed() {
    for value in ["ten", "-1", "1.5", "", "99999999999999999999"] {
        let (framing, _) = framing_of(200, Method::GET, &[("content-length", value)]);
        assert!(
            matches!(framing, Err(ExchangeError::Malformed(_))),
            "{value:?}"
        );
    }
}

/// BUG (RFC 9110 §8.6: `Content-Length = 1*DIGIT`; RFC 9112 §6.3: an invalid one is an
/// unrecoverable error): `str::parse::<u64>` takes a leading `+`, so `+5` frames a 5-byte body.
#[test]
fn a_content_length_with_a_sign_is_malformed() {
    let (framing, _) = framing_of(200, Method::GET, &[("content-length", "+5")]);
    assert!(
        matches!(framing, Err(ExchangeError::Malformed(_))),
        "{framing:?}"
    );
}

#[test]
fn a_response_without_a_length_runs_until_the_close() {
    let (framing, _) = framing_of(200, Method::GET, &[("content-type", "text/plain")]);
    assert_eq!(framing.unwrap(), Framing::UntilClose);
}

#[test]
fn a_zero_content_length_is_no_body() {
    let (framing, _) = framing_of(200, Method::GET, &[("content-length", "0")]);
    assert_eq!(framing.unwrap(), Framing::Empty);
    let (framing, _) = framing_of(200, Method::POST, &[("content-length", "42")]);
    assert_eq!(framing.unwrap(), Framing::Length(42));
}

/// The response head `version` with `lines`, parsed as it would arrive.
fn parsed(version: &str, lines: &[(&str, &str)]) -> ResponseHead {
    let mut wire = format!("{version} 200 OK\r\n");
    for (name, value) in lines {
        wire.push_str(&format!("{name}: {value}\r\n"));
    }
    wire.push_str("content-length: 0\r\n\r\n");
    let mut buffer = BytesMut::from(wire.as_bytes());
    let head = parse_response(&mut buffer, &mut Vec::new(), &Method::GET)
        .unwrap()
        .expect("a whole head");
    assert!(buffer.is_empty());
    head
}

#[test]
fn http_1_1_keeps_alive_unless_it_says_close() {
    for (lines, expected) in [
        (&[][..], true),
        (&[("connection", "keep-alive")], true),
        (&[("connection", "x-closed")], true),
        (&[("connection", "close")], false),
        (&[("connection", "CLOSE")], false),
        (&[("connection", "keep-alive, Close")], false),
        (
            &[("connection", "upgrade"), ("connection", " close ")],
            false,
        ),
    ] {
        assert_eq!(parsed("HTTP/1.1", lines).keep_alive, expected, "{lines:?}");
    }
}

#[test]
fn http_1_0_keeps_alive_only_when_it_says_so() {
    for (lines, expected) in [
        (&[][..], false),
        (&[("connection", "x-keep-alive")], false),
        (&[("connection", "Keep-Alive")], true),
        (&[("connection", "te, keep-alive")], true),
    ] {
        assert_eq!(parsed("HTTP/1.0", lines).keep_alive, expected, "{lines:?}");
    }
}

#[test]
fn connection_and_keep_alive_stop_at_the_parse_unless_they_name_a_header() {
    let head = parsed(
        "HTTP/1.1",
        &[
            ("Connection", "keep-alive"),
            ("Keep-Alive", "timeout=5"),
            ("x-kept", "1"),
        ],
    );
    let names: Vec<_> = head.head.headers.keys().map(HeaderName::as_str).collect();
    assert_eq!(names, ["x-kept", "content-length"]);

    // A named header is left for the hop-by-hop strip, with the Connection naming it.
    let head = parsed(
        "HTTP/1.1",
        &[
            ("connection", "close"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
        ],
    );
    let names: Vec<_> = head.head.headers.keys().map(HeaderName::as_str).collect();
    assert_eq!(names, ["connection", "x-hop", "content-length"]);
    assert_eq!(head.head.headers["connection"], "x-hop");
    assert!(!head.keep_alive);
}

// ---- the outgoing request head ------------------------------------------------------------

/// The head `Outgoing::forwarded` encodes for a GET with `lines` from `client`.
fn forwarded(lines: &[(&str, &str)], client: &str, traceparent: Option<&'static str>) -> String {
    let parts = request(Method::GET, "/v1/carts?x=1", lines);
    let forwarding = Forwarding {
        host: &HeaderValue::from_static("cart:8081"),
        client: &forwarding::Client::new(client.parse().unwrap()),
        traceparent: traceparent.map(HeaderValue::from_static),
    };
    let outgoing = Outgoing::forwarded(&parts, &SizeHint::with_exact(0), &forwarding);
    String::from_utf8(outgoing.head).unwrap()
}

#[test]
fn forwarding_appends_the_client_and_moves_its_host_to_forwarded_host() {
    let head = forwarded(
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("accept", "*/*"),
            ("x-forwarded-for", "10.0.0.1"),
            ("host", "shop.example"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "spoofed.example"),
        ],
        "127.0.0.1:5000",
        None,
    );
    assert_eq!(
        head,
        "GET /v1/carts?x=1 HTTP/1.1\r\nhost: cart:8081\r\naccept: */*\r\n\
         x-forwarded-for: 203.0.113.7, 10.0.0.1, 127.0.0.1\r\nx-forwarded-proto: http\r\n\
         x-forwarded-host: shop.example\r\n\r\n"
    );
}

#[test]
fn a_first_hop_gets_the_client_address_alone() {
    let head = forwarded(&[("accept", "*/*")], "[2001:db8::1]:443", None);
    assert_eq!(
        head,
        "GET /v1/carts?x=1 HTTP/1.1\r\nhost: cart:8081\r\naccept: */*\r\n\
         x-forwarded-for: 2001:db8::1\r\nx-forwarded-proto: http\r\n\r\n"
    );
}

#[test]
fn the_gateways_traceparent_replaces_the_clients_only_when_it_has_one() {
    let lines = [
        ("traceparent", "00-aaaa-bbbb-01"),
        ("x-forwarded-host", "first.example"),
    ];
    let passed = forwarded(&lines, "127.0.0.1:1", None);
    assert!(
        passed.contains("traceparent: 00-aaaa-bbbb-01\r\n"),
        "{passed}"
    );
    // Without a Host of the client's, an earlier proxy's forwarded host stays.
    assert!(
        passed.contains("x-forwarded-host: first.example\r\n"),
        "{passed}"
    );
    let replaced = forwarded(&lines, "127.0.0.1:1", Some("00-cccc-dddd-01"));
    assert_eq!(replaced.matches("traceparent").count(), 1, "{replaced}");
    assert!(
        replaced.contains("traceparent: 00-cccc-dddd-01\r\n"),
        "{replaced}"
    );
}

#[test]
fn a_get_without_a_body_has_no_framing_headers() {
    let parts = request(
        Method::GET,
        "/items?page=2",
        &[("host", "upstream"), ("accept", "*/*")],
    );
    assert_eq!(
        encoded(&parts, &SizeHint::with_exact(0)),
        "GET /items?page=2 HTTP/1.1\r\nhost: upstream\r\naccept: */*\r\n\r\n"
    );
}

#[test]
fn the_target_goes_out_in_origin_form() {
    let parts = request(Method::GET, "http://upstream:8080/a/b?c=d", &[]);
    assert_eq!(
        encoded(&parts, &SizeHint::with_exact(0)),
        "GET /a/b?c=d HTTP/1.1\r\n\r\n"
    );
}

#[test]
fn a_body_of_known_size_replaces_the_clients_content_length() {
    let parts = request(
        Method::POST,
        "/orders",
        &[
            ("host", "upstream"),
            ("content-length", "999"),
            ("content-type", "application/json"),
        ],
    );
    let outgoing = Outgoing::new(&parts, &SizeHint::with_exact(5));
    assert_eq!(outgoing.framing, Framing::Length(5));
    assert_eq!(
        String::from_utf8(outgoing.head).unwrap(),
        "POST /orders HTTP/1.1\r\nhost: upstream\r\ncontent-type: application/json\r\n\
         content-length: 5\r\n\r\n"
    );
}

#[test]
fn a_body_of_unknown_size_goes_out_chunked() {
    let parts = request(
        Method::PUT,
        "/files/a",
        &[("host", "upstream"), ("content-length", "3")],
    );
    let mut range = SizeHint::new();
    range.set_lower(3);
    range.set_upper(10);
    for size in [SizeHint::new(), range] {
        let outgoing = Outgoing::new(&parts, &size);
        assert_eq!(outgoing.framing, Framing::Chunked);
        assert_eq!(
            String::from_utf8(outgoing.head).unwrap(),
            "PUT /files/a HTTP/1.1\r\nhost: upstream\r\ntransfer-encoding: chunked\r\n\r\n"
        );
    }
}

#[test]
fn an_empty_body_says_so_where_a_body_is_expected() {
    for method in [Method::POST, Method::PUT, Method::PATCH] {
        let parts = request(method.clone(), "/x", &[("host", "upstream")]);
        assert_eq!(
            encoded(&parts, &SizeHint::with_exact(0)),
            format!("{method} /x HTTP/1.1\r\nhost: upstream\r\ncontent-length: 0\r\n\r\n")
        );
    }
    // A client's own `content-length: 0` goes on once, whatever the method.
    let parts = request(
        Method::DELETE,
        "/x",
        &[("content-length", "0"), ("host", "upstream")],
    );
    assert_eq!(
        encoded(&parts, &SizeHint::with_exact(0)),
        "DELETE /x HTTP/1.1\r\nhost: upstream\r\ncontent-length: 0\r\n\r\n"
    );
}

#[test]
fn only_an_idempotent_request_without_a_body_can_be_retried() {
    let retryable = |method: Method, size: SizeHint| {
        Outgoing::new(&request(method, "/", &[]), &size).is_retryable()
    };
    for method in [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
    ] {
        assert!(
            retryable(method.clone(), SizeHint::with_exact(0)),
            "{method}"
        );
    }
    assert!(!retryable(Method::POST, SizeHint::with_exact(0)));
    assert!(!retryable(Method::PATCH, SizeHint::with_exact(0)));
    assert!(!retryable(Method::GET, SizeHint::with_exact(3)));
    assert!(!retryable(Method::GET, SizeHint::new()));
}

// ---- exchanges with a stand-in upstream ----------------------------------------------------

#[tokio::test]
async fn interim_responses_are_skipped_for_the_final_one() {
    let (mut connection, upstream) = connected().await;
    let _upstream = answer(
        upstream,
        b"HTTP/1.1 100 Continue\r\n\r\n\
          HTTP/1.1 103 Early Hints\r\nlink: </style.css>; rel=preload\r\n\r\n\
          HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-final: yes\r\n\r\nok",
    );
    let response = send_get(&mut connection).await.unwrap();
    assert_eq!(response.head.status, StatusCode::OK);
    assert_eq!(response.head.headers["x-final"], "yes");
    assert!(!response.head.headers.contains_key("link"));
    assert_eq!(response.framing, Framing::Length(2));
    assert_eq!(read_body(&mut connection, response.framing).await, b"ok");
    assert!(connection.is_reusable());
}

#[tokio::test]
async fn response_headers_arrive_as_sent() {
    let (mut connection, upstream) = connected().await;
    let _upstream = answer(
        upstream,
        b"HTTP/1.1 100 Continue\r\n\r\n\
          HTTP/1.1 404 Not Here\r\nset-cookie: a=1\r\nX-Empty:\r\n\
          content-type:  text/plain; charset=utf-8 \r\nSet-Cookie: b=2\r\n\
          content-length: 4\r\n\r\ngone",
    );
    let response = send_get(&mut connection).await.unwrap();
    assert_eq!(response.head.status, StatusCode::NOT_FOUND);
    assert_eq!(response.head.version, Version::HTTP_11);
    let headers = &response.head.headers;
    assert_eq!(headers.len(), 5);
    let cookies: Vec<_> = headers.get_all(header::SET_COOKIE).iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(headers["x-empty"], "");
    assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(read_body(&mut connection, response.framing).await, b"gone");
}

#[tokio::test]
async fn the_request_head_goes_out_as_encoded() {
    let (mut connection, upstream) = connected().await;
    let upstream = answer(upstream, b"HTTP/1.1 204 No Content\r\n\r\n");
    let parts = request(
        Method::GET,
        "/items?page=2",
        &[("host", "upstream"), ("accept", "*/*")],
    );
    let outgoing = Outgoing::new(&parts, &SizeHint::with_exact(0));
    let response = within(exchange(&mut connection, &outgoing, &mut Body::empty()))
        .await
        .unwrap();
    assert_eq!(response.head.status, StatusCode::NO_CONTENT);
    assert_eq!(response.framing, Framing::Empty);
    let (received, _) = upstream.await.unwrap();
    assert_eq!(received, outgoing.head);
}

#[tokio::test]
async fn a_body_of_unknown_size_arrives_chunk_encoded() {
    let (mut connection, mut upstream) = connected().await;
    let large = vec![b'x'; COALESCE_BYTES + 4000];
    let chunks = [
        Bytes::from_static(b"hello"),
        Bytes::new(), // An empty piece must not end the body early.
        Bytes::from_static(b" "),
        Bytes::from(large.clone()),
        Bytes::from_static(b"world"),
    ];
    let mut body = Body::from_stream(futures_util::stream::iter(chunks.map(Ok::<_, io::Error>)));
    let parts = request(Method::POST, "/upload", &[("host", "upstream")]);
    let outgoing = Outgoing::new(&parts, &body.size_hint());
    assert_eq!(outgoing.framing, Framing::Chunked);

    let upstream = tokio::spawn(async move {
        let received = read_until(&mut upstream, b"0\r\n\r\n").await;
        upstream
            .write_all(b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        (received, upstream)
    });
    let response = within(exchange(&mut connection, &outgoing, &mut body))
        .await
        .unwrap();
    assert_eq!(response.head.status, StatusCode::CREATED);

    let mut expected = outgoing.head.clone();
    expected.extend_from_slice(b"5\r\nhello\r\n1\r\n \r\n");
    expected.extend_from_slice(format!("{:x}\r\n", large.len()).as_bytes());
    expected.extend_from_slice(&large);
    expected.extend_from_slice(b"\r\n5\r\nworld\r\n0\r\n\r\n");
    let (received, _) = upstream.await.unwrap();
    assert_eq!(received.len(), expected.len());
    assert!(received == expected, "the request went out mis-encoded");
}

#[tokio::test]
async fn a_streamed_body_goes_out_as_it_arrives() {
    let (mut connection, mut upstream) = connected().await;
    let (sender, mut body) = fed_body();
    let parts = request(Method::POST, "/stream", &[("host", "upstream")]);
    let outgoing = Outgoing::new(&parts, &body.size_hint());

    // The upstream sees the head, then each piece, before the next one exists.
    let script = async {
        let head = read_until(&mut upstream, b"\r\n\r\n").await;
        assert_eq!(head, outgoing.head);
        sender.send(b"first").await.unwrap();
        assert_eq!(read_until(&mut upstream, b"\r\n").await, b"5\r\nfirst\r\n");
        sender.send(b"second").await.unwrap();
        assert_eq!(read_until(&mut upstream, b"\r\n").await, b"6\r\nsecond\r\n");
        drop(sender);
        assert_eq!(read_until(&mut upstream, b"\r\n\r\n").await, b"0\r\n\r\n");
        upstream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
    };
    let (response, ()) =
        within(async { tokio::join!(exchange(&mut connection, &outgoing, &mut body), script) })
            .await;
    assert_eq!(response.unwrap().head.status, StatusCode::OK);
}

#[tokio::test]
async fn a_body_of_known_size_goes_out_after_its_content_length() {
    for size in [5, COALESCE_BYTES * 3] {
        let (mut connection, mut upstream) = connected().await;
        let content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let mut body = Body::from(content.clone());
        let parts = request(Method::POST, "/orders", &[("host", "upstream")]);
        let outgoing = Outgoing::new(&parts, &body.size_hint());
        assert_eq!(outgoing.framing, Framing::Length(size as u64));

        let expected_length = outgoing.head.len() + size;
        let upstream = tokio::spawn(async move {
            let mut received = vec![0u8; expected_length];
            upstream.read_exact(&mut received).await.unwrap();
            upstream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await
                .unwrap();
            (received, upstream)
        });
        within(exchange(&mut connection, &outgoing, &mut body))
            .await
            .unwrap();
        let (received, _) = upstream.await.unwrap();
        assert_eq!(&received[..outgoing.head.len()], &outgoing.head[..]);
        assert!(
            received[outgoing.head.len()..] == content[..],
            "{size} bytes"
        );
    }
}

#[tokio::test]
async fn a_failing_request_body_fails_the_exchange_and_the_connection() {
    let (mut connection, _upstream) = connected().await;
    let pieces = [
        Ok(Bytes::from_static(b"start")),
        Err(io::Error::other("the client went away")),
    ];
    let mut body = Body::from_stream(futures_util::stream::iter(pieces));
    let parts = request(Method::POST, "/orders", &[("host", "upstream")]);
    let outgoing = Outgoing::new(&parts, &body.size_hint());
    let error = within(exchange(&mut connection, &outgoing, &mut body))
        .await
        .err()
        .unwrap();
    assert!(matches!(error, ExchangeError::RequestBody(_)), "{error:?}");
    assert!(!error.is_stale_connection());
    assert!(!connection.is_reusable());
}

#[tokio::test]
async fn an_upstream_closing_without_answering_is_a_stale_connection() {
    let (mut connection, upstream) = connected().await;
    answer_and_close(upstream, b"");
    let error = send_get(&mut connection).await.err().unwrap();
    assert!(
        matches!(error, ExchangeError::Closed { answered: false }),
        "{error:?}"
    );
    assert!(error.is_stale_connection());
    assert!(!connection.is_reusable());
}

#[tokio::test]
async fn an_upstream_resetting_without_answering_is_a_stale_connection() {
    let (mut connection, mut upstream) = connected().await;
    tokio::spawn(async move {
        read_until(&mut upstream, b"\r\n\r\n").await;
        upstream.set_zero_linger().unwrap();
    });
    let error = send_get(&mut connection).await.err().unwrap();
    assert!(
        matches!(
            error,
            ExchangeError::Io {
                answered: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_stale_connection());
    assert!(!connection.is_reusable());
}

#[tokio::test]
async fn an_upstream_closing_after_part_of_an_answer_has_answered() {
    for partial in [
        &b"HTTP/1.1 200 OK\r\ncontent-len"[..],
        b"HTTP/1.1 100 Continue\r\n\r\n",
    ] {
        let (mut connection, upstream) = connected().await;
        let partial: &'static [u8] = partial;
        answer_and_close(upstream, partial);
        let error = send_get(&mut connection).await.err().unwrap();
        assert!(
            matches!(error, ExchangeError::Closed { answered: true }),
            "{error:?} after {partial:?}"
        );
        assert!(!error.is_stale_connection());
        assert!(!connection.is_reusable());
    }
}

#[tokio::test]
async fn a_malformed_response_head_is_malformed() {
    for response in [
        &b"HTTP/1.1 2x0 OK\r\n\r\n"[..],
        b"HTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n",
    ] {
        let (mut connection, upstream) = connected().await;
        let _upstream = answer(upstream, response);
        let error = send_get(&mut connection).await.err().unwrap();
        assert!(
            matches!(error, ExchangeError::Malformed(_)),
            "{error:?} for {response:?}"
        );
        assert!(!error.is_stale_connection());
        assert!(!connection.is_reusable(), "{response:?}");
    }
}

#[tokio::test]
async fn disagreeing_content_lengths_are_malformed() {
    let (mut connection, upstream) = connected().await;
    let _upstream = answer(
        upstream,
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
    );
    let error = send_get(&mut connection).await.err().unwrap();
    assert!(matches!(error, ExchangeError::Malformed(_)), "{error:?}");
}

#[tokio::test]
async fn a_response_head_past_the_limit_is_malformed() {
    let (mut connection, mut upstream) = connected().await;
    tokio::spawn(async move {
        read_until(&mut upstream, b"\r\n\r\n").await;
        upstream.write_all(b"HTTP/1.1 200 OK\r\n").await.unwrap();
        let line = format!("x-padding: {}\r\n", "a".repeat(1000));
        // A head that never ends (the task goes with the test's runtime).
        while upstream.write_all(line.as_bytes()).await.is_ok() {}
    });
    let error = send_get(&mut connection).await.err().unwrap();
    assert!(matches!(error, ExchangeError::Malformed(_)), "{error:?}");
    assert!(!connection.is_reusable());
}

#[tokio::test]
async fn only_a_response_that_keeps_alive_leaves_the_connection_reusable() {
    for (response, reusable) in [
        (&b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..], true),
        (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
            true,
        ),
        (
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            false,
        ),
        (
            b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\ncontent-length: 0\r\n\r\n",
            false,
        ),
        (b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", false),
        (
            b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n",
            true,
        ),
        // A body that ends with the connection cannot leave it for another exchange.
        (b"HTTP/1.1 200 OK\r\n\r\n", false),
    ] {
        let (mut connection, upstream) = connected().await;
        let _upstream = answer(upstream, response);
        send_get(&mut connection).await.unwrap();
        assert_eq!(
            connection.is_reusable(),
            reusable,
            "{:?}",
            String::from_utf8_lossy(response)
        );
    }
}

#[tokio::test]
async fn a_kept_alive_connection_carries_the_next_exchange() {
    let (mut connection, mut upstream) = connected().await;
    let _upstream = tokio::spawn(async move {
        for response in [
            &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nsecond",
        ] {
            read_until(&mut upstream, b"\r\n\r\n").await;
            upstream.write_all(response).await.unwrap();
        }
        upstream
    });
    let first = send_get(&mut connection).await.unwrap();
    assert_eq!(read_body(&mut connection, first.framing).await, b"first");
    assert!(connection.is_reusable());
    assert!(connection.is_usable());

    let second = send_get(&mut connection).await.unwrap();
    assert_eq!(read_body(&mut connection, second.framing).await, b"second");
    assert!(connection.is_reusable());
    assert!(connection.is_usable());
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_not_usable() {
    let (mut connection, upstream) = connected().await;
    let upstream = answer(upstream, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    send_get(&mut connection).await.unwrap();
    assert!(connection.is_usable(), "the upstream still holds it open");

    let (_, upstream) = upstream.await.unwrap();
    drop(upstream);
    within(async {
        while connection.is_usable() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    assert!(connection.is_reusable(), "nothing but the close marked it");
}

#[tokio::test]
async fn bytes_the_upstream_sent_unasked_make_the_connection_unusable() {
    let (mut connection, upstream) = connected().await;
    let upstream = answer(upstream, b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
    send_get(&mut connection).await.unwrap();
    assert!(connection.is_usable());

    // A server announcing its idle timeout before it closes, the connection still open.
    let (_, mut upstream) = upstream.await.unwrap();
    upstream
        .write_all(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n")
        .await
        .unwrap();
    within(async {
        while connection.is_usable() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    drop(upstream);
}

#[tokio::test]
async fn bytes_left_past_a_body_make_the_connection_unusable() {
    let (mut connection, upstream) = connected().await;
    let _upstream = answer(
        upstream,
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokEXTRA",
    );
    let response = send_get(&mut connection).await.unwrap();
    assert_eq!(read_body(&mut connection, response.framing).await, b"ok");
    // Whether the extra bytes are buffered already or still in the socket.
    within(async {
        while connection.is_usable() {
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn an_upstream_that_answers_mid_upload_and_closes_is_heard() {
    let (mut connection, mut upstream) = connected().await;
    let stand_in = tokio::spawn(async move {
        let mut received = Vec::new();
        let mut piece = [0u8; 4096];
        while !received.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = upstream.read(&mut piece).await.unwrap();
            received.extend_from_slice(&piece[..n]);
        }
        upstream
            .write_all(
                b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        // Closing with the body unread resets the connection under the client's writes.
    });
    // Far more than the socket buffers hold, in pieces that keep coming after the answer.
    let pieces = (0..4096).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![7u8; 16 * 1024])));
    let mut body = Body::from_stream(futures_util::stream::iter(pieces));
    let parts = request(Method::POST, "/upload", &[("host", "upstream")]);
    let outgoing = Outgoing::new(&parts, &SizeHint::with_exact(64 * 1024 * 1024));
    let head = within(exchange(&mut connection, &outgoing, &mut body))
        .await
        .expect("the upstream's answer, not the broken upload");
    assert_eq!(head.head.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!connection.is_reusable());
    stand_in.await.unwrap();
}

#[tokio::test]
async fn an_answer_mid_body_stops_the_body_and_an_interim_one_does_not() {
    let (mut connection, mut upstream) = connected().await;
    let (sender, mut body) = fed_body();
    let parts = request(Method::POST, "/upload", &[("host", "upstream")]);
    let outgoing = Outgoing::new(&parts, &body.size_hint());

    let script = async {
        read_until(&mut upstream, b"\r\n\r\n").await;
        // Interim: the body goes on.
        upstream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .unwrap();
        sender.send(b"first").await.unwrap();
        assert_eq!(read_until(&mut upstream, b"\r\n").await, b"5\r\nfirst\r\n");
        // Final, with the body still open: the exchange ends with it.
        upstream
            .write_all(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\n\r\n")
            .await
            .unwrap();
        (sender, upstream)
    };
    let (response, (sender, mut upstream)) =
        within(async { tokio::join!(exchange(&mut connection, &outgoing, &mut body), script) })
            .await;
    assert_eq!(response.unwrap().head.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(!connection.is_reusable());
    // Nothing more of the body goes out, even once there is more of it.
    let _ = sender.try_send(b"second");
    drop(connection);
    let mut rest = Vec::new();
    within(upstream.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
}

// ---- the edge's desync probes ---------------------------------------------------------

#[test]
fn a_chunk_size_with_leading_zeros_past_sixteen_digits_is_read_by_its_value() {
    let mut decoder = Decoder::Chunk(Chunk::Size);
    let (body, rest) = decode_in_pieces(
        &mut decoder,
        b"000000000000000000000005\r\nhello\r\n00000000000000000000\r\n\r\n",
        4,
    )
    .unwrap();
    assert_eq!(body, b"hello");
    assert!(rest.is_empty());
    assert_eq!(decoder, Decoder::Done);
}

#[test]
fn repeated_equal_content_lengths_reach_the_client_as_one() {
    let (framing, headers) = framing_of(
        200,
        Method::GET,
        &[("content-length", "10"), ("content-length", "10")],
    );
    assert_eq!(framing.unwrap(), Framing::Length(10));
    let lengths: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    assert_eq!(lengths, ["10"]);
}

#[test]
fn a_response_head_over_the_limit_is_refused_even_when_it_arrives_whole() {
    let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..(MAX_HEAD_BYTES / 1000 + 1) {
        wire.extend_from_slice(format!("x-filler-{i}: {}\r\n", "a".repeat(1000)).as_bytes());
    }
    wire.extend_from_slice(b"content-length: 0\r\n\r\n");
    let mut buffer = BytesMut::from(&wire[..]);
    let parsed = parse_response(&mut buffer, &mut Vec::new(), &Method::GET);
    assert!(
        matches!(parsed, Err(ExchangeError::Malformed(_))),
        "a {}-byte head was taken",
        wire.len()
    );
}

#[tokio::test]
async fn a_connection_that_became_a_tunnel_is_never_reused() {
    let (mut connection, upstream) = connected().await;
    let stand_in = answer(upstream, b"HTTP/1.1 200 Connection Established\r\n\r\n");
    let parts = request(Method::CONNECT, "/", &[("host", "upstream")]);
    let outgoing = Outgoing::new(&parts, &SizeHint::with_exact(0));
    let answered = within(exchange(&mut connection, &outgoing, &mut Body::empty())).await;
    assert!(matches!(answered, Err(ExchangeError::Malformed(_))));
    assert!(!connection.is_reusable());
    stand_in.await.unwrap();
}
