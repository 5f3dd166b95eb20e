//! The payments service's errors and their one mapping to problem+json. Provider and
//! database messages are logged, never sent.

use axum::response::{IntoResponse, Response};
use common::{FieldError, Problem, problem::ProblemType};

use crate::stripe::ProviderError;

/// Everything a payments request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    /// `Idempotency-Key` is required and was not sent (or is malformed).
    #[error("Idempotency-Key header missing")]
    MissingIdempotencyKey,
    /// The key was used before with another request body.
    #[error("Idempotency-Key reused with another request")]
    KeyReused,
    /// The order already has a payment, for another amount or currency.
    #[error("the order already has another payment")]
    OrderHasPayment,
    /// The order ended without this payment: nothing may be charged for it any more.
    #[error("the order's payment is closed")]
    PaymentClosed,
    /// Fields break a rule.
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    /// No such resource.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A refund the payment cannot take.
    #[error("not refundable: {0}")]
    NotRefundable(String),
    /// Stripe failed or refused.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// Postgres failed.
    #[error("database")]
    Db(#[from] sqlx::Error),
}

impl From<PaymentsError> for Problem {
    fn from(e: PaymentsError) -> Self {
        match e {
            PaymentsError::MissingIdempotencyKey => Problem::new(ProblemType::IdempotencyKeyRequired)
            .detail("Send an Idempotency-Key header (1 to 255 visible characters) so a retry cannot charge twice"),
            PaymentsError::KeyReused => Problem::new(ProblemType::IdempotencyKeyReused)
            .detail("This Idempotency-Key was used with a different request body"),
            PaymentsError::OrderHasPayment => Problem::new(ProblemType::OrderHasPayment)
            .detail("The order's payment was created for another amount or currency"),
            PaymentsError::PaymentClosed => Problem::new(ProblemType::PaymentClosed)
            .detail("The order ended without this payment; nothing more is charged for it"),
            PaymentsError::Invalid(errors) => Problem::validation(errors),
            PaymentsError::NotFound(what) => Problem::not_found(what),
            PaymentsError::NotRefundable(why) => Problem::new(ProblemType::NotRefundable)
            .detail(why),
            PaymentsError::Provider(e) => provider_problem(e),
            PaymentsError::Db(e) => Problem::database(&e),
        }
    }
}

fn provider_problem(e: ProviderError) -> Problem {
    match e {
        ProviderError::Unavailable(_) => Problem::unavailable("The payment provider", &e),
        ProviderError::IdempotencyMismatch => Problem::new(ProblemType::IdempotencyKeyReused)
            .detail("The provider holds an earlier request for this order with other parameters"),
        ProviderError::Refused { ref code, .. } => {
            tracing::warn!(error = %e, "the payment provider refused the request");
            Problem::new(ProblemType::ProviderRefused).detail(format!("refused with code {code}"))
        }
        ProviderError::Declined { .. }
        | ProviderError::Misconfigured(_)
        | ProviderError::Mismatch(_) => Problem::internal(&e),
    }
}

impl IntoResponse for PaymentsError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}
