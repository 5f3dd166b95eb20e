//! The HTTP surface: Stripe's `/v1` API, the `/_sim` control API and `/healthz`.

mod control;
mod middleware;
mod payment_intents;
mod refunds;

use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

pub use middleware::RequestContext;

use crate::idempotency;
use crate::sim::Sim;

/// The whole application.
pub fn router(sim: Sim) -> Router {
    let api = Router::new()
        .merge(payment_intents::router())
        .merge(refunds::router())
        .fallback(middleware::unrecognized)
        .method_not_allowed_fallback(middleware::unrecognized)
        // Innermost first: faults run inside idempotency, which runs after auth.
        .layer(from_fn_with_state(sim.clone(), middleware::faults))
        .layer(from_fn_with_state(sim.clone(), idempotency::layer))
        .layer(from_fn_with_state(sim.clone(), middleware::auth))
        .layer(from_fn(middleware::context));
    Router::new()
        .route("/healthz", get(healthz))
        .nest("/v1", api)
        .nest("/_sim", control::router())
        .fallback(middleware::unrecognized)
        .with_state(sim)
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}
