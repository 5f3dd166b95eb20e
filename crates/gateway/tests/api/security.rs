//! Attacks on the edge from the public side, one test each: what an anonymous client could
//! do to the migration (roll a group back), to capacity (hold slots, connections, event
//! streams), to the rate limit (pick its own bucket) and to the admin API (reach it, guess
//! its token, name another actor, grow `/metrics`). Clients are loopback source addresses
//! (`127.0.0.x`), or addresses a trusted proxy forwards.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::{
    ADMIN_TOKEN, ALICE_TOKEN, TestGateway, World, client_at, eventually, new_cart_id, problem,
};

async fn rollout(gateway: &TestGateway, name: &str) -> u64 {
    gateway.flag(name).await["rollout_percent"]
        .as_u64()
        .unwrap()
}

/// Whether `name`'s audit log holds an automatic rollback.
async fn auto_rolled_back(gateway: &TestGateway, name: &str) -> bool {
    gateway
        .audit(name)
        .await
        .iter()
        .any(|entry| entry["action"] == "auto-rollback")
}

#[tokio::test]
async fn thousands_of_bad_requests_from_one_client_never_roll_a_group_back() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    gateway.set_flag("cart", true, 100).await;
    let url = format!("{}/v1/carts", gateway.url);

    // Requests the new service answers 500 (a body it chokes on), then 404 and 422.
    for (every, status, n) in [(1, 500, 1000), (1, 404, 500), (2, 422, 500)] {
        world.cart.fail_every(every, status);
        for i in 0..n {
            gateway
                .http
                .post(&url)
                .header("x-customer-id", format!("customer-{i}"))
                .body("{\"email\":\"a\\u0000b\"}")
                .send()
                .await
                .unwrap();
        }
        assert_eq!(
            world.cart.served(),
            n,
            "every request reached the new service"
        );
    }
    // Malformed requests: they never reach it at all.
    for _ in 0..200 {
        let authority = gateway.url.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
        stream
            .write_all(b"POST /v1/carts HTTP/1.1\r\nHost: shop\r\nBad Header\r\n\r\n")
            .await
            .unwrap();
        let mut wire = Vec::new();
        let _ = stream.read_to_end(&mut wire).await;
        assert!(wire.starts_with(b"HTTP/1.1 400"));
    }

    assert_eq!(rollout(&gateway, "cart").await, 100);
    assert!(!auto_rolled_back(&gateway, "cart").await);
}

