//! Hostile input to the cart and what stops it: text with control characters is a 422 that
//! changes nothing, never a 500 (Postgres refuses U+0000 in the catalog lookup); and the
//! service reads `APP_ENV` like the others, refusing a value it does not know.

use serde_json::json;

use crate::support::{problem, spawn};

#[tokio::test]
async fn control_characters_in_a_sku_are_a_422_and_change_nothing() {
    let app = spawn().await;
    let sku = app.product("Tee", 100, "USD").await;
    let cart = app.create_cart("USD").await;
    for bad in [
        format!("{sku}\u{0}"),
        format!("\u{0}{sku}"),
        format!("{sku}\u{7f}"),
        format!("{sku}\n"),
        format!("{sku}\u{1b}[2J"),
    ] {
        let body = problem(app.add(&cart, &bad, 1).await, 422).await;
        assert_eq!(body["errors"][0]["field"], "sku", "{bad:?}");
    }
    // The same through the path of a line: `%00` decodes to U+0000.
    let put = app
        .http
        .put(format!("{}/v1/carts/{cart}/items/{sku}%00", app.url))
        .json(&json!({"quantity": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(problem(put, 422).await["errors"][0]["field"], "sku");
    assert_eq!(app.cart(&cart).await["version"], 1);
}

#[tokio::test]
async fn control_characters_in_a_currency_are_a_422_and_create_nothing() {
    let app = spawn().await;
    for bad in ["US\u{0}", "\u{0}USD", "USD\n", "U\u{7f}D"] {
        let response = app.post("/v1/carts", json!({ "currency": bad })).await;
        let body = problem(response, 422).await;
        assert_eq!(body["errors"][0]["field"], "currency", "{bad:?}");
    }
}

#[test]
fn an_unknown_app_env_stops_start_up_naming_it() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cart"))
        .env("APP_ENV", "staging")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .output()
        .expect("the cart binary runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("APP_ENV"), "{stderr}");
}
