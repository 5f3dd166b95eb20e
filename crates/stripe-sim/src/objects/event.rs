//! The Event: a signed-off snapshot of one state change, as webhooks carry it.
//!
//! The payload is serialized once, when the change happens, so every delivery, duplicate and
//! resend of an event carries byte-identical JSON, as Stripe's do.

use axum::body::Bytes;
use serde_json::{Value, json};

use crate::{API_VERSION, ids};

/// The event types the simulator emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// `payment_intent.created`
    PaymentIntentCreated,
    /// `payment_intent.requires_action`
    PaymentIntentRequiresAction,
    /// `payment_intent.processing`
    PaymentIntentProcessing,
    /// `payment_intent.amount_capturable_updated`
    PaymentIntentAmountCapturableUpdated,
    /// `payment_intent.succeeded`
    PaymentIntentSucceeded,
    /// `payment_intent.payment_failed`
    PaymentIntentPaymentFailed,
    /// `payment_intent.canceled`
    PaymentIntentCanceled,
    /// `charge.succeeded`
    ChargeSucceeded,
    /// `charge.failed`
    ChargeFailed,
    /// `charge.captured`
    ChargeCaptured,
    /// `charge.refunded`
    ChargeRefunded,
    /// `charge.dispute.created`
    ChargeDisputeCreated,
    /// `refund.created`
    RefundCreated,
}

impl EventType {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PaymentIntentCreated => "payment_intent.created",
            Self::PaymentIntentRequiresAction => "payment_intent.requires_action",
            Self::PaymentIntentProcessing => "payment_intent.processing",
            Self::PaymentIntentAmountCapturableUpdated => {
                "payment_intent.amount_capturable_updated"
            }
            Self::PaymentIntentSucceeded => "payment_intent.succeeded",
            Self::PaymentIntentPaymentFailed => "payment_intent.payment_failed",
            Self::PaymentIntentCanceled => "payment_intent.canceled",
            Self::ChargeSucceeded => "charge.succeeded",
            Self::ChargeFailed => "charge.failed",
            Self::ChargeCaptured => "charge.captured",
            Self::ChargeRefunded => "charge.refunded",
            Self::ChargeDisputeCreated => "charge.dispute.created",
            Self::RefundCreated => "refund.created",
        }
    }
}

/// The API request that caused an event (`event.request`).
#[derive(Debug, Clone, Default)]
pub struct RequestRef {
    /// `req_…` of the API call; `None` for changes made through `/_sim`.
    pub id: Option<String>,
    /// The call's `Idempotency-Key`.
    pub idempotency_key: Option<String>,
}

/// An emitted event.
#[derive(Debug, Clone)]
pub struct Event {
    /// `evt_…`.
    pub id: String,
    /// What happened.
    pub kind: EventType,
    /// The full event object.
    pub json: Value,
    /// `json`, serialized once; the exact bytes that are signed and delivered.
    pub payload: Bytes,
}

impl Event {
    /// An event of `kind` carrying a snapshot of `object`.
    pub fn new(
        kind: EventType,
        object: Value,
        request: &RequestRef,
        pending_webhooks: usize,
    ) -> Self {
        let id = ids::new_id("evt");
        let json = json!({
            "id": id,
            "object": "event",
            "api_version": API_VERSION,
            "created": ids::now(),
            "data": { "object": object },
            "livemode": false,
            "pending_webhooks": pending_webhooks,
            "request": { "id": request.id, "idempotency_key": request.idempotency_key },
            "type": kind.as_str()
        });
        let payload = Bytes::from(serde_json::to_vec(&json).expect("JSON values serialize"));
        Self {
            id,
            kind,
            json,
            payload,
        }
    }
}
