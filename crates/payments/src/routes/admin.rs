//! `/admin`: refunds and the dead-letter list (`common::dead_jobs`), behind the admin bearer token. A refund locks
//! its payment, so two refunds of one payment cannot both spend what is left; its Stripe
//! idempotency key comes from the admin's `Idempotency-Key` or the payment's refund count, so
//! a retry after a failure reaches the same Stripe Refund.

use std::collections::HashMap;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
};
use common::{
    FieldError, Problem,
    dead_jobs::DeadLetters,
    queue::{DeadJob, Queue},
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{
    AppState,
    domain::{PaymentId, RefundId},
    error::PaymentsError,
    ledger::Report,
    state::Status,
    store::{
        payments,
        refunds::{self, Refund},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/payments/{id}/refund", post(refund))
        .merge(common::dead_jobs::router())
}

/// `POST /admin/payments/{id}/refund` body; an empty body refunds everything left.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Minor units, more than zero; everything not yet refunded when absent.
    #[schema(minimum = 1)]
    pub amount: Option<i64>,
}

/// A refund and where it leaves its payment.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundView {
    /// The refund.
    #[serde(flatten)]
    pub refund: Refund,
    /// The payment's status after it.
    pub payment_status: Status,
    /// The payment's refunded total after it.
    pub amount_refunded: i64,
}

fn parse_body(body: &[u8]) -> Result<RefundRequest, PaymentsError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(RefundRequest::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| PaymentsError::Invalid(vec![FieldError::new("body", e.to_string())]))
}

/// Refunds a payment, in full or in part.
#[utoipa::path(
    post, path = "/admin/payments/{id}/refund", tag = "admin",
    params(
        ("id" = String, Path, description = "The payment's id", pattern = "^pay_[0-9a-hjkmnp-tv-z]{26}$"),
        ("Idempotency-Key" = Option<String>, Header, description = "Makes a retry answer the refund already made (a key over 200 characters is ignored)"),
    ),
    request_body(content = Option<RefundRequest>, description = "Optional; no body refunds everything left. Any content type is read as JSON"),
    responses(
        (status = 201, description = "The refund", body = RefundView),
        (status = 200, description = "The refund made earlier under this Idempotency-Key", body = RefundView),
        (status = 404, description = "No such payment", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "A body that is not a refund request, an amount not above zero, not paid, more than captured minus already refunded, or the key reused for another amount", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Stripe or the database is unavailable; retry", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
#[tracing::instrument(skip(app, headers, body))]
pub async fn refund(
    State(app): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<RefundView>), PaymentsError> {
    let request = parse_body(&body)?;
    let id = PaymentId::parse(&id).ok_or(PaymentsError::NotFound("The payment"))?;
    // Room for the `refund-<payment id>-` prefix within Stripe's 255-character keys.
    let admin_key = common::idempotency::key(&headers).filter(|k| k.len() <= 200);
    let mut tx = common::db::begin(&app.ledger.pool).await?;
    let mut payment = payments::lock(&mut tx, id.as_str())
        .await?
        .ok_or(PaymentsError::NotFound("The payment"))?;
    let key = match admin_key {
        Some(k) => format!("refund-{id}-{k}"),
        None => format!(
            "refund-{id}-{}",
            refunds::count(&mut tx, id.as_str()).await? + 1
        ),
    };
    if let Some(done) = refunds::find_by_key(&mut tx, &key).await? {
        if request.amount.is_some_and(|a| a != done.amount) {
            return Err(PaymentsError::KeyReused);
        }
        let view = RefundView {
            refund: done,
            payment_status: payment.status,
            amount_refunded: payment.amount_refunded,
        };
        return Ok((StatusCode::OK, Json(view)));
    }
    if !matches!(
        payment.status,
        Status::Succeeded | Status::PartiallyRefunded
    ) {
        return Err(PaymentsError::NotRefundable(format!(
            "the payment is {}; only a succeeded payment can be refunded",
            payment.status
        )));
    }
    let left = payment.amount - payment.amount_refunded;
    let amount = request.amount.unwrap_or(left);
    if amount <= 0 {
        return Err(PaymentsError::Invalid(vec![FieldError::new(
            "amount",
            "must be more than zero",
        )]));
    }
    if amount > left {
        return Err(PaymentsError::NotRefundable(format!(
            "{amount} is more than the {left} left to refund ({} captured, {} refunded)",
            payment.amount, payment.amount_refunded
        )));
    }
    let intent = payment
        .provider_id
        .clone()
        .ok_or_else(|| PaymentsError::NotRefundable("the payment has no PaymentIntent".into()))?;
    let metadata = HashMap::from([
        ("payment_id".to_owned(), payment.id.clone()),
        ("order_id".to_owned(), payment.order_id.clone()),
    ]);
    let made = app
        .ledger
        .stripe
        .refund(&intent, amount, &key, metadata)
        .await?;
    let refund = Refund {
        id: RefundId::new().to_string(),
        payment_id: payment.id.clone(),
        provider_id: made.id,
        amount: made.amount,
        status: made.status,
        created_at: OffsetDateTime::now_utc(),
    };
    refunds::insert(&mut tx, &refund, &key).await?;
    let total = payment.amount_refunded + refund.amount;
    let status = if total >= payment.amount {
        Status::Refunded
    } else {
        Status::PartiallyRefunded
    };
    let report = Report {
        amount_refunded: Some(total),
        ..Report::status(status)
    };
    app.ledger.apply(&mut tx, &mut payment, &report).await?;
    app.ledger.queue.commit(tx).await?;
    metrics::counter!("payments_refunds_total").increment(1);
    let view = RefundView {
        refund,
        payment_status: payment.status,
        amount_refunded: payment.amount_refunded,
    };
    Ok((StatusCode::CREATED, Json(view)))
}

impl DeadLetters for AppState {
    fn queue(&self) -> &Queue {
        &self.ledger.queue
    }

    /// A payments job's end leaves nothing to undo.
    async fn before_replay(&self, _job: &DeadJob) -> Result<Map<String, Value>, Problem> {
        Ok(Map::new())
    }
}
