//! `/internal/v1/payments`: create an order's payment, read one, close one. Creation commits
//! the payment row before Stripe is called, so every charge has a record of ours; Stripe's
//! idempotency key (derived from the order) makes a retry after a failure or a lost answer
//! reach the same PaymentIntent. A decline is an outcome: `201` with status `failed`. The
//! status answered here is not also sent to orders' payment-events route; later changes are.
//! Closing is how an order that ended without its payment says so: the payment is then
//! settled at Stripe (canceled, or refunded), and a success that still comes is refunded.

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::Response,
    routing::{get, post},
};
use common::{ApiJson, Problem};
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{
    AppState,
    domain::{CloseOrder, ClosePaymentRequest, CreatePaymentRequest, NewPayment, PaymentId},
    error::PaymentsError,
    ledger::Report,
    state::Status,
    store::payments::{self, ClosedOrder, Payment},
    stripe::ProviderError,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/payments", post(create))
        .route("/internal/v1/payments/close", post(close))
        .route("/internal/v1/payments/{id}", get(read))
}

/// A payment as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentView {
    /// `pay_…`.
    pub id: String,
    /// Where it is.
    pub status: Status,
    /// For Stripe.js, when the customer confirms in the browser.
    pub client_secret: Option<String>,
    /// The Stripe PaymentIntent (`pi_…`).
    pub provider_id: Option<String>,
    /// The order it pays for.
    pub order_id: String,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// Given back so far.
    pub amount_refunded: i64,
    /// Why it failed or was canceled.
    pub failure_reason: Option<String>,
    /// Created at.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last changed at.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When its order ended without it; from then on it is canceled at Stripe, or refunded.
    #[serde(with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
}

impl From<&Payment> for PaymentView {
    fn from(p: &Payment) -> Self {
        Self {
            id: p.id.clone(),
            status: p.status,
            client_secret: p.client_secret.clone(),
            provider_id: p.provider_id.clone(),
            order_id: p.order_id.clone(),
            amount: p.amount,
            currency: p.currency.clone(),
            amount_refunded: p.amount_refunded,
            failure_reason: p.failure_reason.clone(),
            created_at: p.created_at,
            updated_at: p.updated_at,
            closed_at: p.closed_at,
        }
    }
}

fn created(payment: &Payment, replayed: bool) -> Response {
    common::idempotency::created(
        StatusCode::CREATED,
        &format!("/internal/v1/payments/{}", payment.id),
        replayed,
        Json(PaymentView::from(payment)),
    )
}

