//! Attacks on orders and what now stops them: a binary deployed without its secrets refuses
//! to start; one service's token does not open the other direction; text with control
//! characters is a 422, not a 500; a shopper's idempotency keys are theirs alone; the client
//! secret disappears once the order stops awaiting payment; event streams are capped and end.

use std::{process::Command, time::Duration};

use serde_json::{Value, json};

use crate::support::{PAYMENTS_TOKEN, settings, spawn, spawn_with};

/// Tokens good enough for production, one per variable.
const PRODUCTION: &[(&str, &str)] = &[
    ("PAYMENTS_INTERNAL_TOKEN", "payments-token-0123456789abcdef"),
    ("ORDERS_INTERNAL_TOKEN", "orders-token-0123456789abcdef"),
    ("ADMIN_TOKEN", "admin-token-0123456789abcdef"),
];

/// Asserts the `orders` binary, started with `PRODUCTION` changed by `change`, refuses to start
/// naming `variable`.
fn refuses_to_start(change: &[(&str, Option<&str>)], variable: &str) {
    testkit::refuses_to_start(env!("CARGO_BIN_EXE_orders"), PRODUCTION, change, variable);
}

#[test]
fn deployed_without_a_token_orders_refuses_to_start_naming_it() {
    for (name, _) in PRODUCTION {
        for value in [
            None,
            Some(""),
            Some("short"),
            Some("dev-internal-token"),
            Some("dev-orders-token"),
            Some("dev-payments-token"),
            Some("dev-admin-token"),
        ] {
            refuses_to_start(&[(name, value)], name);
        }
    }
}

#[test]
fn a_leftover_shared_internal_token_is_refused_by_name() {
    refuses_to_start(
        &[("INTERNAL_TOKEN", Some("an-old-shared-token-0123456789"))],
        "INTERNAL_TOKEN",
    );
}

#[test]
fn a_development_run_says_so_once_in_its_log() {
    let output = Command::new(env!("CARGO_BIN_EXE_orders"))
        .env_clear()
        .env("APP_ENV", "development")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        // Start-up stops at the database, after the settings and the warning.
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("RUST_LOG", "warn")
        .env("LOG_FORMAT", "json")
        .output()
        .expect("the orders binary runs");
    let log = String::from_utf8_lossy(&output.stdout);
    let warnings = log
        .lines()
        .filter(|l| l.contains("APP_ENV=development") && l.contains("WARN"))
        .count();
    assert_eq!(warnings, 1, "{log}");
}

#[tokio::test]
async fn the_token_orders_sends_to_payments_does_not_open_orders_internal_api() {
    let app = spawn().await;
    let sku = app.product(100_000, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let order = app.order(&cart, None).await;
    let waiting = app.wait_for(&order, "awaiting_payment").await;
    let payment = waiting["payment"]["id"].as_str().unwrap();
    let forged = app
        .http
        .post(format!(
            "{}/internal/v1/orders/{order}/payment-events",
            app.url
        ))
        .bearer_auth(PAYMENTS_TOKEN)
        .json(&json!({"payment_id": payment, "status": "succeeded"}))
        .send()
        .await
        .unwrap();
    testkit::problem(forged, 403).await;
    assert_eq!(app.get_order(&order).await["status"], "awaiting_payment");
}

#[tokio::test]
async fn during_a_token_roll_orders_accepts_the_new_and_the_old_token_and_no_other() {
    let mut settings = settings().await;
    settings.orders_internal_token =
        common::Secret::new("orders-token-new-0123456789,orders-token-old-0123456789");
    let app = spawn_with(settings, true).await;
    let sku = app.product(100, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let order = app.order(&cart, None).await;
    let waiting = app.wait_for(&order, "awaiting_payment").await;
    let payment = waiting["payment"]["id"].as_str().unwrap();
    let url = format!("{}/internal/v1/orders/{order}/payment-events", app.url);
    let event = json!({"payment_id": payment, "status": "requires_action"});
    for (token, status) in [
        ("orders-token-new-0123456789", 200),
        ("orders-token-old-0123456789", 200),
        (
            "orders-token-new-0123456789,orders-token-old-0123456789",
            403,
        ),
        ("orders-token-other-0123456789", 403),
    ] {
        let answer = app
            .http
            .post(&url)
            .bearer_auth(token)
            .json(&event)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), status, "{token}");
    }
}

#[tokio::test]
async fn control_characters_in_a_checkout_are_a_422_and_place_nothing() {
    let app = spawn().await;
    let sku = app.product(100, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let cases = [
        (
            json!({"cart_id": cart, "email": "a\u{0}b@example.com"}),
            "email",
        ),
        (
            json!({"cart_id": cart, "email": "shopper@example.com\n"}),
            "email",
        ),
        (
            json!({"cart_id": cart, "email": "sho\u{7f}pper@example.com"}),
            "email",
        ),
        (
            json!({"cart_id": cart, "email": "shopper@example.com", "payment_method": "pm_card_visa\u{0}"}),
            "payment_method",
        ),
        (
            json!({"cart_id": format!("{cart}\u{0}"), "email": "shopper@example.com"}),
            "cart_id",
        ),
    ];
    for (i, (body, field)) in cases.into_iter().enumerate() {
        let response = app.checkout(&format!("control-{i}"), body.clone()).await;
        let problem = testkit::problem(response, 422).await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}");
    }
    assert_eq!(app.orders_placed().await, 0);
}

