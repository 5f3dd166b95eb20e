//! The cart paths answer as the new cart service does: the same bodies, versions, `ETag`,
//! `If-Match` and `Location`, under the monolith's numeric ids.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::{problem, spawn};

fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect()
}

#[tokio::test]
async fn a_new_cart_has_a_numeric_id_a_location_an_etag_and_the_cart_service_s_shape() {
    let app = spawn().await;
    let response = app.post("/v1/carts", json!({"currency": "EUR"})).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["etag"], "\"1\"");
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let cart: Value = response.json().await.unwrap();
    let id = cart["id"].as_str().unwrap();
    assert!(id.bytes().all(|b| b.is_ascii_digit()), "{id}");
    assert_eq!(location, format!("/v1/carts/{id}"));
    assert_eq!(
        keys(&cart),
        BTreeSet::from([
            "id",
            "currency",
            "items",
            "item_count",
            "subtotal",
            "version",
            "expires_at"
        ])
    );
    assert_eq!(cart["currency"], "EUR");
    assert_eq!(cart["items"], json!([]));
    assert_eq!(cart["version"], 1);
    assert!(
        time::OffsetDateTime::parse(
            cart["expires_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok()
    );
    // No body at all makes a USD cart, as the new service does.
    let bare = app
        .http
        .post(format!("{}/v1/carts", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 201);
    assert_eq!(bare.json::<Value>().await.unwrap()["currency"], "USD");
}

#[tokio::test]
async fn lines_are_added_set_and_removed_and_priced_like_the_cart_service() {
    let app = spawn().await;
    let tee = app.product("Tee", 1999, "USD").await;
    let mug = app.product("Mug", 1250, "USD").await;
    let cart = app.create_cart().await;

    assert_eq!(app.add(&cart, &tee, 2).await.status(), 200);
    assert_eq!(app.add(&cart, &tee, 1).await.status(), 200);
    let added = app.add(&cart, &mug, 1).await;
    assert_eq!(added.headers()["etag"], "\"4\"");
    let view: Value = added.json().await.unwrap();
    let line = view["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["sku"] == tee.as_str())
        .unwrap();
    assert_eq!(
        keys(line),
        BTreeSet::from([
            "sku",
            "name",
            "quantity",
            "unit_price",
            "line_total",
            "available"
        ])
    );
    assert_eq!(line["quantity"], 3);
    assert_eq!(line["unit_price"], 1999);
    assert_eq!(line["line_total"], 5997);
    assert_eq!(line["available"], true);
    assert_eq!(view["item_count"], 4);
    assert_eq!(view["subtotal"], 5997 + 1250);

    let set = app
        .send(
            reqwest::Method::PUT,
            &format!("/v1/carts/{cart}/items/{tee}"),
            json!({"quantity": 5}),
        )
        .await;
    assert_eq!(
        set.json::<Value>().await.unwrap()["subtotal"],
        5 * 1999 + 1250
    );
    let zero = app
        .send(
            reqwest::Method::PUT,
            &format!("/v1/carts/{cart}/items/{tee}"),
            json!({"quantity": 0}),
        )
        .await;
    assert_eq!(
        zero.json::<Value>().await.unwrap()["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let removed = app
        .http
        .delete(format!("{}/v1/carts/{cart}/items/{mug}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    let view = app.cart(&cart).await;
    assert_eq!(view["items"], json!([]));
    assert_eq!(view["subtotal"], 0);
    assert_eq!(view["version"], 7);
}

#[tokio::test]
async fn a_stale_if_match_is_a_412_with_the_current_etag_and_changes_nothing() {
    let app = spawn().await;
    let tee = app.product("Tee", 100, "USD").await;
    let cart = app.create_cart().await;
    app.add(&cart, &tee, 1).await;
    let stale = app
        .http
        .post(format!("{}/v1/carts/{cart}/items", app.url))
        .header("if-match", "\"1\"")
        .json(&json!({"sku": tee, "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.headers()["etag"], "\"2\"");
    assert_eq!(problem(stale, 412).await["type"], "/problems/stale-cart");
    let fresh = app
        .http
        .post(format!("{}/v1/carts/{cart}/items", app.url))
        .header("if-match", "\"2\"")
        .json(&json!({"sku": tee, "quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    assert_eq!(app.cart(&cart).await["items"][0]["quantity"], 2);
}

#[tokio::test]
async fn a_deleted_cart_is_gone() {
    let app = spawn().await;
    let cart = app.create_cart().await;
    let deleted = app
        .http
        .delete(format!("{}/v1/carts/{cart}", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    problem(app.get(&format!("/v1/carts/{cart}")).await, 404).await;
}

#[tokio::test]
async fn the_product_page_shows_the_price_the_carts_use() {
    let app = spawn().await;
    let tee = app.product("Tee", 1999, "USD").await;
    let response = app.get(&format!("/v1/products/{tee}")).await;
    assert_eq!(response.status(), 200);
    let product: Value = response.json().await.unwrap();
    assert_eq!(
        product,
        json!({"sku": tee, "name": "Tee", "unit_price": 1999, "currency": "USD", "active": true})
    );
    let missing = problem(app.get("/v1/products/NO-SUCH-SKU").await, 404).await;
    assert_eq!(missing["type"], "/problems/not-found");
}
