//! Test harness: the simulator in-process on a random port, an HTTP client that speaks
//! Stripe's form encoding, and a webhook receiver that reports every request on a channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;
use stripe_sim::{Config, DeliveryRecord, Sim};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, broadcast, mpsc};

/// Secret the test simulator signs webhooks with.
pub const WEBHOOK_SECRET: &str = "whsec_test_secret";
/// Secret key the test clients send.
pub const API_KEY: &str = "sk_test_sim";
/// How long any wait in a test may take before it counts as a failure.
pub const WAIT: Duration = Duration::from_secs(10);

/// A running simulator.
pub struct TestSim {
    pub base: String,
    pub sim: Sim,
    pub http: reqwest::Client,
}

impl TestSim {
    /// A simulator delivering webhooks to `webhook_urls`.
    pub async fn start(webhook_urls: Vec<String>) -> Self {
        Self::start_with(webhook_urls, |_| {}).await
    }

    /// A simulator delivering webhooks to `webhook_urls`, with `adjust`ed settings.
    pub async fn start_with(webhook_urls: Vec<String>, adjust: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            listen_addr: "127.0.0.1:0".parse().unwrap(),
            webhook_urls,
            webhook_secret: WEBHOOK_SECRET.to_owned(),
            webhook_max_attempts: 5,
            webhook_retry_base: Duration::from_millis(10),
            webhook_retry_max: Duration::from_millis(100),
            webhook_timeout: Duration::from_secs(5),
            webhook_concurrency: 1,
            webhook_events: None,
            api_key: None,
        };
        adjust(&mut config);
        let (router, sim) = stripe_sim::build(config).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(stripe_sim::serve(listener, router, std::future::pending()));
        Self {
            base,
            sim,
            http: reqwest::Client::new(),
        }
    }

    /// A simulator without webhook endpoints.
    pub async fn without_webhooks() -> Self {
        Self::start(Vec::new()).await
    }

    /// An authenticated form POST to a `/v1` path.
    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(API_KEY)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// Like [`Self::post`], with an `Idempotency-Key`.
    pub async fn post_with_key(
        &self,
        path: &str,
        key: &str,
        form: &[(&str, &str)],
    ) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(API_KEY)
            .header("Idempotency-Key", key)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// An authenticated GET of a `/v1` path.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap()
    }

    /// A JSON POST to the control API; panics unless it answers 2xx.
    pub async fn control(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/_sim{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(
            status.is_success(),
            "control {path} answered {status}: {text}"
        );
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Creates and confirms a PaymentIntent with `payment_method`; returns its JSON.
    pub async fn paid_intent(&self, amount: &str, payment_method: &str) -> Value {
        let response = self
            .post(
                "/v1/payment_intents",
                &[
                    ("amount", amount),
                    ("currency", "usd"),
                    ("payment_method", payment_method),
                    ("confirm", "true"),
                ],
            )
            .await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Types of the events emitted so far, optionally only those about `object_id`.
    pub fn event_types(&self, object_id: Option<&str>) -> Vec<String> {
        self.sim
            .events()
            .iter()
            .filter(|e| object_id.is_none_or(|id| e["data"]["object"]["id"] == id))
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Waits for the next delivery record matching `pred`.
pub async fn next_delivery(
    feed: &mut broadcast::Receiver<DeliveryRecord>,
    pred: impl Fn(&DeliveryRecord) -> bool,
) -> DeliveryRecord {
    tokio::time::timeout(WAIT, async {
        loop {
            match feed.recv().await {
                Ok(record) if pred(&record) => return record,
                Ok(_) => {}
                Err(err) => panic!("delivery feed failed: {err}"),
            }
        }
    })
    .await
    .expect("timed out waiting for a delivery")
}

/// One webhook request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Received {
    pub signature: String,
    pub content_type: String,
    pub body: String,
    pub json: Value,
}

impl Received {
    pub fn event_type(&self) -> &str {
        self.json["type"].as_str().unwrap()
    }

    pub fn event_id(&self) -> &str {
        self.json["id"].as_str().unwrap()
    }

    pub fn object_id(&self) -> &str {
        self.json["data"]["object"]["id"].as_str().unwrap()
    }
}

#[derive(Clone)]
struct ReceiverState {
    tx: mpsc::UnboundedSender<Received>,
    failures_left: Arc<AtomicUsize>,
    /// When set, each request waits for a permit before it is answered.
    gate: Option<Arc<Semaphore>>,
}

/// A webhook endpoint that answers 500 to its first `fail_first` requests, then 200.
pub struct Receiver {
    pub url: String,
    rx: mpsc::UnboundedReceiver<Received>,
}

impl Receiver {
    pub async fn start(fail_first: usize) -> Self {
        Self::start_gated(fail_first, None).await
    }

    /// A receiver that answers a request only once `gate` hands it a permit.
    pub async fn start_gated(fail_first: usize, gate: Option<Arc<Semaphore>>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let state = ReceiverState {
            tx,
            failures_left: Arc::new(AtomicUsize::new(fail_first)),
            gate,
        };
        let app = axum::Router::new()
            .route("/hook", post(receive))
            .with_state(state);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, rx }
    }

    /// The next request, whatever it is.
    pub async fn next(&mut self) -> Received {
        tokio::time::timeout(WAIT, self.rx.recv())
            .await
            .expect("timed out waiting for a webhook")
            .expect("receiver stopped")
    }
}

async fn receive(
    State(state): State<ReceiverState>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let body = String::from_utf8(body.to_vec()).unwrap();
    let received = Received {
        signature: header("stripe-signature"),
        content_type: header("content-type"),
        json: serde_json::from_str(&body).unwrap(),
        body,
    };
    let fail = state
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let _ = state.tx.send(received);
    if let Some(gate) = &state.gate {
        gate.acquire().await.unwrap().forget();
    }
    if fail {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}
