//! Attacks on payments and what now stops them: a binary deployed without its secrets (or
//! with the simulator's public ones, or an empty webhook secret list) refuses to start; the
//! Stripe key never travels over plain HTTP off this machine; orders' token and payments' token
//! are separate, each direction checked.

use serde_json::json;

use crate::support::{INTERNAL, order_id, settings, spawn_with};

/// Settings good enough for production, one per variable.
const PRODUCTION: &[(&str, &str)] = &[
    ("PAYMENTS_INTERNAL_TOKEN", "payments-token-0123456789abcdef"),
    ("ORDERS_INTERNAL_TOKEN", "orders-token-0123456789abcdef"),
    ("ADMIN_TOKEN", "admin-token-0123456789abcdef"),
    ("STRIPE_SECRET_KEY", "sk_live_0123456789abcdef"),
    ("STRIPE_WEBHOOK_SECRETS", "whsec_0123456789abcdef"),
    ("STRIPE_API_BASE", "https://api.stripe.com"),
];

/// Asserts the `payments` binary, started with `PRODUCTION` changed by `change`, refuses to start
/// naming `variable`.
fn refuses_to_start(change: &[(&str, Option<&str>)], variable: &str) {
    testkit::refuses_to_start(env!("CARGO_BIN_EXE_payments"), PRODUCTION, change, variable);
}

#[test]
fn deployed_without_a_secret_payments_refuses_to_start_naming_it() {
    for (name, _) in PRODUCTION.iter().filter(|(n, _)| *n != "STRIPE_API_BASE") {
        for value in [
            None,
            Some(""),
            Some("short"),
            Some("dev-internal-token"),
            Some("dev-payments-token"),
            Some("dev-orders-token"),
            Some("dev-admin-token"),
            Some("sk_test_local"),
            Some("whsec_sim_local"),
        ] {
            refuses_to_start(&[(name, value)], name);
        }
    }
}

#[test]
fn an_empty_webhook_secret_list_does_not_bring_back_the_public_default() {
    for empty in ["", " ", ",", " , "] {
        refuses_to_start(
            &[("STRIPE_WEBHOOK_SECRETS", Some(empty))],
            "STRIPE_WEBHOOK_SECRETS",
        );
    }
    refuses_to_start(
        &[(
            "STRIPE_WEBHOOK_SECRETS",
            Some("whsec_0123456789abcdef,whsec_sim_local"),
        )],
        "STRIPE_WEBHOOK_SECRETS",
    );
}

#[test]
fn the_stripe_key_never_goes_over_plain_http_off_this_machine() {
    for base in ["http://api.stripe.com", "http://10.1.2.3:12111"] {
        refuses_to_start(&[("STRIPE_API_BASE", Some(base))], "STRIPE_API_BASE");
    }
}

#[test]
fn the_same_token_for_both_directions_is_refused() {
    refuses_to_start(
        &[(
            "ORDERS_INTERNAL_TOKEN",
            Some("payments-token-0123456789abcdef"),
        )],
        "ORDERS_INTERNAL_TOKEN",
    );
}

#[tokio::test]
async fn payments_accepts_its_own_token_only_and_sends_orders_the_orders_token() {
    let mut settings = settings().await;
    settings.payments_internal_token = common::Secret::new("payments-only-token");
    // The orders stand-in accepts INTERNAL only: what payments must send it.
    settings.orders_internal_token = common::Secret::new(INTERNAL);
    let app = spawn_with(settings).await;
    let order = order_id();
    let body = json!({"order_id": order, "amount": 1000, "currency": "USD"});

    let with_orders_token = app
        .http
        .post(format!("{}/internal/v1/payments", app.url))
        .bearer_auth(INTERNAL)
        .header("idempotency-key", format!("order-{order}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    testkit::problem(with_orders_token, 403).await;

    let created = app
        .http
        .post(format!("{}/internal/v1/payments", app.url))
        .bearer_auth("payments-only-token")
        .header("idempotency-key", format!("order-{order}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: serde_json::Value = created.json().await.unwrap();
    // Settled after the answer, so payments tells orders, with the orders token.
    let intent = created["provider_id"].as_str().unwrap();
    app.sim_control(&format!("/payment_intents/{intent}/succeed"), json!({}))
        .await;
    crate::support::eventually("orders acknowledges the outcome", || async {
        !app.orders.acknowledged(&order).is_empty()
    })
    .await;
}
