//! The payments domain at the edge: ids, and the create-payment request parsed once into a
//! [`NewPayment`] that the code below never re-checks.

use common::{FieldError, money::Currency};
use serde::Deserialize;
use serde_json::json;

common::prefixed_id!(
    /// A payment's id.
    PaymentId,
    "pay"
);

common::prefixed_id!(
    /// A refund's id.
    RefundId,
    "rfd"
);

/// `POST /internal/v1/payments` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentRequest {
    /// The order paid for (`ord_…`); one payment per order.
    #[schema(pattern = "^ord_[0-9a-hjkmnp-tv-z]{26}$")]
    pub order_id: String,
    /// Minor units; more than zero.
    #[schema(minimum = 1)]
    pub amount: i64,
    /// Upper-case ISO 4217.
    #[schema(pattern = "^[A-Z]{3}$", example = "USD")]
    pub currency: String,
    /// A payment method to confirm server-side (`pm_card_visa`); without it the answer
    /// carries the client secret for Stripe.js.
    /// Blank counts as absent; otherwise 1–255 visible ASCII characters.
    #[schema(pattern = "^(\\s*|[!-~]{1,255})$", example = "pm_card_visa")]
    pub payment_method: Option<String>,
}

/// A create-payment request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPayment {
    /// `ord_…`.
    pub order_id: String,
    /// Minor units, positive.
    pub amount: i64,
    /// The currency.
    pub currency: Currency,
    /// The payment method, if any.
    pub payment_method: Option<String>,
}

impl NewPayment {
    /// The request in one canonical text, to tell a retry from another request under the
    /// same key.
    pub fn canonical(&self) -> String {
        json!({
            "order_id": self.order_id,
            "amount": self.amount,
            "currency": self.currency.as_str(),
            "payment_method": self.payment_method,
        })
        .to_string()
    }

    /// The Stripe idempotency key of the order's PaymentIntent: derived from the order, so
    /// every retry of its creation, from any replica, reaches the same PaymentIntent.
    pub fn provider_key(&self) -> String {
        format!("pi-{}", self.order_id)
    }

    /// The request back from its [`NewPayment::canonical`] text (as stored with a payment),
    /// to ask Stripe again under the same key.
    pub fn from_canonical(text: &str) -> Option<Self> {
        let request: CreatePaymentRequest = serde_json::from_str(text).ok()?;
        Self::try_from(request).ok()
    }
}

/// `POST /internal/v1/payments/close` body: the order ended without taking its payment's
/// money.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClosePaymentRequest {
    /// The order (`ord_…`).
    #[schema(pattern = "^ord_[0-9a-hjkmnp-tv-z]{26}$")]
    pub order_id: String,
    /// The order's total, minor units (recorded when the order never asked for a payment).
    #[schema(minimum = 1)]
    pub amount: i64,
    /// Upper-case ISO 4217.
    #[schema(pattern = "^[A-Z]{3}$", example = "USD")]
    pub currency: String,
    /// Why the order ended (`payment_timeout`, `payment_declined`, `processing_failed`, …).
    #[schema(pattern = "^[a-z0-9_]{1,64}$", example = "payment_timeout")]
    pub reason: String,
}

/// A close request that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseOrder {
    /// The order, with its total and currency, as a payment request would name them.
    pub order: NewPayment,
    /// Why it ended: a code of at most 64 lower-case letters, digits and `_`.
    pub reason: String,
}

impl TryFrom<ClosePaymentRequest> for CloseOrder {
    type Error = Vec<FieldError>;

    fn try_from(r: ClosePaymentRequest) -> Result<Self, Self::Error> {
        let order = NewPayment::try_from(CreatePaymentRequest {
            order_id: r.order_id,
            amount: r.amount,
            currency: r.currency,
            payment_method: None,
        });
        let reason_ok = !r.reason.is_empty()
            && r.reason.len() <= 64
            && r.reason
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        match order {
            Ok(order) if reason_ok => Ok(Self {
                order,
                reason: r.reason,
            }),
            Ok(_) => Err(vec![FieldError::new(
                "reason",
                "a code of lower-case letters, digits and _ (at most 64)",
            )]),
            Err(mut errors) => {
                if !reason_ok {
                    errors.push(FieldError::new("reason", "not a reason code"));
                }
                Err(errors)
            }
        }
    }
}

impl TryFrom<CreatePaymentRequest> for NewPayment {
    type Error = Vec<FieldError>;

    fn try_from(r: CreatePaymentRequest) -> Result<Self, Self::Error> {
        let mut errors = Vec::new();
        if !common::id::is_valid("ord", &r.order_id) {
            errors.push(FieldError::new("order_id", "not an order id (ord_…)"));
        }
        if r.amount <= 0 {
            errors.push(FieldError::new("amount", "must be more than zero"));
        }
        let currency = r.currency.parse::<Currency>();
        if let Err(e) = &currency {
            errors.push(FieldError::new("currency", e.to_string()));
        }
        let payment_method = r.payment_method.filter(|p| !p.trim().is_empty());
        if payment_method
            .as_ref()
            .is_some_and(|p| p.len() > 255 || !p.bytes().all(|b| b.is_ascii_graphic()))
        {
            errors.push(FieldError::new("payment_method", "not a payment method id"));
        }
        match currency {
            Ok(currency) if errors.is_empty() => Ok(Self {
                order_id: r.order_id,
                amount: r.amount,
                currency,
                payment_method,
            }),
            _ => Err(errors),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(order_id: &str, amount: i64, currency: &str) -> CreatePaymentRequest {
        CreatePaymentRequest {
            order_id: order_id.to_owned(),
            amount,
            currency: currency.to_owned(),
            payment_method: None,
        }
    }

    #[test]
    fn a_valid_request_parses() {
        let order = common::id::new_id("ord");
        let new = NewPayment::try_from(request(&order, 1500, "EUR")).unwrap();
        assert_eq!(new.currency.as_str(), "EUR");
        assert_eq!(new.provider_key(), format!("pi-{order}"));
    }

    #[test]
    fn every_invalid_field_is_named() {
        let errors = NewPayment::try_from(request("crt_1", 0, "eur")).unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["order_id", "amount", "currency"]);
    }
}
