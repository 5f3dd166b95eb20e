//! The webhook as Stripe uses it: duplicated, reordered, malformed and unknown events.

use serde_json::{Value, json};
use stripe_sim::{ControlsUpdate, DeliveryOutcome};

use crate::support::{
    TestApp, WEBHOOK_SECRET, event, eventually, now, order_id, problem, sign, spawn,
};

fn find(events: &[Value], kind: &str) -> Value {
    events
        .iter()
        .find(|e| e["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} event"))
        .clone()
}

/// A 3-D Secure payment for a new order, which the customer then authenticates:
/// (order, payment id, PaymentIntent id).
async fn authenticated(app: &TestApp, amount: i64) -> (String, String, String) {
    let order = order_id();
    let created = app
        .pay(&order, amount, Some("pm_card_authenticationRequired"))
        .await;
    assert_eq!(created["status"], "requires_action");
    let id = created["id"].as_str().unwrap().to_owned();
    let intent = created["provider_id"].as_str().unwrap().to_owned();
    app.sim_control(
        &format!("/payment_intents/{intent}/authenticate"),
        json!({"outcome": "succeed"}),
    )
    .await;
    (order, id, intent)
}

/// Like [`authenticated`] with webhooks switched off: (order, payment id, and its
/// `payment_intent.succeeded` and `payment_intent.requires_action` events, to deliver by hand).
async fn authenticated_unsent(app: &TestApp, amount: i64) -> (String, String, Value, Value) {
    app.sim.set_webhook_endpoints(Vec::new());
    let (order, id, intent) = authenticated(app, amount).await;
    let events = app.sim_events(&intent);
    let succeeded = find(&events, "payment_intent.succeeded");
    let requires_action = find(&events, "payment_intent.requires_action");
    (order, id, succeeded, requires_action)
}

#[tokio::test]
async fn an_event_delivered_five_times_is_processed_once() {
    let app = spawn().await;
    let order = order_id();
    let created = app.pay(&order, 2500, None).await;
    assert_eq!(created["status"], "requires_payment_method");
    let (id, intent) = (
        created["id"].as_str().unwrap(),
        created["provider_id"].as_str().unwrap(),
    );
    app.control(ControlsUpdate {
        webhook_copies: Some(5),
        ..ControlsUpdate::default()
    });

    app.sim_control(&format!("/payment_intents/{intent}/succeed"), json!({}))
        .await;
    let succeeded = find(&app.sim_events(intent), "payment_intent.succeeded");
    let event_id = succeeded["id"].as_str().unwrap().to_owned();
    eventually("five deliveries of the event", || async {
        app.sim
            .deliveries()
            .iter()
            .filter(|d| d.event_id == event_id && d.outcome == DeliveryOutcome::Delivered)
            .count()
            == 5
    })
    .await;
    app.wait_for(id, "succeeded").await;
    app.settled().await;

    let (deliveries, outcome): (i32, Option<String>) =
        sqlx::query_as("SELECT deliveries, outcome FROM payments.events WHERE id = $1")
            .bind(&event_id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(deliveries, 5);
    assert_eq!(outcome.as_deref(), Some("moved"));
    let told = app.orders.acknowledged(&order);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["status"], "succeeded");
    assert_eq!(told[0]["payment_id"], id);
    assert_eq!(told[0]["event_id"], event_id.as_str());
}

#[tokio::test]
async fn succeeded_arriving_before_requires_action_ends_succeeded() {
    let app = spawn().await;
    // The events are delivered by hand, in the wrong order.
    let (order, id, succeeded, requires_action) = authenticated_unsent(&app, 1800).await;
    let id = id.as_str();

    assert_eq!(app.deliver(&succeeded).await.status(), 200);
    app.wait_for(id, "succeeded").await;
    app.settled().await;
    assert_eq!(app.deliver(&requires_action).await.status(), 200);
    app.settled().await;

    assert_eq!(app.payment(id).await["status"], "succeeded");
    let outcome: Option<String> =
        sqlx::query_scalar("SELECT outcome FROM payments.events WHERE id = $1")
            .bind(requires_action["id"].as_str().unwrap())
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(outcome.as_deref(), Some("stale"));
    let told = app.orders.acknowledged(&order);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0]["status"], "succeeded");
}