#[tokio::test]
async fn an_outage_of_the_new_service_seen_by_many_clients_still_rolls_back() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    // Shoppers behind a load balancer: the test's own address is the balancer.
    settings.trusted_proxies = "127.0.0.0/8".parse().unwrap();
    let gateway = world.gateway_with(settings).await;
    gateway.set_flag("cart", true, 100).await;
    world.cart.fail_every(1, 503);
    for i in 0..100 {
        gateway
            .request(Method::POST, "/v1/carts")
            .header("x-customer-id", format!("customer-{i}"))
            .header("x-forwarded-for", format!("203.0.113.{}", i % 20))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(rollout(&gateway, "cart").await, 0);
    eventually("the rollback is audited", || async {
        auto_rolled_back(&gateway, "cart").await
    })
    .await;
    let entry = &gateway.audit("cart").await[0];
    assert_eq!(entry["action"], "auto-rollback");
    let reason = entry["reason"].as_str().unwrap();
    assert!(reason.contains("from 20 clients"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_bodies_are_the_clients_fault_not_the_new_services() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    settings.upstream_timeout = Duration::from_millis(300);
    settings.rollback_min_sample = 20;
    let gateway = world.gateway_with(settings).await;
    gateway.set_flag("cart", true, 100).await;
    let cart = new_cart_id();

    // Seven clients each start 5 uploads and send one byte of them.
    let uploads: Vec<_> = (0..35u8)
        .map(|i| {
            let authority = gateway.url.trim_start_matches("http://").to_owned();
            let path = format!("/v1/carts/{cart}/items");
            tokio::spawn(async move {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket
                    .bind(std::net::SocketAddr::from(([127, 0, 0, 10 + i % 7], 0)))
                    .unwrap();
                let mut stream = socket.connect(authority.parse().unwrap()).await.unwrap();
                let head =
                    format!("POST {path} HTTP/1.1\r\nHost: shop\r\nContent-Length: 100\r\n\r\n{{");
                stream.write_all(head.as_bytes()).await.unwrap();
                let mut wire = Vec::new();
                let _ = stream.read_to_end(&mut wire).await;
                String::from_utf8_lossy(&wire).into_owned()
            })
        })
        .collect();
    for upload in uploads {
        let wire = upload.await.unwrap();
        assert!(wire.starts_with("HTTP/1.1 408 "), "{wire}");
        assert!(wire.contains("/problems/body-timeout"), "{wire}");
    }
    assert_eq!(rollout(&gateway, "cart").await, 100);
    assert!(!auto_rolled_back(&gateway, "cart").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_that_wait_long_are_not_counted_as_failures() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    settings.upstream_timeout = Duration::from_millis(200);
    settings.rollback_min_sample = 20;
    let gateway = world.gateway_with(settings).await;
    gateway.set_flag("orders", true, 100).await;
    let waits: Vec<_> = (0..30u8)
        .map(|i| {
            let request = gateway
                .request_from(
                    10 + i % 7,
                    Method::GET,
                    &format!("/v1/orders/ord_{i}/events"),
                )
                .header("x-fake", "slow");
            tokio::spawn(request.send())
        })
        .collect();
    for wait in waits {
        assert_eq!(wait.await.unwrap().unwrap().status(), 504);
    }
    assert_eq!(rollout(&gateway, "orders").await, 100);
    assert!(!auto_rolled_back(&gateway, "orders").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_body_that_stalls_is_cut_off_and_frees_its_slot() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    settings.max_in_flight = 2;
    settings.body_timeout = Duration::from_millis(300);
    let gateway = world.gateway_with(settings).await;
    let authority = gateway.url.trim_start_matches("http://").to_owned();

    // As many stalled webhooks as there are slots: headers and one byte of body each.
    let stalled: Vec<_> = (0..2)
        .map(|_| {
            let authority = authority.clone();
            tokio::spawn(async move {
                let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
                stream
                    .write_all(
                        b"POST /v1/webhooks/stripe HTTP/1.1\r\nHost: shop\r\n\
                          Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{",
                    )
                    .await
                    .unwrap();
                let mut wire = Vec::new();
                let _ = stream.read_to_end(&mut wire).await;
                String::from_utf8_lossy(&wire).into_owned()
            })
        })
        .collect();
    for webhook in stalled {
        let wire = tokio::time::timeout(Duration::from_secs(20), webhook)
            .await
            .expect("a stalled webhook is answered")
            .unwrap();
        assert!(wire.starts_with("HTTP/1.1 408 "), "{wire}");
    }
    // The slots are free again: the next request is served, not shed.
    let side = gateway.side(gateway.request(Method::GET, "/")).await;
    assert_eq!(side, "legacy");
    assert_eq!(world.payments.served() + world.legacy.served(), 1);

    // The admin listener's bodies have the same deadline.
    let admin = gateway.admin_url.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(admin).await.unwrap();
    let head = format!(
        "PUT /admin/flags/cart HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut piece = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut piece))
        .await
        .expect("a stalled admin body is answered")
        .unwrap();
    let wire = String::from_utf8_lossy(&piece[..n]);
    assert!(wire.starts_with("HTTP/1.1 4"), "{wire}");
    assert!(wire.contains("application/problem+json"), "{wire}");
    assert_eq!(rollout(&gateway, "cart").await, 0);
}

#[tokio::test]
async fn a_client_past_its_connection_cap_is_answered_429() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    settings.max_connections_per_client = 3;
    let gateway = world.gateway_with(settings).await;
    let authority = gateway.url.trim_start_matches("http://").to_owned();
    let connect_from = |n: u8| {
        let authority = authority.clone();
        async move {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket
                .bind(std::net::SocketAddr::from(([127, 0, 0, n], 0)))
                .unwrap();
            socket.connect(authority.parse().unwrap()).await.unwrap()
        }
    };
    let get = format!(
        "GET /v1/carts/{} HTTP/1.1\r\nHost: shop\r\n\r\n",
        new_cart_id()
    );
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = connect_from(20).await;
        stream.write_all(get.as_bytes()).await.unwrap();
        let answer = crate::support::read_response(&mut stream).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        held.push(stream);
    }

    let mut fourth = connect_from(20).await;
    let _ = fourth.write_all(get.as_bytes()).await;
    let mut wire = Vec::new();
    let _ = fourth.read_to_end(&mut wire).await;
    let wire = String::from_utf8_lossy(&wire);
    assert!(wire.starts_with("HTTP/1.1 429 "), "{wire}");
    assert!(wire.contains("application/problem+json"), "{wire}");
    assert!(wire.contains("/problems/too-many-connections"), "{wire}");

    // Another client is served; once one connection closes, so is this one again.
    let mut other = connect_from(21).await;
    other.write_all(get.as_bytes()).await.unwrap();
    assert!(
        crate::support::read_response(&mut other)
            .await
            .starts_with("HTTP/1.1 200")
    );
    drop(held.pop());
    eventually("a closed connection gives its place back", || async {
        let mut stream = connect_from(20).await;
        if stream.write_all(get.as_bytes()).await.is_err() {
            return false;
        }
        let mut piece = [0u8; 16];
        matches!(stream.read(&mut piece).await, Ok(n) if piece[..n].starts_with(b"HTTP/1.1 200"))
    })
    .await;
}

/// Opens an event stream from the client at `127.0.0.<n>`; answers the response.
async fn open_stream(gateway: &TestGateway, n: u8, order: &str) -> reqwest::Response {
    gateway
        .request_from(n, Method::GET, &format!("/v1/orders/{order}/events"))
        .header("accept", "text/event-stream")
        .header("x-fake", "stream")
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_client_past_its_event_stream_cap_is_answered_429_and_streams_are_counted() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    settings.max_streams_per_client = 2;
    let gateway = world.gateway_with(settings).await;
    let order = "ord_streamed";
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = open_stream(&gateway, 30, order).await;
        assert_eq!(stream.status(), 200);
        assert_eq!(stream.chunk().await.unwrap().unwrap(), "data: hello\n\n");
        open.push(stream);
    }
    let refused = open_stream(&gateway, 30, order).await;
    let body = problem(refused, 429).await;
    assert_eq!(body["type"], "/problems/too-many-streams");
    // Another client has its own share.
    let other = open_stream(&gateway, 31, order).await;
    assert_eq!(other.status(), 200);
    let metrics = gateway.metrics().await;
    assert!(metrics.contains("gateway_event_streams 3"), "{metrics}");

    drop(open.pop());
    eventually("a closed stream gives its place back", || async {
        let again = open_stream(&gateway, 30, order).await;
        again.status() == 200
    })
    .await;
}

#[tokio::test]
async fn an_event_stream_ends_after_its_longest_life() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    settings.stream_max = Duration::from_millis(300);
    let gateway = world.gateway_with(settings).await;
    let mut stream = open_stream(&gateway, 32, "ord_long").await;
    assert_eq!(stream.status(), 200);
    assert_eq!(stream.chunk().await.unwrap().unwrap(), "data: hello\n\n");
    let end = tokio::time::timeout(Duration::from_secs(20), stream.chunk())
        .await
        .expect("the stream ends");
    assert!(matches!(end, Ok(None)), "a clean end: {end:?}");
    assert!(
        gateway
            .metrics()
            .await
            .contains("gateway_streams_expired_total")
    );
}

#[tokio::test]
async fn a_made_up_api_key_buys_no_fresh_allowance() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    settings.rate_limit_per_second = 1;
    settings.rate_limit_burst = 10;
    let gateway = world.gateway_with(settings).await;
    let mut limited = 0;
    for i in 0..600 {
        let response = gateway
            .request(Method::GET, "/")
            .header("x-api-key", format!("key-{i}"))
            .send()
            .await
            .unwrap();
        limited += u32::from(response.status() == 429);
    }
    assert_eq!(limited, 590);
}

