//! The orders service's `/openapi.json`: valid OpenAPI 3.1, and as strict as the server.

use serde_json::Value;
use testkit::openapi::{assert_valid, operations, statuses};

use crate::support::{TestApp, spawn_with};

async fn document() -> (TestApp, Value) {
    let app = spawn_with(crate::support::settings().await, false).await;
    let response = app
        .http
        .get(format!("{}/openapi.json", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc = response.json().await.unwrap();
    (app, doc)
}

#[tokio::test]
async fn the_openapi_document_is_valid_openapi_3_1() {
    let (_app, doc) = document().await;
    assert_valid(&doc).await;
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn the_openapi_document_declares_what_the_server_enforces() {
    let (_app, doc) = document().await;
    let schemas = &doc["components"]["schemas"];
    let checkout = &schemas["CheckoutRequest"]["properties"];
    assert_eq!(checkout["email"]["format"], "email");
    assert!(
        checkout["cart_id"]["pattern"]
            .as_str()
            .unwrap()
            .starts_with("^crt_")
    );
    assert_eq!(schemas["SetStock"]["properties"]["on_hand"]["minimum"], 0);

    let create = &doc["paths"]["/v1/orders"]["post"];
    let key = create["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .expect("Idempotency-Key is declared");
    assert_eq!(key["required"], true);
    assert_eq!(key["schema"]["minLength"], 1);
    assert_eq!(key["schema"]["maxLength"], 255);

    for (method, path, op) in operations(&doc) {
        if op["requestBody"]["content"]["application/json"].is_object() {
            let answers = statuses(op);
            for status in ["400", "415"] {
                assert!(
                    answers.iter().any(|s| s == status),
                    "{method} {path} documents {status}"
                );
            }
        }
        if op["security"].is_array() {
            let answers = statuses(op);
            assert!(answers.iter().any(|s| s == "401"), "{method} {path}");
            assert!(answers.iter().any(|s| s == "403"), "{method} {path}");
        }
    }
}
