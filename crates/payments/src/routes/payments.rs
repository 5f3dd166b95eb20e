//! `/internal/v1/payments`: create an order's payment, read one. Creation claims the
//! payment row and creates the PaymentIntent in one transaction, so a concurrent request for
//! the same order or key waits and then answers the first one's payment; Stripe's
//! idempotency key (derived from the order) makes a retry after a failure reach the same
//! PaymentIntent. A decline is an outcome: `201` with status `failed`. The status answered here
//! is not also sent to orders' payment-events route; later changes are.

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
    domain::{CreatePaymentRequest, NewPayment, PaymentId},
    error::PaymentsError,
    ledger::Report,
    state::Status,
    store::payments::{self, Payment},
    stripe::ProviderError,
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/internal/v1/payments", post(create))
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
    params(("Idempotency-Key" = String, Header, description = "Required; a retry with the same key and body answers the same payment")),
    request_body = CreatePaymentRequest,
    responses(
        (status = 201, description = "The payment; `failed` when the card was declined", body = PaymentView,
            headers(("Location" = String, description = "The payment's URL"), ("Idempotent-Replayed" = String, description = "`true` when the payment existed"))),
        (status = 400, description = "Missing Idempotency-Key or malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong bearer token", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields, the key reused with another body, the order paid for otherwise, or refused by Stripe", body = Problem, content_type = "application/problem+json"),
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
    let id = PaymentId::new();
    let mut tx = common::db::begin(&app.ledger.pool).await?;
    let Some(mut payment) = payments::claim(&mut tx, id.as_str(), &key, &new).await? else {
        let claimed = payments::lock_claimed(&mut tx, &key, &new.order_id).await?;
        tx.rollback().await?;
        return replay(claimed.first(), &key, &new);
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
                ..Report::status(Status::Failed)
            },
            intent.map(|intent| *intent),
        ),
        // Nothing is kept: the retry claims the order again and reaches the same intent.
        Err(e) => return Err(e.into()),
    };
    app.ledger
        .apply_with(&mut tx, &mut payment, &report, intent.as_ref())
        .await?;
    app.ledger.queue.commit(tx).await?;
    metrics::counter!("payments_created_total", "status" => payment.status.as_str()).increment(1);
    Ok(created(&payment, false))
}

/// The answer for a request whose order or key already has a payment.
fn replay(first: Option<&Payment>, key: &str, new: &NewPayment) -> Result<Response, PaymentsError> {
    // The claim only fails on a committed row, and payments are never deleted.
    let first = first.ok_or(PaymentsError::NotFound("The order's payment"))?;
    if first.idempotency_key == key {
        return if first.request == new.canonical() {
            Ok(created(first, true))
        } else {
            Err(PaymentsError::KeyReused)
        };
    }
    // Another key for the same order: one payment per order, so the first one stands.
    if first.order_id == new.order_id
        && first.amount == new.amount
        && first.currency.trim() == new.currency.as_str()
    {
        Ok(created(first, true))
    } else {
        Err(PaymentsError::OrderHasPayment)
    }
}

/// A payment.
#[utoipa::path(
    get, path = "/internal/v1/payments/{id}", tag = "internal",
    params(("id" = String, Path, description = "The payment's id")),
    responses(
        (status = 200, body = PaymentView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
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
