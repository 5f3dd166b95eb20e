//! Bad input gets a clear problem+json answer and writes nothing.

use serde_json::{Value, json};

use crate::support::{problem, spawn};

#[tokio::test]
async fn an_unknown_sku_is_a_422_naming_the_field_and_changes_nothing() {
    let app = spawn().await;
    let cart = app.create_cart("USD").await;
    let body = problem(app.add(&cart, "NO-SUCH-SKU", 1).await, 422).await;
    assert_eq!(body["errors"][0]["field"], "sku");
    assert_eq!(app.cart(&cart).await["version"], 1);
}

#[tokio::test]
async fn an_inactive_sku_is_a_422() {
    let app = spawn().await;
    let sku = app.product("Retired", 100, "USD").await;
    sqlx::query("UPDATE catalog.products SET active = false WHERE sku = $1")
        .bind(&sku)
        .execute(&app.pool)
        .await
        .unwrap();
    let cart = app.create_cart("USD").await;
    let body = problem(app.add(&cart, &sku, 1).await, 422).await;
    assert_eq!(body["errors"][0]["field"], "sku");
    assert_eq!(app.cart(&cart).await["items"], json!([]));
}

#[tokio::test]
async fn a_product_in_another_currency_is_a_422() {
    let app = spawn().await;
    let sku = app.product("Euro", 100, "EUR").await;
    let cart = app.create_cart("USD").await;
    let body = problem(app.add(&cart, &sku, 1).await, 422).await;
    assert_eq!(body["errors"][0]["field"], "sku");
    assert_eq!(app.cart(&cart).await["version"], 1);
}

#[tokio::test]
async fn quantities_outside_one_to_ninety_nine_are_422() {
    let app = spawn().await;
    let sku = app.product("Tee", 100, "USD").await;
    let cart = app.create_cart("USD").await;
    for quantity in [0, -1, 100, 1_000_000] {
        let body = problem(app.add(&cart, &sku, quantity).await, 422).await;
        assert_eq!(body["errors"][0]["field"], "quantity", "{quantity}");
    }
    assert_eq!(app.add(&cart, &sku, 60).await.status(), 200);
    let body = problem(app.add(&cart, &sku, 40).await, 422).await;
    assert_eq!(body["errors"][0]["field"], "quantity");
    let view = app.cart(&cart).await;
    assert_eq!(view["items"][0]["quantity"], 60);
    assert_eq!(view["version"], 2);
}

#[tokio::test]
async fn a_quantity_of_the_wrong_type_is_a_422_naming_the_field() {
    let app = spawn().await;
    let cart = app.create_cart("USD").await;
    let body = problem(
        app.post(
            &format!("/v1/carts/{cart}/items"),
            json!({"sku": "X", "quantity": "two"}),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(body["errors"][0]["field"], "quantity");
}

#[tokio::test]
async fn the_hundred_and_first_line_is_a_422() {
    let app = spawn().await;
    let skus: Vec<String> = (0..101)
        .map(|i| format!("LINE-{i}-{}", &app.prefix[7..17]).to_uppercase())
        .collect();
    sqlx::query("INSERT INTO catalog.products (sku, name, unit_price, currency) SELECT s, s, 1, 'USD' FROM UNNEST($1::text[]) s")
        .bind(&skus)
        .execute(&app.pool)
        .await
        .unwrap();
    let cart = app.create_cart("USD").await;
    for sku in &skus[..100] {
        assert_eq!(app.add(&cart, sku, 1).await.status(), 200);
    }
    problem(app.add(&cart, &skus[100], 1).await, 422).await;
    // Adding to an existing line is still fine.
    assert_eq!(app.add(&cart, &skus[0], 1).await.status(), 200);
    assert_eq!(
        app.cart(&cart).await["items"].as_array().unwrap().len(),
        100
    );
}

#[tokio::test]
async fn a_bad_currency_is_a_422() {
    let app = spawn().await;
    for currency in ["usd", "DOLLARS", "", "U$D"] {
        let body = problem(
            app.post("/v1/carts", json!({"currency": currency})).await,
            422,
        )
        .await;
        assert_eq!(body["errors"][0]["field"], "currency");
    }
}

#[tokio::test]
async fn malformed_json_is_a_400_problem() {
    let app = spawn().await;
    let cart = app.create_cart("USD").await;
    for path in [format!("/v1/carts/{cart}/items"), "/v1/carts".to_owned()] {
        let response = app
            .http
            .post(format!("{}{path}", app.url))
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .unwrap();
        problem(response, 400).await;
    }
    assert_eq!(app.cart(&cart).await["version"], 1);
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_problem() {
    let app = spawn().await;
    let cart = app.create_cart("USD").await;
    let response = app
        .http
        .post(format!("{}/v1/carts/{cart}/items", app.url))
        .body("sku=x")
        .send()
        .await
        .unwrap();
    problem(response, 415).await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let app = spawn().await;
    let cart = app.create_cart("USD").await;
    let huge = json!({"sku": "X".repeat(64 * 1024), "quantity": 1});
    problem(
        app.post(&format!("/v1/carts/{cart}/items"), huge).await,
        413,
    )
    .await;
}

#[tokio::test]
async fn a_missing_cart_is_a_404_problem() {
    let app = spawn().await;
    let sku = app.product("Tee", 100, "USD").await;
    let unknown = common::id::new_id("crt");
    problem(app.get(&format!("/v1/carts/{unknown}")).await, 404).await;
    problem(app.get("/v1/carts/not-a-cart-id").await, 404).await;
    problem(app.add(&unknown, &sku, 1).await, 404).await;
    let mut conn = app.redis.clone();
    let exists: bool = redis::cmd("EXISTS")
        .arg(format!("{}{unknown}", app.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!exists, "a rejected add must not create the cart");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = spawn().await;
    problem(app.get("/v1/nothing-here").await, 404).await;
    let body: Value = problem(
        app.http
            .patch(format!("{}/v1/carts", app.url))
            .send()
            .await
            .unwrap(),
        405,
    )
    .await;
    assert_eq!(body["type"], "/problems/method-not-allowed");
}
