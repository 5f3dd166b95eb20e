//! Refunds never exceed what remains refundable.

use serde_json::Value;

use crate::support::TestSim;

#[tokio::test]
async fn refunds_take_what_remains_and_no_more() {
    let app = TestSim::without_webhooks().await;
    let paid = app.paid_intent("1500", "pm_card_visa").await;
    let pi = paid["id"].as_str().unwrap();

    let partial = app
        .post("/v1/refunds", &[("payment_intent", pi), ("amount", "500")])
        .await;
    let too_much = app
        .post("/v1/refunds", &[("payment_intent", pi), ("amount", "1200")])
        .await;
    let rest = app.post("/v1/refunds", &[("payment_intent", pi)]).await;
    let again = app.post("/v1/refunds", &[("payment_intent", pi)]).await;

    assert_eq!(partial.status(), 200);
    let partial: Value = partial.json().await.unwrap();
    assert!(partial["id"].as_str().unwrap().starts_with("re_"));
    assert_eq!(partial["amount"], 500);
    assert_eq!(partial["status"], "succeeded");

    assert_eq!(too_much.status(), 400);
    let error = &too_much.json::<Value>().await.unwrap()["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["code"], "amount_too_large");
    assert_eq!(error["param"], "amount");
    assert_eq!(
        error["message"],
        "Refund amount ($12.00) is greater than unrefunded amount on charge ($10.00)"
    );

    let rest: Value = rest.json().await.unwrap();
    assert_eq!(rest["amount"], 1000);
    assert_eq!(again.status(), 400);
    assert_eq!(
        again.json::<Value>().await.unwrap()["error"]["code"],
        "charge_already_refunded"
    );

    let fetched: Value = app
        .get(&format!("/v1/refunds/{}", partial["id"].as_str().unwrap()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, partial);
    let charge: Value = app
        .get(&format!(
            "/v1/charges/{}",
            paid["latest_charge"].as_str().unwrap()
        ))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(charge["amount_refunded"], 1500);
    assert_eq!(charge["refunded"], true);
}

#[tokio::test]
async fn an_unpaid_intent_has_nothing_to_refund() {
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

    let response = app
        .post(
            "/v1/refunds",
            &[("payment_intent", open["id"].as_str().unwrap())],
        )
        .await;

    assert_eq!(response.status(), 400);
    let error = &response.json::<Value>().await.unwrap()["error"];
    assert_eq!(error["param"], "payment_intent");
}
