//! The payments service's HTTP surface: the internal payment routes (internal bearer), the
//! Stripe webhook (its own signature), the admin routes (admin bearer), operations and
//! OpenAPI.

mod admin;
mod payments;
mod webhooks;

use axum::{Json, Router, middleware, routing::get};
use common::{Problem, auth::require_bearer, health::Check};
use utoipa::OpenApi;

use crate::AppState;

/// The OpenAPI description of every payments endpoint.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Payments service",
        description = "Payments for orders through Stripe, and Stripe's webhooks."
    ),
    paths(
        payments::create,
        payments::close,
        payments::read,
        webhooks::receive,
        admin::refund,
        common::dead_jobs::list,
        common::dead_jobs::replay
    ),
    components(schemas(Problem, common::FieldError))
)]
pub struct ApiDoc;

/// All routes of the service.
pub fn router(state: AppState, checks: Vec<Check>) -> Router {
    let internal = payments::router().route_layer(middleware::from_fn_with_state(
        state.internal_token.clone(),
        require_bearer,
    ));
    let admin = admin::router().route_layer(middleware::from_fn_with_state(
        state.admin_token.clone(),
        require_bearer,
    ));
    Router::new()
        .merge(internal)
        .merge(webhooks::router())
        .merge(admin)
        .with_state(state)
        .route(
            "/openapi.json",
            get(|| async { Json(common::openapi::document(&ApiDoc::openapi())) }),
        )
        .merge(common::health::router(checks))
        .merge(common::metrics::router())
}
