//! API keys, request ids and the API version header.

use serde_json::Value;

use crate::support::TestSim;

#[tokio::test]
async fn a_request_without_an_api_key_is_a_401_in_stripes_shape() {
    let app = TestSim::without_webhooks().await;

    let response = app
        .http
        .post(format!("{}/v1/payment_intents", app.base))
        .form(&[("amount", "1500"), ("currency", "usd")])
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("You did not provide an API key")
    );
    assert!(app.sim.events().is_empty());
}

#[tokio::test]
async fn a_live_mode_key_is_rejected() {
    let app = TestSim::without_webhooks().await;

    let response = app
        .http
        .get(format!("{}/v1/payment_intents/pi_123", app.base))
        .bearer_auth("sk_live_abcdefghijklmnop")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    let redacted = format!("sk_live_{}mnop", "*".repeat(12));
    assert_eq!(
        body["error"]["message"],
        format!("Invalid API Key provided: {redacted}")
    );
}

#[tokio::test]
async fn responses_carry_a_request_id_and_echo_the_stripe_version() {
    let app = TestSim::without_webhooks().await;

    let default = app.get("/v1/payment_intents/pi_missing").await;
    let pinned = app
        .http
        .get(format!("{}/v1/payment_intents/pi_missing", app.base))
        .bearer_auth("sk_test_x")
        .header("Stripe-Version", "2024-06-20")
        .send()
        .await
        .unwrap();

    assert_eq!(default.status(), 404);
    assert!(
        default.headers()["request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );
    assert_eq!(default.headers()["stripe-version"], stripe_sim::API_VERSION);
    assert_eq!(pinned.headers()["stripe-version"], "2024-06-20");
    let body: Value = default.json().await.unwrap();
    assert_eq!(body["error"]["code"], "resource_missing");
    assert_eq!(
        body["error"]["message"],
        "No such payment_intent: 'pi_missing'"
    );
}
