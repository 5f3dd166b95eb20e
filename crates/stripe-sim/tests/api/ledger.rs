//! `GET /_sim/payment_intents`: every intent with the money it moved, for checking books.

use serde_json::Value;

use crate::support::TestSim;

impl TestSim {
    async fn intents(&self, query: &str) -> Vec<Value> {
        let response = self
            .http
            .get(format!("{}/_sim/payment_intents{query}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let list: Value = response.json().await.unwrap();
        list["data"].as_array().unwrap().clone()
    }
}

#[tokio::test]
async fn the_ledger_lists_every_intent_with_its_charges_refunds_and_metadata() {
    let app = TestSim::without_webhooks().await;
    let paid = app
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1500"),
                ("currency", "usd"),
                ("payment_method", "pm_card_visa"),
                ("confirm", "true"),
                ("metadata[order_id]", "ord_paid"),
            ],
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let refund = app
        .post(
            "/v1/refunds",
            &[
                ("payment_intent", paid["id"].as_str().unwrap()),
                ("amount", "400"),
            ],
        )
        .await;
    assert_eq!(refund.status(), 200);
    let open = app
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "900"),
                ("currency", "usd"),
                ("metadata[order_id]", "ord_open"),
            ],
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    let declined = app
        .post(
            &format!(
                "/v1/payment_intents/{}/confirm",
                open["id"].as_str().unwrap()
            ),
            &[("payment_method", "pm_card_chargeDeclined")],
        )
        .await;
    assert_eq!(declined.status(), 402);

    let all = app.intents("").await;

    assert_eq!(all.len(), 2);
    let row = |id: &Value| all.iter().find(|pi| pi["id"] == *id).unwrap().clone();
    let paid_row = &row(&paid["id"]);
    assert_eq!(paid_row["status"], "succeeded");
    assert_eq!(paid_row["amount"], 1500);
    assert_eq!(paid_row["amount_received"], 1500);
    assert_eq!(paid_row["amount_refunded"], 400);
    assert_eq!(paid_row["metadata"]["order_id"], "ord_paid");
    let charges = paid_row["charges"].as_array().unwrap();
    assert_eq!(charges.len(), 1);
    assert_eq!(charges[0]["status"], "succeeded");
    assert_eq!(charges[0]["amount_refunded"], 400);
    assert_eq!(charges[0]["refunds"][0]["amount"], 400);

    let open_row = &row(&open["id"]);
    assert_eq!(open_row["status"], "requires_payment_method");
    assert_eq!(open_row["amount_received"], 0);
    assert_eq!(open_row["amount_refunded"], 0);
    assert_eq!(open_row["last_payment_error"], "card_declined");
    assert_eq!(open_row["charges"][0]["status"], "failed");
    assert_eq!(open_row["charges"][0]["failure_code"], "generic_decline");
}

#[tokio::test]
async fn the_ledger_filters_by_metadata_and_refuses_unknown_parameters() {
    let app = TestSim::without_webhooks().await;
    for order in ["ord_a", "ord_b", "ord_a"] {
        let created = app
            .post(
                "/v1/payment_intents",
                &[
                    ("amount", "700"),
                    ("currency", "usd"),
                    ("metadata[order_id]", order),
                ],
            )
            .await;
        assert_eq!(created.status(), 200);
    }

    let of_a = app.intents("?metadata[order_id]=ord_a").await;
    let of_none = app.intents("?metadata[order_id]=ord_zzz").await;
    let unknown = app
        .http
        .get(format!(
            "{}/_sim/payment_intents?status=succeeded",
            app.base
        ))
        .send()
        .await
        .unwrap();

    assert_eq!(of_a.len(), 2);
    assert!(of_a.iter().all(|pi| pi["metadata"]["order_id"] == "ord_a"));
    assert!(of_none.is_empty());
    assert_eq!(unknown.status(), 400);
}
