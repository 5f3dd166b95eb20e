//! The orders service's HTTP surface: public order routes, the internal payment-events
//! route (internal bearer), the admin routes (admin bearer), operations and OpenAPI.

mod admin;
mod internal;
mod orders;

use axum::{Json, Router, middleware, routing::get};
use common::{Problem, auth::require_bearer, health::Check};
use utoipa::OpenApi;

use crate::AppState;

/// The OpenAPI description of every orders endpoint.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Orders service",
        description = "Checkout and the order processor."
    ),
    paths(
        orders::create,
        orders::read,
        orders::events,
        internal::payment_event,
        admin::get_stock,
        admin::put_stock,
        common::dead_jobs::list,
        common::dead_jobs::replay
    ),
    components(schemas(Problem, common::FieldError))
)]
pub struct ApiDoc;

/// All routes of the service.
pub fn router(state: AppState, checks: Vec<Check>) -> Router {
    let internal = internal::router().route_layer(middleware::from_fn_with_state(
        state.internal_token.clone(),
        require_bearer,
    ));
    let admin = admin::router().route_layer(middleware::from_fn_with_state(
        state.admin_token.clone(),
        require_bearer,
    ));
    Router::new()
        .merge(orders::router())
        .merge(internal)
        .merge(admin)
        .with_state(state)
        .route(
            "/openapi.json",
            get(|| async { Json(common::openapi::document(&ApiDoc::openapi())) }),
        )
        .merge(common::health::router(checks))
        .merge(common::metrics::router())
}