#[tokio::test]
async fn the_admin_api_and_metrics_are_not_on_the_public_port() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    for (method, path) in [
        (Method::GET, "/admin/flags"),
        (Method::PUT, "/admin/flags/cart"),
        (Method::POST, "/admin/flags/cart/rollback"),
        (Method::GET, "/admin/unknown"),
        (Method::GET, "/metrics"),
        (Method::GET, "/openapi.json"),
    ] {
        let response = gateway
            .request(method.clone(), path)
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"rollout_percent": 100}))
            .send()
            .await
            .unwrap();
        problem(response, 404).await;
    }
    // A large body sent there is read to its end: its client hears the 404, not a reset.
    let upload = gateway
        .upload_unheeding("/admin/flags/cart/rollback", crate::support::FIVE_MB)
        .await;
    assert!(upload.starts_with("HTTP/1.1 404"), "{upload}");
    assert_eq!(world.legacy.served(), 0);
    assert_eq!(gateway.audit("cart").await.len(), 0);
    assert_eq!(rollout(&gateway, "cart").await, 0);
}

#[tokio::test]
async fn repeated_wrong_admin_tokens_lock_the_client_out() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    let admin_from = |n: u8, token: &str| {
        client_at(n)
            .get(format!("{}/admin/flags", gateway.admin_url))
            .bearer_auth(token)
            .send()
    };
    for i in 0..5 {
        problem(admin_from(40, &format!("guess-{i}")).await.unwrap(), 403).await;
    }
    // Now even the right token is refused from there, for a while.
    let locked = admin_from(40, ADMIN_TOKEN).await.unwrap();
    assert!(locked.headers().contains_key("retry-after"));
    let body = problem(locked, 429).await;
    assert_eq!(body["type"], "/problems/locked-out");
    // Other clients are not locked out.
    assert_eq!(admin_from(41, ADMIN_TOKEN).await.unwrap().status(), 200);
    gateway.clock.advance(Duration::from_secs(301));
    assert_eq!(admin_from(40, ADMIN_TOKEN).await.unwrap().status(), 200);
    assert!(
        gateway
            .metrics()
            .await
            .contains("gateway_admin_lockouts_total")
    );
}

