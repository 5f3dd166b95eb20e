//! `Idempotency-Key`: replay, conflict, concurrency.

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::support::TestSim;

const CREATE: &[(&str, &str)] = &[
    ("amount", "1500"),
    ("currency", "usd"),
    ("payment_method", "pm_card_visa"),
    ("confirm", "true"),
];

#[tokio::test]
async fn repeating_a_request_with_its_key_replays_the_stored_response() {
    let app = TestSim::without_webhooks().await;

    let first = app
        .post_with_key("/v1/payment_intents", "order-1", CREATE)
        .await;
    let second = app
        .post_with_key("/v1/payment_intents", "order-1", CREATE)
        .await;

    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    assert_eq!(second.status(), 200);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(
        second.headers()["original-request"].to_str().unwrap(),
        first.headers()["request-id"].to_str().unwrap()
    );
    assert_eq!(first.text().await.unwrap(), second.text().await.unwrap());
    assert_eq!(
        app.event_types(None)
            .iter()
            .filter(|t| *t == "payment_intent.created")
            .count(),
        1
    );
}

#[tokio::test]
async fn reusing_a_key_with_other_parameters_is_an_idempotency_error() {
    let app = TestSim::without_webhooks().await;

    app.post_with_key("/v1/payment_intents", "order-2", CREATE)
        .await;
    let conflicting = app
        .post_with_key(
            "/v1/payment_intents",
            "order-2",
            &[("amount", "9900"), ("currency", "usd")],
        )
        .await;

    assert_eq!(conflicting.status(), 400);
    assert_eq!(conflicting.headers()["stripe-should-retry"], "false");
    let error = &conflicting.json::<Value>().await.unwrap()["error"];
    assert_eq!(error["type"], "idempotency_error");
    assert!(error["message"].as_str().unwrap().contains("order-2"));
}

#[tokio::test]
async fn a_replayed_decline_is_the_same_402() {
    let app = TestSim::without_webhooks().await;
    let declined = &[
        ("amount", "1500"),
        ("currency", "usd"),
        ("payment_method", "pm_card_chargeDeclined"),
        ("confirm", "true"),
    ];

    let first = app
        .post_with_key("/v1/payment_intents", "order-3", declined)
        .await;
    let second = app
        .post_with_key("/v1/payment_intents", "order-3", declined)
        .await;

    assert_eq!(first.status(), 402);
    assert_eq!(second.status(), 402);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(first.text().await.unwrap(), second.text().await.unwrap());
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_intent() {
    let app = TestSim::without_webhooks().await;
    // Latency widens the window in which the first request is still running.
    app.control("/controls", json!({ "latency_ms": 200 })).await;

    let mut requests = JoinSet::new();
    for _ in 0..8 {
        let (http, url) = (app.http.clone(), format!("{}/v1/payment_intents", app.base));
        requests.spawn(async move {
            let response = http
                .post(url)
                .bearer_auth("sk_test_x")
                .header("Idempotency-Key", "order-4")
                .form(CREATE)
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        });
    }
    let outcomes = requests.join_all().await;

    let created: Vec<&Value> = outcomes
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    assert!(!created.is_empty());
    assert!(created.iter().all(|pi| pi["id"] == created[0]["id"]));
    for (status, body) in outcomes.iter().filter(|(s, _)| *s != 200) {
        assert_eq!(*status, 409);
        assert_eq!(body["error"]["code"], "idempotency_key_in_use");
    }
    assert_eq!(
        app.event_types(None)
            .iter()
            .filter(|t| *t == "payment_intent.created")
            .count(),
        1
    );
    app.control("/controls", json!({ "latency_ms": 0 })).await;
    let later: Value = app
        .post_with_key("/v1/payment_intents", "order-4", CREATE)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(later["id"], created[0]["id"]);
}