#[tokio::test]
async fn a_batch_applies_each_event_to_the_payment_as_the_one_before_left_it() {
    let mut app = spawn().await;
    let (order, id, succeeded, requires_action) = authenticated_unsent(&app, 1800).await;
    let id = id.as_str();
    // Both recorded while no worker runs, then handed to one job newest first.
    app.stop_worker().await;
    assert_eq!(app.deliver(&succeeded).await.status(), 200);
    assert_eq!(app.deliver(&requires_action).await.status(), 200);
    sqlx::query("DELETE FROM payments.jobs WHERE kind = 'process_events'")
        .execute(&app.pool)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO payments.jobs (kind, payload, max_attempts) VALUES ('process_events', $1, 5)",
    )
    .bind(json!({"event_ids": [succeeded["id"], requires_action["id"]]}))
    .execute(&app.pool)
    .await
    .unwrap();
    app.start_worker();
    app.wait_for(id, "succeeded").await;
    app.settled().await;

    // succeeded moves the payment; requires_action then finds it succeeded (not as the
    // batch found it) and is a stale report.
    let outcomes: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT type, outcome FROM payments.events WHERE id = ANY($1) ORDER BY type",
    )
    .bind([&succeeded["id"], &requires_action["id"]].map(|id| id.as_str().unwrap()))
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(
        outcomes,
        [
            (
                "payment_intent.requires_action".to_owned(),
                Some("stale".to_owned())
            ),
            (
                "payment_intent.succeeded".to_owned(),
                Some("moved".to_owned())
            ),
        ]
    );
    assert_eq!(app.payment(id).await["status"], "succeeded");
    assert_eq!(app.orders.acknowledged(&order).len(), 1);
}

#[tokio::test]
async fn events_the_simulator_delivers_newest_first_still_end_succeeded() {
    let app = spawn().await;
    // created, requires_action, charge.succeeded, succeeded: held, then sent in reverse.
    app.control(ControlsUpdate {
        webhook_reorder_window: Some(4),
        ..ControlsUpdate::default()
    });
    let (order, id, _) = authenticated(&app, 4200).await;
    let id = id.as_str();

    app.wait_for(id, "succeeded").await;
    eventually("the held events to be delivered", || async {
        app.count("SELECT count(*) FROM payments.events WHERE processed_at IS NOT NULL")
            .await
            == 2
    })
    .await;
    app.settled().await;
    assert_eq!(app.payment(id).await["status"], "succeeded");
    assert_eq!(app.orders.acknowledged(&order).len(), 1);
}

#[tokio::test]
async fn malformed_json_under_a_valid_signature_is_a_400_and_stores_nothing() {
    let app = spawn().await;
    for body in [
        r#"{"id": "evt_broken", "type": "payment_intent.succeeded", "data": {"object": "#,
        r#"{"hello": "world"}"#,
        r#"{"id": "evt_x", "type": "payment_intent.succeeded", "created": 1, "data": {"object": {}}} trailing"#,
    ] {
        let response = app
            .webhook(body, Some(&sign(WEBHOOK_SECRET, now(), body)))
            .await;
        let problem = problem(response, 400).await;
        assert_eq!(problem["type"], "/problems/malformed-event");
    }
    assert_eq!(app.count("SELECT count(*) FROM payments.events").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM payments.jobs").await, 0);
}

#[tokio::test]
async fn an_unknown_event_type_is_acknowledged_and_counted() {
    let app = spawn().await;
    let response = app
        .deliver(&event(
            "customer.created",
            json!({"id": "cus_1", "object": "customer"}),
        ))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["handled"], false);
    assert_eq!(app.count("SELECT count(*) FROM payments.jobs").await, 0);
    let metrics = app.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("payments_webhook_events_total")
                && l.contains("type=\"customer.created\"")
                && l.contains("result=\"ignored\"")),
        "{metrics}"
    );
}
