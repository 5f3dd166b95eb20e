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

#[test]
fn a_bad_setting_stops_start_up_naming_the_variable() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_cart"))
        .env("CART_TTL_SECS", "a week")
        .output()
        .expect("the cart binary runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("CART_TTL_SECS"), "{stderr}");
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cart"))
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATABASE_URL", testkit::database("checkout_test_cart"))
        .env("REDIS_URL", testkit::redis_url())
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    crate::support::eventually("the binary serves", || {
        let http = http.clone();
        async move {
            http.get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    })
    .await;
    let pid = child.id().unwrap().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(std::time::Duration::from_secs(15), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
}
