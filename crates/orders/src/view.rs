//! The order as the API shows it. The payment's client secret lets whoever holds it confirm
//! the PaymentIntent, so it is shown only while the order awaits payment.

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use utoipa::ToSchema;

use crate::{
    domain::Status,
    store::orders::{Line, Order},
};

/// One line of an order, priced when the order was placed.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct LineView {
    /// The product.
    pub sku: String,
    /// Its name when ordered.
    pub name: String,
    /// Units.
    pub quantity: i32,
    /// Unit price, minor units.
    pub unit_price: i64,
    /// `unit_price * quantity`.
    pub line_total: i64,
}

/// The order's payment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct PaymentView {
    /// `pay_…`.
    pub id: String,
    /// The payment's last known status.
    pub status: Option<String>,
    /// For Stripe.js, when no payment method was given at checkout; only while the order
    /// awaits payment.
    pub client_secret: Option<String>,
}

/// An order.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    /// `ord_…`.
    pub id: String,
    /// Where the order is.
    #[schema(value_type = Status)]
    pub status: String,
    /// The lines.
    pub items: Vec<LineView>,
    /// Sum of the lines, minor units.
    pub total: i64,
    /// ISO 4217.
    pub currency: String,
    /// The customer's email.
    pub email: String,
    /// When the order was accepted (RFC 3339).
    pub created_at: String,
    /// Why the order failed or was cancelled.
    pub failure_reason: Option<String>,
    /// The payment, once created.
    pub payment: Option<PaymentView>,
}

impl OrderView {
    /// The view of an order and its lines.
    pub fn new(order: &Order, lines: &[Line]) -> Self {
        Self {
            id: order.id.to_string(),
            status: order.status.as_str().to_owned(),
            items: lines
                .iter()
                .map(|l| LineView {
                    sku: l.sku.clone(),
                    name: l.name.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    line_total: l.line_total,
                })
                .collect(),
            total: order.total.amount,
            currency: order.total.currency.to_string(),
            email: order.email.clone(),
            created_at: order.created_at.format(&Rfc3339).unwrap_or_default(),
            failure_reason: order.failure_reason.clone(),
            payment: order.payment_id.as_ref().map(|id| PaymentView {
                id: id.to_string(),
                status: order.payment_status.clone(),
                client_secret: order
                    .client_secret
                    .clone()
                    .filter(|_| order.status.awaits_payment()),
            }),
        }
    }
}
