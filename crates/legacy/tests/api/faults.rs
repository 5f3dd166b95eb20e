//! The monolith can be made slow or failing, at start-up and at run time; faults touch the
//! business routes only, never the probes, and a failed request changes nothing.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestApp, problem, settings, spawn, spawn_with};

async fn product_statuses(app: &TestApp, sku: &str, n: usize) -> Vec<u16> {
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(
            app.get(&format!("/v1/products/{sku}"))
                .await
                .status()
                .as_u16(),
        );
    }
    statuses
}

#[tokio::test]
async fn a_failure_share_fails_exactly_that_share_with_a_503_problem() {
    let app = spawn().await;
    let tee = app.product("Tee", 100, "USD").await;
    let set = app.faults(json!({"error_rate": 0.5})).await;
    assert_eq!(set.status(), 200);
    assert_eq!(
        set.json::<Value>().await.unwrap(),
        json!({"latency_ms": 0, "error_rate": 0.5})
    );

    let statuses = product_statuses(&app, &tee, 10).await;
    assert_eq!(
        statuses.iter().filter(|s| **s == 503).count(),
        5,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        5,
        "{statuses:?}"
    );
    let failed = loop {
        let response = app.get(&format!("/v1/products/{tee}")).await;
        if response.status() == 503 {
            break response;
        }
    };
    assert_eq!(failed.headers()["retry-after"], "1");
    assert_eq!(problem(failed, 503).await["type"], "/problems/unavailable");

    for probe in ["/healthz", "/readyz", "/metrics", "/__legacy/faults"] {
        for _ in 0..4 {
            assert_eq!(app.get(probe).await.status(), 200, "{probe}");
        }
    }
    app.faults(json!({})).await;
    assert_eq!(product_statuses(&app, &tee, 10).await, vec![200; 10]);
}

#[tokio::test]
async fn a_failed_request_changes_nothing() {
    let app = spawn().await;
    app.faults(json!({"error_rate": 1.0})).await;
    problem(app.post("/v1/carts", json!({})).await, 503).await;
    let carts: i64 = sqlx::query_scalar("SELECT count(*) FROM legacy.carts")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(carts, 0);
    assert_eq!(app.get("/v1/carts/1000").await.status(), 503);
}

#[tokio::test]
async fn latency_delays_business_requests_by_at_least_that_long() {
    let app = spawn().await;
    let tee = app.product("Tee", 100, "USD").await;
    app.faults(json!({"latency_ms": 300})).await;
    let started = Instant::now();
    assert_eq!(app.get(&format!("/v1/products/{tee}")).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    let read: Value = app.get("/__legacy/faults").await.json().await.unwrap();
    assert_eq!(read, json!({"latency_ms": 300, "error_rate": 0.0}));
}

#[tokio::test]
async fn faults_can_be_set_at_start_up() {
    let mut settings = settings();
    settings.faults.error_rate = 1.0;
    let app = spawn_with(settings).await;
    problem(app.get("/v1/products/ANY").await, 503).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
}

#[tokio::test]
async fn bad_fault_values_are_a_422_naming_the_field_and_change_nothing() {
    let app = spawn().await;
    app.faults(json!({"latency_ms": 5})).await;
    for (body, field) in [
        (json!({"error_rate": 1.5}), Some("error_rate")),
        (json!({"error_rate": -0.1}), Some("error_rate")),
        (json!({"latency_ms": 60_001}), Some("latency_ms")),
        (json!({"latency_ms": -1}), None),
        (json!({"latency": 5}), None),
    ] {
        let answer = problem(app.faults(body.clone()).await, 422).await;
        if let Some(field) = field {
            assert_eq!(answer["errors"][0]["field"], field, "{body}");
        }
    }
    let read: Value = app.get("/__legacy/faults").await.json().await.unwrap();
    assert_eq!(read, json!({"latency_ms": 5, "error_rate": 0.0}));
}

#[test]
fn an_out_of_range_fault_setting_refuses_start_up_naming_it() {
    let binary = env!("CARGO_BIN_EXE_legacy");
    testkit::refuses_to_start(
        binary,
        &[],
        &[("LEGACY_ERROR_RATE", Some("2"))],
        "LEGACY_ERROR_RATE",
    );
    testkit::refuses_to_start(
        binary,
        &[],
        &[("LEGACY_LATENCY_MS", Some("soon"))],
        "LEGACY_LATENCY_MS",
    );
}
