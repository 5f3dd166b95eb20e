//! The storefront: what a shopper does through the gateway (carts, checkout with an
//! `Idempotency-Key`, following the order) and in the browser with Stripe.js (confirming the
//! order's PaymentIntent at stripe-sim, answering 3-D Secure). Every call retries the way a
//! client would — the same key after a lost answer — within a bound.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use hyper::Method;
use serde_json::{Value, json};

use super::{
    flows::Flow,
    http::{Answer, Body, Client},
};

/// How long a shopper keeps retrying one step.
const STEP_BOUND: Duration = Duration::from_secs(40);

/// One checkout as the shopper saw it.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// The flow it followed.
    pub flow: Flow,
    /// Its `Idempotency-Key`.
    pub key: String,
    /// The order it was given, if accepted.
    pub order: Option<String>,
    /// Every answer to a submission of this key: status and the order id it named.
    pub answers: Vec<(u16, Option<String>)>,
    /// Shopper-side findings (a replay naming another order, key reuse not refused, …).
    pub findings: Vec<String>,
    /// What happened besides the order's fate (e.g. `late confirm answered 200`).
    pub note: Option<String>,
}

impl Checkout {
    /// A checkout of `flow` under `key`, not yet submitted.
    pub fn new(flow: Flow, key: String) -> Self {
        Self {
            flow,
            key,
            order: None,
            answers: Vec::new(),
            findings: Vec::new(),
            note: None,
        }
    }
}

/// A cart that is never checked out: its acknowledged writes must survive every fault.
#[derive(Debug, Clone)]
pub struct KeptCart {
    /// `crt_…`.
    pub id: String,
    /// Lines as the last acknowledged write answered them: `(sku, quantity)`, sorted.
    pub lines: Vec<(String, i64)>,
    /// Run-clock second of that acknowledgement.
    pub acked: f64,
}

/// A kept cart and its lines at the end (`None`: the cart is gone).
pub type CheckedCart = (KeptCart, Option<Vec<(String, i64)>>);

/// Everything shoppers share.
pub struct Shop {
    /// The recording client.
    pub client: Client,
    /// The gateway's `host:port`.
    pub gateway: String,
    /// stripe-sim's `host:port`.
    pub sim: String,
    /// The secret key stripe-sim accepts, for Stripe.js' calls.
    pub sim_key: String,
    /// Ordinary products: `(sku, unit price)`.
    pub products: Vec<(String, i64)>,
    /// The hot SKU with limited stock.
    pub hot: String,
    /// When shoppers stop starting new flows.
    pub load_end: Instant,
    /// The orders service's payment timeout.
    pub payment_timeout: Duration,
    /// Checkouts, as they finish.
    pub checkouts: Mutex<Vec<Checkout>>,
    /// Carts kept without checkout.
    pub kept_carts: Mutex<Vec<KeptCart>>,
}

/// Whether an answer is worth retrying: none, a 5xx, or a 409 (the first still in flight).
fn retryable(answer: &Option<Answer>) -> bool {
    answer
        .as_ref()
        .is_none_or(|a| a.status >= 500 || a.status == 409)
}

