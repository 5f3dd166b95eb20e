//! `/v1/orders`: checkout, read an order, follow it. The monolith confirms an order in the
//! request that places it, so it answers `201` with the final order, and an event stream
//! carries that one final state and ends.

use std::convert::Infallible;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{
        IntoResponse, Response,
        sse::{Event, Sse},
    },
    routing::{get, post},
};
use common::{ApiJson, FieldError};
use serde_json::json;

use crate::{
    AppState,
    error::LegacyError,
    store::{
        self,
        orders::{self, Checkout, Placed},
    },
    view::{CheckoutRequest, OrderView},
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/orders", post(create))
        .route("/v1/orders/{id}", get(read))
        .route("/v1/orders/{id}/events", get(events))
}

#[tracing::instrument(skip_all)]
async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CheckoutRequest>,
) -> Result<Response, LegacyError> {
    let key = common::idempotency::key(&headers).ok_or(LegacyError::MissingIdempotencyKey)?;
    let (cart_id, email) = validate(&body)?;
    let request =
        json!({"cart_id": body.cart_id, "email": email, "payment_method": body.payment_method})
            .to_string();
    let checkout = Checkout {
        key,
        request: &request,
        cart_id,
        email: &email,
    };
    let (view, replayed) = match orders::place(&app.pool, &checkout).await? {
        Placed::New(view) => {
            metrics::counter!("legacy_orders_confirmed_total").increment(1);
            (view, false)
        }
        Placed::Replayed(view) => (view, true),
    };
    Ok(common::idempotency::created(
        StatusCode::CREATED,
        &format!("/v1/orders/{}", view.id),
        replayed,
        Json(view),
    ))
}

/// The cart's number and the trimmed email, or every field error at once.
fn validate(body: &CheckoutRequest) -> Result<(i64, String), LegacyError> {
    let mut errors = Vec::new();
    let cart_id = store::parse_id(&body.cart_id);
    if cart_id.is_none() {
        errors.push(FieldError::new("cart_id", "not a cart id"));
    }
    let email = body.email.trim().to_owned();
    let looks_like_email = email.len() <= 254
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
        });
    if !looks_like_email {
        errors.push(FieldError::new("email", "not an email address"));
    }
    if let Some(method) = body.payment_method.as_deref()
        && !method.trim().is_empty()
        && (method.len() > 255 || !method.bytes().all(|b| b.is_ascii_graphic()))
    {
        errors.push(FieldError::new("payment_method", "not a payment method id"));
    }
    match cart_id {
        Some(cart_id) if errors.is_empty() => Ok((cart_id, email)),
        _ => Err(LegacyError::Invalid(errors)),
    }
}

#[tracing::instrument(skip(app))]
async fn read(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, LegacyError> {
    Ok(Json(find(&app, &id).await?))
}

/// The order's one (final) state as a server-sent event, then the end of the stream.
#[tracing::instrument(skip(app))]
async fn events(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, LegacyError> {
    let view = find(&app, &id).await?;
    let event = Event::default()
        .event("order")
        .id(view.status.clone())
        .json_data(&view)
        .expect("an order serialises");
    let stream = futures_util::stream::once(async move { Ok::<_, Infallible>(event) });
    Ok(Sse::new(stream).into_response())
}

async fn find(app: &AppState, id: &str) -> Result<OrderView, LegacyError> {
    let id = store::parse_id(id).ok_or(LegacyError::NotFound("The order"))?;
    orders::get(&app.pool, id)
        .await?
        .ok_or(LegacyError::NotFound("The order"))
}
