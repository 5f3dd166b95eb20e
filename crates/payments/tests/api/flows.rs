//! End to end: a payment created the way orders creates it, Stripe (the simulator) deciding,
//! its webhooks coming back, and orders (the stand-in) told exactly once of every outcome it
//! did not have in the answer to its own request.

use std::time::Duration;

use serde_json::{Value, json};
use stripe_sim::ControlsUpdate;

use crate::support::{TestApp, eventually, order_id, problem, spawn};

/// Waits until the event of `kind` about `intent` has been applied.
async fn applied(app: &TestApp, intent: &str, kind: &str) {
    eventually(&format!("{kind} applied"), || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM payments.events
             WHERE type = $1 AND intent_id = $2 AND processed_at IS NOT NULL",
        )
        .bind(kind)
        .bind(intent)
        .fetch_one(&app.pool)
        .await
        .unwrap()
            == 1
    })
    .await;
}

/// A payment created without a payment method, then paid at Stripe: the success reaches
/// payments by webhook, after the answer, and orders must be told.
async fn settle_later(app: &TestApp, order: &str, amount: i64) {
    let payment = app.pay(order, amount, None).await;
    let intent = payment["provider_id"].as_str().unwrap();
    app.sim_control(&format!("/payment_intents/{intent}/succeed"), json!({}))
        .await;
}

/// Creates the payment as orders does: the same key until a 201.
async fn pay_retrying(app: &TestApp, order: &str, amount: i64) -> Value {
    let body = json!({"order_id": order, "amount": amount, "currency": "USD", "payment_method": "pm_card_visa"});
    let key = format!("order-{order}");
    for _ in 0..200 {
        let response = app.create(Some(&key), &body).await;
        if response.status() == 201 {
            return response.json().await.unwrap();
        }
        let problem = problem(response, 503).await;
        assert_eq!(problem["type"], "/problems/unavailable");
    }
    panic!("the payment for {order} never got a 201");
}

#[tokio::test]
async fn a_visa_payment_succeeds_and_orders_learns_it_from_the_answer_alone() {
    let app = spawn().await;
    let order = order_id();
    let payment = app.pay(&order, 2599, Some("pm_card_visa")).await;
    assert_eq!(payment["status"], "succeeded");

    applied(
        &app,
        payment["provider_id"].as_str().unwrap(),
        "payment_intent.succeeded",
    )
    .await;
    app.settled().await;

    // The webhook confirmed what the answer said: nothing for orders to hear.
    let told = app.orders.received();
    assert!(told.is_empty(), "{told:?}");
}

#[tokio::test]
async fn a_payment_settled_after_the_answer_is_told_to_orders_once() {
    let app = spawn().await;
    let order = order_id();
    let payment = app.pay(&order, 2599, None).await;
    assert_eq!(payment["status"], "requires_payment_method");
    let intent = payment["provider_id"].as_str().unwrap();
    app.sim_control(&format!("/payment_intents/{intent}/succeed"), json!({}))
        .await;
    applied(&app, intent, "payment_intent.succeeded").await;
    app.settled().await;

    let told = app.orders.acknowledged(&order);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["status"], "succeeded");
    assert_eq!(told[0]["payment_id"], payment["id"]);
    assert_eq!(app.orders.received().len(), 1);
}

#[tokio::test]
async fn a_declined_card_fails_and_orders_learns_it_from_the_answer_alone() {
    let app = spawn().await;
    let order = order_id();
    let payment = app.pay(&order, 1500, Some("pm_card_chargeDeclined")).await;
    assert_eq!(payment["status"], "failed");
    assert_eq!(payment["failure_reason"], "generic_decline");

    applied(
        &app,
        payment["provider_id"].as_str().unwrap(),
        "payment_intent.payment_failed",
    )
    .await;
    app.settled().await;

    let told = app.orders.received();
    assert!(told.is_empty(), "{told:?}");
    let id = payment["id"].as_str().unwrap();
    assert_eq!(app.payment(id).await["status"], "failed");
}

#[tokio::test]
async fn with_30_percent_stripe_failures_every_payment_completes_exactly_once() {
    let app = spawn().await;
    app.control(ControlsUpdate {
        failure_share: Some(0.3),
        ..ControlsUpdate::default()
    });
    let orders: Vec<String> = (0..10).map(|_| order_id()).collect();
    for order in &orders {
        let payment = pay_retrying(&app, order, 1234).await;
        app.wait_for(payment["id"].as_str().unwrap(), "succeeded")
            .await;
        applied(
            &app,
            payment["provider_id"].as_str().unwrap(),
            "payment_intent.succeeded",
        )
        .await;
    }
    app.settled().await;
    for order in &orders {
        assert_eq!(app.intents_for(order), 1, "{order}");
    }
    assert!(
        app.orders.received().is_empty(),
        "every outcome was answered"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM payments.payments").await,
        10
    );
}

