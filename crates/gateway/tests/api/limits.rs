//! Edge protection over HTTP: a client over its rate gets 429 with `Retry-After` (on the
//! gateway's manual clock), and past the in-flight cap requests are shed with 503 at once.

use std::time::Duration;

use reqwest::{Method, header};

use crate::support::{FIVE_MB, TestGateway, World, eventually, problem};

#[tokio::test]
async fn a_client_over_its_rate_is_a_429_with_retry_after() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    settings.rate_limit_per_second = 1;
    settings.rate_limit_burst = 3;
    let gateway = world.gateway_with(settings).await;
    let send = |key: Option<&'static str>| {
        let request = gateway.request(Method::GET, "/");
        match key {
            Some(key) => request.header("x-api-key", key),
            None => request,
        }
        .send()
    };
    for _ in 0..3 {
        assert_eq!(send(None).await.unwrap().status(), 200);
    }
    let limited = send(None).await.unwrap();
    assert_eq!(limited.headers()[header::RETRY_AFTER], "1");
    let body = problem(limited, 429).await;
    assert_eq!(body["type"], "/problems/rate-limited");
    // A limited upload is read to its end, so its client hears the 429 (not a reset).
    let upload = gateway.upload_unheeding("/import", FIVE_MB).await;
    assert!(upload.starts_with("HTTP/1.1 429"), "{upload}");

    // An API key nobody verified is no identity: it buys no allowance of its own.
    problem(send(Some("partner-1")).await.unwrap(), 429).await;
    // Another client (another address) has its own; the limited one waits its turn.
    let other = gateway
        .request_from(2, Method::GET, "/")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 200);
    gateway.clock.advance(Duration::from_secs(1));
    assert_eq!(send(None).await.unwrap().status(), 200);
    assert_eq!(send(None).await.unwrap().status(), 429);

    // Admin and health routes are not rate limited.
    assert_eq!(gateway.get_json("/healthz").await["status"], "ok");
    assert!(
        gateway
            .metrics()
            .await
            .contains("gateway_rate_limited_total")
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_allowance() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    settings.rate_limit_per_second = 1;
    settings.rate_limit_burst = 1;
    // The tests connect from 127.0.0.1: here that is the load balancer.
    settings.trusted_proxies = "127.0.0.0/8".parse().unwrap();
    let behind = world.gateway_with(settings.clone()).await;
    let send = |gateway: &TestGateway, forwarded_for: &'static str| {
        gateway
            .request(Method::GET, "/")
            .header("x-forwarded-for", forwarded_for)
            .send()
    };
    assert_eq!(send(&behind, "203.0.113.7").await.unwrap().status(), 200);
    assert_eq!(send(&behind, "198.51.100.9").await.unwrap().status(), 200);
    // A client that writes its own entries is still known by the one the balancer added.
    let forged = send(&behind, "192.0.2.1, 203.0.113.7").await.unwrap();
    problem(forged, 429).await;

    // Where the peer is not trusted, a forwarded address changes nothing: one client.
    settings.trusted_proxies = "10.0.0.0/8".parse().unwrap();
    let exposed = world.gateway_with(settings).await;
    assert_eq!(send(&exposed, "203.0.113.7").await.unwrap().status(), 200);
    problem(send(&exposed, "198.51.100.9").await.unwrap(), 429).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_in_flight_cap_requests_are_shed_at_once() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    settings.max_in_flight = 2;
    let gateway = world.gateway_with(settings).await;
    let held: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(
                gateway
                    .request(Method::GET, "/slow-report")
                    .header("x-fake", "hold")
                    .send(),
            )
        })
        .collect();
    eventually("two requests wait upstream", || async {
        world.legacy.held() == 2
    })
    .await;

    let shed = gateway.request(Method::GET, "/").send().await.unwrap();
    assert_eq!(shed.headers()[header::RETRY_AFTER], "1");
    let body = problem(shed, 503).await;
    assert_eq!(body["type"], "/problems/overloaded");
    let upload = gateway.upload_unheeding("/import", FIVE_MB).await;
    assert!(upload.starts_with("HTTP/1.1 503"), "{upload}");
    assert_eq!(
        world.legacy.served(),
        2,
        "the shed request never reached an upstream"
    );

    world.legacy.release();
    for request in held {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
    assert_eq!(
        gateway
            .request(Method::GET, "/")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(gateway.metrics().await.contains("gateway_shed_total"));
}
