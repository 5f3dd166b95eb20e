//! The Refund: money returned from a captured charge, in full or in part.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// A Refund as the simulator keeps it (card refunds succeed at once).
#[derive(Debug, Clone)]
pub struct Refund {
    /// `re_…`.
    pub id: String,
    /// Amount refunded, minor units.
    pub amount: i64,
    /// The refunded charge.
    pub charge: String,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// Lower-case ISO 4217 code.
    pub currency: String,
    /// Caller's key-value pairs.
    pub metadata: BTreeMap<String, String>,
    /// The PaymentIntent of the refunded charge.
    pub payment_intent: String,
    /// `duplicate`, `fraudulent` or `requested_by_customer`.
    pub reason: Option<String>,
    /// `txn_…`.
    pub balance_transaction: String,
}

impl Refund {
    /// The Refund as Stripe renders it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "refund",
            "amount": self.amount,
            "balance_transaction": self.balance_transaction,
            "charge": self.charge,
            "created": self.created,
            "currency": self.currency,
            "destination_details": null,
            "metadata": self.metadata,
            "payment_intent": self.payment_intent,
            "reason": self.reason,
            "receipt_number": null,
            "source_transfer_reversal": null,
            "status": "succeeded",
            "transfer_reversal": null
        })
    }
}
