//! `/admin`: stock levels and the dead-letter list, behind the admin bearer token.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use common::{ApiJson, Problem, queue::DeadJob};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::{
    AppState,
    error::OrdersError,
    saga::PROCESS_ORDER,
    store::inventory::{self, Stock},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/inventory/{sku}", get(get_stock).put(put_stock))
        .route("/admin/jobs/dead", get(dead_jobs))
        .route("/admin/jobs/dead/{id}/replay", post(replay))
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

/// Jobs out of attempts, newest first.
#[utoipa::path(get, path = "/admin/jobs/dead", tag = "admin",
    responses(
        (status = 200, description = "Dead jobs, newest first (at most 500)", body = [DeadJob]),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn dead_jobs(State(app): State<AppState>) -> Result<Json<Vec<DeadJob>>, OrdersError> {
    Ok(Json(app.saga.queue.dead(500).await?))
}

/// Runs a dead job again with fresh attempts; an order it abandoned is reopened first.
#[utoipa::path(post, path = "/admin/jobs/dead/{id}/replay", tag = "admin",
    params(("id" = i64, Path, description = "The dead job's id; anything else names no job (404)")),
    responses(
        (status = 202, description = "Queued again", body = Object),
        (status = 404, description = "No such dead job", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = [])))]
pub async fn replay(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), OrdersError> {
    // Parsed here, not by the extractor, so a malformed id is a problem+json 404 too.
    let id: i64 = id
        .parse()
        .map_err(|_| OrdersError::NotFound("The dead job"))?;
    let job = app
        .saga
        .queue
        .dead_job(id)
        .await?
        .ok_or(OrdersError::NotFound("The dead job"))?;
    let mut reopened = false;
    if job.kind == PROCESS_ORDER
        && let Some(order_id) = job.payload["order_id"].as_str()
    {
        reopened = app.saga.reopen(order_id).await?;
    }
    if !app.saga.queue.replay(id).await? {
        return Err(OrdersError::NotFound("The dead job"));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"job_id": id, "order_reopened": reopened})),
    ))
}
