//! The cart service's errors and their one mapping to problem+json.

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use common::{FieldError, Problem, problem::ProblemType};

use crate::{domain::MAX_QUANTITY, store::StoreError};

/// Everything a cart request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum CartError {
    /// No cart with this id (or it expired).
    #[error("cart not found")]
    NotFound,
    /// `If-Match` named a version the cart is no longer at.
    #[error("the cart changed; it is at version {current}")]
    Stale {
        /// The cart's current version.
        current: u64,
    },
    /// The request is well-formed JSON but breaks a rule.
    #[error("invalid request")]
    Invalid(Vec<FieldError>),
    /// Redis did not answer.
    #[error("cart store unavailable")]
    StoreUnavailable(#[source] StoreError),
    /// Postgres (the catalog) did not answer.
    #[error("catalog unavailable")]
    CatalogUnavailable(#[source] std::sync::Arc<sqlx::Error>),
    /// Anything else: a bug or corrupt data.
    #[error("unexpected store reply")]
    Internal(#[source] StoreError),
}

impl CartError {
    /// A 422 for one field.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }
}

impl From<StoreError> for CartError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Missing => Self::NotFound,
            StoreError::Stale(current) => Self::Stale { current },
            StoreError::CurrencyMismatch => Self::field(
                "sku",
                "the product is priced in another currency than the cart",
            ),
            StoreError::QuantityTooLarge(current) => Self::field(
                "quantity",
                format!("the line already holds {current}; a line holds at most {MAX_QUANTITY}"),
            ),
            StoreError::TooManyLines => Self::field("sku", "the cart has the most lines allowed"),
            e @ (StoreError::Redis(_) | StoreError::Timeout(_)) => Self::StoreUnavailable(e),
            e @ StoreError::Corrupt(_) => Self::Internal(e),
        }
    }
}

impl From<sqlx::Error> for CartError {
    fn from(e: sqlx::Error) -> Self {
        Self::CatalogUnavailable(std::sync::Arc::new(e))
    }
}

impl From<std::sync::Arc<sqlx::Error>> for CartError {
    fn from(e: std::sync::Arc<sqlx::Error>) -> Self {
        Self::CatalogUnavailable(e)
    }
}

impl From<CartError> for Problem {
    fn from(e: CartError) -> Self {
        match e {
            CartError::NotFound => Problem::not_found("The cart"),
            CartError::Stale { current } => Problem::new(ProblemType::StaleCart)
                .detail(format!(
                    "If-Match does not match the cart's version {current}; read it again"
                ))
                .header(header::ETAG, etag(current)),
            CartError::Invalid(errors) => Problem::validation(errors),
            CartError::StoreUnavailable(e) => Problem::unavailable("The cart store", &e),
            CartError::CatalogUnavailable(e) => Problem::unavailable("The catalog", &e),
            CartError::Internal(e) => Problem::internal(&e),
        }
    }
}

impl IntoResponse for CartError {
    fn into_response(self) -> Response {
        Problem::from(self).into_response()
    }
}

/// The ETag of a cart version: `"<version>"`.
pub fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\""))
        .expect("digits and quotes are valid header text")
}
