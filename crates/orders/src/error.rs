//! The orders service's errors and their one mapping to problem+json.

use axum::response::{IntoResponse, Response};
use common::{FieldError, Problem, problem::ProblemType};

/// Everything an orders request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    /// `Idempotency-Key` is required and was not sent (or is malformed).
    #[error("Idempotency-Key header missing")]
    MissingIdempotencyKey,
    /// The key was used before with another request body.
    #[error("Idempotency-Key reused with another request")]
    KeyReused,
    /// The first request with this key is still being processed.
    #[error("a request with this Idempotency-Key is in flight")]
    InFlight,
    /// Fields break a rule.
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    /// The cart cannot be checked out.
    #[error("the cart cannot be checked out: {0}")]
    Cart(String),
    /// No such resource.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// An upstream service did not answer.
    #[error("upstream unavailable: {0}")]
    Upstream(String),
    /// Postgres failed.
    #[error("database")]
    Db(#[from] sqlx::Error),
    /// A move the state machine forbids: a bug, never the client's doing.
    #[error(transparent)]
    Transition(crate::store::orders::StoreError),
}

impl From<crate::store::orders::StoreError> for OrdersError {
    fn from(e: crate::store::orders::StoreError) -> Self {
        match e {
            crate::store::orders::StoreError::Db(e) => Self::Db(e),
            e => Self::Transition(e),
        }
    }
}

impl From<OrdersError> for Problem {
    fn from(e: OrdersError) -> Self {
        match e {
            OrdersError::MissingIdempotencyKey => {
                Problem::new(ProblemType::IdempotencyKeyRequired)
                    .detail("Send an Idempotency-Key header (1 to 255 visible characters) so a retry cannot create a second order")
            }
            OrdersError::KeyReused => Problem::new(ProblemType::IdempotencyKeyReused)
                .detail("This Idempotency-Key was used with a different request body"),
            OrdersError::InFlight => Problem::new(ProblemType::IdempotencyKeyInFlight)
                .detail("The first request with this Idempotency-Key has not finished; retry shortly"),
            OrdersError::Invalid(errors) => Problem::validation(errors),
            OrdersError::Cart(why) => Problem::new(ProblemType::CartNotOrderable)
                .detail(why),
            OrdersError::NotFound(what) => Problem::not_found(what),
            OrdersError::Upstream(what) => Problem::unavailable("An upstream service", &what),
            OrdersError::Db(e) => Problem::database(&e),
            OrdersError::Transition(e) => Problem::internal(&e),
        }
    }
}

impl IntoResponse for OrdersError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}
