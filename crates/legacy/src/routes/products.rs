//! `/v1/products/{sku}`: the monolith's product page, priced as its carts are.

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::get,
};

use crate::{
    AppState, error::LegacyError, routes::carts::valid_sku, store::products, view::ProductView,
};

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/products/{sku}", get(read))
}

#[tracing::instrument(skip(app))]
async fn read(
    State(app): State<AppState>,
    Path(sku): Path<String>,
) -> Result<Json<ProductView>, LegacyError> {
    if !valid_sku(&sku) {
        return Err(LegacyError::NotFound("The product"));
    }
    products::one(&app.pool, &sku)
        .await?
        .map(|p| Json(p.into()))
        .ok_or(LegacyError::NotFound("The product"))
}
