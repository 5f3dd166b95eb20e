//! The cart service's HTTP surface: the cart routes, the shared operational routes and the
//! OpenAPI document generated from the handlers' annotations.

mod carts;

use axum::{Json, Router, routing::get};
use common::{Problem, health::Check};
use utoipa::OpenApi;

use crate::AppState;

/// The OpenAPI description of every cart endpoint.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cart service",
        description = "Shopping carts in Redis, priced from the catalog."
    ),
    paths(
        carts::create,
        carts::get,
        carts::delete,
        carts::add_item,
        carts::set_item,
        carts::remove_item
    ),
    components(schemas(Problem, common::FieldError))
)]
pub struct ApiDoc;

/// All routes of the service.
pub fn router(state: AppState, checks: Vec<Check>) -> Router {
    Router::new()
        .merge(carts::router())
        .with_state(state)
        .route(
            "/openapi.json",
            get(|| async { Json(common::openapi::document(&ApiDoc::openapi())) }),
        )
        .merge(common::health::router(checks))
        .merge(common::metrics::router())
}
