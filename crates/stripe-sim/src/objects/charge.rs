//! The Charge: one attempt to move money for a PaymentIntent, approved or declined.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::cards::{Decline, TestCard, empty_billing_details};

/// `charge.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeStatus {
    /// Approved (captured or only authorized).
    Succeeded,
    /// Declined.
    Failed,
}

/// A Charge as the simulator keeps it.
#[derive(Debug, Clone)]
pub struct Charge {
    /// `ch_…`.
    pub id: String,
    /// Amount authorized, minor units.
    pub amount: i64,
    /// Amount captured so far.
    pub amount_captured: i64,
    /// Amount refunded or released so far.
    pub amount_refunded: i64,
    /// Whether the charge has been captured.
    pub captured: bool,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// Lower-case ISO 4217 code.
    pub currency: String,
    /// Copied from the PaymentIntent.
    pub description: Option<String>,
    /// Whether a dispute was opened.
    pub disputed: bool,
    /// Copied from the PaymentIntent.
    pub metadata: BTreeMap<String, String>,
    /// The PaymentIntent this charge belongs to.
    pub payment_intent: String,
    /// The payment method charged (`pm_…`).
    pub payment_method: String,
    /// The test card behind that payment method.
    pub card: &'static TestCard,
    /// Approved or declined.
    pub status: ChargeStatus,
    /// The decline, for a failed charge.
    pub failure: Option<Decline>,
    /// `txn_…`, for an approved charge.
    pub balance_transaction: Option<String>,
    /// Copied from the PaymentIntent.
    pub receipt_email: Option<String>,
}

impl Charge {
    /// What a refund may still take.
    pub fn refundable(&self) -> i64 {
        if self.status == ChargeStatus::Succeeded && self.captured {
            self.amount - self.amount_refunded
        } else {
            0
        }
    }

    /// The Charge as Stripe renders it.
    pub fn to_json(&self) -> Value {
        let approved = self.status == ChargeStatus::Succeeded;
        let outcome = match self.failure {
            None => json!({
                "advice_code": null,
                "network_advice_code": null,
                "network_decline_code": null,
                "network_status": "approved_by_network",
                "reason": null,
                "risk_level": "normal",
                "risk_score": 23,
                "seller_message": "Payment complete.",
                "type": "authorized"
            }),
            Some(decline) => json!({
                "advice_code": null,
                "network_advice_code": null,
                "network_decline_code": null,
                "network_status": "declined_by_network",
                "reason": decline.decline_code,
                "risk_level": "normal",
                "risk_score": 23,
                "seller_message": "The bank did not return any further details with this decline.",
                "type": "issuer_declined"
            }),
        };
        json!({
            "id": self.id,
            "object": "charge",
            "amount": self.amount,
            "amount_captured": self.amount_captured,
            "amount_refunded": self.amount_refunded,
            "application": null,
            "application_fee": null,
            "application_fee_amount": null,
            "authorization_code": if approved { Some("123456") } else { None },
            "balance_transaction": self.balance_transaction,
            "billing_details": empty_billing_details(),
            "calculated_statement_descriptor": "STRIPE SIM",
            "captured": self.captured,
            "created": self.created,
            "currency": self.currency,
            "customer": null,
            "description": self.description,
            "disputed": self.disputed,
            "failure_balance_transaction": null,
            "failure_code": self.failure.map(|d| d.code),
            "failure_message": self.failure.map(|d| d.message),
            "fraud_details": {},
            "livemode": false,
            "metadata": self.metadata,
            "on_behalf_of": null,
            "outcome": outcome,
            "paid": approved,
            "payment_intent": self.payment_intent,
            "payment_method": self.payment_method,
            "payment_method_details": self.card.charge_details_json(self.amount, self.created, approved),
            "receipt_email": self.receipt_email,
            "receipt_number": null,
            "receipt_url": if approved {
                Some(format!("https://pay.stripe.com/receipts/payment/sim/{}", self.id))
            } else {
                None
            },
            "refunded": self.amount_refunded > 0 && self.amount_refunded == self.amount,
            "review": null,
            "shipping": null,
            "source": null,
            "source_transfer": null,
            "statement_descriptor": null,
            "statement_descriptor_suffix": null,
            "status": if approved { "succeeded" } else { "failed" },
            "transfer_data": null,
            "transfer_group": null
        })
    }
}
