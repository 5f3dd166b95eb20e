//! Where requests go: ids of the new services always reach them, the rollout decides only
//! new carts and orders, by a sticky key, and Stripe webhooks follow the order they name.

use reqwest::{Method, header};
use serde_json::{Value, json};

use crate::support::{World, new_cart_id};

#[tokio::test]
async fn a_new_cart_id_reaches_the_cart_service_even_at_zero_percent_or_disabled() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    let path = format!("/v1/carts/{}/items", new_cart_id());
    for enabled in [true, false] {
        gateway.set_flag("cart", enabled, 0).await;
        let side = gateway.side(gateway.request(Method::POST, &path)).await;
        assert_eq!(side, "cart", "enabled = {enabled}");
    }
    let order = format!("/v1/orders/{}", common::id::new_id("ord"));
    assert_eq!(
        gateway.side(gateway.request(Method::GET, &order)).await,
        "orders"
    );
}

#[tokio::test]
async fn a_legacy_cart_id_never_reaches_the_new_service_whatever_the_rollout() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    for rollout in [0, 100] {
        gateway.set_flag("cart", true, rollout).await;
        for i in 0..50 {
            let path = format!("/v1/carts/{}", 100_000 + i * 7919);
            let side = gateway
                .side(
                    gateway
                        .request(Method::GET, &path)
                        .header("x-customer-id", format!("customer-{i}")),
                )
                .await;
            assert_eq!(side, "legacy", "{path} at {rollout} %");
        }
    }
}

#[tokio::test]
async fn at_full_rollout_new_carts_and_orders_are_created_by_the_new_services() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    gateway.set_flag("cart", true, 100).await;
    gateway.set_flag("orders", true, 100).await;
    let cart = gateway.request(Method::POST, "/v1/carts");
    assert_eq!(gateway.side(cart).await, "cart");
    let order = gateway.request(Method::POST, "/v1/orders");
    assert_eq!(gateway.side(order).await, "orders");
    // Everything outside the groups stays with legacy.
    for path in ["/", "/v1/products", "/v1/cartsx", "/v1/webhooks/paypal"] {
        let side = gateway.side(gateway.request(Method::GET, path)).await;
        assert_eq!(side, "legacy", "{path}");
    }
}

#[tokio::test]
async fn a_disabled_group_creates_everything_in_legacy() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    gateway.set_flag("cart", false, 100).await;
    for i in 0..20 {
        let request = gateway
            .request(Method::POST, "/v1/carts")
            .header("x-customer-id", format!("customer-{i}"));
        assert_eq!(gateway.side(request).await, "legacy");
    }
}

#[tokio::test]
async fn an_anonymous_visitor_gets_a_cookie_that_keys_its_side() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    gateway.set_flag("cart", true, 50).await;
    for _ in 0..20 {
        let first = gateway
            .request(Method::POST, "/v1/carts")
            .send()
            .await
            .unwrap();
        let cookie = first.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        let pair = cookie.split(';').next().unwrap().to_owned();
        let visitor = pair.strip_prefix("visitor_id=").expect("a visitor cookie");
        let expected = if gateway::bucket::is_new_side(visitor, 50) {
            "cart"
        } else {
            "legacy"
        };
        let body: Value = first.json().await.unwrap();
        assert_eq!(body["side"], expected, "{visitor}");
        for _ in 0..5 {
            let again = gateway
                .request(Method::POST, "/v1/carts")
                .header(header::COOKIE, format!("theme=dark; {pair}"))
                .send()
                .await
                .unwrap();
            assert!(!again.headers().contains_key(header::SET_COOKIE));
            let body: Value = again.json().await.unwrap();
            assert_eq!(body["side"], expected, "{visitor} flapped");
        }
    }
}

#[tokio::test]
async fn a_customer_stays_on_one_side_and_ramping_up_only_moves_customers_to_new() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    let side_of = |customer: String| {
        let request = gateway
            .request(Method::POST, "/v1/orders")
            .header("x-customer-id", customer);
        gateway.side(request)
    };
    gateway.set_flag("orders", true, 25).await;
    let mut at_25 = Vec::new();
    for i in 0..200 {
        at_25.push(side_of(format!("customer-{i}")).await);
        assert_eq!(side_of(format!("customer-{i}")).await, at_25[i]);
    }
    gateway.set_flag("orders", true, 50).await;
    for (i, before) in at_25.iter().enumerate() {
        let after = side_of(format!("customer-{i}")).await;
        assert!(
            !(before == "orders" && after == "legacy"),
            "customer-{i} moved back to legacy"
        );
    }
}

fn stripe_event(order_id: &str) -> String {
    json!({
        "id": "evt_test_1",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_1", "metadata": {"order_id": order_id}}}
    })
    .to_string()
}

#[tokio::test]
async fn a_webhook_for_a_new_order_reaches_payments_whatever_the_flag_and_arrives_intact() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    gateway.set_flag("payments", false, 0).await;
    let event = stripe_event(&common::id::new_id("ord"));
    let response = gateway
        .request(Method::POST, "/v1/webhooks/stripe")
        .header("stripe-signature", "t=1,v1=abc")
        .header(header::CONTENT_TYPE, "application/json")
        .body(event.clone())
        .send()
        .await
        .unwrap();
    let echoed: Value = response.json().await.unwrap();
    assert_eq!(echoed["side"], "payments");
    assert_eq!(
        echoed["body"],
        event.as_str(),
        "the body must arrive byte for byte"
    );
    assert_eq!(echoed["headers"]["stripe-signature"], "t=1,v1=abc");
}

#[tokio::test]
async fn a_webhook_for_a_legacy_order_follows_the_flag() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    let send = || {
        gateway.side(
            gateway
                .request(Method::POST, "/v1/webhooks/stripe")
                .body(stripe_event("98765")),
        )
    };
    assert_eq!(send().await, "legacy");
    gateway.set_flag("payments", true, 100).await;
    assert_eq!(send().await, "payments");
}

#[tokio::test]
async fn a_webhook_body_over_its_cap_is_a_413() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    settings.webhook_max_body_bytes = 1024;
    let gateway = world.gateway_with(settings).await;
    let response = gateway
        .request(Method::POST, "/v1/webhooks/stripe")
        .body(vec![b' '; 4096])
        .send()
        .await
        .unwrap();
    crate::support::problem(response, 413).await;
}

#[tokio::test]
async fn without_a_legacy_upstream_legacy_routes_are_a_502() {
    let world = World::on(super::HTTP).await;
    let mut settings = world.settings();
    settings.legacy_url = None;
    let gateway = world.gateway_with(settings).await;
    let response = gateway.request(Method::GET, "/").send().await.unwrap();
    let body = crate::support::problem(response, 502).await;
    assert_eq!(body["type"], "/problems/no-upstream");
}

#[tokio::test]
async fn the_gateway_answers_its_own_routes_and_proxies_paths_that_only_look_like_them() {
    let world = World::on(super::HTTP).await;
    let gateway = world.gateway().await;
    assert_eq!(gateway.get_json("/healthz").await["status"], "ok");
    for path in ["/healthz/", "/metricsx", "/administration"] {
        let side = gateway.side(gateway.request(Method::GET, path)).await;
        assert_eq!(side, "legacy", "{path}");
    }
}
