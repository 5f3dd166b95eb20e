//! Health, readiness, metrics and the OpenAPI document.

use serde_json::Value;

use crate::support::spawn;

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status(), 200);
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["checks"]["postgres"], "ok");
    assert_eq!(body["checks"]["redis"], "ok");
}

#[tokio::test]
async fn metrics_count_requests_per_route_with_latency() {
    let app = spawn().await;
    let cart = app.create_cart("USD").await;
    app.cart(&cart).await;
    let text = app.get("/metrics").await.text().await.unwrap();
    assert!(
        text.contains(r#"http_requests_total{method="GET",route="/v1/carts/{id}",status="200"}"#),
        "{text}"
    );
    assert!(text.contains(r#"http_request_duration_seconds_bucket{method="POST",route="/v1/carts",status="201",le="0.005"}"#), "{text}");
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint_and_error() {
    let app = spawn().await;
    let doc: Value = app.get("/openapi.json").await.json().await.unwrap();
    let paths = &doc["paths"];
    for (path, method) in [
        ("/v1/carts", "post"),
        ("/v1/carts/{id}", "get"),
        ("/v1/carts/{id}", "delete"),
        ("/v1/carts/{id}/items", "post"),
        ("/v1/carts/{id}/items/{sku}", "put"),
        ("/v1/carts/{id}/items/{sku}", "delete"),
    ] {
        let operation = &paths[path][method];
        assert!(operation.is_object(), "{method} {path} is described");
        assert!(
            operation["responses"]["404"].is_object() || path == "/v1/carts",
            "{method} {path} documents 404"
        );
    }
    assert!(paths["/v1/carts/{id}/items"]["post"]["responses"]["422"]["content"]["application/problem+json"].is_object());
    for schema in ["CartView", "LineView", "AddItem", "SetQuantity", "Problem"] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "{schema} is described"
        );
    }
}
