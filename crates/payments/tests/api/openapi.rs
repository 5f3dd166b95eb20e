//! The payments service's `/openapi.json`: valid OpenAPI 3.1, and as strict as the server.

use serde_json::Value;
use testkit::openapi::{assert_valid, operations, statuses};

use crate::support::{TestApp, spawn};

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
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn the_openapi_document_declares_what_the_server_enforces() {
    let app = spawn().await;
    let doc = document(&app).await;
    let schemas = &doc["components"]["schemas"];
    for request in ["CreatePaymentRequest", "ClosePaymentRequest"] {
        let fields = &schemas[request]["properties"];
        assert_eq!(fields["amount"]["minimum"], 1, "{request}");
        assert_eq!(fields["currency"]["pattern"], "^[A-Z]{3}$", "{request}");
        assert!(
            fields["order_id"]["pattern"]
                .as_str()
                .unwrap()
                .starts_with("^ord_"),
            "{request}"
        );
    }
    assert_eq!(
        schemas["RefundRequest"]["properties"]["amount"]["minimum"],
        1
    );
    let create = &doc["paths"]["/internal/v1/payments"]["post"];
    let key = create["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Idempotency-Key")
        .expect("Idempotency-Key is declared");
    assert_eq!(key["schema"]["maxLength"], 255);

    for (method, path, op) in operations(&doc) {
        let answers = statuses(op);
        // The JSON bodies read through the JSON extractor answer 415 without the media type;
        // the webhook and the refund read any body as bytes.
        if path.starts_with("/internal/") && method == "post" {
            assert!(answers.iter().any(|s| s == "415"), "{method} {path}");
        }
        if op["security"].is_array() {
            assert!(answers.iter().any(|s| s == "401"), "{method} {path}");
            assert!(answers.iter().any(|s| s == "403"), "{method} {path}");
        }
    }
}
