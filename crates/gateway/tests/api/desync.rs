//! HTTP/1.1 desync probes at the edge, on both of the gateway's HTTP paths (its own reader
//! for simple requests, hyper for the rest): methods it does not route, `Host` missing or
//! twice, transfer codings it cannot forward unambiguously, header names with `_`, two
//! `Content-Length` lines in an answer, an oversized response head that arrives in one read,
//! and chunk sizes written with many leading zeros. Every refusal is problem+json, closes the
//! connection, and reaches no upstream.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
};

use crate::support::{TestGateway, World, new_cart_id};

/// Writes `request` on a new connection and reads until the gateway closes it.
async fn closing_exchange(gateway: &TestGateway, request: &[u8]) -> String {
    let authority = gateway.url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut wire = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut wire))
        .await
        .expect("the gateway closes the connection")
        .unwrap();
    String::from_utf8_lossy(&wire).into_owned()
}

/// Asserts that `wire` is one problem+json answer of `status` that closes the connection.
fn assert_refused(wire: &str, status: u16, request: &str) {
    let (head, body) = wire.split_once("\r\n\r\n").expect("a whole response");
    assert!(
        head.starts_with(&format!("HTTP/1.1 {status} ")),
        "{request:?} → {wire}"
    );
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/problem+json"),
        "{wire}"
    );
    assert!(head.contains("connection: close"), "{wire}");
    let problem: Value = serde_json::from_str(body).expect("one JSON body");
    assert_eq!(problem["status"], status, "{wire}");
}

/// A stand-in upstream that answers every request with `response`, byte for byte, in one
/// write, then closes.
async fn raw_upstream(response: Vec<u8>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let response = response.clone();
            tokio::spawn(async move {
                let mut read = Vec::new();
                let mut piece = [0u8; 4096];
                // The head, then as much body as it declares.
                let head_end = loop {
                    let n = stream.read(&mut piece).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    read.extend_from_slice(&piece[..n]);
                    if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                        break end + 4;
                    }
                };
                let head = String::from_utf8_lossy(&read[..head_end]).to_ascii_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while read.len() < head_end + length {
                    let n = stream.read(&mut piece).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    read.extend_from_slice(&piece[..n]);
                }
                let _ = stream.write_all(&response).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    url
}

/// A gateway whose legacy upstream is a raw stand-in answering `response`.
async fn behind_raw_upstream(world: &World, response: Vec<u8>) -> TestGateway {
    let url = raw_upstream(response).await;
    let mut settings = world.settings();
    settings.legacy_url = Some(gateway::proxy::Upstream::parse("LEGACY_URL", &url).unwrap());
    world.gateway_with(settings).await
}

#[tokio::test]
async fn connect_and_methods_the_gateway_does_not_route_are_a_405_and_reach_no_upstream() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    for request in [
        "CONNECT shop.example:443 HTTP/1.1\r\nHost: shop.example:443\r\n\r\n",
        "CONNECT / HTTP/1.1\r\nHost: shop\r\n\r\n",
        "TRACE / HTTP/1.1\r\nHost: shop\r\n\r\n",
        // A made-up method, on the simple path and with a body on hyper's.
        "PURGE / HTTP/1.1\r\nHost: shop\r\n\r\n",
        "PURGE / HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\n\r\nhi",
    ] {
        let wire = closing_exchange(&gateway, request.as_bytes()).await;
        assert_refused(&wire, 405, request);
        assert!(
            wire.to_ascii_lowercase().contains("\r\nallow: get, "),
            "{wire}"
        );
    }
    assert_eq!(world.legacy.served(), 0, "nothing reached legacy");
    // The next shopper is answered as usual.
    let side = gateway.side(gateway.request(Method::GET, "/")).await;
    assert_eq!(side, "legacy");
}

#[tokio::test]
async fn a_request_without_a_host_or_with_two_is_a_400() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    let cart = new_cart_id();
    for request in [
        format!("GET /v1/carts/{cart} HTTP/1.1\r\n\r\n"),
        format!("GET /v1/carts/{cart} HTTP/1.1\r\nHost: shop\r\nHost: admin.internal\r\n\r\n"),
        format!(
            "POST /v1/carts/{cart} HTTP/1.1\r\nHost: shop\r\nHost: other\r\nContent-Length: 2\r\n\r\nhi"
        ),
        format!("POST /v1/carts/{cart} HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi"),
    ] {
        let wire = closing_exchange(&gateway, request.as_bytes()).await;
        assert_refused(&wire, 400, &request);
    }
    assert_eq!(world.cart.served(), 0, "nothing reached the cart service");
}