#[tokio::test]
async fn the_audit_names_the_tokens_actor_whatever_a_header_claims() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    let response = gateway
        .admin_request(Method::POST, "/admin/flags/orders/rollback")
        .bearer_auth(ALICE_TOKEN)
        .header("x-actor", "bob")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let response = gateway
        .admin(Method::PUT, "/admin/flags/orders")
        .header("x-actor", "alice")
        .json(&json!({"rollout_percent": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let audit = gateway.audit("orders").await;
    assert_eq!(audit[0]["actor"], "admin");
    assert_eq!(audit[1]["actor"], "alice");
}

#[tokio::test]
async fn random_methods_do_not_grow_the_metrics() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    for i in 0..300 {
        let method = Method::from_bytes(format!("M{i}X").as_bytes()).unwrap();
        let response = gateway
            .admin_request(method, "/healthz")
            .send()
            .await
            .unwrap();
        assert!(response.status().is_client_error());
    }
    let metrics = gateway.metrics().await;
    assert!(!metrics.contains("method=\"M1X\""), "a series per method");
    assert!(metrics.contains("method=\"OTHER\""), "{metrics}");
}

#[tokio::test]
async fn a_public_or_short_admin_token_stops_start_up_outside_development() {
    for (name, value) in [
        ("ADMIN_TOKEN", "dev-admin-token"),
        ("ADMIN_TOKEN", "short"),
        ("ADMIN_TOKENS", "alice:dev-admin-token"),
        ("ADMIN_TOKENS", "alice:short"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .env_clear()
            .env(name, value)
            .env("RUST_LOG", "error")
            .output()
            .expect("the gateway binary runs");
        assert!(!output.status.success(), "{name}={value} was accepted");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(said.contains(name), "{name}={value}: {said}");
    }
}
