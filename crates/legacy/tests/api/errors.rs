//! Bad input gets the same problem+json answers the new services give, and writes nothing.

use serde_json::json;

use crate::support::{TestApp, problem, spawn};

async fn rows(app: &TestApp) -> (i64, i64, i64) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM legacy.carts), (SELECT count(*) FROM legacy.cart_lines),
                (SELECT count(*) FROM legacy.orders)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn bad_cart_input_is_a_problem_naming_the_field_and_changes_nothing() {
    let app = spawn().await;
    let tee = app.product("Tee", 100, "USD").await;
    let euro = app.product("Euro", 100, "EUR").await;
    let cart = app.create_cart().await;
    let before = rows(&app).await;

    for (sku, quantity, field) in [
        ("NO-SUCH-SKU", 1, "sku"),
        (euro.as_str(), 1, "sku"),
        ("bad sku", 1, "sku"),
        (tee.as_str(), 0, "quantity"),
        (tee.as_str(), 100, "quantity"),
        (tee.as_str(), -1, "quantity"),
    ] {
        let body = problem(app.add(&cart, sku, quantity).await, 422).await;
        assert_eq!(body["type"], "/problems/validation");
        assert_eq!(body["errors"][0]["field"], field, "{sku} x{quantity}");
    }
    let currency = app.post("/v1/carts", json!({"currency": "usd"})).await;
    assert_eq!(
        problem(currency, 422).await["errors"][0]["field"],
        "currency"
    );
    let unknown_field = app
        .post(
            &format!("/v1/carts/{cart}/items"),
            json!({"sku": tee, "quantity": 1, "price": 1}),
        )
        .await;
    problem(unknown_field, 422).await;
    let malformed = app
        .http
        .post(format!("{}/v1/carts/{cart}/items", app.url))
        .header("content-type", "application/json")
        .body("{\"sku\":")
        .send()
        .await
        .unwrap();
    assert_eq!(
        problem(malformed, 400).await["type"],
        "/problems/malformed-json"
    );
    let not_json = app
        .http
        .post(format!("{}/v1/carts/{cart}/items", app.url))
        .body("sku=x")
        .send()
        .await
        .unwrap();
    problem(not_json, 415).await;
    assert_eq!(rows(&app).await, before);
    assert_eq!(app.cart(&cart).await["version"], 1);
}

#[tokio::test]
async fn a_new_service_s_id_names_nothing_here() {
    let app = spawn().await;
    let tee = app.product("Tee", 100, "USD").await;
    let id = common::id::new_id("crt");
    problem(app.get(&format!("/v1/carts/{id}")).await, 404).await;
    problem(app.add(&id, &tee, 1).await, 404).await;
}

#[tokio::test]
async fn a_bad_checkout_names_every_field_and_places_nothing() {
    let app = spawn().await;
    let without_key = app
        .post(
            "/v1/orders",
            json!({"cart_id": "1000", "email": "shopper@example.com"}),
        )
        .await;
    assert_eq!(
        problem(without_key, 400).await["type"],
        "/problems/idempotency-key-required"
    );
    let body = problem(
        app.checkout(
            "k",
            json!({"cart_id": common::id::new_id("crt"), "email": "nobody\u{0}@example.com"}),
        )
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
    assert_eq!(rows(&app).await, (0, 0, 0));
}

#[tokio::test]
async fn an_unknown_route_or_method_is_a_problem() {
    let app = spawn().await;
    problem(app.get("/v1/nowhere").await, 404).await;
    let patch = app
        .send(reqwest::Method::PATCH, "/v1/carts", json!({}))
        .await;
    problem(patch, 405).await;
}