#[tokio::test]
async fn lost_stripe_responses_still_make_one_payment_intent_per_order() {
    let app = spawn().await;
    // Stripe did the work but the answer never arrived: the retry must find the same intent.
    app.control(ControlsUpdate {
        lost_response_share: Some(0.3),
        ..ControlsUpdate::default()
    });
    let orders: Vec<String> = (0..10).map(|_| order_id()).collect();
    for order in &orders {
        let payment = pay_retrying(&app, order, 4321).await;
        assert_eq!(payment["status"], "succeeded");
    }
    app.control(ControlsUpdate {
        lost_response_share: Some(0.0),
        ..ControlsUpdate::default()
    });
    app.settled().await;
    for order in &orders {
        assert_eq!(app.intents_for(order), 1, "{order}");
    }
    assert!(
        app.orders.received().is_empty(),
        "every outcome was answered"
    );
}

#[tokio::test]
async fn three_d_secure_settles_when_the_customer_authenticates() {
    let app = spawn().await;
    let order = order_id();
    let payment = app
        .pay(&order, 8000, Some("pm_card_authenticationRequired"))
        .await;
    assert_eq!(payment["status"], "requires_action");
    let intent = payment["provider_id"].as_str().unwrap();
    applied(&app, intent, "payment_intent.requires_action").await;
    app.settled().await;
    assert!(
        app.orders.received().is_empty(),
        "orders waits for an outcome"
    );

    app.sim_control(
        &format!("/payment_intents/{intent}/authenticate"),
        json!({"outcome": "succeed"}),
    )
    .await;
    app.wait_for(payment["id"].as_str().unwrap(), "succeeded")
        .await;
    app.settled().await;
    let told = app.orders.acknowledged(&order);
    assert_eq!(told.len(), 1);
    assert_eq!(told[0]["status"], "succeeded");
}

#[tokio::test]
async fn orders_is_asked_again_until_it_acknowledges() {
    let app = spawn().await;
    app.orders.fail_next(3);
    let order = order_id();
    settle_later(&app, &order, 999).await;
    eventually("orders to acknowledge", || async {
        app.orders.acknowledged(&order).len() == 1
    })
    .await;
    app.settled().await;
    assert_eq!(app.orders.received().len(), 4);
    assert_eq!(app.orders.acknowledged(&order).len(), 1);
}

#[tokio::test]
async fn a_notification_for_an_unknown_order_becomes_a_dead_letter() {
    let app = spawn().await;
    app.orders.forget_orders();
    let order = order_id();
    settle_later(&app, &order, 999).await;
    eventually("the notification to die", || async {
        app.count(
            "SELECT count(*) FROM payments.jobs WHERE kind = 'notify_orders' AND status = 'dead'",
        )
        .await
            == 1
    })
    .await;
    assert_eq!(app.orders.received().len(), 1, "a 404 is not retried");
    let dead: Value = testkit::json_of(
        app.http
            .get(format!("{}/admin/jobs/dead", app.url))
            .bearer_auth(crate::support::ADMIN),
    )
    .await;
    assert_eq!(dead[0]["kind"], "notify_orders");
    assert_eq!(dead[0]["payload"]["order_id"], order.as_str());
}

#[tokio::test]
async fn the_reconciler_settles_a_payment_whose_webhooks_were_lost() {
    let app = spawn().await;
    app.sim.set_webhook_endpoints(Vec::new());
    let order = order_id();
    let payment = app
        .pay(&order, 3000, Some("pm_card_authenticationRequired"))
        .await;
    let intent = payment["provider_id"].as_str().unwrap();
    app.sim_control(
        &format!("/payment_intents/{intent}/authenticate"),
        json!({"outcome": "succeed"}),
    )
    .await;

    let jobs = payments::jobs(&app.core, &app.settings);
    let queued = payments::reconciler::reconcile_once(&jobs, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(queued, 1);
    app.wait_for(payment["id"].as_str().unwrap(), "succeeded")
        .await;
    app.settled().await;
    assert_eq!(app.orders.acknowledged(&order).len(), 1);
    let again = payments::reconciler::reconcile_once(&jobs, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(again, 0, "a settled payment is not checked again");
}
