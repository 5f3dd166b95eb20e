//! The monolith's errors and their one mapping to problem+json, with the same types and
//! statuses the new services answer, so a client cannot tell the two apart by their errors.

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use common::{FieldError, Problem, problem::ProblemType};

/// Everything a request to the monolith can fail with.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// No such cart, order or product; `0` names which.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// `If-Match` named a version the cart is no longer at.
    #[error("the cart changed; it is at version {current}")]
    Stale {
        /// The cart's current version.
        current: i64,
    },
    /// The request is well-formed but breaks a rule.
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    /// A checkout without an `Idempotency-Key`.
    #[error("Idempotency-Key required")]
    MissingIdempotencyKey,
    /// The key was used before with another body.
    #[error("Idempotency-Key reused")]
    KeyReused,
    /// The cart is missing, empty or holds a product no longer sold.
    #[error("cart not orderable: {0}")]
    CartNotOrderable(String),
    /// Postgres failed.
    #[error("database")]
    Database(#[from] sqlx::Error),
}

impl LegacyError {
    /// A 422 for one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }
}

impl From<LegacyError> for Problem {
    fn from(e: LegacyError) -> Self {
        match e {
            LegacyError::NotFound(what) => Problem::not_found(what),
            LegacyError::Stale { current } => Problem::new(ProblemType::StaleCart)
                .detail(format!(
                    "If-Match does not match the cart's version {current}; read it again"
                ))
                .header(header::ETAG, etag(current)),
            LegacyError::Invalid(errors) => Problem::validation(errors),
            LegacyError::MissingIdempotencyKey => Problem::new(ProblemType::IdempotencyKeyRequired)
                .detail("Send an Idempotency-Key header (1–255 visible characters)"),
            LegacyError::KeyReused => Problem::new(ProblemType::IdempotencyKeyReused)
                .detail("This Idempotency-Key was used with another body"),
            LegacyError::CartNotOrderable(why) => {
                Problem::new(ProblemType::CartNotOrderable).detail(why)
            }
            LegacyError::Database(
                e @ (sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed),
            ) => Problem::unavailable("The legacy database", &e),
            LegacyError::Database(e) => Problem::internal(&e),
        }
    }
}

impl IntoResponse for LegacyError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

/// The ETag of a cart version: `"<version>"`.
pub fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\""))
        .expect("digits and quotes are valid header text")
}
