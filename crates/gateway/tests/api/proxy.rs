//! The proxy itself: bodies stream both ways, limits and timeouts answer problem+json, and
//! headers are forwarded as a proxy should (hop-by-hop dropped, `X-Forwarded-*` set,
//! `traceparent` passed on).

use std::{
    convert::Infallible,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::body::Bytes;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use crate::{
    fakes::{checksum, pattern},
    support::{FIVE_MB, World, eventually, new_cart_id, problem, read_response},
};

/// POSTs the pattern of `bytes` to `url` as a chunked stream (no Content-Length).
async fn stream_upload(url: &str, bytes: usize) -> (u16, Bytes) {
    let frames = pattern(bytes).map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let uri: hyper::Uri = url.parse().unwrap();
    let authority = uri.authority().unwrap().as_str();
    let stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = hyper::Request::post(uri.path())
        .header("host", authority)
        .header("x-fake", "upload")
        .body(body)
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    (
        status,
        response.into_body().collect().await.unwrap().to_bytes(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_megabyte_upload_streams_through() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    let url = format!("{}/v1/carts/{}/upload", gateway.url, new_cart_id());
    let (status, body) = stream_upload(&url, FIVE_MB).await;
    assert_eq!(status, 200);
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["side"], "cart");
    assert_eq!(body["bytes"], FIVE_MB);
    assert_eq!(body["checksum"], checksum(FIVE_MB));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_five_megabyte_download_streams_through() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    let response = gateway
        .request(Method::GET, "/downloads/catalog.csv")
        .header("x-fake", format!("download:{FIVE_MB}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut received = 0usize;
    let mut expected = pattern(FIVE_MB).flat_map(|c| c.to_vec());
    let mut response = response;
    while let Some(chunk) = response.chunk().await.unwrap() {
        assert!(chunk.iter().all(|b| Some(*b) == expected.next()));
        received += chunk.len();
    }
    assert_eq!(received, FIVE_MB);
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_a_413_without_reaching_the_upstream() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    settings.max_body_bytes = 1024 * 1024;
    let gateway = world.gateway_with(settings).await;
    let response = gateway
        .request(Method::POST, "/legacy/import")
        .body(vec![0u8; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    let body = problem(response, 413).await;
    assert_eq!(body["type"], "/problems/payload-too-large");
    assert_eq!(world.legacy.served(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_over_the_limit_is_a_413() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    settings.max_body_bytes = 1024 * 1024;
    let gateway = world.gateway_with(settings).await;
    let (status, body) = stream_upload(&format!("{}/legacy/import", gateway.url), FIVE_MB).await;
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn a_slow_upstream_is_a_504() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    settings.upstream_timeout = Duration::from_millis(200);
    let gateway = world.gateway_with(settings).await;
    let response = gateway
        .request(Method::GET, "/reports")
        .header("x-fake", "slow")
        .send()
        .await
        .unwrap();
    let body = problem(response, 504).await;
    assert_eq!(body["type"], "/problems/upstream-timeout");
}

#[tokio::test]
async fn an_upstream_that_is_down_is_a_502() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    settings.legacy_url = Some(gateway::proxy::Upstream::parse("LEGACY_URL", &url).unwrap());
    let gateway = world.gateway_with(settings).await;
    let response = gateway.request(Method::GET, "/").send().await.unwrap();
    let body = problem(response, 502).await;
    assert_eq!(body["type"], "/problems/bad-gateway");
    assert!(
        !body.to_string().contains("127.0.0.1"),
        "no internals: {body}"
    );
}

#[tokio::test]
async fn proxy_headers_are_set_and_hop_by_hop_headers_dropped() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = gateway
        .request(Method::GET, "/v1/products?page=2&sort=price")
        .header("connection", "keep-alive, x-hop-secret")
        .header("x-hop-secret", "must not pass")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic abc")
        .header("x-forwarded-for", "203.0.113.9")
        .header("traceparent", traceparent)
        .header("authorization", "Bearer shopper")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed: Value = response.json().await.unwrap();
    let headers = &echoed["headers"];
    assert_eq!(echoed["path"], "/v1/products");
    assert_eq!(echoed["query"], "page=2&sort=price");
    for dropped in ["x-hop-secret", "keep-alive", "proxy-authorization"] {
        assert!(
            headers.get(dropped).is_none(),
            "{dropped} passed: {headers}"
        );
    }
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(
        headers["x-forwarded-host"],
        gateway.url.trim_start_matches("http://")
    );
    assert_eq!(headers["traceparent"], traceparent);
    assert_eq!(headers["authorization"], "Bearer shopper");
    assert_eq!(
        headers["host"],
        world.legacy.url.trim_start_matches("http://")
    );
}

#[tokio::test]
async fn upstream_connections_are_pooled_and_reused() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    for _ in 0..20 {
        assert_eq!(
            gateway.side(gateway.request(Method::GET, "/")).await,
            "legacy"
        );
    }
    assert_eq!(world.legacy.served(), 20);
    assert_eq!(world.legacy.connections(), 1);
}

/// A bare HTTP/1.1 upstream that answers every request `200 ok` and, in `closing` mode,
/// closes the connection after each answer without saying so. It counts the connections
/// it accepted and those the gateway closed.
struct BareUpstream {
    url: String,
    accepted: Arc<AtomicU64>,
    closed_by_peer: Arc<AtomicU64>,
}

impl BareUpstream {
    async fn start(closing: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicU64::new(0));
        let closed_by_peer = Arc::new(AtomicU64::new(0));
        let (a, c) = (accepted.clone(), closed_by_peer.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let c = c.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    loop {
                        let n = stream.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            c.fetch_add(1, Ordering::SeqCst);
                            return;
                        }
                        head.extend_from_slice(&buf[..n]);
                        // Requests here carry no body: a request ends at its blank line.
                        while let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                            head.drain(..end + 4);
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if stream.write_all(answer).await.is_err() || closing {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Self {
            url,
            accepted,
            closed_by_peer,
        }
    }
}

#[tokio::test]
async fn an_idle_connection_the_upstream_closed_is_replaced_not_failed() {
    let world = World::on(super::HTTP).await;
    let upstream = BareUpstream::start(true).await;
    let mut settings = world.settings();
    settings.legacy_url =
        Some(gateway::proxy::Upstream::parse("LEGACY_URL", &upstream.url).unwrap());
    let gateway = world.gateway_with(settings).await;
    for _ in 0..10 {
        let response = gateway.request(Method::GET, "/").send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "ok");
    }
    assert_eq!(upstream.accepted.load(Ordering::SeqCst), 10);
}

#[tokio::test]
async fn idle_upstream_connections_close_after_the_idle_timeout() {
    let world = World::on(super::HTTP).await;
    let upstream = BareUpstream::start(false).await;
    let mut settings = world.settings();
    settings.legacy_url =
        Some(gateway::proxy::Upstream::parse("LEGACY_URL", &upstream.url).unwrap());
    settings.upstream_pool_idle = Duration::from_millis(200);
    let gateway = world.gateway_with(settings).await;
    for _ in 0..3 {
        let response = gateway.request(Method::GET, "/").send().await.unwrap();
        assert_eq!(response.text().await.unwrap(), "ok");
    }
    assert_eq!(
        upstream.accepted.load(Ordering::SeqCst),
        1,
        "one kept-alive connection"
    );
    testkit::eventually("the idle connection is closed", || async {
        upstream.closed_by_peer.load(Ordering::SeqCst) == 1
    })
    .await;
}

/// One response off the wire: status, header lines (names lowercased), body.
type Answered = (u16, Vec<(String, String)>, String);

/// Reads responses off `wire` in order. Bodies are framed by their `Content-Length`; a
/// response to a `HEAD` (its place listed in `heads`) has none.
fn responses(mut wire: &[u8], heads: &[usize]) -> Vec<Answered> {
    let mut parsed = Vec::new();
    while !wire.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(length) = response.parse(wire).unwrap() else {
            panic!("a partial response: {:?}", String::from_utf8_lossy(wire));
        };
        let headers: Vec<(String, String)> = response
            .headers
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value).into_owned();
                (h.name.to_ascii_lowercase(), value)
            })
            .collect();
        let body_length = match heads.contains(&parsed.len()) {
            true => 0,
            false => headers
                .iter()
                .find(|(name, _)| name == "content-length")
                .map(|(_, value)| value.parse().unwrap())
                .expect("a content length"),
        };
        let body = String::from_utf8_lossy(&wire[length..length + body_length]).into_owned();
        parsed.push((response.code.unwrap(), headers, body));
        wire = &wire[length + body_length..];
    }
    parsed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_on_one_connection_are_answered_in_order_whatever_their_kind() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    let cart = new_cart_id();
    let authority = gateway.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    // A plain GET, a HEAD, a POST with a body and a GET that closes, written at once: the
    // first two are simple, the POST hands the connection over with the bytes after it.
    let requests = format!(
        "GET /v1/carts/{cart}?n=1 HTTP/1.1\r\nHost: shop\r\n\r\n\
         HEAD /v1/carts/{cart}?n=2 HTTP/1.1\r\nHost: shop\r\n\r\n\
         POST /v1/carts/{cart}?n=3 HTTP/1.1\r\nHost: shop\r\nContent-Length: 5\r\n\r\nhello\
         GET /v1/carts/{cart}?n=4 HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(requests.as_bytes()).await.unwrap();
    let mut wire = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut wire))
        .await
        .expect("the gateway closes after the last request")
        .unwrap();

    let answered = responses(&wire, &[1]);
    assert_eq!(answered.len(), 4, "{}", String::from_utf8_lossy(&wire));
    for (i, (status, headers, _)) in answered.iter().enumerate() {
        assert_eq!(*status, 200, "response {i}");
        assert!(
            headers.iter().any(|(name, _)| name == "date"),
            "{headers:?}"
        );
    }
    let echoed: Vec<Value> = [0, 2, 3]
        .iter()
        .map(|&i| serde_json::from_str(&answered[i].2).unwrap())
        .collect();
    assert_eq!(echoed[0]["query"], "n=1");
    assert_eq!(echoed[0]["method"], "GET");
    assert_eq!(echoed[1]["query"], "n=3");
    assert_eq!(echoed[1]["body"], "hello");
    assert_eq!(echoed[2]["query"], "n=4");
    assert!(answered[1].2.is_empty(), "a HEAD answer has no body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_does_not_parse_is_a_400_and_closes() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    let authority = gateway.url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let cart = new_cart_id();
    stream
        .write_all(
            format!(
                "GET /v1/carts/{cart} HTTP/1.1\r\nHost: shop\r\n\r\nGET /v1/carts HTTP/1.1\r\nBad Header\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let mut wire = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut wire))
        .await
        .expect("the gateway closes after the bad request")
        .unwrap();
    let text = String::from_utf8_lossy(&wire);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let second = text.find("HTTP/1.1 400").expect("a 400 for the bad head");
    assert!(second > 0, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_idle_connections_close_and_requests_in_flight_are_answered_first() {
    let world = World::on(super::HTTP).await;
    let shutdown = CancellationToken::new();
    let clock = Arc::new(gateway::clock::ManualClock::new());
    let app = gateway::build(&world.settings(), clock, shutdown.clone())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(gateway::serve(listener, app, shutdown.clone()));
    let cart = new_cart_id();

    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    let get = format!("GET /v1/carts/{cart} HTTP/1.1\r\nHost: shop\r\n\r\n");
    idle.write_all(get.as_bytes()).await.unwrap();
    assert!(
        read_response(&mut idle)
            .await
            .starts_with("HTTP/1.1 200 OK")
    );
    let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
    let held = format!("GET /v1/carts/{cart} HTTP/1.1\r\nHost: shop\r\nX-Fake: hold\r\n\r\n");
    busy.write_all(held.as_bytes()).await.unwrap();
    eventually("the request waits upstream", || async {
        world.cart.held() == 1
    })
    .await;

    shutdown.cancel();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok_and(|read| read.is_ok()),
        "the idle connection closes"
    );
    assert!(rest.is_empty());
    assert!(!served.is_finished(), "a request is still in flight");

    world.cart.release();
    let answer = read_response(&mut busy).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("\"held\":true"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("serving ends once the last request is answered")
        .unwrap()
        .unwrap();
}

/// An upstream that answers a request as soon as its head is in, before reading its body:
/// `413` and then never reads again (`refusing`), or `100 Continue`, then reads the
/// `Content-Length` body whole and answers how many bytes came.
async fn early_upstream(refusing: bool) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut read = Vec::new();
                let mut buf = [0u8; 16 * 1024];
                let end = loop {
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    read.extend_from_slice(&buf[..n]);
                    if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end + 4;
                    }
                };
                if refusing {
                    let answer =
                        b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 8\r\n\r\ntoo big!";
                    let _ = stream.write_all(answer).await;
                    // Keep the connection open and read nothing more.
                    std::future::pending::<()>().await;
                }
                let head = String::from_utf8_lossy(&read[..end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length: "))
                    .and_then(|n| n.trim().parse().ok())
                    .unwrap_or(0);
                let _ = stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await;
                let mut got = read.len() - end;
                while got < length {
                    let n = stream.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got += n;
                }
                let body = got.to_string();
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            });
        }
    });
    url
}