/// Creates the order's payment (or answers the one it has).
#[utoipa::path(
    post, path = "/internal/v1/payments", tag = "internal",
    params(("Idempotency-Key" = String, Header, description = "Required (1–255 visible characters); a retry with the same key and body answers the same payment", min_length = 1, max_length = 255, pattern = "^[!-~]+$")),
    request_body = CreatePaymentRequest,
    responses(
        (status = 201, description = "The payment; `failed` when the card was declined", body = PaymentView,
            headers(("Location" = String, description = "The payment's URL"), ("Idempotent-Replayed" = String, description = "`true` when the payment existed"))),
        (status = 400, description = "Missing Idempotency-Key or malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or missing fields, the key reused with another body, the order paid for otherwise, its payment closed, or refused by Stripe", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Stripe or the database is unavailable; retry with the same key", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(order = %body.order_id))]
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreatePaymentRequest>,
) -> Result<Response, PaymentsError> {
    let key = common::idempotency::key(&headers)
        .ok_or(PaymentsError::MissingIdempotencyKey)?
        .to_owned();
    let new = NewPayment::try_from(body).map_err(PaymentsError::Invalid)?;
    let payment = match claim(&app, &key, &new).await? {
        Claim::ToCreate(payment) => *payment,
        Claim::Answered(response) => return Ok(response),
    };
    let (report, intent) = match app.ledger.stripe.create_intent(&new).await {
        Ok(intent) => (
            Report {
                answered: true,
                ..Report::from(&intent)
            },
            Some(intent),
        ),
        Err(ProviderError::Declined { intent, reason }) => (
            Report {
                failure_reason: Some(reason),
                answered: true,
                authoritative: true,
                ..Report::status(Status::Failed)
            },
            intent.map(|intent| *intent),
        ),
        // The row stays: the retry (or the settling, if the order gives up) asks Stripe again
        // under the same key and reaches the same PaymentIntent, if this call made one.
        Err(e) => return Err(e.into()),
    };
    let mut tx = common::db::begin(&app.ledger.pool).await?;
    let mut payment = payments::lock(&mut tx, &payment.id)
        .await?
        .ok_or(PaymentsError::NotFound("The payment"))?;
    app.ledger
        .apply_with(&mut tx, &mut payment, &report, intent.as_ref())
        .await?;
    app.ledger.queue.commit(tx).await?;
    metrics::counter!("payments_created_total", "status" => payment.status.as_str()).increment(1);
    Ok(created(&payment, false))
}

/// Where a create request stands once its row is claimed.
enum Claim {
    /// The payment is recorded and Stripe must be asked (a new payment, or one whose
    /// earlier call to Stripe gave no answer).
    ToCreate(Box<Payment>),
    /// The request is answered from the payment already there.
    Answered(Response),
}

/// Records the payment before Stripe is called: the row, with the key Stripe will see, is
/// committed first, so whatever becomes of Stripe's answer a record of ours holds the charge.
async fn claim(app: &AppState, key: &str, new: &NewPayment) -> Result<Claim, PaymentsError> {
    let mut tx = common::db::begin(&app.ledger.pool).await?;
    // The checkout's trace, kept with the payment for the work its events cause later.
    let trace = common::telemetry::current_traceparent();
    let id = PaymentId::new();
    if let Some(payment) = payments::claim(&mut tx, id.as_str(), key, new, trace.as_deref()).await?
    {
        tx.commit().await?;
        return Ok(Claim::ToCreate(Box::new(payment)));
    }
    let claimed = payments::lock_claimed(&mut tx, key, &new.order_id).await?;
    tx.rollback().await?;
    // The claim only fails on a committed row, and payments are never deleted.
    let first = claimed
        .into_iter()
        .next()
        .ok_or(PaymentsError::NotFound("The order's payment"))?;
    let same_request = if first.idempotency_key == key {
        if first.request != new.canonical() {
            return Err(PaymentsError::KeyReused);
        }
        true
    } else {
        // Another key for the same order: one payment per order, so the first one stands.
        if first.order_id != new.order_id
            || first.amount != new.amount
            || first.currency.trim() != new.currency.as_str()
        {
            return Err(PaymentsError::OrderHasPayment);
        }
        false
    };
    if first.closed_at.is_some() {
        return Err(PaymentsError::PaymentClosed);
    }
    if same_request && first.provider_id.is_none() && first.status.is_open() {
        return Ok(Claim::ToCreate(Box::new(first)));
    }
    Ok(Claim::Answered(created(&first, true)))
}

/// Closes the order's payment: the order ended without taking its money.
#[utoipa::path(
    post, path = "/internal/v1/payments/close", tag = "internal",
    request_body = ClosePaymentRequest,
    responses(
        (status = 200, description = "The payment, closed; settling at Stripe (cancel, or refund what was taken) follows through the queue. An order that never asked for a payment gets a closed `canceled` one, so none can be made for it later.", body = PaymentView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not sent as `application/json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid or missing fields", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip_all, fields(order = %body.order_id, reason = %body.reason))]
pub async fn close(
    State(app): State<AppState>,
    ApiJson(body): ApiJson<ClosePaymentRequest>,
) -> Result<Json<PaymentView>, PaymentsError> {
    let close = CloseOrder::try_from(body).map_err(PaymentsError::Invalid)?;
    let order = &close.order;
    let mut tx = common::db::begin(&app.ledger.pool).await?;
    let mut payment = match payments::lock_by_order(&mut tx, &order.order_id).await? {
        Some(payment) => payment,
        None => {
            let placeholder = ClosedOrder {
                order_id: &order.order_id,
                amount: order.amount,
                currency: order.currency.as_str(),
                reason: &close.reason,
            };
            let id = PaymentId::new();
            match payments::insert_closed(&mut tx, id.as_str(), &placeholder).await? {
                Some(payment) => payment,
                // A payment committed meanwhile: close it.
                None => payments::lock_by_order(&mut tx, &order.order_id)
                    .await?
                    .ok_or(PaymentsError::NotFound("The order's payment"))?,
            }
        }
    };
    if payment.closed_at.is_none() {
        payments::close(&mut tx, &mut payment, &close.reason).await?;
        metrics::counter!("payments_closed_total").increment(1);
    }
    app.ledger.settle_if_needed(&mut tx, &payment).await?;
    app.ledger.queue.commit(tx).await?;
    Ok(Json(PaymentView::from(&payment)))
}

/// A payment.
#[utoipa::path(
    get, path = "/internal/v1/payments/{id}", tag = "internal",
    params(("id" = String, Path, description = "The payment's id", pattern = "^pay_[0-9a-hjkmnp-tv-z]{26}$")),
    responses(
        (status = 200, description = "The payment", body = PaymentView),
        (status = 404, description = "No such payment", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The database is unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn read(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<PaymentView>, PaymentsError> {
    let id = PaymentId::parse(&id).ok_or(PaymentsError::NotFound("The payment"))?;
    let payment = payments::find(&app.ledger.pool, id.as_str())
        .await?
        .ok_or(PaymentsError::NotFound("The payment"))?;
    Ok(Json(PaymentView::from(&payment)))
}
