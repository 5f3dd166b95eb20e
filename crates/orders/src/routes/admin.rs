//! `/admin`: stock levels and the dead-letter list (`common::dead_jobs`), behind the admin
//! bearer token.

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::get,
};
use common::{
    ApiJson, Problem,
    dead_jobs::DeadLetters,
    queue::{DeadJob, Queue},
};
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::{
    AppState,
    domain::OrderId,
    error::OrdersError,
    saga::PROCESS_ORDER,
    store::inventory::{self, Stock},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/inventory/{sku}", get(get_stock).put(put_stock))
        .merge(common::dead_jobs::router())
}

/// `PUT /admin/inventory/{sku}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStock {
    /// Units in the warehouse; at least what is reserved.
    #[schema(minimum = 0)]
    pub on_hand: i64,
}

/// A sku's stock.
#[utoipa::path(get, path = "/admin/inventory/{sku}", tag = "admin",
    params(("sku" = String, Path, description = "The product", min_length = 1, max_length = 64)),
    responses(
        (status = 200, description = "The sku's stock", body = Stock),
        (status = 404, description = "The sku has never been stocked", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn get_stock(
    State(app): State<AppState>,
    Path(sku): Path<String>,
) -> Result<Json<Stock>, OrdersError> {
    Ok(Json(
        inventory::get(&app.pool, &sku)
            .await?
            .ok_or(OrdersError::NotFound("The sku"))?,
    ))
}

/// Sets a sku's units on hand.
#[utoipa::path(put, path = "/admin/inventory/{sku}", tag = "admin",
    params(("sku" = String, Path, description = "The product", min_length = 1, max_length = 64)),
    request_body = SetStock,
    responses(
        (status = 200, description = "The sku's stock as set", body = Stock),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Negative, below what is reserved, a field of the wrong type, or a sku longer than 64 characters", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn put_stock(
    State(app): State<AppState>,
    Path(sku): Path<String>,
    ApiJson(body): ApiJson<SetStock>,
) -> Result<Json<Stock>, Problem> {
    if sku.is_empty() || sku.len() > 64 {
        return Err(Problem::invalid_field("sku", "1 to 64 characters"));
    }
    if body.on_hand < 0 {
        return Err(Problem::invalid_field("on_hand", "must not be negative"));
    }
    match inventory::set_on_hand(&app.pool, &sku, body.on_hand)
        .await
        .map_err(OrdersError::from)?
    {
        Some(stock) => Ok(Json(stock)),
        None => Err(Problem::invalid_field(
            "on_hand",
            "below the units reserved for open orders",
        )),
    }
}

impl DeadLetters for AppState {
    fn queue(&self) -> &Queue {
        &self.saga.queue
    }

    /// A dead checkout abandoned its order: the order is reopened, so the replay can take
    /// it through the saga again.
    async fn before_replay(&self, job: &DeadJob) -> Result<Map<String, Value>, Problem> {
        let mut reopened = false;
        if job.kind == PROCESS_ORDER
            && let Some(order_id) = job.payload["order_id"].as_str().and_then(OrderId::parse)
        {
            reopened = self
                .saga
                .reopen(&order_id)
                .await
                .map_err(OrdersError::from)?;
        }
        Ok(Map::from_iter([(
            "order_reopened".to_owned(),
            reopened.into(),
        )]))
    }
}
