//! The cart endpoints' happy paths; what the store guarantees runs on a single Redis and on a
//! cluster.

use serde_json::{Value, json};

use crate::support::{Store, problem, spawn, spawn_on};

#[tokio::test]
async fn creating_a_cart_answers_201_with_location_and_etag() {
    let app = spawn().await;
    let response = app.post("/v1/carts", json!({"currency": "EUR"})).await;
    assert_eq!(response.status(), 201);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(response.headers()["etag"], "\"1\"");
    let cart: Value = response.json().await.unwrap();
    let id = cart["id"].as_str().unwrap();
    assert!(id.starts_with("crt_"));
    assert_eq!(location, format!("/v1/carts/{id}"));
    assert_eq!(cart["currency"], "EUR");
    assert_eq!(cart["items"], json!([]));
    assert_eq!(cart["subtotal"], 0);
    assert_eq!(app.cart(id).await["version"], 1);
}

#[tokio::test]
async fn a_cart_without_a_body_is_in_usd() {
    let app = spawn().await;
    let response = app
        .http
        .post(format!("{}/v1/carts", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.json::<Value>().await.unwrap()["currency"], "USD");
}

#[tokio::test]
async fn added_items_are_priced_from_the_catalog() {
    let app = spawn().await;
    let tee = app.product("Tee", 1999, "USD").await;
    let mug = app.product("Mug", 1250, "USD").await;
    let cart = app.create_cart("USD").await;

    assert_eq!(app.add(&cart, &tee, 2).await.status(), 200);
    let response = app.add(&cart, &mug, 1).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["etag"], "\"3\"");
    let view: Value = response.json().await.unwrap();
    assert_eq!(
        view,
        app.cart(&cart)
            .await
            .as_object()
            .map(|o| Value::Object(o.clone()))
            .unwrap_or_default()
    );

    let items = view["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let tee_line = items.iter().find(|i| i["sku"] == tee).unwrap();
    assert_eq!(tee_line["name"], "Tee");
    assert_eq!(tee_line["quantity"], 2);
    assert_eq!(tee_line["unit_price"], 1999);
    assert_eq!(tee_line["line_total"], 3998);
    assert_eq!(view["item_count"], 3);
    assert_eq!(view["subtotal"], 3998 + 1250);
    assert_eq!(view["version"], 3);
    assert!(view["expires_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn adding_the_same_sku_again_adds_to_its_line() {
    let app = spawn().await;
    let tee = app.product("Tee", 1000, "USD").await;
    let cart = app.create_cart("USD").await;
    app.add(&cart, &tee, 2).await;
    let view: Value = app.add(&cart, &tee, 5).await.json().await.unwrap();
    assert_eq!(view["items"].as_array().unwrap().len(), 1);
    assert_eq!(view["items"][0]["quantity"], 7);
}

on_every_store!(put_sets_a_line_and_zero_removes_it);
async fn put_sets_a_line_and_zero_removes_it(store: Store) {
    let app = spawn_on(store).await;
    let tee = app.product("Tee", 1000, "USD").await;
    let cart = app.create_cart("USD").await;
    app.add(&cart, &tee, 2).await;

    let set = app
        .http
        .put(format!("{}/v1/carts/{cart}/items/{tee}", app.url))
        .json(&json!({"quantity": 9}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(
        set.json::<Value>().await.unwrap()["items"][0]["quantity"],
        9
    );

    let zero = app
        .http
        .put(format!("{}/v1/carts/{cart}/items/{tee}", app.url))
        .json(&json!({"quantity": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(zero.status(), 200);
    assert_eq!(zero.json::<Value>().await.unwrap()["items"], json!([]));
}

#[tokio::test]
async fn put_on_an_absent_line_creates_it() {
    let app = spawn().await;
    let tee = app.product("Tee", 1000, "USD").await;
    let cart = app.create_cart("USD").await;
    let set = app
        .http
        .put(format!("{}/v1/carts/{cart}/items/{tee}", app.url))
        .json(&json!({"quantity": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert_eq!(
        set.json::<Value>().await.unwrap()["items"][0]["quantity"],
        4
    );
}

on_every_store!(deleting_a_line_removes_it_and_deleting_a_cart_removes_the_cart);
async fn deleting_a_line_removes_it_and_deleting_a_cart_removes_the_cart(store: Store) {
    let app = spawn_on(store).await;
    let tee = app.product("Tee", 1000, "USD").await;
    let mug = app.product("Mug", 500, "USD").await;
    let cart = app.create_cart("USD").await;
    app.add(&cart, &tee, 1).await;
    app.add(&cart, &mug, 1).await;

    let response = app
        .http
        .delete(format!("{}/v1/carts/{cart}/items/{tee}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let view: Value = response.json().await.unwrap();
    assert_eq!(view["items"].as_array().unwrap().len(), 1);
    assert_eq!(view["items"][0]["sku"], mug);

    let response = app
        .http
        .delete(format!("{}/v1/carts/{cart}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    problem(app.get(&format!("/v1/carts/{cart}")).await, 404).await;
    problem(
        app.http
            .delete(format!("{}/v1/carts/{cart}", app.url))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
}

#[tokio::test]
async fn removing_a_line_that_is_not_there_changes_nothing() {
    let app = spawn().await;
    let tee = app.product("Tee", 1000, "USD").await;
    let cart = app.create_cart("USD").await;
    let response = app
        .http
        .delete(format!("{}/v1/carts/{cart}/items/{tee}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["version"], 1);
}

on_every_store!(a_matching_if_match_is_accepted_and_a_stale_one_is_412_and_changes_nothing);
async fn a_matching_if_match_is_accepted_and_a_stale_one_is_412_and_changes_nothing(store: Store) {
    let app = spawn_on(store).await;
    let tee = app.product("Tee", 1000, "USD").await;
    let cart = app.create_cart("USD").await;

    let fresh = app
        .http
        .post(format!("{}/v1/carts/{cart}/items", app.url))
        .header("if-match", "\"1\"")
        .json(&json!({"sku": tee, "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);

    let stale = app
        .http
        .post(format!("{}/v1/carts/{cart}/items", app.url))
        .header("if-match", "\"1\"")
        .json(&json!({"sku": tee, "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.headers()["etag"], "\"2\"");
    problem(stale, 412).await;

    let stale_delete = app
        .http
        .delete(format!("{}/v1/carts/{cart}", app.url))
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    problem(stale_delete, 412).await;

    let view = app.cart(&cart).await;
    assert_eq!(view["version"], 2);
    assert_eq!(view["items"][0]["quantity"], 1);
}

on_every_store!(every_write_restarts_the_carts_time_to_live);
async fn every_write_restarts_the_carts_time_to_live(store: Store) {
    let mut settings = crate::support::settings_on(store).await;
    settings.cart_ttl = std::time::Duration::from_secs(3600);
    let app = crate::support::spawn_with(settings).await;
    let tee = app.product("Tee", 1000, "USD").await;
    let cart = app.create_cart("USD").await;
    assert!(app.pttl(&cart).await > 3_500_000);

    // Age the cart by hand, then write to it.
    let mut conn = app.redis.clone();
    let _: () = redis::cmd("PEXPIRE")
        .arg(format!("{}{cart}", app.prefix))
        .arg(5_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(app.pttl(&cart).await <= 5_000);
    assert_eq!(app.add(&cart, &tee, 1).await.status(), 200);
    assert!(app.pttl(&cart).await > 3_500_000, "an add restarts the TTL");

    let _: () = redis::cmd("PEXPIRE")
        .arg(format!("{}{cart}", app.prefix))
        .arg(5_000)
        .query_async(&mut conn)
        .await
        .unwrap();
    let set = app
        .http
        .put(format!("{}/v1/carts/{cart}/items/{tee}", app.url))
        .json(&json!({"quantity": 3}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), 200);
    assert!(app.pttl(&cart).await > 3_500_000, "a set restarts the TTL");
}

on_every_store!(an_expired_cart_is_gone);
async fn an_expired_cart_is_gone(store: Store) {
    let app = spawn_on(store).await;
    let cart = app.create_cart("USD").await;
    let mut conn = app.redis.clone();
    let _: () = redis::cmd("DEL")
        .arg(format!("{}{cart}", app.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    problem(app.get(&format!("/v1/carts/{cart}")).await, 404).await;
}
