//! `Stripe-Signature` verification at the webhook: every way a signature can be wrong is a
//! 400 problem and stores nothing; a secret being rotated keeps working.

use serde_json::json;

use crate::support::{OLD_SECRET, TestApp, WEBHOOK_SECRET, event, now, problem, sign, spawn};

fn body() -> String {
    event(
        "payment_intent.succeeded",
        json!({"id": "pi_foreign", "object": "payment_intent", "metadata": {}}),
    )
    .to_string()
}

async fn stored(app: &TestApp) -> i64 {
    app.count("SELECT count(*) FROM payments.events").await
}

async fn refused(app: &TestApp, body: &str, signature: Option<&str>) {
    let response = app.webhook(body, signature).await;
    let problem = problem(response, 400).await;
    assert_eq!(problem["type"], "/problems/invalid-signature");
    assert_eq!(stored(app).await, 0, "nothing is stored for {signature:?}");
}

#[tokio::test]
async fn a_valid_signature_is_accepted_and_the_event_recorded() {
    let app = spawn().await;
    let body = body();
    let response = app
        .webhook(&body, Some(&sign(WEBHOOK_SECRET, now(), &body)))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(stored(&app).await, 1);
}

#[tokio::test]
async fn a_tampered_body_is_refused() {
    let app = spawn().await;
    let body = body();
    let signature = sign(WEBHOOK_SECRET, now(), &body);
    let tampered = body.replace("pi_foreign", "pi_f0reign");
    refused(&app, &tampered, Some(&signature)).await;
}

#[tokio::test]
async fn a_signature_with_another_secret_is_refused() {
    let app = spawn().await;
    let body = body();
    refused(&app, &body, Some(&sign("whsec_attacker", now(), &body))).await;
}

#[tokio::test]
async fn both_the_old_and_the_new_secret_verify_during_a_rotation() {
    let app = spawn().await;
    for secret in [OLD_SECRET, WEBHOOK_SECRET] {
        let body = body();
        let response = app.webhook(&body, Some(&sign(secret, now(), &body))).await;
        assert_eq!(response.status(), 200, "signed with {secret}");
    }
    assert_eq!(stored(&app).await, 2);
}

#[tokio::test]
async fn a_stale_or_far_future_timestamp_is_refused() {
    let app = spawn().await;
    let body = body();
    refused(&app, &body, Some(&sign(WEBHOOK_SECRET, now() - 301, &body))).await;
    refused(
        &app,
        &body,
        Some(&sign(WEBHOOK_SECRET, now() + 3600, &body)),
    )
    .await;
}

#[tokio::test]
async fn one_matching_v1_entry_among_several_is_enough() {
    let app = spawn().await;
    let body = body();
    let t = now();
    let good = sign(WEBHOOK_SECRET, t, &body);
    let good_v1 = good.split_once(",v1=").unwrap().1;
    let wrong = sign("whsec_other", t, &body);
    let wrong_v1 = wrong.split_once(",v1=").unwrap().1;

    refused(
        &app,
        &body,
        Some(&format!("t={t},v1={wrong_v1},v1={}", "0".repeat(64))),
    )
    .await;
    let response = app
        .webhook(
            &body,
            Some(&format!("t={t},v1={wrong_v1},v0=ignored,v1={good_v1}")),
        )
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_missing_or_garbled_header_is_refused() {
    let app = spawn().await;
    let body = body();
    let t = now();
    let good = sign(WEBHOOK_SECRET, t, &body);
    let v1 = good.split_once(",v1=").unwrap().1.to_owned();
    refused(&app, &body, None).await;
    for garbled in [
        "garbage".to_owned(),
        String::new(),
        format!("t={t}"),
        format!("v1={v1}"),
        format!("t=yesterday,v1={v1}"),
        format!("t={t},v1=not-hex"),
        format!("t={t};v1={v1}"),
    ] {
        refused(&app, &body, Some(&garbled)).await;
    }
    let metrics = app.metrics().await;
    assert!(metrics.contains("payments_webhook_signature_failures_total{reason=\"missing\"}"));
    assert!(metrics.contains("payments_webhook_signature_failures_total{reason=\"malformed\"}"));
}
