//! The money rules, one test per way a shopper could be charged for an order that did not
//! happen: a success after the order closed, a declined intent paid with another card, a
//! create whose answer was lost, a forged success event. Stripe (the simulator) is the judge:
//! for a closed order, what it captured minus what it refunded is zero.

use serde_json::{Value, json};
use stripe_sim::ControlsUpdate;

use crate::support::{INTERNAL, TestApp, event, eventually, order_id, problem, spawn};

/// `POST /internal/v1/payments/close`, as orders sends it when an order ends unpaid.
async fn close(app: &TestApp, order: &str, amount: i64, reason: &str) -> reqwest::Response {
    app.http
        .post(format!("{}/internal/v1/payments/close", app.url))
        .bearer_auth(INTERNAL)
        .json(&json!({"order_id": order, "amount": amount, "currency": "USD", "reason": reason}))
        .send()
        .await
        .unwrap()
}

/// The PaymentIntent as the simulator holds it, with its latest charge.
async fn intent_at_stripe(app: &TestApp, intent: &str) -> Value {
    testkit::json_of(
        app.http
            .get(format!(
                "{}/v1/payment_intents/{intent}?expand[]=latest_charge",
                app.sim_url
            ))
            .bearer_auth("sk_test_shopper"),
    )
    .await
}

/// What Stripe kept of the intent: captured minus refunded.
async fn kept(app: &TestApp, intent: &str) -> i64 {
    let pi = intent_at_stripe(app, intent).await;
    let charge = &pi["latest_charge"];
    charge["amount_captured"].as_i64().unwrap_or(0)
        - charge["amount_refunded"].as_i64().unwrap_or(0)
}

