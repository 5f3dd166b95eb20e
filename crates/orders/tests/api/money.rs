//! The money rules on the orders side: an order that ends without confirming, after its
//! payment step, has its payment closed (payments then cancels the intent or refunds it); a
//! decline in the browser leaves the order waiting for another card; an outcome is taken only
//! for the payment the order created.

use serde_json::json;

use crate::support::{Mode, eventually, settings, spawn, spawn_with};

#[tokio::test]
async fn an_order_cancelled_at_the_payment_timeout_has_its_payment_closed() {
    let mut settings = settings().await;
    settings.payment_timeout = std::time::Duration::from_millis(300);
    let app = spawn_with(settings, true).await;
    let sku = app.product(700, 5).await;
    let cart = app.cart_with(&sku, 2).await;
    let order = app.order(&cart, None).await;
    app.wait_for(&order, "cancelled").await;
    eventually("payments to be told", || async {
        !app.payments.closes().is_empty()
    })
    .await;
    let closes = app.payments.closes();
    assert_eq!(
        closes,
        [
            json!({"order_id": order, "amount": 1400, "currency": "USD", "reason": "payment_timeout"})
        ]
    );
}

#[tokio::test]
async fn a_declined_card_confirmed_server_side_fails_the_order_and_closes_its_payment() {
    let app = spawn().await;
    let sku = app.product(500, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let order = app.order(&cart, Some("pm_card_chargeDeclined")).await;
    app.wait_for(&order, "failed").await;
    eventually("payments to be told", || async {
        app.payments.closes().len() == 1
    })
    .await;
    assert_eq!(app.payments.closes()[0]["reason"], "payment_declined");
}

#[tokio::test]
async fn a_decline_in_the_browser_leaves_the_order_waiting_and_another_card_confirms_it() {
    let app = spawn().await;
    let sku = app.product(900, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let order = app.order(&cart, None).await;
    let waiting = app.wait_for(&order, "awaiting_payment").await;
    let payment = waiting["payment"]["id"].as_str().unwrap().to_owned();

    let declined = app
        .payment_event(
            &order,
            json!({"payment_id": payment, "status": "failed", "reason": "card_declined"}),
        )
        .await;
    assert_eq!(declined.status(), 200);
    let still = app.get_order(&order).await;
    assert_eq!(still["status"], "awaiting_payment");
    assert_eq!(still["payment"]["status"], "failed");
    assert_eq!(app.stock(&sku).await["reserved"], 1, "the stock stays held");

    let paid = app
        .payment_event(
            &order,
            json!({"payment_id": payment, "status": "succeeded"}),
        )
        .await;
    assert_eq!(paid.status(), 200);
    assert_eq!(app.get_order(&order).await["status"], "confirmed");
    assert!(app.payments.closes().is_empty());
}

#[tokio::test]
async fn a_dead_checkout_whose_payment_was_made_has_its_payment_closed() {
    let app = spawn().await;
    app.payments.set_mode(Mode::LoseAnswer);
    let sku = app.product(300, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let order = app.order(&cart, Some("pm_card_visa")).await;
    let failed = app.wait_for(&order, "failed").await;
    assert_eq!(
        failed["failure_reason"], "processing_failed",
        "the public reason is a code; the error chain stays in the order's events"
    );
    let detail: String = sqlx::query_scalar(
        "SELECT reason FROM orders.order_events WHERE order_id = $1 AND to_status = 'failed'",
    )
    .bind(&order)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert!(detail.starts_with("processing_failed: "), "{detail}");
    assert_eq!(app.payments.payments(), 1, "the payment was made");
    eventually("payments to be told", || async {
        app.payments.closes().len() == 1
    })
    .await;
    assert_eq!(app.payments.closes()[0]["reason"], "processing_failed");
    assert_eq!(app.stock(&sku).await["reserved"], 0);
}

#[tokio::test]
async fn a_success_for_a_cancelled_order_is_recorded_and_its_payment_closed_again() {
    let mut settings = settings().await;
    settings.payment_timeout = std::time::Duration::from_millis(300);
    let app = spawn_with(settings, true).await;
    let sku = app.product(400, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let order = app.order(&cart, None).await;
    let waiting = app.wait_for(&order, "awaiting_payment").await;
    let payment = waiting["payment"]["id"].as_str().unwrap().to_owned();
    app.wait_for(&order, "cancelled").await;
    eventually("the first close", || async {
        app.payments.closes().len() == 1
    })
    .await;

    // The shopper paid after the timeout: the order stays cancelled, shows the payment, and
    // asks payments again to close it (which refunds it).
    let late = app
        .payment_event(
            &order,
            json!({"payment_id": payment, "status": "succeeded"}),
        )
        .await;
    assert_eq!(late.status(), 200);
    let seen = app.get_order(&order).await;
    assert_eq!(seen["status"], "cancelled");
    assert_eq!(seen["payment"]["status"], "succeeded");
    eventually("the second close", || async {
        app.payments.closes().len() == 2
    })
    .await;
    assert_eq!(app.stock(&sku).await["on_hand"], 5, "nothing was sold");

    let refunded = app
        .payment_event(&order, json!({"payment_id": payment, "status": "refunded"}))
        .await;
    assert_eq!(refunded.status(), 200);
    assert_eq!(app.get_order(&order).await["payment"]["status"], "refunded");
}

#[tokio::test]
async fn an_outcome_is_taken_only_for_the_payment_the_order_recorded() {
    let app = spawn().await;
    let gate = std::sync::Arc::new(tokio::sync::Notify::new());
    let entered = std::sync::Arc::new(tokio::sync::Notify::new());
    app.payments.hold(gate.clone(), entered.clone());
    let sku = app.product(100, 5).await;
    let cart = app.cart_with(&sku, 1).await;
    let order = app.order(&cart, None).await;
    // The saga has asked for the payment and not heard back: nothing is recorded yet.
    entered.notified().await;
    let forged = common::id::new_id("pay");
    let early = app
        .payment_event(&order, json!({"payment_id": forged, "status": "succeeded"}))
        .await;
    assert_eq!(early.status(), 409);
    assert_eq!(app.get_order(&order).await["status"], "reserved");
    gate.notify_one();
    app.wait_for(&order, "awaiting_payment").await;
    let wrong = app
        .payment_event(&order, json!({"payment_id": forged, "status": "succeeded"}))
        .await;
    assert_eq!(wrong.status(), 422);
    assert_eq!(app.get_order(&order).await["status"], "awaiting_payment");
}
