//! Checkout in the monolith: one request places and confirms the order, with the new orders
//! service's body shape and idempotency rules.

use serde_json::{Value, json};

use crate::support::{TestApp, problem, spawn};

async fn filled_cart(app: &TestApp) -> (String, String) {
    let tee = app.product("Tee", 1999, "USD").await;
    let cart = app.create_cart().await;
    assert_eq!(app.add(&cart, &tee, 2).await.status(), 200);
    (cart, tee)
}

async fn orders_placed(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM legacy.orders")
        .fetch_one(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_checkout_is_confirmed_in_the_request_and_clears_the_cart() {
    let app = spawn().await;
    let (cart, tee) = filled_cart(&app).await;
    let response = app
        .checkout("k1", json!({"cart_id": cart, "email": "shopper@example.com", "payment_method": "pm_card_visa"}))
        .await;
    assert_eq!(response.status(), 201);
    assert!(!response.headers().contains_key("idempotent-replayed"));
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = response.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    assert!(id.bytes().all(|b| b.is_ascii_digit()), "{id}");
    assert_eq!(location, format!("/v1/orders/{id}"));
    assert_eq!(order["status"], "confirmed");
    assert_eq!(
        order["items"],
        json!([{"sku": tee, "name": "Tee", "quantity": 2, "unit_price": 1999, "line_total": 3998}])
    );
    assert_eq!(order["total"], 3998);
    assert_eq!(order["currency"], "USD");
    assert_eq!(order["email"], "shopper@example.com");
    assert_eq!(order["failure_reason"], Value::Null);
    assert_eq!(order["payment"], Value::Null);
    assert!(order["created_at"].is_string());

    let read = app.get(&location).await;
    assert_eq!(read.status(), 200);
    assert_eq!(read.json::<Value>().await.unwrap(), order);
    problem(app.get(&format!("/v1/carts/{cart}")).await, 404).await;

    let events = app.get(&format!("{location}/events")).await;
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let text = events.text().await.unwrap();
    assert!(text.contains("event: order"), "{text}");
    assert!(text.contains("\"status\":\"confirmed\""), "{text}");
}

#[tokio::test]
async fn a_retry_with_the_same_key_replays_the_order_and_another_body_is_refused() {
    let app = spawn().await;
    let (cart, _) = filled_cart(&app).await;
    let body = json!({"cart_id": cart, "email": "shopper@example.com"});
    let first: Value = app
        .checkout("same", body.clone())
        .await
        .json()
        .await
        .unwrap();
    let again = app.checkout("same", body).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first);

    let other = app
        .checkout(
            "same",
            json!({"cart_id": cart, "email": "other@example.com"}),
        )
        .await;
    assert_eq!(
        problem(other, 422).await["type"],
        "/problems/idempotency-key-reused"
    );
    assert_eq!(orders_placed(&app).await, 1);
}

#[tokio::test]
async fn concurrent_retries_place_one_order() {
    let app = spawn().await;
    let (cart, _) = filled_cart(&app).await;
    let body = json!({"cart_id": cart, "email": "shopper@example.com"});
    let answers =
        futures_util::future::join_all((0..8).map(|_| app.checkout("race", body.clone()))).await;
    let mut ids = Vec::new();
    for answer in answers {
        assert_eq!(answer.status(), 201);
        ids.push(answer.json::<Value>().await.unwrap()["id"].clone());
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(orders_placed(&app).await, 1);
}

#[tokio::test]
async fn an_empty_missing_or_withdrawn_cart_cannot_be_ordered() {
    let app = spawn().await;
    let empty = app.create_cart().await;
    let (withdrawn, tee) = filled_cart(&app).await;
    sqlx::query("UPDATE legacy.products SET active = false WHERE sku = $1")
        .bind(&tee)
        .execute(&app.pool)
        .await
        .unwrap();
    for (key, cart) in [
        ("a", empty.as_str()),
        ("b", "999999999"),
        ("c", withdrawn.as_str()),
    ] {
        let answer = app
            .checkout(
                key,
                json!({"cart_id": cart, "email": "shopper@example.com"}),
            )
            .await;
        assert_eq!(
            problem(answer, 422).await["type"],
            "/problems/cart-not-orderable",
            "{cart}"
        );
    }
    assert_eq!(orders_placed(&app).await, 0);
    assert_eq!(app.cart(&withdrawn).await["items"][0]["available"], false);
}

#[tokio::test]
async fn an_unknown_order_is_a_404() {
    let app = spawn().await;
    for path in [
        "/v1/orders/123",
        "/v1/orders/ord_0123456789abcdefghjkmnpqrs",
        "/v1/orders/1/events",
    ] {
        problem(app.get(path).await, 404).await;
    }
}
