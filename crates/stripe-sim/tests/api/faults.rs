//! Injected faults: failures that create nothing, and lost responses that did.

use serde_json::{Value, json};

use crate::support::TestSim;

const CREATE: &[(&str, &str)] = &[("amount", "1500"), ("currency", "usd")];

#[tokio::test]
async fn a_failure_share_of_one_answers_api_error_and_creates_nothing() {
    let app = TestSim::without_webhooks().await;
    app.control("/controls", json!({ "failure_share": 1.0 }))
        .await;

    let failed = app
        .post_with_key("/v1/payment_intents", "retry-1", CREATE)
        .await;

    assert_eq!(failed.status(), 500);
    assert_eq!(failed.headers()["stripe-should-retry"], "true");
    assert_eq!(
        failed.json::<Value>().await.unwrap()["error"]["type"],
        "api_error"
    );
    assert!(app.sim.events().is_empty());

    app.control("/controls", json!({ "failure_share": 0.0 }))
        .await;
    let retried = app
        .post_with_key("/v1/payment_intents", "retry-1", CREATE)
        .await;
    assert_eq!(retried.status(), 200);
    assert!(retried.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.event_types(None), ["payment_intent.created"]);
}

#[tokio::test]
async fn a_lost_response_still_creates_and_its_retry_replays() {
    let app = TestSim::without_webhooks().await;
    app.control("/controls", json!({ "lost_response_share": 1.0 }))
        .await;

    let lost = app
        .post_with_key("/v1/payment_intents", "retry-2", CREATE)
        .await;

    assert_eq!(lost.status(), 500);
    assert_eq!(app.event_types(None), ["payment_intent.created"]);

    app.control("/controls", json!({ "lost_response_share": 0.0 }))
        .await;
    let retried = app
        .post_with_key("/v1/payment_intents", "retry-2", CREATE)
        .await;
    assert_eq!(retried.status(), 200);
    assert_eq!(retried.headers()["idempotent-replayed"], "true");
    let pi: Value = retried.json().await.unwrap();
    assert_eq!(pi["id"], app.sim.events()[0]["data"]["object"]["id"]);
}

#[tokio::test]
async fn invalid_controls_are_refused() {
    let app = TestSim::without_webhooks().await;

    let response = app
        .http
        .post(format!("{}/_sim/controls", app.base))
        .json(&json!({ "failure_share": 2.0 }))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 400);
    assert_eq!(app.sim.controls(), stripe_sim::Controls::default());
}