#[tokio::test]
async fn an_idempotency_key_belongs_to_the_cart_it_was_used_with() {
    let app = spawn().await;
    let sku = app.product(100, 5).await;
    let (mine, theirs) = (app.cart_with(&sku, 1).await, app.cart_with(&sku, 1).await);
    let body = |cart: &str| json!({"cart_id": cart, "email": "shopper@example.com"});

    let first = app.checkout("shared-key", body(&mine)).await;
    assert_eq!(first.status(), 202);
    let first: Value = first.json().await.unwrap();
    // Another shopper happening on the same key learns nothing: theirs is a new order.
    let other = app.checkout("shared-key", body(&theirs)).await;
    assert_eq!(other.status(), 202);
    assert!(other.headers().get("idempotent-replayed").is_none());
    let other: Value = other.json().await.unwrap();
    assert_ne!(other["id"], first["id"]);
    // The key still replays for the cart it was first used with.
    let replay = app.checkout("shared-key", body(&mine)).await;
    assert_eq!(replay.status(), 202);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap()["id"], first["id"]);
}

#[tokio::test]
async fn the_client_secret_is_shown_only_while_the_order_awaits_payment() {
    let app = spawn().await;
    let sku = app.product(100, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let order = app.order(&cart, None).await;
    let waiting = app.wait_for(&order, "awaiting_payment").await;
    assert_eq!(waiting["payment"]["client_secret"], "pi_x_secret_y");
    let payment = waiting["payment"]["id"].as_str().unwrap();
    // A decline in the browser leaves the order payable (another card may follow): the
    // secret stays; a cancellation ends the order, and the secret goes.
    let declined = app
        .payment_event(
            &order,
            json!({"payment_id": payment, "status": "failed", "reason": "card_declined"}),
        )
        .await;
    assert_eq!(declined.status(), 200);
    let still = app.get_order(&order).await;
    assert_eq!(still["payment"]["client_secret"], "pi_x_secret_y");
    let canceled = app
        .payment_event(&order, json!({"payment_id": payment, "status": "canceled"}))
        .await;
    assert_eq!(canceled.status(), 200);
    let ended = app.wait_for(&order, "cancelled").await;
    assert_eq!(ended["payment"]["id"], payment);
    assert!(ended["payment"]["client_secret"].is_null(), "{ended}");
}

/// Opens `GET /v1/orders/{order}/events`.
async fn follow(app: &crate::support::TestApp, order: &str) -> reqwest::Response {
    app.http
        .get(format!("{}/v1/orders/{order}/events", app.url))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn event_streams_beyond_the_cap_are_a_429_and_open_ones_are_counted() {
    let mut settings = settings().await;
    settings.event_stream_max = 1;
    let app = spawn_with(settings, false).await;
    let sku = app.product(100, 5).await;
    let order = app.order(&app.cart_with(&sku, 1).await, None).await;

    let open = follow(&app, &order).await;
    assert_eq!(open.status(), 200);
    let refused = follow(&app, &order).await;
    let retry_after = refused.headers().get("retry-after").cloned();
    let problem = testkit::problem(refused, 429).await;
    assert_eq!(problem["type"], "/problems/too-many-event-streams");
    assert!(retry_after.is_some());

    let metrics = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let gauge = metrics
        .lines()
        .find_map(|l| l.strip_prefix("orders_event_streams_open "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    // The recorder is shared by every test in this binary: at least this one stream.
    assert!(gauge.is_some_and(|open| open >= 1.0), "{metrics}");
    drop(open);
}

#[tokio::test]
async fn an_event_stream_ends_at_its_lifetime_and_frees_its_place() {
    let mut settings = settings().await;
    settings.event_stream_max = 1;
    settings.event_stream_max_age = Duration::from_secs(1);
    // No worker: the order stays pending, so only the lifetime can end its stream.
    let app = spawn_with(settings, false).await;
    let sku = app.product(100, 5).await;
    let order = app.order(&app.cart_with(&sku, 1).await, None).await;

    let stream = follow(&app, &order).await;
    assert_eq!(stream.status(), 200);
    let body = tokio::time::timeout(Duration::from_secs(60), stream.text())
        .await
        .expect("the stream ends by itself")
        .expect("it ends cleanly");
    assert!(body.contains("id: pending"), "{body}");

    crate::support::eventually("a new stream is accepted", || async {
        follow(&app, &order).await.status() == 200
    })
    .await;
}

/// A checkout of `cart` as `email`, paid in the browser later (no payment method).
async fn unpaid_order(app: &crate::support::TestApp, cart: &str, email: &str) -> String {
    let body = json!({"cart_id": cart, "email": email});
    let response = app.checkout(&common::id::new_id("key"), body).await;
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn checking_out_one_cart_again_supersedes_its_unpaid_order_and_its_stock() {
    let app = spawn().await;
    let sku = app.product(100, 7).await;
    let cart = app.cart_with(&sku, 2).await;
    let first = unpaid_order(&app, &cart, "hoarder@example.com").await;
    app.wait_for(&first, "awaiting_payment").await;
    let second = unpaid_order(&app, &cart, "hoarder@example.com").await;
    app.wait_for(&second, "awaiting_payment").await;
    let third = unpaid_order(&app, &cart, "hoarder@example.com").await;
    app.wait_for(&third, "awaiting_payment").await;

    for old in [&first, &second] {
        let order = app.wait_for(old, "cancelled").await;
        assert_eq!(order["failure_reason"], "superseded");
    }
    assert_eq!(
        app.stock(&sku).await["reserved"],
        2,
        "one cart holds its stock once"
    );
    crate::support::eventually("both payments closed", || async {
        app.payments.closes().len() == 2
    })
    .await;
}

#[tokio::test]
async fn a_customer_with_too_many_orders_awaiting_payment_cannot_hold_more_stock() {
    let mut settings = settings().await;
    settings.max_awaiting_per_customer = 2;
    let app = spawn_with(settings, true).await;
    let sku = app.product(100, 10).await;
    for _ in 0..2 {
        let cart = app.cart_with(&sku, 1).await;
        let order = unpaid_order(&app, &cart, "hoarder@example.com").await;
        app.wait_for(&order, "awaiting_payment").await;
    }
    let cart = app.cart_with(&sku, 1).await;
    let refused = unpaid_order(&app, &cart, "hoarder@example.com").await;
    let refused = app.wait_for(&refused, "failed").await;
    assert_eq!(refused["failure_reason"], "too_many_open_orders");
    assert_eq!(app.stock(&sku).await["reserved"], 2);
    // Another customer is not affected.
    let cart = app.cart_with(&sku, 1).await;
    let other = unpaid_order(&app, &cart, "someone@example.com").await;
    app.wait_for(&other, "awaiting_payment").await;
}

#[tokio::test]
async fn after_its_hold_an_unpaid_order_holds_no_stock_and_a_late_payment_takes_it_again() {
    let mut settings = settings().await;
    settings.reservation_hold = Duration::from_millis(200);
    let app = spawn_with(settings, true).await;
    let sku = app.product(100, 3).await;
    let cart = app.cart_with(&sku, 2).await;
    let order = unpaid_order(&app, &cart, "late@example.com").await;
    let waiting = app.wait_for(&order, "awaiting_payment").await;
    crate::support::eventually("the hold to end", || async {
        app.stock(&sku).await["reserved"] == 0
    })
    .await;
    assert_eq!(app.get_order(&order).await["status"], "awaiting_payment");

    let payment = waiting["payment"]["id"].as_str().unwrap();
    let paid = app
        .payment_event(
            &order,
            json!({"payment_id": payment, "status": "succeeded"}),
        )
        .await;
    assert_eq!(paid.status(), 200);
    assert_eq!(app.get_order(&order).await["status"], "confirmed");
    assert_eq!(
        app.stock(&sku).await,
        json!({"sku": sku, "on_hand": 1, "reserved": 0, "available": 1})
    );
}

#[tokio::test]
async fn a_payment_after_the_hold_for_stock_sold_meanwhile_fails_the_order_and_closes_its_payment()
{
    let mut settings = settings().await;
    settings.reservation_hold = Duration::from_millis(200);
    let app = spawn_with(settings, true).await;
    let sku = app.product(100, 1).await;
    let slow_cart = app.cart_with(&sku, 1).await;
    let slow = unpaid_order(&app, &slow_cart, "slow@example.com").await;
    let waiting = app.wait_for(&slow, "awaiting_payment").await;
    crate::support::eventually("the hold to end", || async {
        app.stock(&sku).await["reserved"] == 0
    })
    .await;
    let fast_cart = app.cart_with(&sku, 1).await;
    let fast = app.order(&fast_cart, Some("pm_card_visa")).await;
    app.wait_for(&fast, "confirmed").await;

    let payment = waiting["payment"]["id"].as_str().unwrap();
    let paid = app
        .payment_event(&slow, json!({"payment_id": payment, "status": "succeeded"}))
        .await;
    assert_eq!(paid.status(), 200);
    let failed = app.get_order(&slow).await;
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["failure_reason"], "out_of_stock");
    assert_eq!(app.stock(&sku).await["on_hand"], 0, "sold once");
    crate::support::eventually("the payment to be closed for a refund", || async {
        app.payments
            .closes()
            .iter()
            .any(|c| c["order_id"] == slow.as_str())
    })
    .await;
}
