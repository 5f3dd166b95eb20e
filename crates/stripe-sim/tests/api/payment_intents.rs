//! PaymentIntent life cycles driven by Stripe's test payment methods.

use serde_json::{Value, json};

use crate::support::TestSim;

#[tokio::test]
async fn confirming_with_pm_card_visa_succeeds_with_a_charge() {
    let app = TestSim::without_webhooks().await;

    let created: Value = app
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1500"),
                ("currency", "USD"),
                ("metadata[order_id]", "ord_1"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap();
    let confirmed = app
        .post(
            &format!("/v1/payment_intents/{id}/confirm"),
            &[("payment_method", "pm_card_visa")],
        )
        .await;

    assert_eq!(created["status"], "requires_payment_method");
    assert_eq!(created["currency"], "usd");
    assert!(
        created["client_secret"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{id}_secret_"))
    );
    assert_eq!(confirmed.status(), 200);
    let confirmed: Value = confirmed.json().await.unwrap();
    assert_eq!(confirmed["status"], "succeeded");
    assert_eq!(confirmed["amount_received"], 1500);
    assert_eq!(confirmed["metadata"], json!({ "order_id": "ord_1" }));
    let charge_id = confirmed["latest_charge"].as_str().unwrap();
    assert!(charge_id.starts_with("ch_"));
    let fetched: Value = app
        .get(&format!("/v1/payment_intents/{id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, confirmed);
    let charge: Value = app
        .get(&format!("/v1/charges/{charge_id}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(charge["status"], "succeeded");
    assert_eq!(charge["payment_intent"], id);
    assert_eq!(
        app.event_types(Some(id)),
        ["payment_intent.created", "payment_intent.succeeded"]
    );
}

#[tokio::test]
async fn a_payment_method_without_confirm_requires_confirmation() {
    let app = TestSim::without_webhooks().await;

    let created: Value = app
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1500"),
                ("currency", "usd"),
                ("payment_method", "pm_card_mastercard"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(created["status"], "requires_confirmation");
    assert!(
        created["payment_method"]
            .as_str()
            .unwrap()
            .starts_with("pm_")
    );
}

#[tokio::test]
async fn a_declined_card_is_a_402_and_the_intent_needs_a_new_payment_method() {
    let app = TestSim::without_webhooks().await;

    let response = app
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1500"),
                ("currency", "usd"),
                ("payment_method", "pm_card_chargeDeclined"),
                ("confirm", "true"),
            ],
        )
        .await;

    assert_eq!(response.status(), 402);
    let error = &response.json::<Value>().await.unwrap()["error"];
    assert_eq!(error["type"], "card_error");
    assert_eq!(error["code"], "card_declined");
    assert_eq!(error["decline_code"], "generic_decline");
    assert!(error["charge"].as_str().unwrap().starts_with("ch_"));
    let pi = &error["payment_intent"];
    assert_eq!(pi["status"], "requires_payment_method");
    assert_eq!(pi["last_payment_error"]["code"], "card_declined");
    let id = pi["id"].as_str().unwrap();
    assert_eq!(
        app.event_types(Some(id)),
        ["payment_intent.created", "payment_intent.payment_failed"]
    );
}

#[tokio::test]
async fn insufficient_funds_declines_with_its_decline_code() {
    let app = TestSim::without_webhooks().await;

    let response = app
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "2000"),
                ("currency", "eur"),
                ("payment_method", "pm_card_insufficientFunds"),
                ("confirm", "true"),
            ],
        )
        .await;

    assert_eq!(response.status(), 402);
    let error = &response.json::<Value>().await.unwrap()["error"];
    assert_eq!(error["code"], "card_declined");
    assert_eq!(error["decline_code"], "insufficient_funds");
    assert_eq!(error["message"], "Your card has insufficient funds.");
}

#[tokio::test]
async fn a_card_needing_authentication_waits_for_the_customer() {
    let app = TestSim::without_webhooks().await;

    let pending = app
        .paid_intent("1500", "pm_card_authenticationRequired")
        .await;
    let id = pending["id"].as_str().unwrap();
    let authenticated = app
        .control(&format!("/payment_intents/{id}/authenticate"), json!({}))
        .await;

    assert_eq!(pending["status"], "requires_action");
    assert_eq!(pending["next_action"]["type"], "use_stripe_sdk");
    assert_eq!(authenticated["status"], "succeeded");
    assert_eq!(
        app.event_types(Some(id)),
        [
            "payment_intent.created",
            "payment_intent.requires_action",
            "payment_intent.succeeded"
        ]
    );
}

#[tokio::test]
async fn a_failed_authentication_fails_the_payment() {
    let app = TestSim::without_webhooks().await;

    let pending = app
        .paid_intent("1500", "pm_card_authenticationRequired")
        .await;
    let id = pending["id"].as_str().unwrap();
    let failed = app
        .control(
            &format!("/payment_intents/{id}/authenticate"),
            json!({ "outcome": "fail" }),
        )
        .await;

    assert_eq!(failed["status"], "requires_payment_method");
    assert_eq!(
        failed["last_payment_error"]["code"],
        "payment_intent_authentication_failure"
    );
    assert_eq!(
        app.event_types(Some(id)).last().unwrap(),
        "payment_intent.payment_failed"
    );
}

#[tokio::test]
async fn an_open_intent_can_be_canceled_but_a_paid_one_cannot() {
    let app = TestSim::without_webhooks().await;
    let open: Value = app
        .post(
            "/v1/payment_intents",
            &[("amount", "1500"), ("currency", "usd")],
        )
        .await
        .json()
        .await
        .unwrap();
    let paid = app.paid_intent("1500", "pm_card_visa").await;

    let canceled = app
        .post(
            &format!(
                "/v1/payment_intents/{}/cancel",
                open["id"].as_str().unwrap()
            ),
            &[("cancellation_reason", "abandoned")],
        )
        .await;
    let refused = app
        .post(
            &format!(
                "/v1/payment_intents/{}/cancel",
                paid["id"].as_str().unwrap()
            ),
            &[],
        )
        .await;

    assert_eq!(canceled.status(), 200);
    let canceled: Value = canceled.json().await.unwrap();
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["cancellation_reason"], "abandoned");
    assert_eq!(refused.status(), 400);
    let error = &refused.json::<Value>().await.unwrap()["error"];
    assert_eq!(error["code"], "payment_intent_unexpected_state");
}

#[tokio::test]
async fn manual_capture_holds_the_funds_until_captured() {
    let app = TestSim::without_webhooks().await;

    let held: Value = app
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1500"),
                ("currency", "usd"),
                ("payment_method", "pm_card_visa"),
                ("capture_method", "manual"),
                ("confirm", "true"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
    let id = held["id"].as_str().unwrap();
    let captured: Value = app
        .post(
            &format!("/v1/payment_intents/{id}/capture"),
            &[("amount_to_capture", "1000")],
        )
        .await
        .json()
        .await
        .unwrap();

    assert_eq!(held["status"], "requires_capture");
    assert_eq!(held["amount_capturable"], 1500);
    assert_eq!(captured["status"], "succeeded");
    assert_eq!(captured["amount_received"], 1000);
}

#[tokio::test]
async fn unknown_parameters_and_bad_amounts_are_rejected() {
    let app = TestSim::without_webhooks().await;

    let unknown = app
        .post(
            "/v1/payment_intents",
            &[("amount", "1500"), ("currency", "usd"), ("colour", "red")],
        )
        .await;
    let too_small = app
        .post(
            "/v1/payment_intents",
            &[("amount", "10"), ("currency", "usd")],
        )
        .await;
    let no_currency = app.post("/v1/payment_intents", &[("amount", "1500")]).await;
    let unknown_pm = app
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1500"),
                ("currency", "usd"),
                ("payment_method", "pm_nope"),
            ],
        )
        .await;

    for (response, param) in [
        (unknown, "colour"),
        (too_small, "amount"),
        (no_currency, "currency"),
        (unknown_pm, "payment_method"),
    ] {
        assert_eq!(response.status(), 400);
        let error = &response.json::<Value>().await.unwrap()["error"];
        assert_eq!(error["type"], "invalid_request_error");
        assert_eq!(error["param"], param);
    }
    assert!(app.sim.events().is_empty());
}
