//! Test harness: a fresh database per test, the cart app and a payments stand-in on random
//! ports, the orders API and worker in-process.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    Json, Router, extract::State, http::HeaderMap, http::StatusCode, response::IntoResponse,
    routing::post,
};
use orders::Settings;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The bearer orders' internal API accepts in these tests (`ORDERS_INTERNAL_TOKEN`).
pub const ORDERS_TOKEN: &str = "test-internal";
/// The bearer orders sends to the payments stand-in (`PAYMENTS_INTERNAL_TOKEN`).
pub const PAYMENTS_TOKEN: &str = "test-payments-internal";

/// How the payments stand-in answers a payment creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// By payment method: `pm_card_visa` succeeds, `pm_card_chargeDeclined` fails, none pends.
    Normal,
    /// 500 for the next N calls, then normal.
    FailTimes(u32),
    /// Always 500.
    AlwaysFail,
    /// 422: the payment is refused for good.
    Reject,
    /// The payment is made, but every answer is lost (a 500 after acting).
    LoseAnswer,
}

/// One call the stand-in received.
#[derive(Debug, Clone)]
pub struct Call {
    /// When it arrived.
    pub at: Instant,
    /// Its Idempotency-Key.
    pub key: String,
}

#[derive(Default)]
struct StubState {
    mode: Option<Mode>,
    calls: Vec<Call>,
    payments: HashMap<String, Value>,
    closes: Vec<Value>,
    gate: Option<Arc<Notify>>,
    entered: Option<Arc<Notify>>,
}

/// A stand-in for the payments service's internal API.
#[derive(Clone, Default)]
pub struct PaymentsStub(Arc<Mutex<StubState>>);

impl PaymentsStub {
    /// Sets how calls are answered.
    pub fn set_mode(&self, mode: Mode) {
        self.0.lock().unwrap().mode = Some(mode);
    }

    /// Makes every call wait for `gate`, announcing its arrival on `entered`.
    pub fn hold(&self, gate: Arc<Notify>, entered: Arc<Notify>) {
        let mut state = self.0.lock().unwrap();
        state.gate = Some(gate);
        state.entered = Some(entered);
    }

    /// Calls received so far.
    pub fn calls(&self) -> Vec<Call> {
        self.0.lock().unwrap().calls.clone()
    }

    /// Distinct payments created.
    pub fn payments(&self) -> usize {
        self.0.lock().unwrap().payments.len()
    }

    /// The close requests received (orders that ended without their payment), in order.
    pub fn closes(&self) -> Vec<Value> {
        self.0.lock().unwrap().closes.clone()
    }

    async fn serve(self) -> String {
        let app = Router::new()
            .route("/internal/v1/payments", post(create_payment))
            .route("/internal/v1/payments/close", post(close_payment))
            .with_state(self);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }
}

async fn create_payment(
    State(stub): State<PaymentsStub>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> impl IntoResponse {
    assert_eq!(
        headers["authorization"],
        format!("Bearer {PAYMENTS_TOKEN}").as_str(),
        "orders sends PAYMENTS_INTERNAL_TOKEN"
    );
    let key = headers["idempotency-key"].to_str().unwrap().to_owned();
    let (gate, entered) = {
        let mut state = stub.0.lock().unwrap();
        state.calls.push(Call {
            at: Instant::now(),
            key: key.clone(),
        });
        (state.gate.clone(), state.entered.clone())
    };
    if let (Some(gate), Some(entered)) = (gate, entered) {
        entered.notify_one();
        gate.notified().await;
    }
    let mut state = stub.0.lock().unwrap();
    let mode = state.mode.unwrap_or(Mode::Normal);
    match mode {
        Mode::AlwaysFail => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"title": "boom"})),
            );
        }
        Mode::FailTimes(n) if n > 0 => {
            state.mode = Some(Mode::FailTimes(n - 1));
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"title": "boom"})),
            );
        }
        Mode::Reject => {
            return (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"title": "refused"})),
            );
        }
        _ => {}
    }
    let count = state.payments.len();
    let lose_answer = mode == Mode::LoseAnswer;
    let payment = state
        .payments
        .entry(key)
        .or_insert_with(|| {
            let status = match body["payment_method"].as_str() {
                Some("pm_card_visa") => "succeeded",
                Some("pm_card_chargeDeclined") => "failed",
                _ => "requires_payment_method",
            };
            json!({"id": format!("pay_{count:026}"), "status": status, "client_secret": "pi_x_secret_y", "provider_id": "pi_x"})
        })
        .clone();
    if lose_answer {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"title": "lost"})),
        );
    }
    (StatusCode::CREATED, Json(payment))
}

