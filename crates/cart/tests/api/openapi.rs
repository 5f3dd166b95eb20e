//! The cart's `/openapi.json`: valid OpenAPI 3.1, and as strict as the server.

use serde_json::{Value, json};
use testkit::openapi::{assert_valid, operations, resolve, statuses};

use crate::support::{TestApp, problem, spawn};

async fn document(app: &TestApp) -> Value {
    let response = app
        .http
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_openapi_document_is_valid_openapi_3_1() {
    let app = spawn().await;
    let doc = document(&app).await;
    assert_valid(&doc).await;
}

#[tokio::test]
async fn the_openapi_document_declares_what_the_server_enforces() {
    let app = spawn().await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["AddItem"]["properties"]["quantity"]["minimum"], 1);
    assert_eq!(schemas["AddItem"]["properties"]["quantity"]["maximum"], 99);
    assert_eq!(
        schemas["SetQuantity"]["properties"]["quantity"]["maximum"],
        99
    );
    assert_eq!(
        schemas["CreateCart"]["properties"]["currency"]["pattern"],
        "^[A-Z]{3}$"
    );
    for (method, path, op) in operations(&doc) {
        let body = &op["requestBody"]["content"]["application/json"]["schema"];
        if body.is_null() {
            continue;
        }
        assert_ne!(resolve(&doc, body)["type"], "null", "{method} {path}");
        assert!(
            body.get("oneOf").is_none(),
            "{method} {path}: a null body is refused, so none is declared"
        );
        if path != "/v1/carts" {
            assert!(
                statuses(op).contains(&"415".to_owned()),
                "{method} {path} documents 415"
            );
        }
    }
    let remove = &doc["paths"]["/v1/carts/{id}/items/{sku}"]["delete"];
    assert!(statuses(remove).contains(&"422".to_owned()));
}

#[tokio::test]
async fn a_cart_in_a_currency_that_does_not_exist_is_a_422_naming_currency() {
    let app = spawn().await;
    for code in ["XYZ", "AAA", "XTS"] {
        let response = app.post("/v1/carts", json!({ "currency": code })).await;
        let body = problem(response, 422).await;
        assert_eq!(body["errors"][0]["field"], "currency", "{code}");
    }
    let response = app.post("/v1/carts", json!({"currency": "JPY"})).await;
    assert_eq!(response.status(), 201);
}
