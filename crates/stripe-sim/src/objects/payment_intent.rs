//! The PaymentIntent: its status machine's states and its wire shape.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Value, json};

/// `payment_intent.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Waiting for a payment method (also after a decline).
    RequiresPaymentMethod,
    /// Has a payment method, waiting for confirmation.
    RequiresConfirmation,
    /// Waiting for the customer (3-D Secure).
    RequiresAction,
    /// The payment is on its way; the outcome comes later.
    Processing,
    /// Authorized; waiting for a capture.
    RequiresCapture,
    /// Canceled; final.
    Canceled,
    /// Paid; final.
    Succeeded,
}

impl Status {
    /// The wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequiresPaymentMethod => "requires_payment_method",
            Self::RequiresConfirmation => "requires_confirmation",
            Self::RequiresAction => "requires_action",
            Self::Processing => "processing",
            Self::RequiresCapture => "requires_capture",
            Self::Canceled => "canceled",
            Self::Succeeded => "succeeded",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `payment_intent.capture_method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureMethod {
    /// Capture as soon as the payment is authorized.
    Automatic,
    /// Like `Automatic`, with the balance transaction settled asynchronously.
    AutomaticAsync,
    /// Authorize only; capture through `/capture`.
    Manual,
}

impl CaptureMethod {
    /// The wire values, in the form the create endpoint accepts.
    pub const ALL: [&'static str; 3] = ["automatic", "automatic_async", "manual"];

    /// Parses a wire value.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "automatic" => Some(Self::Automatic),
            "automatic_async" => Some(Self::AutomaticAsync),
            "manual" => Some(Self::Manual),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::Automatic => "automatic",
            Self::AutomaticAsync => "automatic_async",
            Self::Manual => "manual",
        }
    }
}

/// A PaymentIntent as the simulator keeps it.
#[derive(Debug, Clone)]
pub struct PaymentIntent {
    /// `pi_…`.
    pub id: String,
    /// `pi_…_secret_…`, handed to Stripe.js.
    pub client_secret: String,
    /// Amount to collect, in minor units.
    pub amount: i64,
    /// Amount that a capture may still take.
    pub amount_capturable: i64,
    /// Amount collected.
    pub amount_received: i64,
    /// Lower-case ISO 4217 code.
    pub currency: String,
    /// Current state.
    pub status: Status,
    /// When the payment is captured.
    pub capture_method: CaptureMethod,
    /// Creation time, Unix seconds.
    pub created: i64,
    /// Cancellation time, Unix seconds.
    pub canceled_at: Option<i64>,
    /// Why it was canceled.
    pub cancellation_reason: Option<String>,
    /// Free text from the caller.
    pub description: Option<String>,
    /// Caller's key-value pairs.
    pub metadata: BTreeMap<String, String>,
    /// Customer id as given by the caller.
    pub customer: Option<String>,
    /// Attached payment method (`pm_…`).
    pub payment_method: Option<String>,
    /// Payment method types offered.
    pub payment_method_types: Vec<String>,
    /// Whether `automatic_payment_methods[enabled]` was set.
    pub automatic_payment_methods: bool,
    /// Id of the most recent charge.
    pub latest_charge: Option<String>,
    /// The error of the last failed attempt, already in wire shape.
    pub last_payment_error: Option<Value>,
    /// What the customer must do next, already in wire shape.
    pub next_action: Option<Value>,
    /// Where Stripe would send the receipt.
    pub receipt_email: Option<String>,
    /// Statement descriptor given by the caller.
    pub statement_descriptor: Option<String>,
    /// Statement descriptor suffix given by the caller.
    pub statement_descriptor_suffix: Option<String>,
    /// `on_session` / `off_session`, when given.
    pub setup_future_usage: Option<String>,
}

impl PaymentIntent {
    /// The PaymentIntent as Stripe renders it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "object": "payment_intent",
            "amount": self.amount,
            "amount_capturable": self.amount_capturable,
            "amount_details": null,
            "amount_received": self.amount_received,
            "application": null,
            "application_fee_amount": null,
            "automatic_payment_methods": if self.automatic_payment_methods {
                json!({ "allow_redirects": "always", "enabled": true })
            } else {
                Value::Null
            },
            "canceled_at": self.canceled_at,
            "cancellation_reason": self.cancellation_reason,
            "capture_method": self.capture_method.as_str(),
            "client_secret": self.client_secret,
            "confirmation_method": "automatic",
            "created": self.created,
            "currency": self.currency,
            "customer": self.customer,
            "customer_account": null,
            "description": self.description,
            "excluded_payment_method_types": null,
            "last_payment_error": self.last_payment_error,
            "latest_charge": self.latest_charge,
            "livemode": false,
            "metadata": self.metadata,
            "next_action": self.next_action,
            "on_behalf_of": null,
            "payment_method": self.payment_method,
            "payment_method_configuration_details": null,
            "payment_method_options": null,
            "payment_method_types": self.payment_method_types,
            "processing": null,
            "receipt_email": self.receipt_email,
            "review": null,
            "setup_future_usage": self.setup_future_usage,
            "shipping": null,
            "source": null,
            "statement_descriptor": self.statement_descriptor,
            "statement_descriptor_suffix": self.statement_descriptor_suffix,
            "status": self.status.as_str(),
            "transfer_data": null,
            "transfer_group": null
        })
    }
}
