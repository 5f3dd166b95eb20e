//! Stripe's test payment methods and what confirming each one does.
//!
//! The tokens are the ones Stripe documents for test mode (`pm_card_visa`,
//! `pm_card_chargeDeclined`, `pm_card_authenticationRequired`, …), so code written against the
//! simulator behaves the same against a real test-mode account.

use serde_json::{Value, json};

/// What a confirmation with the card leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// The charge succeeds.
    Approve,
    /// The issuer declines.
    Decline(Decline),
    /// 3-D Secure is required first; afterwards the charge succeeds.
    Authenticate,
}

/// How an issuer declines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decline {
    /// `error.code`.
    pub code: &'static str,
    /// `error.decline_code` and `charge.outcome.reason`.
    pub decline_code: &'static str,
    /// Customer-facing message.
    pub message: &'static str,
}

impl Decline {
    /// The plain "card was declined" decline.
    pub const GENERIC: Self = Self {
        code: "card_declined",
        decline_code: "generic_decline",
        message: "Your card was declined.",
    };
    const INSUFFICIENT_FUNDS: Self = Self {
        code: "card_declined",
        decline_code: "insufficient_funds",
        message: "Your card has insufficient funds.",
    };

    /// The decline for a `decline_code`, as the `/_sim` helpers take it.
    pub fn from_code(decline_code: &str) -> Option<Self> {
        CARDS.iter().find_map(|card| match card.behaviour {
            Behaviour::Decline(d) if d.decline_code == decline_code => Some(d),
            _ => None,
        })
    }
}

/// A test card behind a `pm_card_…` token.
#[derive(Debug, PartialEq, Eq)]
pub struct TestCard {
    /// The token callers send as `payment_method`.
    pub token: &'static str,
    /// Card brand, e.g. `visa`.
    pub brand: &'static str,
    /// Last four digits of the card number.
    pub last4: &'static str,
    /// `credit` or `debit`.
    pub funding: &'static str,
    /// What confirming with this card does.
    pub behaviour: Behaviour,
}

const fn card(
    token: &'static str,
    brand: &'static str,
    last4: &'static str,
    behaviour: Behaviour,
) -> TestCard {
    TestCard {
        token,
        brand,
        last4,
        funding: "credit",
        behaviour,
    }
}

const fn declined(
    code: &'static str,
    decline_code: &'static str,
    message: &'static str,
) -> Behaviour {
    Behaviour::Decline(Decline {
        code,
        decline_code,
        message,
    })
}

static CARDS: &[TestCard] = &[
    card("pm_card_visa", "visa", "4242", Behaviour::Approve),
    TestCard {
        token: "pm_card_visa_debit",
        brand: "visa",
        last4: "5556",
        funding: "debit",
        behaviour: Behaviour::Approve,
    },
    card(
        "pm_card_mastercard",
        "mastercard",
        "4444",
        Behaviour::Approve,
    ),
    card("pm_card_amex", "amex", "8431", Behaviour::Approve),
    card(
        "pm_card_chargeDeclined",
        "visa",
        "0002",
        Behaviour::Decline(Decline::GENERIC),
    ),
    card(
        "pm_card_chargeDeclinedInsufficientFunds",
        "visa",
        "9995",
        Behaviour::Decline(Decline::INSUFFICIENT_FUNDS),
    ),
    card(
        "pm_card_visa_chargeDeclinedInsufficientFunds",
        "visa",
        "9995",
        Behaviour::Decline(Decline::INSUFFICIENT_FUNDS),
    ),
    card(
        "pm_card_insufficientFunds",
        "visa",
        "9995",
        Behaviour::Decline(Decline::INSUFFICIENT_FUNDS),
    ),
    card(
        "pm_card_chargeDeclinedLostCard",
        "visa",
        "9987",
        declined("card_declined", "lost_card", "Your card was declined."),
    ),
    card(
        "pm_card_chargeDeclinedStolenCard",
        "visa",
        "9979",
        declined("card_declined", "stolen_card", "Your card was declined."),
    ),
    card(
        "pm_card_chargeDeclinedExpiredCard",
        "visa",
        "0069",
        declined("expired_card", "expired_card", "Your card has expired."),
    ),
    card(
        "pm_card_chargeDeclinedIncorrectCvc",
        "visa",
        "0127",
        declined(
            "incorrect_cvc",
            "incorrect_cvc",
            "Your card's security code is incorrect.",
        ),
    ),
    card(
        "pm_card_chargeDeclinedProcessingError",
        "visa",
        "0119",
        declined(
            "processing_error",
            "processing_error",
            "An error occurred while processing your card. Try again in a little bit.",
        ),
    ),
    card(
        "pm_card_authenticationRequired",
        "visa",
        "3184",
        Behaviour::Authenticate,
    ),
    card(
        "pm_card_threeDSecure2Required",
        "visa",
        "3220",
        Behaviour::Authenticate,
    ),
];

