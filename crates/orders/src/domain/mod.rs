//! The orders domain: ids, the state machine and a checkout request parsed at the edge.

pub mod status;

use common::FieldError;
use serde::Deserialize;

pub use status::Status;

common::prefixed_id!(
    /// An order's id.
    OrderId,
    "ord"
);

/// `POST /v1/orders` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// The cart to check out.
    pub cart_id: String,
    /// Where the confirmation goes.
    pub email: String,
    /// A payment method to confirm server-side (`pm_card_visa`); without it the order exposes
    /// the PaymentIntent's client secret for Stripe.js.
    pub payment_method: Option<String>,
}

/// A checkout request that passed validation.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// The cart id.
    pub cart_id: String,
    /// The email, trimmed.
    pub email: String,
    /// The payment method, if any.
    pub payment_method: Option<String>,
}

impl TryFrom<CheckoutRequest> for Checkout {
    type Error = Vec<FieldError>;

    fn try_from(r: CheckoutRequest) -> Result<Self, Self::Error> {
        let mut errors = Vec::new();
        if !common::id::is_valid("crt", &r.cart_id) {
            errors.push(FieldError::new("cart_id", "not a cart id"));
        }
        let email = r.email.trim().to_owned();
        let valid_email = email.len() <= 254
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
            })
            && !email.chars().any(char::is_whitespace);
        if !valid_email {
            errors.push(FieldError::new("email", "not an email address"));
        }
        let payment_method = r.payment_method.filter(|p| !p.trim().is_empty());
        if payment_method
            .as_ref()
            .is_some_and(|p| p.len() > 255 || !p.bytes().all(|b| b.is_ascii_graphic()))
        {
            errors.push(FieldError::new("payment_method", "not a payment method id"));
        }
        if errors.is_empty() {
            Ok(Self {
                cart_id: r.cart_id,
                email,
                payment_method,
            })
        } else {
            Err(errors)
        }
    }
}
