//! `POST /admin/payments/{id}/refund`: full and partial refunds, never more than captured.

use serde_json::{Value, json};

use crate::support::{order_id, problem, spawn};

#[tokio::test]
async fn a_refund_beyond_the_capture_is_a_422() {
    let app = spawn().await;
    let payment = app.pay(&order_id(), 1000, Some("pm_card_visa")).await;
    let id = payment["id"].as_str().unwrap();
    let response = app.refund(id, json!({"amount": 1001})).await;
    let problem = problem(response, 422).await;
    assert_eq!(problem["type"], "/problems/not-refundable");
    assert_eq!(app.count("SELECT count(*) FROM payments.refunds").await, 0);
    assert_eq!(app.payment(id).await["status"], "succeeded");
}

#[tokio::test]
async fn partial_refunds_add_up_and_none_exceeds_what_is_left() {
    let app = spawn().await;
    let order = order_id();
    let payment = app.pay(&order, 1000, Some("pm_card_visa")).await;
    let id = payment["id"].as_str().unwrap();

    let first = app.refund(id, json!({"amount": 400})).await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    assert_eq!(first["payment_status"], "partially_refunded");
    assert!(first["provider_id"].as_str().unwrap().starts_with("re_"));

    problem(app.refund(id, json!({"amount": 601})).await, 422).await;
    let rest = app.refund(id, json!({})).await;
    assert_eq!(rest.status(), 201);
    let rest: Value = rest.json().await.unwrap();
    assert_eq!(rest["amount"], 600);
    assert_eq!(rest["payment_status"], "refunded");
    assert_eq!(rest["amount_refunded"], 1000);
    problem(app.refund(id, json!({"amount": 1})).await, 422).await;

    app.settled().await;
    let payment = app.payment(id).await;
    assert_eq!(payment["status"], "refunded");
    assert_eq!(payment["amount_refunded"], 1000);
    let statuses: Vec<Value> = app
        .orders
        .acknowledged(&order)
        .iter()
        .map(|n| n["status"].clone())
        .collect();
    // The payment's success was the answer to orders' own request; the refunds are news.
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    for status in ["partially_refunded", "refunded"] {
        assert_eq!(
            statuses.iter().filter(|s| *s == status).count(),
            1,
            "{status}"
        );
    }
}

#[tokio::test]
async fn a_retried_refund_with_its_key_is_made_once() {
    let app = spawn().await;
    let payment = app.pay(&order_id(), 1000, Some("pm_card_visa")).await;
    let id = payment["id"].as_str().unwrap();
    let refund = || {
        app.http
            .post(format!("{}/admin/payments/{id}/refund", app.url))
            .bearer_auth(crate::support::ADMIN)
            .header("idempotency-key", "refund-once")
            .json(&json!({"amount": 300}))
            .send()
    };
    let first = refund().await.unwrap();
    assert_eq!(first.status(), 201);
    let again = refund().await.unwrap();
    assert_eq!(again.status(), 200);
    let (first, again): (Value, Value) = (first.json().await.unwrap(), again.json().await.unwrap());
    assert_eq!(first["id"], again["id"]);
    assert_eq!(app.count("SELECT count(*) FROM payments.refunds").await, 1);
}

#[tokio::test]
async fn an_unpaid_payment_cannot_be_refunded() {
    let app = spawn().await;
    let declined = app
        .pay(&order_id(), 1000, Some("pm_card_chargeDeclined"))
        .await;
    let response = app
        .refund(declined["id"].as_str().unwrap(), json!({}))
        .await;
    problem(response, 422).await;
    let missing = app.refund(&common::id::new_id("pay"), json!({})).await;
    problem(missing, 404).await;
}

#[tokio::test]
async fn refunds_need_the_admin_token() {
    let app = spawn().await;
    let payment = app.pay(&order_id(), 1000, Some("pm_card_visa")).await;
    let response = app
        .http
        .post(format!(
            "{}/admin/payments/{}/refund",
            app.url,
            payment["id"].as_str().unwrap()
        ))
        .bearer_auth(crate::support::INTERNAL)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    problem(response, 403).await;
}
