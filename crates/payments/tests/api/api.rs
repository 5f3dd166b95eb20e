//! `POST /internal/v1/payments` and `GET /internal/v1/payments/{id}`: validation, access
//! and idempotency (one PaymentIntent per order whatever the retries).

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::support::{INTERNAL, order_id, problem, spawn};

fn body(order: &str, amount: i64) -> Value {
    json!({"order_id": order, "amount": amount, "currency": "USD", "payment_method": "pm_card_visa"})
}

#[tokio::test]
async fn a_missing_idempotency_key_is_a_400_and_charges_nothing() {
    let app = spawn().await;
    let order = order_id();
    let response = app.create(None, &body(&order, 1000)).await;
    let problem = problem(response, 400).await;
    assert_eq!(problem["type"], "/problems/idempotency-key-required");
    assert_eq!(app.intents_for(&order), 0);
    assert_eq!(app.count("SELECT count(*) FROM payments.payments").await, 0);
}

#[tokio::test]
async fn invalid_fields_are_a_422_naming_each_field() {
    let app = spawn().await;
    let response = app
        .create(
            Some("k1"),
            &json!({"order_id": "crt_nope", "amount": 0, "currency": "usd"}),
        )
        .await;
    let problem = problem(response, 422).await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["order_id", "amount", "currency"]);
}

#[tokio::test]
async fn the_internal_api_needs_the_internal_token() {
    let app = spawn().await;
    let url = format!("{}/internal/v1/payments", app.url);
    let anonymous = app
        .http
        .post(&url)
        .json(&body(&order_id(), 1))
        .send()
        .await
        .unwrap();
    problem(anonymous, 401).await;
    let wrong = app
        .http
        .post(&url)
        .bearer_auth("not-the-token")
        .json(&body(&order_id(), 1))
        .send()
        .await
        .unwrap();
    problem(wrong, 403).await;
}

#[tokio::test]
async fn a_visa_payment_answers_201_succeeded() {
    let app = spawn().await;
    let order = order_id();
    let response = app.create(Some("key-visa"), &body(&order, 1999)).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let payment: Value = response.json().await.unwrap();
    let id = payment["id"].as_str().unwrap();
    assert!(id.starts_with("pay_"));
    assert_eq!(location, format!("/internal/v1/payments/{id}"));
    assert_eq!(payment["status"], "succeeded");
    assert!(payment["provider_id"].as_str().unwrap().starts_with("pi_"));
    assert_eq!(payment["amount"], 1999);
    assert_eq!(payment["currency"], "USD");
    assert_eq!(app.payment(id).await["status"], "succeeded");
}

#[tokio::test]
async fn without_a_payment_method_the_answer_carries_the_client_secret() {
    let app = spawn().await;
    let payment = app.pay(&order_id(), 500, None).await;
    assert_eq!(payment["status"], "requires_payment_method");
    let secret = payment["client_secret"].as_str().unwrap();
    assert!(secret.starts_with(payment["provider_id"].as_str().unwrap()));
}

#[tokio::test]
async fn the_same_key_twice_creates_one_payment_intent() {
    let app = spawn().await;
    let order = order_id();
    let first = app.create(Some("same"), &body(&order, 1200)).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = app.create(Some("same"), &body(&order, 1200)).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();

    assert_eq!(first["id"], again["id"]);
    assert_eq!(first["provider_id"], again["provider_id"]);
    assert_eq!(app.intents_for(&order), 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_key_create_one_payment_intent() {
    let app = spawn().await;
    let order = order_id();
    let mut requests = JoinSet::new();
    for _ in 0..8 {
        let (http, url, body) = (app.http.clone(), app.url.clone(), body(&order, 3100));
        requests.spawn(async move {
            let response = http
                .post(format!("{url}/internal/v1/payments"))
                .bearer_auth(INTERNAL)
                .header("idempotency-key", "racing")
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 201);
            response.json::<Value>().await.unwrap()["id"].clone()
        });
    }
    let ids = requests.join_all().await;
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(app.intents_for(&order), 1);
    assert_eq!(app.count("SELECT count(*) FROM payments.payments").await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_a_422() {
    let app = spawn().await;
    let order = order_id();
    assert_eq!(
        app.create(Some("k"), &body(&order, 1000)).await.status(),
        201
    );
    let response = app.create(Some("k"), &body(&order, 1001)).await;
    let reused = problem(response, 422).await;
    assert_eq!(reused["type"], "/problems/idempotency-key-reused");
    let other_order = app.create(Some("k"), &body(&order_id(), 1000)).await;
    problem(other_order, 422).await;
    assert_eq!(app.intents_for(&order), 1);
}

#[tokio::test]
async fn a_second_key_for_the_same_order_answers_the_first_payment() {
    let app = spawn().await;
    let order = order_id();
    let first: Value = app
        .create(Some("first"), &body(&order, 700))
        .await
        .json()
        .await
        .unwrap();
    let second = app.create(Some("second"), &body(&order, 700)).await;
    assert_eq!(second.status(), 201);
    assert_eq!(second.json::<Value>().await.unwrap()["id"], first["id"]);
    let other_amount = app.create(Some("third"), &body(&order, 701)).await;
    let refused = problem(other_amount, 422).await;
    assert_eq!(refused["type"], "/problems/order-has-payment");
    assert_eq!(app.intents_for(&order), 1);
}

#[tokio::test]
async fn a_payment_reads_back_and_an_unknown_one_is_a_404() {
    let app = spawn().await;
    let payment = app.pay(&order_id(), 900, Some("pm_card_visa")).await;
    let read = app.payment(payment["id"].as_str().unwrap()).await;
    assert_eq!(read["provider_id"], payment["provider_id"]);
    let missing = app
        .http
        .get(format!(
            "{}/internal/v1/payments/{}",
            app.url,
            common::id::new_id("pay")
        ))
        .bearer_auth(INTERNAL)
        .send()
        .await
        .unwrap();
    problem(missing, 404).await;
}

#[tokio::test]
async fn operations_endpoints_answer() {
    let app = spawn().await;
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let response = app
            .http
            .get(format!("{}{path}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let doc: Value = testkit::json_of(app.http.get(format!("{}/openapi.json", app.url))).await;
    for path in [
        "/internal/v1/payments",
        "/v1/webhooks/stripe",
        "/admin/payments/{id}/refund",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
}

#[tokio::test]
async fn replaying_a_dead_job_by_a_malformed_id_is_a_problem_json_404() {
    let app = spawn().await;
    let response = app
        .http
        .post(format!("{}/admin/jobs/dead/not-a-number/replay", app.url))
        .bearer_auth(crate::support::ADMIN)
        .send()
        .await
        .unwrap();
    let problem = problem(response, 404).await;
    assert_eq!(problem["status"], 404);
}