/// The test card behind a `pm_card_…` token.
pub fn lookup(token: &str) -> Option<&'static TestCard> {
    CARDS.iter().find(|card| card.token == token)
}

/// The card every `/_sim` helper charges when a PaymentIntent has no payment method yet.
pub fn default_card() -> &'static TestCard {
    &CARDS[0]
}

/// Expiry year shown on test cards: a few years ahead of `now`.
fn exp_year(now: i64) -> i64 {
    1970 + now / 31_556_952 + 3
}

impl TestCard {
    fn fingerprint(&self) -> String {
        format!("sim{}{}", self.brand, self.last4)
    }

    /// A `payment_method` object for this card under the id `pm_id`.
    pub fn payment_method_json(&self, pm_id: &str, created: i64) -> Value {
        json!({
            "id": pm_id,
            "object": "payment_method",
            "allow_redisplay": "unspecified",
            "billing_details": empty_billing_details(),
            "card": {
                "brand": self.brand,
                "checks": { "address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass" },
                "country": "US",
                "display_brand": self.brand,
                "exp_month": 12,
                "exp_year": exp_year(created),
                "fingerprint": self.fingerprint(),
                "funding": self.funding,
                "generated_from": null,
                "last4": self.last4,
                "networks": { "available": [self.brand], "preferred": null },
                "regulated_status": "unregulated",
                "three_d_secure_usage": { "supported": true },
                "wallet": null
            },
            "created": created,
            "customer": null,
            "livemode": false,
            "metadata": {},
            "type": "card"
        })
    }

    /// A charge's `payment_method_details` for this card.
    pub fn charge_details_json(&self, amount: i64, created: i64, approved: bool) -> Value {
        json!({
            "card": {
                "amount_authorized": if approved { Some(amount) } else { None },
                "authorization_code": if approved { Some("123456") } else { None },
                "brand": self.brand,
                "checks": { "address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass" },
                "country": "US",
                "exp_month": 12,
                "exp_year": exp_year(created),
                "fingerprint": self.fingerprint(),
                "funding": self.funding,
                "installments": null,
                "last4": self.last4,
                "mandate": null,
                "network": self.brand,
                "network_transaction_id": if approved { Some("1041029786787710") } else { None },
                "regulated_status": "unregulated",
                "three_d_secure": null,
                "wallet": null
            },
            "type": "card"
        })
    }
}

/// Billing details with every field empty, as for a test token.
pub fn empty_billing_details() -> Value {
    json!({
        "address": {
            "city": null, "country": null, "line1": null, "line2": null,
            "postal_code": null, "state": null
        },
        "email": null,
        "name": null,
        "phone": null,
        "tax_id": null
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_tokens_behave_as_on_stripe() {
        assert_eq!(
            lookup("pm_card_visa").unwrap().behaviour,
            Behaviour::Approve
        );
        assert_eq!(
            lookup("pm_card_chargeDeclined").unwrap().behaviour,
            Behaviour::Decline(Decline::GENERIC)
        );
        assert_eq!(
            lookup("pm_card_authenticationRequired").unwrap().behaviour,
            Behaviour::Authenticate
        );
        assert!(lookup("pm_card_unknown").is_none());
    }

    #[test]
    fn declines_are_found_by_code() {
        assert_eq!(
            Decline::from_code("insufficient_funds"),
            Some(Decline::INSUFFICIENT_FUNDS)
        );
        assert_eq!(Decline::from_code("nope"), None);
    }
}
