//! `/internal/v1/orders/{id}/payment-events`: the payments service tells orders how a payment
//! ended. Safe to call any number of times, in any order: the order moves at most once.

use axum::{
    Json, Router,
    extract::{Path, State},
    routing::post,
};
use common::{ApiJson, Problem, problem::ProblemType};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::{
    AppState,
    domain::{OrderId, PaymentId, Status},
    error::OrdersError,
    saga::Saga,
    store::orders,
};

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/internal/v1/orders/{id}/payment-events",
        post(payment_event),
    )
}

/// A payment's new status.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PaymentEvent {
    /// The order's payment.
    #[schema(pattern = "^pay_[0-9a-hjkmnp-tv-z]{26}$")]
    pub payment_id: String,
    /// The payment's status: `succeeded`, `failed`, `canceled`, or an intermediate one.
    pub status: String,
    /// Why it failed, for `failed`.
    pub reason: Option<String>,
    /// The provider event that caused it, for the logs.
    pub event_id: Option<String>,
}

/// What applying an event answers.
#[derive(Debug, serde::Serialize, ToSchema)]
pub struct PaymentEventApplied {
    /// The order.
    pub order_id: String,
    /// The order's status after the event.
    pub status: Status,
}

/// Applies a payment outcome to its order.
#[utoipa::path(
    post, path = "/internal/v1/orders/{id}/payment-events", tag = "internal",
    params(("id" = String, Path, description = "The order's id")),
    request_body = PaymentEvent,
    responses(
        (status = 200, description = "Applied (or already applied); the order's status", body = PaymentEventApplied),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order has not recorded its payment yet; retry", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A field of the wrong type or missing, a malformed payment id, or the event names another payment than the order's", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip(app, event), fields(payment = %event.payment_id, status = %event.status, event = ?event.event_id))]
pub async fn payment_event(
    State(app): State<AppState>,
    Path(id): Path<String>,
    ApiJson(event): ApiJson<PaymentEvent>,
) -> Result<Json<PaymentEventApplied>, Problem> {
    let id = OrderId::parse(&id).ok_or(OrdersError::NotFound("The order"))?;
    let payment_id = PaymentId::parse(&event.payment_id)
        .ok_or_else(|| Problem::invalid_field("payment_id", "not a payment id"))?;
    // Most events tell of an outcome the order already has (payments answered it to the saga
    // too): a read settles those, without a transaction or the order's lock.
    let order = orders::find(&app.pool, &id)
        .await
        .map_err(OrdersError::from)?
        .ok_or(OrdersError::NotFound("The order"))?;
    check_payment(&order, &payment_id)?;
    if order.status.is_final() && !Saga::closed_order_news(&order, &payment_id, &event.status) {
        return Ok(Json(PaymentEventApplied {
            order_id: order.id.to_string(),
            status: order.status,
        }));
    }
    let mut tx = common::db::begin(&app.pool)
        .await
        .map_err(OrdersError::from)?;
    let mut order = orders::lock(&mut tx, &id)
        .await
        .map_err(OrdersError::from)?
        .ok_or(OrdersError::NotFound("The order"))?;
    check_payment(&order, &payment_id)?;
    app.saga
        .apply_payment(
            &mut tx,
            &mut order,
            &payment_id,
            &event.status,
            event.reason.as_deref(),
        )
        .await
        .map_err(OrdersError::from)?;
    app.saga
        .commit(tx, &order.id)
        .await
        .map_err(OrdersError::from)?;
    Ok(Json(PaymentEventApplied {
        order_id: order.id.to_string(),
        status: order.status,
    }))
}

/// An outcome is taken only for the payment the order created. Before the saga has recorded
/// it (its answer still on the way), the event is answered 409, and payments asks again; an
/// order that ended before it heard of its payment records it (it can no longer confirm).
fn check_payment(order: &orders::Order, payment_id: &PaymentId) -> Result<(), Problem> {
    match &order.payment_id {
        Some(ours) if ours == payment_id => Ok(()),
        None if order.status.is_final() => Ok(()),
        Some(_) => Err(Problem::invalid_field(
            "payment_id",
            "the order has another payment",
        )),
        None => Err(Problem::new(ProblemType::PaymentNotRecorded)
            .detail("Retry once the order has recorded the payment it asked for")),
    }
}
