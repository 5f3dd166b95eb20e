//! Auto-rollback over HTTP: the new side's 5xx past the minimum sample set the rollout to 0
//! with an audited reason; client errors, a low error rate, a small sample, outcomes that
//! aged out of the window and outcomes before a manual change do not. Requests come from
//! seven clients (source addresses) in turn, as a rollback needs failures from several
//! (seven, a prime, so every n-th failure comes from another client). The window runs on
//! the gateway's manual clock, so nothing here sleeps.

use std::time::Duration;

use reqwest::Method;

use crate::support::{TestGateway, World, client_at, eventually, new_cart_id};

/// Sends `n` new-cart requests, each from its own customer, in turn from seven clients.
pub async fn create_carts(gateway: &TestGateway, n: usize) {
    let clients: Vec<_> = (10..17).map(client_at).collect();
    let url = format!("{}/v1/carts", gateway.url);
    for i in 0..n {
        let response = clients[i % clients.len()]
            .post(&url)
            .header("x-customer-id", format!("customer-{i}"))
            .send()
            .await
            .unwrap();
        response.bytes().await.unwrap();
    }
}

async fn rollout(gateway: &TestGateway) -> u64 {
    gateway.flag("cart").await["rollout_percent"]
        .as_u64()
        .unwrap()
}

/// A gateway with the cart group at 100 %. Its failures from two clients are enough: these
/// tests are about the rate and the window (two failures in a hundred are two clients).
async fn ramped(world: &World) -> TestGateway {
    let mut settings = world.settings();
    settings.rollback_min_clients = 2;
    let gateway = world.gateway_with(settings).await;
    gateway.set_flag("cart", true, 100).await;
    gateway
}

#[tokio::test]
async fn two_percent_server_errors_roll_the_group_back_with_an_audited_reason() {
    let world = World::new().await;
    let gateway = ramped(&world).await;
    world.cart.fail_every(50, 500);

    create_carts(&gateway, 200).await;

    assert_eq!(rollout(&gateway).await, 0);
    let audit = eventually("the rollback is audited", || async {
        gateway.audit("cart").await[0]["action"] == "auto-rollback"
    })
    .await;
    println!("auto-rollback audited {audit:?} after the last request");
    let entry = &gateway.audit("cart").await[0];
    assert_eq!(entry["actor"], "auto-rollback");
    assert_eq!(entry["old"]["rollout_percent"], 100);
    assert_eq!(entry["new"]["rollout_percent"], 0);
    let reason = entry["reason"].as_str().unwrap();
    assert!(reason.contains("error rate 2.00%"), "{reason}");
    let stored: (i16,) =
        sqlx::query_as("SELECT rollout_percent FROM flags.flags WHERE name = 'cart'")
            .fetch_one(&gateway.pool)
            .await
            .unwrap();
    assert_eq!(stored.0, 0);

    // New carts go to legacy now; carts the new service made still reach it.
    let side = gateway
        .side(
            gateway
                .request(Method::POST, "/v1/carts")
                .header("x-customer-id", "c"),
        )
        .await;
    assert_eq!(side, "legacy");
    let existing = format!("/v1/carts/{}", new_cart_id());
    world.cart.fail_every(0, 500);
    assert_eq!(
        gateway.side(gateway.request(Method::GET, &existing)).await,
        "cart"
    );

    let metrics = gateway.metrics().await;
    assert!(
        metrics.contains("gateway_rollbacks_total{group=\"cart\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn half_a_percent_of_server_errors_does_not_roll_back() {
    let world = World::new().await;
    let gateway = ramped(&world).await;
    world.cart.fail_every(200, 503);
    create_carts(&gateway, 400).await;
    assert_eq!(world.cart.served(), 400);
    assert_eq!(rollout(&gateway).await, 100);
    assert_eq!(gateway.audit("cart").await[0]["action"], "update");
}

#[tokio::test]
async fn half_of_the_answers_being_client_errors_does_not_roll_back() {
    let world = World::new().await;
    let gateway = ramped(&world).await;
    world.cart.fail_every(2, 422);
    create_carts(&gateway, 200).await;
    assert_eq!(world.cart.served(), 200);
    assert_eq!(rollout(&gateway).await, 100);
}

#[tokio::test]
async fn fewer_outcomes_than_the_minimum_sample_do_not_roll_back() {
    let world = World::new().await;
    let gateway = ramped(&world).await;
    world.cart.fail_every(2, 500);
    create_carts(&gateway, 99).await;
    assert_eq!(rollout(&gateway).await, 100);
}

#[tokio::test]
async fn errors_that_aged_out_of_the_window_do_not_count() {
    let world = World::new().await;
    let gateway = ramped(&world).await;
    world.cart.fail_every(1, 500);
    create_carts(&gateway, 60).await;
    gateway.clock.advance(Duration::from_secs(31));
    world.cart.fail_every(0, 500);
    create_carts(&gateway, 100).await;
    assert_eq!(rollout(&gateway).await, 100);
}

#[tokio::test]
async fn a_manual_flag_change_starts_a_fresh_window() {
    let world = World::new().await;
    let gateway = ramped(&world).await;
    world.cart.fail_every(1, 500);
    create_carts(&gateway, 60).await;
    gateway.set_flag("cart", true, 100).await;
    world.cart.fail_every(0, 500);
    create_carts(&gateway, 100).await;
    // Without the reset the window would hold 60 errors in 160.
    assert_eq!(rollout(&gateway).await, 100);
}

#[tokio::test]
async fn an_unreachable_new_service_rolls_the_group_back() {
    let world = World::new().await;
    let mut settings = world.settings();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    settings.cart_url = gateway::proxy::Upstream::parse("CART_URL", &url).unwrap();
    let gateway = world.gateway_with(settings).await;
    gateway.set_flag("cart", true, 100).await;
    create_carts(&gateway, 100).await;
    assert_eq!(rollout(&gateway).await, 0);
}