#[tokio::test]
async fn transfer_codings_other_than_a_single_chunked_are_a_501() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    let body = "5\r\nhello\r\n0\r\n\r\n";
    for coding in [
        "Transfer-Encoding: gzip, chunked",
        "Transfer-Encoding: chunked, chunked",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
    ] {
        let request = format!("POST /import HTTP/1.1\r\nHost: shop\r\n{coding}\r\n\r\n{body}");
        let wire = closing_exchange(&gateway, request.as_bytes()).await;
        assert_refused(&wire, 501, &request);
    }
    assert_eq!(world.legacy.served(), 0, "nothing reached legacy");

    // Both framings at once: chunked wins (RFC 9112 §6.3), the length never goes on, and
    // the connection closes after the answer (`closing_exchange` waits for that).
    let both = format!(
        "POST /import HTTP/1.1\r\nHost: shop\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n{body}"
    );
    let wire = closing_exchange(&gateway, both.as_bytes()).await;
    assert!(wire.starts_with("HTTP/1.1 200 "), "{wire}");
    assert!(wire.contains(r#""body":"hello""#), "{wire}");
    assert!(!wire.contains(r#""content-length":"3""#), "{wire}");

    // A single chunked still streams through.
    let single = format!(
        "POST /import HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{body}"
    );
    let wire = closing_exchange(&gateway, single.as_bytes()).await;
    assert!(wire.starts_with("HTTP/1.1 200 "), "{wire}");
    assert!(wire.contains(r#""body":"hello""#), "{wire}");
}

#[tokio::test]
async fn header_names_with_an_underscore_never_reach_an_upstream() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    let smuggled = [
        ("Transfer_Encoding", "chunked"),
        ("Content_Length", "5"),
        ("X_Forwarded_For", "10.0.0.1"),
    ];
    // A simple GET (the gateway's own reader) and a POST with a body (hyper's).
    for method in [Method::GET, Method::POST] {
        let mut request = gateway
            .request(method.clone(), "/echo")
            .header("x-kept", "yes");
        for (name, value) in smuggled {
            request = request.header(name, value);
        }
        if method == Method::POST {
            request = request.body("hi");
        }
        let echoed: Value = request.send().await.unwrap().json().await.unwrap();
        let headers = echoed["headers"].as_object().unwrap();
        assert_eq!(headers["x-kept"], "yes", "{method}");
        for name in headers.keys() {
            assert!(!name.contains('_'), "{method}: {name} reached legacy");
        }
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "{method}");
    }
}

#[tokio::test]
async fn a_client_never_hears_two_content_lengths() {
    let world = World::on(super::HTTP).await;
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello".to_vec();
    let gateway = behind_raw_upstream(&world, answer).await;
    for request in [
        "GET /report HTTP/1.1\r\nHost: shop\r\n\r\n",
        "POST /report HTTP/1.1\r\nHost: shop\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    ] {
        let authority = gateway.url.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let wire = crate::support::read_response(&mut stream).await;
        let lengths = wire
            .to_ascii_lowercase()
            .matches("\r\ncontent-length:")
            .count();
        assert_eq!(lengths, 1, "{request:?} → {wire}");
        assert!(wire.ends_with("\r\n\r\nhello"), "{wire}");
    }
}

#[tokio::test]
async fn a_response_head_over_the_limit_is_a_502_even_when_it_arrives_in_one_read() {
    let world = World::on(super::HTTP).await;
    let mut answer = b"HTTP/1.1 200 OK\r\n".to_vec();
    for i in 0..70 {
        answer.extend_from_slice(format!("x-filler-{i}: {}\r\n", "a".repeat(1000)).as_bytes());
    }
    answer.extend_from_slice(b"Content-Length: 5\r\n\r\nhello");
    let gateway = behind_raw_upstream(&world, answer).await;
    let response = gateway
        .request(Method::GET, "/big-head")
        .send()
        .await
        .unwrap();
    let body = crate::support::problem(response, 502).await;
    assert_eq!(body["type"], "/problems/bad-gateway");
}

#[tokio::test]
async fn chunk_sizes_with_leading_zeros_past_sixteen_digits_are_read_by_their_value() {
    let world = World::on(super::HTTP).await;
    // From a client: the body reaches the upstream whole.
    let gateway = world.gateway().await;
    let request = "POST /import HTTP/1.1\r\nHost: shop\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
                   0000000000000000000000005\r\nhello\r\n00000000000000000000\r\n\r\n";
    let wire = closing_exchange(&gateway, request.as_bytes()).await;
    assert!(wire.starts_with("HTTP/1.1 200 "), "{wire}");
    assert!(wire.contains(r#""body":"hello""#), "{wire}");

    // From an upstream: the client gets the body whole.
    let answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
                   0000000000000000000000005\r\nhello\r\n00000000000000000000\r\n\r\n"
        .to_vec();
    let gateway = behind_raw_upstream(&world, answer).await;
    let response = gateway
        .request(Method::GET, "/report")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "hello");
}