/// Uploads 5 MB through a gateway whose legacy upstream is an `early_upstream`; answers the
/// status and body.
async fn upload_to_early_upstream(refusing: bool) -> (u16, String) {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    let upstream = early_upstream(refusing).await;
    settings.legacy_url = Some(gateway::proxy::Upstream::parse("LEGACY_URL", &upstream).unwrap());
    // Long enough that a gateway stuck writing the upload would answer 504 well after the
    // test's own deadline.
    settings.upstream_timeout = Duration::from_secs(60);
    let gateway = world.gateway_with(settings).await;
    let response = tokio::time::timeout(
        Duration::from_secs(20),
        gateway
            .request(Method::POST, "/upload")
            .body(vec![7u8; FIVE_MB])
            .send(),
    )
    .await
    .expect("an answer well before the upstream timeout")
    .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_refuses_an_upload_before_reading_it_is_heard_at_once() {
    let (status, body) = upload_to_early_upstream(true).await;
    assert_eq!(status, 413);
    assert_eq!(body, "too big!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_all_of_its_upload_before_reading_still_hears_an_early_answer() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    let upstream = early_upstream(true).await;
    settings.legacy_url = Some(gateway::proxy::Upstream::parse("LEGACY_URL", &upstream).unwrap());
    let gateway = world.gateway_with(settings).await;
    let response = gateway.upload_unheeding("/upload", FIVE_MB).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.ends_with("\r\n\r\ntoo big!"), "{response}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interim_answer_mid_upload_lets_the_upload_go_on() {
    let (status, body) = upload_to_early_upstream(false).await;
    assert_eq!(status, 200);
    assert_eq!(body, FIVE_MB.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_serving_thread_keeps_upstream_connections_of_its_own() {
    for (threads, upstream_connections) in [(1, 1), (3, 3)] {
        let world = World::on(super::HTTP).await;
        let upstream = BareUpstream::start(false).await;
        let mut settings = world.settings();
        settings.legacy_url =
            Some(gateway::proxy::Upstream::parse("LEGACY_URL", &upstream.url).unwrap());
        settings.serve_threads = threads;
        let gateway = world.gateway_with(settings).await;
        let authority = gateway.url.trim_start_matches("http://").to_owned();
        // Three client connections, one after the other: they go to the serving threads in
        // turn, and a thread's upstream connection is free again when the next one asks.
        let mut clients = Vec::new();
        for _ in 0..3 {
            let mut client = tokio::net::TcpStream::connect(&authority).await.unwrap();
            client
                .write_all(b"GET / HTTP/1.1\r\nHost: shop\r\n\r\n")
                .await
                .unwrap();
            assert!(read_response(&mut client).await.ends_with("\r\n\r\nok"));
            clients.push(client);
        }
        assert_eq!(
            upstream.accepted.load(Ordering::SeqCst),
            upstream_connections,
            "{threads} serving threads"
        );
    }
}
