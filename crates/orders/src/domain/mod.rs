//! The orders domain: ids, the state machine, where an order's stock is, and a checkout request parsed at the edge. Text
//! is accepted clean only: a control character in any field is a 422 here, never a string
//! that Postgres (which refuses U+0000) or a downstream log would trip over later.

pub mod status;
pub mod stock;

use common::FieldError;
use serde::Deserialize;

pub use status::{Mover, Status};
pub use stock::Holding;

common::prefixed_id!(
    /// An order's id.
    OrderId,
    "ord"
);

common::prefixed_id!(
    /// A payment's id, minted by the payments service.
    PaymentId,
    "pay"
);

common::prefixed_id!(
    /// A cart's id, minted by the cart service: what an order was checked out from.
    CartId,
    "crt"
);

/// `POST /v1/orders` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutRequest {
    /// The cart to check out.
    #[schema(pattern = "^crt_[0-9a-hjkmnp-tv-z]{26}$")]
    pub cart_id: String,
    /// Where the confirmation goes.
    #[schema(format = Email, max_length = 254, example = "shopper@example.com")]
    pub email: String,
    /// A payment method to confirm server-side (`pm_card_visa`); without it the order exposes
    /// the PaymentIntent's client secret for Stripe.js.
    /// Blank counts as absent; otherwise 1–255 visible ASCII characters.
    #[schema(pattern = "^(\\s*|[!-~]{1,255})$", example = "pm_card_visa")]
    pub payment_method: Option<String>,
}

/// A checkout request that passed validation.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// The cart id.
    pub cart_id: CartId,
    /// The email, trimmed.
    pub email: String,
    /// The payment method, if any.
    pub payment_method: Option<String>,
}

impl TryFrom<CheckoutRequest> for Checkout {
    type Error = Vec<FieldError>;

    fn try_from(r: CheckoutRequest) -> Result<Self, Self::Error> {
        let mut errors = Vec::new();
        let cart_id = CartId::parse(&r.cart_id);
        if has_control(&r.cart_id) {
            errors.push(FieldError::new("cart_id", CONTROL_CHARACTERS));
        } else if cart_id.is_none() {
            errors.push(FieldError::new("cart_id", "not a cart id"));
        }
        // Checked before trimming: a trailing newline is a control character too, not
        // padding to be forgiven.
        let email = r.email.trim().to_owned();
        if has_control(&r.email) {
            errors.push(FieldError::new("email", CONTROL_CHARACTERS));
        } else if !(email.len() <= 254
            && email.split_once('@').is_some_and(|(local, domain)| {
                !local.is_empty() && domain.contains('.') && !domain.starts_with('.')
            })
            && !email.chars().any(char::is_whitespace))
        {
            errors.push(FieldError::new("email", "not an email address"));
        }
        let payment_method = match r.payment_method {
            Some(p) if has_control(&p) => {
                errors.push(FieldError::new("payment_method", CONTROL_CHARACTERS));
                None
            }
            Some(p) if p.trim().is_empty() => None,
            Some(p) if p.len() > 255 || !p.bytes().all(|b| b.is_ascii_graphic()) => {
                errors.push(FieldError::new("payment_method", "not a payment method id"));
                None
            }
            given => given,
        };
        match cart_id {
            Some(cart_id) if errors.is_empty() => Ok(Self {
                cart_id,
                email,
                payment_method,
            }),
            _ => Err(errors),
        }
    }
}

/// The message for a field holding a control character.
const CONTROL_CHARACTERS: &str = "must not contain control characters";

/// Whether `text` holds a control character: C0 (U+0000–U+001F), DEL (U+007F) or C1
/// (U+0080–U+009F). None belongs in an email, an id or a payment method.
fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkout(cart_id: &str, email: &str, payment_method: Option<&str>) -> Vec<String> {
        let request = CheckoutRequest {
            cart_id: cart_id.to_owned(),
            email: email.to_owned(),
            payment_method: payment_method.map(str::to_owned),
        };
        match Checkout::try_from(request) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.field).collect(),
        }
    }

    #[test]
    fn control_characters_are_refused_in_every_field() {
        let cart = common::id::new_id("crt");
        assert!(checkout(&cart, "shopper@example.com", Some("pm_card_visa")).is_empty());
        for email in [
            "a\u{0}b@example.com",
            "shopper@example.com\n",
            "\tshopper@example.com",
            "shop\u{7f}per@example.com",
            "shop\u{1b}[31mper@example.com",
            "shop\u{85}per@example.com",
            "shop per@example.com",
            "shop\u{a0}per@example.com",
        ] {
            assert_eq!(checkout(&cart, email, None), ["email"], "{email:?}");
        }
        for method in ["pm_\u{0}visa", "\n", "pm_card_visa\r"] {
            assert_eq!(
                checkout(&cart, "shopper@example.com", Some(method)),
                ["payment_method"],
                "{method:?}"
            );
        }
        assert_eq!(
            checkout(&format!("{cart}\u{0}"), "shopper@example.com", None),
            ["cart_id"]
        );
    }
}