/// The shopper confirms the intent in the browser (Stripe.js) with `payment_method`.
async fn confirm_in_browser(app: &TestApp, intent: &str, payment_method: &str) -> u16 {
    app.http
        .post(format!(
            "{}/v1/payment_intents/{intent}/confirm",
            app.sim_url
        ))
        .bearer_auth("sk_test_shopper")
        .form(&[("payment_method", payment_method)])
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The payment row's status and whether it has a PaymentIntent, straight from the database.
async fn row(app: &TestApp, order: &str) -> (String, Option<String>, bool) {
    sqlx::query_as(
        "SELECT status, provider_id, closed_at IS NOT NULL FROM payments.payments WHERE order_id = $1",
    )
    .bind(order)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

/// A counter's value on `/metrics` (tests share the process's recorder, so only a lower
/// bound says anything).
async fn counter(app: &TestApp, name: &str) -> f64 {
    let text = app.metrics().await;
    text.lines()
        .filter_map(|line| line.strip_prefix(name))
        .filter_map(|rest| rest.trim().parse::<f64>().ok())
        .sum()
}

async fn automatic_refunds(app: &TestApp, payment: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(amount), 0)::bigint FROM payments.refunds WHERE payment_id = $1 AND automatic",
    )
    .bind(payment)
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn closing_an_unpaid_payment_cancels_its_intent_so_a_late_3ds_success_cannot_charge() {
    let app = spawn().await;
    let order = order_id();
    let payment = app
        .pay(&order, 2500, Some("pm_card_threeDSecure2Required"))
        .await;
    assert_eq!(payment["status"], "requires_action");
    let (id, intent) = (
        payment["id"].as_str().unwrap(),
        payment["provider_id"].as_str().unwrap(),
    );

    assert_eq!(
        close(&app, &order, 2500, "payment_timeout").await.status(),
        200
    );
    app.wait_for(id, "canceled").await;

    // The shopper finishes 3-D Secure after the order was cancelled: Stripe refuses.
    let late = app
        .http
        .post(format!(
            "{}/_sim/payment_intents/{intent}/authenticate",
            app.sim_url
        ))
        .json(&json!({"outcome": "succeed"}))
        .send()
        .await
        .unwrap();
    assert!(!late.status().is_success(), "{}", late.status());
    assert_eq!(intent_at_stripe(&app, intent).await["status"], "canceled");
    assert_eq!(kept(&app, intent).await, 0);
    app.settled().await;
    let told = app.orders.acknowledged(&order);
    assert!(
        told.iter().any(|n| n["status"] == "canceled"),
        "orders hears the payment was canceled: {told:?}"
    );
}

#[tokio::test]
async fn a_success_that_reaches_a_closed_payment_is_refunded_in_full_automatically() {
    let app = spawn().await;
    let order = order_id();
    let payment = app
        .pay(&order, 4200, Some("pm_card_threeDSecure2Required"))
        .await;
    let (id, intent) = (
        payment["id"].as_str().unwrap(),
        payment["provider_id"].as_str().unwrap(),
    );
    // Stripe is down while the order closes, so the cancel cannot happen yet; meanwhile the
    // shopper completes 3-D Secure and is charged.
    app.control(ControlsUpdate {
        failure_share: Some(1.0),
        ..ControlsUpdate::default()
    });
    assert_eq!(
        close(&app, &order, 4200, "payment_timeout").await.status(),
        200
    );
    app.sim_control(
        &format!("/payment_intents/{intent}/authenticate"),
        json!({"outcome": "succeed"}),
    )
    .await;
    app.control(ControlsUpdate {
        failure_share: Some(0.0),
        ..ControlsUpdate::default()
    });

    app.wait_for(id, "refunded").await;
    assert_eq!(kept(&app, intent).await, 0, "every cent went back");
    assert_eq!(automatic_refunds(&app, id).await, 4200);
    assert!(counter(&app, "payments_auto_refunds_total").await >= 1.0);
    app.settled().await;
    let told = app.orders.acknowledged(&order);
    assert!(
        told.iter().any(|n| n["status"] == "refunded"),
        "orders hears of the refund: {told:?}"
    );
}

#[tokio::test]
async fn a_declined_intent_paid_later_with_another_card_is_recorded_and_told_to_orders() {
    let app = spawn().await;
    let order = order_id();
    let payment = app.pay(&order, 1900, None).await;
    let (id, intent) = (
        payment["id"].as_str().unwrap(),
        payment["provider_id"].as_str().unwrap(),
    );

    assert_eq!(
        confirm_in_browser(&app, intent, "pm_card_chargeDeclined").await,
        402
    );
    app.wait_for(id, "failed").await;
    assert_eq!(confirm_in_browser(&app, intent, "pm_card_visa").await, 200);

    // Our record follows Stripe from failed to succeeded, and orders is told.
    app.wait_for(id, "succeeded").await;
    app.settled().await;
    let told: Vec<String> = app
        .orders
        .acknowledged(&order)
        .iter()
        .map(|n| n["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(told, ["failed", "succeeded"]);
    assert_eq!(kept(&app, intent).await, 1900);
}

#[tokio::test]
async fn the_reconciler_finds_a_declined_intent_paid_later_when_its_webhook_is_lost() {
    let app = spawn().await;
    let order = order_id();
    let payment = app.pay(&order, 1200, None).await;
    let (id, intent) = (
        payment["id"].as_str().unwrap(),
        payment["provider_id"].as_str().unwrap(),
    );
    confirm_in_browser(&app, intent, "pm_card_chargeDeclined").await;
    app.wait_for(id, "failed").await;
    app.settled().await;
    app.sim.set_webhook_endpoints(Vec::new());
    assert_eq!(confirm_in_browser(&app, intent, "pm_card_visa").await, 200);

    let jobs = payments::jobs(&app.core, &app.settings);
    let queued = payments::reconciler::reconcile_once(&jobs, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(queued, 1, "a failed payment is still checked");
    app.wait_for(id, "succeeded").await;
}

#[tokio::test]
async fn a_lost_answer_leaves_a_payment_record_that_the_webhook_links_and_closing_refunds() {
    let app = spawn().await;
    let order = order_id();
    app.control(ControlsUpdate {
        lost_response_share: Some(1.0),
        ..ControlsUpdate::default()
    });
    let body = json!({"order_id": order, "amount": 3100, "currency": "USD", "payment_method": "pm_card_visa"});
    let answer = app.create(Some(&format!("order-{order}")), &body).await;
    problem(answer, 503).await;
    app.control(ControlsUpdate {
        lost_response_share: Some(0.0),
        ..ControlsUpdate::default()
    });

    // The charge happened at Stripe; a record of ours holds it, and its webhook finds it.
    eventually("the webhook to link the payment", || async {
        let (status, intent, _) = row(&app, &order).await;
        status == "succeeded" && intent.is_some()
    })
    .await;
    let (id, intent): (String, String) =
        sqlx::query_as("SELECT id, provider_id FROM payments.payments WHERE order_id = $1")
            .bind(&order)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(app.intents_for(&order), 1);

    // The order gave up (its last attempt lost this answer): the money goes back.
    assert_eq!(
        close(&app, &order, 3100, "processing_failed")
            .await
            .status(),
        200
    );
    app.wait_for(&id, "refunded").await;
    assert_eq!(kept(&app, &intent).await, 0);
}

#[tokio::test]
async fn closing_a_payment_whose_create_got_no_answer_asks_stripe_under_the_same_key() {
    let app = spawn().await;
    let order = order_id();
    app.sim.set_webhook_endpoints(Vec::new());
    app.control(ControlsUpdate {
        lost_response_share: Some(1.0),
        ..ControlsUpdate::default()
    });
    let body = json!({"order_id": order, "amount": 800, "currency": "USD", "payment_method": "pm_card_visa"});
    problem(
        app.create(Some(&format!("order-{order}")), &body).await,
        503,
    )
    .await;
    app.control(ControlsUpdate {
        lost_response_share: Some(0.0),
        ..ControlsUpdate::default()
    });
    assert_eq!(
        row(&app, &order).await,
        ("requires_payment_method".to_owned(), None, false)
    );

    assert_eq!(
        close(&app, &order, 800, "processing_failed").await.status(),
        200
    );
    let id: String = sqlx::query_scalar("SELECT id FROM payments.payments WHERE order_id = $1")
        .bind(&order)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    let settled = app.wait_for(&id, "refunded").await;
    let intent = settled["provider_id"].as_str().unwrap();
    assert_eq!(
        app.intents_for(&order),
        1,
        "the same key reached the same intent"
    );
    assert_eq!(kept(&app, intent).await, 0);
}

#[tokio::test]
async fn a_payment_asked_for_after_its_order_closed_is_refused_and_nothing_is_charged() {
    let app = spawn().await;
    let order = order_id();
    let closed = close(&app, &order, 700, "processing_failed").await;
    assert_eq!(closed.status(), 200);
    let body = json!({"order_id": order, "amount": 700, "currency": "USD", "payment_method": "pm_card_visa"});
    let late = app.create(Some(&format!("order-{order}")), &body).await;
    assert_eq!(problem(late, 422).await["type"], "/problems/payment-closed");
    assert_eq!(app.intents_for(&order), 0);
}

#[tokio::test]
async fn replaying_the_payment_of_a_closed_order_does_not_charge_twice() {
    let app = spawn().await;
    let order = order_id();
    let payment = app.pay(&order, 5000, Some("pm_card_visa")).await;
    let (id, intent) = (
        payment["id"].as_str().unwrap(),
        payment["provider_id"].as_str().unwrap(),
    );
    assert_eq!(
        close(&app, &order, 5000, "processing_failed")
            .await
            .status(),
        200
    );
    app.wait_for(id, "refunded").await;

    let body = json!({"order_id": order, "amount": 5000, "currency": "USD", "payment_method": "pm_card_visa"});
    let again = app.create(Some(&format!("order-{order}")), &body).await;
    assert_eq!(
        problem(again, 422).await["type"],
        "/problems/payment-closed"
    );
    assert_eq!(app.intents_for(&order), 1);
    assert_eq!(kept(&app, intent).await, 0);
    // A second close changes nothing and refunds nothing more.
    assert_eq!(
        close(&app, &order, 5000, "processing_failed")
            .await
            .status(),
        200
    );
    app.settled().await;
    assert_eq!(automatic_refunds(&app, id).await, 5000);
}

#[tokio::test]
async fn with_30_percent_stripe_failures_every_closed_payment_is_settled() {
    let app = spawn().await;
    let mut payments = Vec::new();
    for _ in 0..6 {
        let order = order_id();
        let payment = app
            .pay(&order, 1000, Some("pm_card_threeDSecure2Required"))
            .await;
        payments.push((order, payment));
    }
    app.control(ControlsUpdate {
        failure_share: Some(0.3),
        ..ControlsUpdate::default()
    });
    for (order, _) in &payments {
        assert_eq!(
            close(&app, order, 1000, "payment_timeout").await.status(),
            200
        );
    }
    for (_, payment) in &payments {
        app.wait_for(payment["id"].as_str().unwrap(), "canceled")
            .await;
    }
    app.control(ControlsUpdate {
        failure_share: Some(0.0),
        ..ControlsUpdate::default()
    });
    for (_, payment) in &payments {
        let intent = payment["provider_id"].as_str().unwrap();
        assert_eq!(intent_at_stripe(&app, intent).await["status"], "canceled");
    }
}

#[tokio::test]
async fn a_forged_success_event_is_a_mismatch_and_marks_nothing_paid() {
    let app = spawn().await;
    let order = order_id();
    let payment = app.pay(&order, 50_000, None).await;
    let (id, intent) = (
        payment["id"].as_str().unwrap(),
        payment["provider_id"].as_str().unwrap(),
    );
    // Signed with the real secret (as if it leaked), for one cent.
    let forged = event(
        "payment_intent.succeeded",
        json!({"id": intent, "object": "payment_intent", "amount": 50_000, "amount_received": 1,
               "currency": "usd", "status": "succeeded", "metadata": {"order_id": order}}),
    );
    assert_eq!(app.deliver(&forged).await.status(), 200);
    // And one that matches the payment in every field: Stripe's word still decides.
    let matching = event(
        "payment_intent.succeeded",
        json!({"id": intent, "object": "payment_intent", "amount": 50_000, "amount_received": 50_000,
               "currency": "usd", "status": "succeeded", "metadata": {"order_id": order}}),
    );
    assert_eq!(app.deliver(&matching).await.status(), 200);
    app.settled().await;

    assert_eq!(app.payment(id).await["status"], "requires_payment_method");
    let outcomes: Vec<Option<String>> = sqlx::query_scalar(
        "SELECT outcome FROM payments.events WHERE id = ANY($1) ORDER BY id = $2 DESC",
    )
    .bind([&forged["id"], &matching["id"]].map(|id| id.as_str().unwrap()))
    .bind(forged["id"].as_str().unwrap())
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(outcomes[0].as_deref(), Some("mismatch"));
    assert_ne!(outcomes[1].as_deref(), Some("moved"));
    assert!(
        app.orders.acknowledged(&order).is_empty(),
        "orders is told nothing"
    );
    assert!(counter(&app, "payments_event_mismatches_total").await >= 1.0);
}

#[tokio::test]
async fn an_event_for_an_intent_of_ours_with_no_payment_record_is_recorded_and_settled() {
    let app = spawn().await;
    // An intent made with our metadata that no payment row holds (its record lost).
    let order = order_id();
    let created = app
        .http
        .post(format!("{}/v1/payment_intents", app.sim_url))
        .bearer_auth("sk_test_elsewhere")
        .form(&[
            ("amount", "900"),
            ("currency", "usd"),
            ("metadata[order_id]", order.as_str()),
            ("payment_method", "pm_card_visa"),
            ("confirm", "true"),
            ("automatic_payment_methods[enabled]", "true"),
            ("automatic_payment_methods[allow_redirects]", "never"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let intent: Value = created.json().await.unwrap();
    let intent = intent["id"].as_str().unwrap();

    eventually("the payment to be recorded and refunded", || async {
        sqlx::query_scalar::<_, String>(
            "SELECT status FROM payments.payments WHERE provider_id = $1",
        )
        .bind(intent)
        .fetch_optional(&app.pool)
        .await
        .unwrap()
        .as_deref()
            == Some("refunded")
    })
    .await;
    assert_eq!(kept(&app, intent).await, 0);
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM payments.jobs WHERE status = 'dead'")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(dead, 0, "the event never dies waiting for a payment");
}
