//! The Dispute: a chargeback opened against a captured charge (only through `/_sim`).

use serde_json::{Value, json};

/// Seconds a merchant has to answer a dispute.
const EVIDENCE_WINDOW: i64 = 7 * 24 * 3600;

/// A Dispute as the simulator keeps it.
#[derive(Debug, Clone)]
pub struct Dispute {
    /// `dp_…`.
    pub id: String,
    /// Disputed amount, minor units.
    pub amount: i64,
    /// The disputed charge.
    pub charge: String,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// Lower-case ISO 4217 code.
    pub currency: String,
    /// The PaymentIntent of the disputed charge.
    pub payment_intent: String,
    /// Stripe's reason, e.g. `fraudulent`.
    pub reason: String,
}

impl Dispute {
    /// The Dispute as Stripe renders it.
    pub fn to_json(&self) -> Value {
        let evidence_fields = [
            "access_activity_log",
            "billing_address",
            "cancellation_policy",
            "cancellation_policy_disclosure",
            "cancellation_rebuttal",
            "customer_communication",
            "customer_email_address",
            "customer_name",
            "customer_purchase_ip",
            "customer_signature",
            "duplicate_charge_documentation",
            "duplicate_charge_explanation",
            "duplicate_charge_id",
            "product_description",
            "receipt",
            "refund_policy",
            "refund_policy_disclosure",
            "refund_refusal_explanation",
            "service_date",
            "service_documentation",
            "shipping_address",
            "shipping_carrier",
            "shipping_date",
            "shipping_documentation",
            "shipping_tracking_number",
            "uncategorized_file",
            "uncategorized_text",
        ];
        let mut evidence: serde_json::Map<String, Value> = evidence_fields
            .iter()
            .map(|f| ((*f).to_owned(), Value::Null))
            .collect();
        evidence.insert("enhanced_evidence".into(), json!({}));
        json!({
            "id": self.id,
            "object": "dispute",
            "amount": self.amount,
            "balance_transactions": [],
            "charge": self.charge,
            "created": self.created,
            "currency": self.currency,
            "enhanced_eligibility_types": [],
            "evidence": evidence,
            "evidence_details": {
                "due_by": self.created + EVIDENCE_WINDOW,
                "enhanced_eligibility": {},
                "has_evidence": false,
                "past_due": false,
                "submission_count": 0
            },
            "is_charge_refundable": false,
            "livemode": false,
            "metadata": {},
            "network_reason_code": null,
            "payment_intent": self.payment_intent,
            "payment_method_details": null,
            "reason": self.reason,
            "status": "needs_response"
        })
    }
}
