//! What a Stripe event means for a payment: which PaymentIntent it is about and the
//! [`Report`] it makes. Only the fields used here are read, so a new Stripe API version that
//! adds fields changes nothing.

use serde::Deserialize;
use serde_json::Value;

use crate::{ledger::Report, state::Status};

/// The event types payments acts on; others are acknowledged and counted, nothing more.
pub const HANDLED: [&str; 7] = [
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.requires_action",
    "payment_intent.processing",
    "charge.refunded",
    "charge.dispute.created",
];

/// Whether payments acts on events of `kind`.
pub fn is_handled(kind: &str) -> bool {
    HANDLED.contains(&kind)
}

/// An event as the webhook reads it. Parsing into it also checks that the whole body is
/// JSON; the object stays loosely typed, so a field of an unexpected shape means "no
/// effect", never a refused event that Stripe would send again for days.
#[derive(Debug, Deserialize)]
pub struct Envelope {
    /// `evt_…`.
    pub id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub kind: String,
    /// Unix seconds.
    pub created: i64,
    data: Data,
}

#[derive(Debug, Deserialize)]
struct Data {
    object: Value,
}

impl Envelope {
    /// What the event says about a payment; `None` for types payments does not act on.
    pub fn effect(&self) -> Option<Effect> {
        effect(&self.id, &self.kind, &self.data.object)
    }
}

/// What an event says about one PaymentIntent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effect {
    /// `pi_…`.
    pub intent_id: String,
    /// `metadata[order_id]`: present on PaymentIntents payments created.
    pub order_id: Option<String>,
    /// The amount it speaks of, minor units: received, for a success.
    pub amount: Option<i64>,
    /// Its currency, upper case.
    pub currency: Option<String>,
    /// The report to apply.
    pub report: Report,
}

impl Effect {
    /// What in the event disagrees with `payment` (amount, currency, order), if anything:
    /// an event that says so is not applied.
    pub fn mismatch(&self, order_id: &str, amount: i64, currency: &str) -> Option<String> {
        let mut wrong = Vec::new();
        if self.order_id.as_deref().is_some_and(|o| o != order_id) {
            wrong.push(format!("order {:?} (ours {order_id})", self.order_id));
        }
        if self.report.status == Status::Succeeded && self.amount != Some(amount) {
            wrong.push(format!("amount {:?} (ours {amount})", self.amount));
        }
        if self
            .currency
            .as_deref()
            .is_some_and(|c| !c.eq_ignore_ascii_case(currency.trim()))
        {
            wrong.push(format!("currency {:?} (ours {currency})", self.currency));
        }
        (!wrong.is_empty()).then(|| wrong.join(", "))
    }
}

fn text(value: &Value) -> Option<String> {
    value.as_str().map(str::to_owned)
}

/// An id that may come as a string or as an expanded object.
fn id_of(value: &Value) -> Option<String> {
    text(value).or_else(|| text(&value["id"]))
}

/// Why the PaymentIntent's last attempt failed.
fn failure_reason(intent: &Value) -> String {
    let error = &intent["last_payment_error"];
    text(&error["decline_code"])
        .or_else(|| text(&error["code"]))
        .or_else(|| text(&error["message"]))
        .unwrap_or_else(|| "payment_failed".to_owned())
}

/// The effect of event `id` of type `kind` carrying `object`; `None` for types payments does
/// not act on or objects without a PaymentIntent.
pub fn effect(id: &str, kind: &str, object: &Value) -> Option<Effect> {
    let mut reason = None;
    let mut amount_refunded = None;
    let mut amount = object["amount"].as_i64();
    let (status, intent_id) = match kind {
        "payment_intent.succeeded" => {
            amount = object["amount_received"].as_i64();
            (Status::Succeeded, id_of(&object["id"]))
        }
        "payment_intent.payment_failed" => {
            reason = Some(failure_reason(object));
            (Status::Failed, id_of(&object["id"]))
        }
        "payment_intent.canceled" => {
            reason =
                Some(text(&object["cancellation_reason"]).unwrap_or_else(|| "canceled".to_owned()));
            (Status::Canceled, id_of(&object["id"]))
        }
        "payment_intent.requires_action" => (Status::RequiresAction, id_of(&object["id"])),
        "payment_intent.processing" => (Status::Processing, id_of(&object["id"])),
        "charge.refunded" => {
            let captured = object["amount_captured"].as_i64().unwrap_or(0);
            let refunded = object["amount_refunded"].as_i64().unwrap_or(0);
            amount_refunded = Some(refunded);
            let status = if captured > 0 && refunded >= captured {
                Status::Refunded
            } else {
                Status::PartiallyRefunded
            };
            (status, id_of(&object["payment_intent"]))
        }
        "charge.dispute.created" => (Status::Disputed, id_of(&object["payment_intent"])),
        _ => return None,
    };
    Some(Effect {
        intent_id: intent_id?,
        order_id: text(&object["metadata"]["order_id"]),
        amount,
        currency: text(&object["currency"]).map(|c| c.to_ascii_uppercase()),
        report: Report {
            status,
            failure_reason: reason,
            amount_refunded,
            event_id: Some(id.to_owned()),
            answered: false,
            authoritative: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_decline_carries_its_reason() {
        let object = json!({"id": "pi_1", "metadata": {"order_id": "ord_1"},
            "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds"}});
        let effect = effect("evt_1", "payment_intent.payment_failed", &object).unwrap();
        assert_eq!(effect.intent_id, "pi_1");
        assert_eq!(effect.order_id.as_deref(), Some("ord_1"));
        assert_eq!(effect.report.status, Status::Failed);
        assert_eq!(
            effect.report.failure_reason.as_deref(),
            Some("insufficient_funds")
        );
    }

    #[test]
    fn refunds_are_partial_until_everything_captured_is_back() {
        let partial =
            json!({"payment_intent": "pi_1", "amount_captured": 1000, "amount_refunded": 400});
        let full =
            json!({"payment_intent": "pi_1", "amount_captured": 1000, "amount_refunded": 1000});
        let status = |o: &Value| effect("evt", "charge.refunded", o).unwrap().report.status;
        assert_eq!(status(&partial), Status::PartiallyRefunded);
        assert_eq!(status(&full), Status::Refunded);
    }

    #[test]
    fn a_success_for_another_amount_currency_or_order_is_a_mismatch() {
        let object = json!({"id": "pi_1", "amount": 50000, "amount_received": 1,
            "currency": "usd", "metadata": {"order_id": "ord_1"}});
        let forged = effect("evt_1", "payment_intent.succeeded", &object).unwrap();
        assert!(
            forged
                .mismatch("ord_1", 50000, "USD")
                .unwrap()
                .contains("amount")
        );
        let object = json!({"id": "pi_1", "amount": 50000, "amount_received": 50000,
            "currency": "usd", "metadata": {"order_id": "ord_1"}});
        let real = effect("evt_2", "payment_intent.succeeded", &object).unwrap();
        assert_eq!(real.mismatch("ord_1", 50000, "USD"), None);
        assert!(
            real.mismatch("ord_2", 50000, "USD")
                .unwrap()
                .contains("order")
        );
        assert!(
            real.mismatch("ord_1", 50000, "EUR")
                .unwrap()
                .contains("currency")
        );
    }

    #[test]
    fn other_types_and_objects_without_an_intent_have_no_effect() {
        assert!(effect("evt", "customer.created", &json!({"id": "cus_1"})).is_none());
        assert!(effect("evt", "charge.refunded", &json!({"payment_intent": null})).is_none());
    }
}
