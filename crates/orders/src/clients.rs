//! The HTTP clients orders uses: the cart service (read the cart at checkout, clear it once
//! the order is confirmed) and the payments service (create the order's payment, close it
//! when the order ends without it). Failures are sorted once, here, into transient (retry)
//! and rejected (do not).

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use common::{
    Secret,
    money::{Currency, Money},
};

use crate::domain::{CartId, OrderId, PaymentId};

/// An upstream call that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Timeouts, 5xx, connection failures, 429: worth retrying.
    #[error("{0}")]
    Transient(String),
    /// A 4xx the upstream will repeat: retrying cannot help.
    #[error("rejected with {status}: {detail}")]
    Rejected {
        /// The upstream's status.
        status: u16,
        /// The upstream's problem detail, for logs only.
        detail: String,
    },
}

fn classify(e: reqwest::Error) -> UpstreamError {
    UpstreamError::Transient(e.to_string())
}

/// `request` carrying the current span's `traceparent`, so the upstream's work joins the
/// checkout's trace.
fn traced(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match common::telemetry::current_traceparent() {
        Some(traceparent) => request.header("traceparent", traceparent),
        None => request,
    }
}

async fn rejected(response: reqwest::Response) -> UpstreamError {
    let status = response.status().as_u16();
    let detail = response.text().await.unwrap_or_default();
    // 401/403: a token out of step during a rotation, fixed by configuration; retrying
    // keeps the order queued instead of failing it.
    if status >= 500 || matches!(status, 401 | 403 | 408 | 429) {
        UpstreamError::Transient(format!("upstream answered {status}"))
    } else {
        UpstreamError::Rejected { status, detail }
    }
}

/// A cart line as the cart service prices it.
#[derive(Debug, Clone, Deserialize)]
pub struct CartLine {
    /// The product.
    pub sku: String,
    /// Its name.
    pub name: String,
    /// Units.
    pub quantity: i32,
    /// Current unit price.
    pub unit_price: i64,
    /// `unit_price * quantity`.
    pub line_total: i64,
    /// False when the product was withdrawn.
    #[serde(default = "yes")]
    pub available: bool,
}

fn yes() -> bool {
    true
}

/// A cart as the cart service answers it.
#[derive(Debug, Clone, Deserialize)]
pub struct Cart {
    /// The cart's currency.
    pub currency: Currency,
    /// Its lines.
    pub items: Vec<CartLine>,
    /// Sum of the lines.
    pub subtotal: i64,
}

/// The payment the payments service created.
#[derive(Debug, Clone, Deserialize)]
pub struct Payment {
    /// Its id.
    pub id: PaymentId,
    /// The payment's status (`requires_action`, `succeeded`, `failed`, …).
    pub status: String,
    /// For Stripe.js, when the customer confirms in the browser.
    pub client_secret: Option<String>,
}

/// Clients for cart and payments.
#[derive(Clone)]
pub struct Clients {
    http: reqwest::Client,
    cart_url: String,
    payments_url: String,
    internal_token: Secret,
}

impl Clients {
    /// Clients with a per-call timeout.
    pub fn new(
        cart_url: &str,
        payments_url: &str,
        internal_token: Secret,
        timeout: Duration,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .pool_max_idle_per_host(64)
            .build()
            .expect("the HTTP client's settings are valid");
        Self {
            http,
            cart_url: cart_url.trim_end_matches('/').to_owned(),
            payments_url: payments_url.trim_end_matches('/').to_owned(),
            internal_token,
        }
    }

    /// The cart, or `None` when it does not exist.
    #[tracing::instrument(skip(self))]
    pub async fn cart(&self, cart_id: &CartId) -> Result<Option<Cart>, UpstreamError> {
        let response = traced(
            self.http
                .get(format!("{}/v1/carts/{cart_id}", self.cart_url)),
        )
        .send()
        .await
        .map_err(classify)?;
        match response.status().as_u16() {
            200 => response.json().await.map(Some).map_err(classify),
            404 => Ok(None),
            _ => Err(rejected(response).await),
        }
    }

    /// Deletes the cart; one that is already gone counts as deleted.
    #[tracing::instrument(skip(self))]
    pub async fn delete_cart(&self, cart_id: &CartId) -> Result<(), UpstreamError> {
        let response = traced(
            self.http
                .delete(format!("{}/v1/carts/{cart_id}", self.cart_url)),
        )
        .send()
        .await
        .map_err(classify)?;
        match response.status().as_u16() {
            200..=299 | 404 => Ok(()),
            _ => Err(rejected(response).await),
        }
    }

    /// Creates (or, for a key already used, returns) the order's payment.
    #[tracing::instrument(skip(self))]
    pub async fn create_payment(
        &self,
        order_id: &OrderId,
        total: Money,
        payment_method: Option<&str>,
    ) -> Result<Payment, UpstreamError> {
        let mut request = self
            .http
            .post(format!("{}/internal/v1/payments", self.payments_url))
            .bearer_auth(common::auth::outgoing(&self.internal_token))
            .header("Idempotency-Key", format!("order-{order_id}"))
            .json(&json!({"order_id": order_id, "amount": total.amount, "currency": total.currency, "payment_method": payment_method}));
        if let Some(traceparent) = common::telemetry::current_traceparent() {
            request = request.header("traceparent", traceparent);
        }
        let response = request.send().await.map_err(classify)?;
        if response.status().is_success() {
            response.json().await.map_err(classify)
        } else {
            Err(rejected(response).await)
        }
    }

    /// Tells payments that order `order_id` ended without taking its payment's money:
    /// payments cancels the PaymentIntent, or refunds what it took. Safe to repeat.
    #[tracing::instrument(skip(self))]
    pub async fn close_payment(
        &self,
        order_id: &OrderId,
        total: Money,
        reason: &str,
    ) -> Result<(), UpstreamError> {
        let mut request = self
            .http
            .post(format!("{}/internal/v1/payments/close", self.payments_url))
            .bearer_auth(common::auth::outgoing(&self.internal_token))
            .json(&json!({"order_id": order_id, "amount": total.amount, "currency": total.currency, "reason": reason}));
        if let Some(traceparent) = common::telemetry::current_traceparent() {
            request = request.header("traceparent", traceparent);
        }
        let response = request.send().await.map_err(classify)?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(rejected(response).await)
        }
    }
}