async fn close_payment(
    State(stub): State<PaymentsStub>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> impl IntoResponse {
    assert_eq!(
        headers["authorization"],
        format!("Bearer {PAYMENTS_TOKEN}").as_str(),
        "orders sends payments' token"
    );
    let mut state = stub.0.lock().unwrap();
    if state.mode == Some(Mode::AlwaysFail) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"title": "boom"})),
        );
    }
    state.closes.push(body.clone());
    (StatusCode::OK, Json(body))
}

/// The whole orders setup of one test.
pub struct TestApp {
    /// The orders API.
    pub url: String,
    /// The cart API.
    pub cart_url: String,
    /// HTTP client.
    pub http: reqwest::Client,
    /// Postgres.
    pub pool: PgPool,
    /// The payments stand-in.
    pub payments: PaymentsStub,
    /// The connected orders core.
    pub core: Arc<orders::Core>,
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

/// Settings pointing at the test stores, with fast retries.
pub async fn settings() -> Settings {
    // The development profile whatever the shell's APP_ENV: the tests set their own secrets
    // below, and never touch the process environment other tests read.
    let mut s =
        Settings::from_env_with(common::config::Profile::Development).expect("valid test settings");
    s.db.url = testkit::database("checkout_test_orders");
    s.redis_url = testkit::redis_url();
    s.orders_internal_token = common::Secret::new(ORDERS_TOKEN);
    s.payments_internal_token = common::Secret::new(PAYMENTS_TOKEN);
    s.admin_token = common::Secret::new("test-admin");
    s.job_max_attempts = 3;
    s.worker.backoff = common::queue::Backoff {
        base: Duration::from_millis(20),
        max: Duration::from_millis(100),
    };
    s.worker.poll_interval = Duration::from_millis(50);
    s.sweep_interval = Duration::from_secs(3600);
    // Every test shops as one customer; the cap has tests of its own.
    s.max_awaiting_per_customer = 0;
    s
}

/// Starts cart, the stand-in, the orders API and a worker.
pub async fn spawn() -> TestApp {
    spawn_with(settings().await, true).await
}

/// Starts everything with `settings`; the worker only when `worker` is set.
pub async fn spawn_with(mut settings: Settings, worker: bool) -> TestApp {
    common::service::install_crypto();
    let shutdown = CancellationToken::new();

    let mut cart_settings =
        cart::Settings::from_env_with(common::config::Profile::Development).unwrap();
    cart_settings.db.url = settings.db.url.clone();
    cart_settings.db.migrate_on_start = false;
    cart_settings.redis_url = testkit::redis_url();
    cart_settings.key_prefix = format!("test:{}:", common::id::new_id("t"));
    cart_settings.db.max_connections = 4;
    let cart_app = cart::build(&cart_settings).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let cart_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(common::http::serve(listener, cart_app, shutdown.clone()));

    let payments = PaymentsStub::default();
    settings.cart_url = cart_url.clone();
    settings.payments_url = payments.clone().serve().await;
    settings.db.max_connections = 10;
    settings.db.migrate_on_start = false;

    let core = Arc::new(orders::connect(&settings).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(common::http::serve(
        listener,
        orders::app(&core, &settings, shutdown.clone()),
        shutdown.clone(),
    ));

    let pool = PgPool::connect(&settings.db.url).await.unwrap();
    let mut app = TestApp {
        url,
        cart_url,
        http: reqwest::Client::new(),
        pool,
        payments,
        core,
        settings,
        worker: Default::default(),
        shutdown,
    };
    if worker {
        app.start_worker();
    }
    app
}

impl TestApp {
    /// Starts a worker (another one if one runs).
    pub fn start_worker(&mut self) {
        let (core, settings) = (self.core.clone(), self.settings.clone());
        self.worker
            .start(|stop| async move { orders::work(&core, &settings, stop).await });
    }

    /// Kills the worker mid-job, as a crash would: no draining, no cleanup.
    pub fn kill_worker(&mut self) {
        self.worker.kill();
    }

    /// A product in the catalog with `stock` units; answers its sku.
    pub async fn product(&self, price: i64, stock: i64) -> String {
        let sku = format!("SKU-{}", &common::id::new_id("p")[2..14]).to_uppercase();
        sqlx::query("INSERT INTO catalog.products (sku, name, unit_price, currency) VALUES ($1, $1, $2, 'USD')")
            .bind(&sku)
            .bind(price)
            .execute(&self.pool)
            .await
            .unwrap();
        let response = self
            .admin_put(
                &format!("/admin/inventory/{sku}"),
                json!({"on_hand": stock}),
            )
            .await;
        assert_eq!(response.status(), 200);
        sku
    }

    /// A cart holding `quantity` of `sku`.
    pub async fn cart_with(&self, sku: &str, quantity: i64) -> String {
        let cart: Value = self
            .http
            .post(format!("{}/v1/carts", self.cart_url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = cart["id"].as_str().unwrap().to_owned();
        let added = self
            .http
            .post(format!("{}/v1/carts/{id}/items", self.cart_url))
            .json(&json!({"sku": sku, "quantity": quantity}))
            .send()
            .await
            .unwrap();
        assert_eq!(added.status(), 200);
        id
    }

    /// `POST /v1/orders` with an Idempotency-Key.
    pub async fn checkout(&self, key: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/orders", self.url))
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// Checks out `cart` with `payment_method`; answers the order id.
    pub async fn order(&self, cart: &str, payment_method: Option<&str>) -> String {
        let body = json!({"cart_id": cart, "email": "shopper@example.com", "payment_method": payment_method});
        let response = self.checkout(&common::id::new_id("key"), body).await;
        assert_eq!(response.status(), 202);
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `GET /v1/orders/{id}`.
    pub async fn get_order(&self, id: &str) -> Value {
        testkit::json_of(self.http.get(format!("{}/v1/orders/{id}", self.url))).await
    }

    /// Waits until the order is in `status`; answers it.
    pub async fn wait_for(&self, id: &str, status: &str) -> Value {
        testkit::until_status(&format!("order {id}"), status, || self.get_order(id)).await
    }

    /// A sku's stock through the admin API.
    pub async fn stock(&self, sku: &str) -> Value {
        testkit::json_of(
            self.http
                .get(format!("{}/admin/inventory/{sku}", self.url))
                .bearer_auth("test-admin"),
        )
        .await
    }

    /// `PUT` on an admin route.
    pub async fn admin_put(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .put(format!("{}{path}", self.url))
            .bearer_auth("test-admin")
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// How many orders the database holds.
    pub async fn orders_placed(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM orders.orders")
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Posts a payment event as the payments service would.
    pub async fn payment_event(&self, order: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!(
                "{}/internal/v1/orders/{order}/payment-events",
                self.url
            ))
            .bearer_auth(ORDERS_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// How many times the order entered `status`.
    /// Waits until the cart service no longer has `cart`.
    pub async fn cart_deleted(&self, cart: &str) {
        eventually("the cart is deleted", || async {
            self.http
                .get(format!("{}/v1/carts/{cart}", self.cart_url))
                .send()
                .await
                .unwrap()
                .status()
                == 404
        })
        .await;
    }

    /// The order's recorded moves, oldest first, as (from, to).
    pub async fn history(&self, order: &str) -> Vec<(Option<String>, String)> {
        sqlx::query_as(
            "SELECT from_status, to_status FROM orders.order_events WHERE order_id = $1 ORDER BY id",
        )
        .bind(order)
        .fetch_all(&self.pool)
        .await
        .unwrap()
    }

    pub async fn transitions_to(&self, order: &str, status: &str) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM orders.order_events WHERE order_id = $1 AND to_status = $2",
        )
        .bind(order)
        .bind(status)
        .fetch_one(&self.pool)
        .await
        .unwrap()
    }
}

pub use testkit::eventually;