impl Shop {
    /// A recorded call to the gateway.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
        malformed: bool,
    ) -> Option<Answer> {
        self.client
            .send(&self.gateway, method, path, headers, body, malformed)
            .await
    }

    /// A call to the gateway, retried while it answers nothing, 5xx or 409.
    pub async fn call_retrying(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Fn() -> Body,
    ) -> Option<Answer> {
        let deadline = Instant::now() + STEP_BOUND;
        let mut pause = Duration::from_millis(100);
        loop {
            let answer = self
                .call(method.clone(), path, headers, body(), false)
                .await;
            if !retryable(&answer) || Instant::now() >= deadline {
                return answer;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// A new cart holding `lines`; its id and the last write's answer.
    pub async fn cart(&self, lines: &[(String, i64)]) -> Option<(String, Value)> {
        let created = self
            .call_retrying(Method::POST, "/v1/carts", &[], || {
                Body::Json(json!({ "currency": "USD" }))
            })
            .await?;
        let id = created.json["id"].as_str()?.to_owned();
        let mut last = created.json;
        for (sku, quantity) in lines {
            // PUT sets the line, so a retry after a lost answer cannot add twice.
            let answer = self
                .call_retrying(
                    Method::PUT,
                    &format!("/v1/carts/{id}/items/{sku}"),
                    &[],
                    || Body::Json(json!({ "quantity": quantity })),
                )
                .await?;
            if answer.status != 200 {
                return None;
            }
            last = answer.json;
        }
        Some((id, last))
    }

    /// Submits a checkout under `key` until it is answered for good; records every answer.
    pub async fn submit(&self, checkout: &mut Checkout, body: &Value) -> Option<String> {
        let deadline = Instant::now() + STEP_BOUND;
        let mut pause = Duration::from_millis(100);
        loop {
            let answer = self
                .call(
                    Method::POST,
                    "/v1/orders",
                    &[("idempotency-key", &checkout.key)],
                    Body::Json(body.clone()),
                    false,
                )
                .await;
            if let Some(a) = &answer {
                let id = a.json["id"].as_str().map(str::to_owned);
                checkout.answers.push((a.status, id.clone()));
                if (200..300).contains(&a.status) {
                    return id;
                }
            }
            if !retryable(&answer) || Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
    }

    /// The order as the storefront reads it.
    pub async fn order(&self, id: &str) -> Option<Value> {
        let answer = self
            .call(
                Method::GET,
                &format!("/v1/orders/{id}"),
                &[],
                Body::None,
                false,
            )
            .await?;
        (answer.status == 200).then_some(answer.json)
    }

    /// Polls the order until `done` holds for it, or `within` passes.
    pub async fn wait_order(
        &self,
        id: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(order) = self.order(id).await
                && done(&order)
            {
                return Some(order);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        None
    }

    /// The PaymentIntent id in the order's `client_secret`, once the order has one (`None`
    /// when the order ends first or it never comes).
    pub async fn intent_of(&self, order: &str) -> Option<String> {
        let order = self
            .wait_order(order, STEP_BOUND, |o| {
                o["payment"]["client_secret"].is_string() || is_final(o)
            })
            .await?;
        let secret = order["payment"]["client_secret"].as_str()?;
        Some(secret.split("_secret_").next()?.to_owned())
    }

    /// What Stripe.js does with a card: confirms the intent at stripe-sim, retrying 5xx and
    /// lost answers under one idempotency key. Answers the final status (`None`: no answer).
    pub async fn confirm(&self, intent: &str, payment_method: &str, key: &str) -> Option<u16> {
        let form = vec![("payment_method".to_owned(), payment_method.to_owned())];
        let path = format!("/v1/payment_intents/{intent}/confirm");
        let auth = format!("Bearer {}", self.sim_key);
        self.sim_retrying(
            &path,
            &[("authorization", &auth), ("idempotency-key", key)],
            || Body::Form(form.clone()),
        )
        .await
    }

    /// The shopper answers 3-D Secure once stripe-sim asks for it.
    pub async fn authenticate(&self, order: &str) -> Option<u16> {
        let deadline = Instant::now() + STEP_BOUND;
        while Instant::now() < deadline {
            let intents = self.sim_intents(order).await;
            if let Some(pi) = intents.iter().find(|pi| pi["status"] == "requires_action") {
                let path = format!("/_sim/payment_intents/{}/authenticate", pi["id"].as_str()?);
                return self
                    .sim_retrying(&path, &[], || Body::Json(json!({ "outcome": "succeed" })))
                    .await;
            }
            if !intents.is_empty()
                && intents
                    .iter()
                    .all(|pi| pi["status"] == "succeeded" || pi["status"] == "canceled")
            {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        None
    }

    /// stripe-sim's intents for an order.
    pub async fn sim_intents(&self, order: &str) -> Vec<Value> {
        let path = format!("/_sim/payment_intents?metadata%5Border_id%5D={order}");
        super::http::send(&self.sim, Method::GET, &path, &[], Body::None)
            .await
            .and_then(|a| a.json["data"].as_array().cloned())
            .unwrap_or_default()
    }

    async fn sim_retrying(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Fn() -> Body,
    ) -> Option<u16> {
        let mut last = None;
        for _ in 0..12 {
            let answer = super::http::send(&self.sim, Method::POST, path, headers, body()).await;
            last = answer.as_ref().map(|a| a.status);
            if !retryable(&answer) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        last
    }
}

/// Whether an order (as the API shows it) is in a final state.
pub fn is_final(order: &Value) -> bool {
    matches!(
        order["status"].as_str(),
        Some("confirmed" | "failed" | "cancelled")
    )
}
