//! Test harness: stripe-sim in-process delivering signed webhooks to the payments app under
//! test, the orders stand-in, a fresh database, and the payments API and worker in-process
//! on random ports; plus the helpers tests talk to them with.

use std::time::Duration;

use payments::Settings;
use serde_json::{Value, json};
use sqlx::PgPool;
use stripe_sim::{ControlsUpdate, Sim};
use tokio_util::sync::CancellationToken;

pub use crate::orders_stub::OrdersStub;

/// The secret stripe-sim signs with: the second of payments' two secrets (a rotation).
pub const WEBHOOK_SECRET: &str = "whsec_test_current";
/// The first, older secret payments still accepts.
pub const OLD_SECRET: &str = "whsec_test_previous";
/// The internal bearer token: what payments accepts, and (in these settings) what it sends to
/// the orders stand-in, which checks for it. `security` runs the two directions apart.
pub const INTERNAL: &str = "test-internal";
/// The admin bearer token.
pub const ADMIN: &str = "test-admin";

/// Everything one test runs against.
pub struct TestApp {
    /// The payments API.
    pub url: String,
    /// HTTP client.
    pub http: reqwest::Client,
    /// The test's database.
    pub pool: PgPool,
    /// The simulator's handle.
    pub sim: Sim,
    /// The simulator's base URL.
    pub sim_url: String,
    /// The orders stand-in.
    pub orders: OrdersStub,
    /// The connected payments core.
    pub core: payments::Core,
    /// The settings the app runs with.
    pub settings: Settings,
    worker: testkit::background::Background,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Settings for the test stores, with fast retries and no background reconciliation.
pub async fn settings() -> Settings {
    // The development profile whatever the shell's APP_ENV: the tests set their own secrets
    // below, and never touch the process environment other tests read.
    let mut s =
        Settings::from_env_with(common::config::Profile::Development).expect("valid test settings");
    s.db.url = testkit::database("checkout_test_payments");
    s.db.max_connections = 8;
    s.db.migrate_on_start = false;
    s.stripe_webhook_secrets = vec![
        common::Secret::new(OLD_SECRET),
        common::Secret::new(WEBHOOK_SECRET),
    ];
    s.payments_internal_token = common::Secret::new(INTERNAL);
    s.orders_internal_token = common::Secret::new(INTERNAL);
    s.admin_token = common::Secret::new(ADMIN);
    s.notify_max_attempts = 6;
    s.worker.backoff = common::queue::Backoff {
        base: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    s.worker.poll_interval = Duration::from_millis(50);
    s.reconcile_interval = Duration::from_secs(3600);
    s.reconcile_after = Duration::from_secs(3600);
    s
}

/// Starts the simulator, the orders stand-in, the payments API and its worker.
pub async fn spawn() -> TestApp {
    spawn_with(settings().await).await
}

/// Like [`spawn`], with `settings`.
pub async fn spawn_with(mut settings: Settings) -> TestApp {
    common::service::install_crypto();
    let shutdown = CancellationToken::new();
    // Payments' address must be known before the simulator, which delivers to it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());

    let sim_config = stripe_sim::Config {
        listen_addr: "127.0.0.1:0".parse().unwrap(),
        webhook_urls: vec![format!("{url}/v1/webhooks/stripe")],
        webhook_secret: WEBHOOK_SECRET.to_owned(),
        webhook_max_attempts: 8,
        webhook_retry_base: Duration::from_millis(20),
        webhook_retry_max: Duration::from_millis(200),
        webhook_timeout: Duration::from_secs(5),
        webhook_concurrency: 1,
        webhook_events: None,
        api_key: None,
    };
    let (sim_router, sim) = stripe_sim::build(sim_config).await;
    let sim_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sim_url = format!("http://{}", sim_listener.local_addr().unwrap());
    let stop_sim = shutdown.clone();
    tokio::spawn(stripe_sim::serve(sim_listener, sim_router, async move {
        stop_sim.cancelled().await
    }));

    let orders = OrdersStub::default();
    settings.orders_url = orders.clone().serve().await;
    settings.stripe_api_base = sim_url.clone();
    let core = payments::connect(&settings).await.unwrap();
    tokio::spawn(common::http::serve(
        listener,
        payments::app(&core, &settings),
        shutdown.clone(),
    ));
    let pool = PgPool::connect(&settings.db.url).await.unwrap();
    let mut app = TestApp {
        url,
        http: reqwest::Client::new(),
        pool,
        sim,
        sim_url,
        orders,
        core,
        settings,
        worker: Default::default(),
        shutdown,
    };
    app.start_worker();
    app
}

impl TestApp {
    /// Starts the worker (replacing a running one).
    pub fn start_worker(&mut self) {
        let (core, settings) = (self.core.clone(), self.settings.clone());
        self.worker
            .start(|stop| async move { payments::work(&core, &settings, stop).await });
    }

    /// Stops the worker; queued jobs wait for the next `start_worker`.
    pub async fn stop_worker(&mut self) {
        self.worker.stop().await;
    }

    /// `POST /internal/v1/payments` with `key` (none when `None`).
    pub async fn create(&self, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/internal/v1/payments", self.url))
            .bearer_auth(INTERNAL)
            .json(body);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.unwrap()
    }

    /// Creates a payment for `order` the way orders does; answers the 201 body.
    pub async fn pay(&self, order: &str, amount: i64, payment_method: Option<&str>) -> Value {
        let body = json!({"order_id": order, "amount": amount, "currency": "USD", "payment_method": payment_method});
        let response = self.create(Some(&format!("order-{order}")), &body).await;
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    /// `GET /internal/v1/payments/{id}`.
    pub async fn payment(&self, id: &str) -> Value {
        testkit::json_of(
            self.http
                .get(format!("{}/internal/v1/payments/{id}", self.url))
                .bearer_auth(INTERNAL),
        )
        .await
    }

    /// Waits until payment `id` is in `status`; answers it.
    pub async fn wait_for(&self, id: &str, status: &str) -> Value {
        testkit::until_status(&format!("payment {id}"), status, || self.payment(id)).await
    }

    /// Waits until the worker has nothing left to do (no pending or running jobs).
    pub async fn settled(&self) {
        eventually("the queue to drain", || async {
            self.count("SELECT count(*) FROM payments.jobs WHERE status <> 'dead'")
                .await
                == 0
        })
        .await;
    }

    /// `POST /v1/webhooks/stripe` with `body` and an optional `Stripe-Signature`.
    pub async fn webhook(&self, body: &str, signature: Option<&str>) -> reqwest::Response {
        let mut request = self
            .http
            .post(format!("{}/v1/webhooks/stripe", self.url))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(signature) = signature {
            request = request.header("stripe-signature", signature);
        }
        request.send().await.unwrap()
    }

    /// Delivers `event` signed with the simulator's secret, as Stripe would.
    pub async fn deliver(&self, event: &Value) -> reqwest::Response {
        let body = event.to_string();
        let signature = sign(WEBHOOK_SECRET, now(), &body);
        self.webhook(&body, Some(&signature)).await
    }

    /// Changes the simulator's fault and delivery controls.
    pub fn control(&self, update: ControlsUpdate) {
        self.sim.update_controls(&update).unwrap();
    }

    /// The events the simulator emitted about PaymentIntent `intent`, oldest first.
    pub fn sim_events(&self, intent: &str) -> Vec<Value> {
        self.sim
            .events()
            .into_iter()
            .filter(|e| e["data"]["object"]["id"] == intent)
            .collect()
    }

    /// PaymentIntents created at the simulator for `order`.
    pub fn intents_for(&self, order: &str) -> usize {
        self.sim
            .events()
            .iter()
            .filter(|e| {
                e["type"] == "payment_intent.created"
                    && e["data"]["object"]["metadata"]["order_id"] == order
            })
            .count()
    }

    /// A JSON POST to the simulator's control API.
    pub async fn sim_control(&self, path: &str, body: Value) -> Value {
        let response = self
            .http
            .post(format!("{}/_sim{path}", self.sim_url))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// `POST /admin/payments/{id}/refund`.
    pub async fn refund(&self, id: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/admin/payments/{id}/refund", self.url))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A count from the test database.
    pub async fn count(&self, sql: &'static str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// A fresh order id.
pub fn order_id() -> String {
    common::id::new_id("ord")
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A `Stripe-Signature` for `body` under `secret` at `timestamp`, as Stripe computes it.
pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    stripe_sim::signature_header(secret, timestamp, body.as_bytes())
}

pub use testkit::{eventually, problem};

/// A Stripe event of `kind` about `object`, created now.
pub fn event(kind: &str, object: Value) -> Value {
    json!({
        "id": common::id::new_id("evt"),
        "object": "event",
        "api_version": stripe_sim::API_VERSION,
        "created": now(),
        "data": {"object": object},
        "livemode": false,
        "pending_webhooks": 1,
        "type": kind,
    })
}
