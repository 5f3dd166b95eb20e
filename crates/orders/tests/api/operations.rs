//! Admin API, health and OpenAPI.

use serde_json::{Value, json};

use crate::support::spawn;

#[tokio::test]
async fn the_admin_api_needs_the_admin_token() {
    let app = spawn().await;
    let url = format!("{}/admin/inventory/ANY", app.url);
    assert_eq!(app.http.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(
        app.http
            .get(&url)
            .bearer_auth("test-internal")
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(
        app.http
            .get(&url)
            .bearer_auth("test-admin")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn stock_cannot_go_negative_or_below_what_is_reserved() {
    let app = spawn().await;
    let sku = app.product(100, 5).await;
    assert_eq!(
        app.admin_put(&format!("/admin/inventory/{sku}"), json!({"on_hand": -1}))
            .await
            .status(),
        422
    );
    let cart = app.cart_with(&sku, 3).await;
    let order = app.order(&cart, None).await;
    app.wait_for(&order, "awaiting_payment").await;
    assert_eq!(
        app.admin_put(&format!("/admin/inventory/{sku}"), json!({"on_hand": 2}))
            .await
            .status(),
        422
    );
    let raised: Value = app
        .admin_put(&format!("/admin/inventory/{sku}"), json!({"on_hand": 10}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        raised,
        json!({"sku": sku, "on_hand": 10, "reserved": 3, "available": 7})
    );
}

#[tokio::test]
async fn health_metrics_and_openapi_answer() {
    let app = spawn().await;
    assert_eq!(
        app.http
            .get(format!("{}/readyz", app.url))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let doc: Value = testkit::json_of(app.http.get(format!("{}/openapi.json", app.url))).await;
    for path in [
        "/v1/orders",
        "/v1/orders/{id}",
        "/v1/orders/{id}/events",
        "/internal/v1/orders/{id}/payment-events",
        "/admin/jobs/dead",
    ] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
    let metrics = app
        .http
        .get(format!("{}/metrics", app.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("http_requests_total"));
}

#[tokio::test]
async fn replaying_a_dead_job_by_a_malformed_id_is_a_problem_json_404() {
    let app = spawn().await;
    let response = app
        .http
        .post(format!("{}/admin/jobs/dead/not-a-number/replay", app.url))
        .bearer_auth("test-admin")
        .send()
        .await
        .unwrap();
    let problem = testkit::problem(response, 404).await;
    assert_eq!(problem["status"], 404);
}
