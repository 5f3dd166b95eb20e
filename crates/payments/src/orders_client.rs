//! The client for the orders service: tells it how a payment ended
//! (`POST /internal/v1/orders/{id}/payment-events`). Its answers are sorted once, here: 2xx
//! is acknowledged, an unknown order or a refused event will not change on a retry, the rest
//! is worth retrying.

use std::time::Duration;

use common::Secret;
use serde_json::Value;

/// How a notification went.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// Timeouts, 5xx, connection failures, 429, auth that may be fixed: retry.
    #[error("{0}")]
    Transient(String),
    /// Orders will answer the same again (404 unknown order, 422 another payment).
    #[error("orders refused the event with {status}: {detail}")]
    Refused {
        /// Orders' status.
        status: u16,
        /// Orders' problem detail, for logs.
        detail: String,
    },
}

/// Talks to orders.
#[derive(Clone)]
pub struct OrdersClient {
    http: reqwest::Client,
    base: String,
    token: Secret,
}

impl OrdersClient {
    /// A client for orders at `base` with a per-call `timeout`.
    pub fn new(base: &str, token: Secret, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .pool_max_idle_per_host(32)
            .build()
            .expect("the HTTP client's settings are valid");
        Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// Posts `event` (`{"payment_id","status","reason"?,"event_id"?}`) for `order_id`.
    #[tracing::instrument(skip(self, event))]
    pub async fn payment_event(&self, order_id: &str, event: &Value) -> Result<(), NotifyError> {
        let mut request = self
            .http
            .post(format!(
                "{}/internal/v1/orders/{order_id}/payment-events",
                self.base
            ))
            .bearer_auth(common::auth::outgoing(&self.token))
            .json(event);
        if let Some(traceparent) = common::telemetry::current_traceparent() {
            request = request.header("traceparent", traceparent);
        }
        let response = request
            .send()
            .await
            .map_err(|e| NotifyError::Transient(e.to_string()))?;
        let status = response.status().as_u16();
        match status {
            200..=299 => Ok(()),
            400 | 404 | 410 | 422 => Err(NotifyError::Refused {
                status,
                detail: response.text().await.unwrap_or_default(),
            }),
            _ => Err(NotifyError::Transient(format!("orders answered {status}"))),
        }
    }
}
