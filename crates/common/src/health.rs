//! `/healthz` (the process answers) and `/readyz` (its stores answer). Readiness runs each
//! check with a short timeout so a hung store makes the probe fail instead of hang.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use axum::{Json, Router, http::StatusCode, response::IntoResponse, routing::get};
use serde_json::{Map, Value, json};
use sqlx::PgPool;

use crate::{Problem, problem::ProblemType};

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One named readiness check.
#[derive(Clone)]
pub struct Check {
    name: &'static str,
    run: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl Check {
    /// A check that runs `f` and is healthy when it returns `Ok`.
    pub fn new<F, Fut>(name: &'static str, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name,
            run: Arc::new(move || Box::pin(f())),
        }
    }

    /// Postgres answers `SELECT 1`.
    pub fn postgres(pool: PgPool) -> Self {
        Self::new("postgres", move || {
            let pool = pool.clone();
            async move {
                sqlx::query("SELECT 1")
                    .execute(&pool)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
        })
    }

    /// Redis answers `PING` (in a cluster, any one node: see [`crate::redis::Connection::ping`]).
    pub fn redis(conn: crate::redis::Connection) -> Self {
        Self::new("redis", move || {
            let mut conn = conn.clone();
            async move { conn.ping().await.map_err(|e| e.to_string()) }
        })
    }
}

/// The routes `/healthz` and `/readyz` for the given checks.
pub fn router<S: Clone + Send + Sync + 'static>(checks: Vec<Check>) -> Router<S> {
    let checks = Arc::new(checks);
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route(
            "/readyz",
            get(move || {
                let checks = checks.clone();
                async move { readiness(&checks).await }
            }),
        )
}

async fn readiness(checks: &[Check]) -> axum::response::Response {
    let mut results = Map::new();
    let mut failed = Vec::new();
    for check in checks {
        let outcome = tokio::time::timeout(Duration::from_secs(1), (check.run)()).await;
        let outcome = outcome.unwrap_or_else(|_| Err("timed out".to_owned()));
        match outcome {
            Ok(()) => {
                results.insert(check.name.to_owned(), Value::from("ok"));
            }
            Err(e) => {
                tracing::warn!(check = check.name, error = %e, "readiness check failed");
                results.insert(check.name.to_owned(), Value::from("failing"));
                failed.push(check.name);
            }
        }
    }
    if failed.is_empty() {
        (
            StatusCode::OK,
            Json(json!({"status": "ready", "checks": results})),
        )
            .into_response()
    } else {
        Problem::new(ProblemType::NotReady)
            .detail(format!("failing: {}", failed.join(", ")))
            .into_response()
    }
}
