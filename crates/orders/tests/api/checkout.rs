//! `POST /v1/orders`: validation and idempotency.

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::support::spawn;

async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn checkout_answers_202_with_the_order_and_its_location() {
    let app = spawn().await;
    let sku = app.product(1500, 10).await;
    let cart = app.cart_with(&sku, 2).await;
    let response = app
        .checkout("key-1", json!({"cart_id": cart, "email": "a@example.com"}))
        .await;
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = response.json().await.unwrap();
    let id = order["id"].as_str().unwrap();
    assert!(id.starts_with("ord_"));
    assert_eq!(location, format!("/v1/orders/{id}"));
    assert_eq!(order["status"], "pending");
    assert_eq!(order["total"], 3000);
    assert_eq!(order["currency"], "USD");
    assert_eq!(order["items"][0]["sku"], sku);
    assert_eq!(order["items"][0]["quantity"], 2);
    assert_eq!(order["items"][0]["unit_price"], 1500);
}

#[tokio::test]
async fn a_missing_idempotency_key_is_a_400_and_creates_nothing() {
    let app = spawn().await;
    let sku = app.product(100, 10).await;
    let cart = app.cart_with(&sku, 1).await;
    let response = app
        .http
        .post(format!("{}/v1/orders", app.url))
        .json(&json!({"cart_id": cart, "email": "a@example.com"}))
        .send()
        .await
        .unwrap();
    problem(response, 400).await;
    assert_eq!(app.orders_placed().await, 0);
}

#[tokio::test]
async fn an_empty_or_missing_cart_is_a_422() {
    let app = spawn().await;
    let empty: Value = app
        .http
        .post(format!("{}/v1/carts", app.cart_url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    problem(
        app.checkout(
            "k-empty",
            json!({"cart_id": empty["id"], "email": "a@example.com"}),
        )
        .await,
        422,
    )
    .await;
    let missing = common::id::new_id("crt");
    problem(
        app.checkout(
            "k-missing",
            json!({"cart_id": missing, "email": "a@example.com"}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(app.orders_placed().await, 0);
}

#[tokio::test]
async fn bad_fields_are_422_naming_them_and_malformed_json_is_400() {
    let app = spawn().await;
    let body = problem(
        app.checkout("k", json!({"cart_id": "nope", "email": "not-an-email"}))
            .await,
        422,
    )
    .await;
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["cart_id", "email"]);
    let response = app
        .http
        .post(format!("{}/v1/orders", app.url))
        .header("idempotency-key", "k2")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    problem(response, 400).await;
}

#[tokio::test]
async fn the_same_key_and_body_replays_and_another_body_is_a_422() {
    let app = spawn().await;
    let sku = app.product(100, 10).await;
    let cart = app.cart_with(&sku, 1).await;
    let body = json!({"cart_id": cart, "email": "a@example.com"});
    let first: Value = app
        .checkout("same-key", body.clone())
        .await
        .json()
        .await
        .unwrap();

    let again = app.checkout("same-key", body).await;
    assert_eq!(again.status(), 202);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);

    let other = json!({"cart_id": cart, "email": "b@example.com"});
    problem(app.checkout("same-key", other).await, 422).await;
    assert_eq!(app.orders_placed().await, 1);
}

#[tokio::test]
async fn twenty_concurrent_requests_with_one_key_make_one_order() {
    let app = spawn().await;
    let sku = app.product(100, 10).await;
    let cart = app.cart_with(&sku, 1).await;
    let mut requests = JoinSet::new();
    for _ in 0..20 {
        let (http, url, cart) = (
            app.http.clone(),
            format!("{}/v1/orders", app.url),
            cart.clone(),
        );
        requests.spawn(async move {
            let response = http
                .post(url)
                .header("idempotency-key", "one-key")
                .json(&json!({"cart_id": cart, "email": "a@example.com"}))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap()["id"]
                    .as_str()
                    .map(str::to_owned),
            )
        });
    }
    let answers = requests.join_all().await;
    let ids: std::collections::HashSet<_> = answers
        .iter()
        .filter(|(s, _)| *s == 202)
        .map(|(_, id)| id.clone().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    assert!(
        answers.iter().all(|(s, _)| *s == 202 || *s == 409),
        "{answers:?}"
    );
    assert_eq!(app.orders_placed().await, 1);
}
