//! The monolith's HTTP surface: the business routes (carts, orders, product pages) behind
//! the fault injector, the fault controls, and the shared health and metrics routes, which
//! faults never touch so a probe tells a slow monolith from a dead one.

mod carts;
mod faults;
mod orders;
mod products;

use axum::{Router, middleware};
use common::health::Check;

use crate::AppState;

/// All routes of the monolith.
pub fn router(state: AppState, checks: Vec<Check>) -> Router {
    let business = Router::new()
        .merge(carts::router())
        .merge(orders::router())
        .merge(products::router())
        .layer(middleware::from_fn_with_state(
            state.faults.clone(),
            crate::faults::inject,
        ));
    Router::new()
        .merge(business)
        .merge(faults::router())
        .with_state(state)
        .merge(common::health::router(checks))
        .merge(common::metrics::router())
}
