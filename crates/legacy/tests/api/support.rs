//! Starting the monolith for a test: a fresh database per test, the app served in-process on
//! `127.0.0.1:0`, and a few calls every module makes.

use legacy::Settings;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use testkit::problem;

/// A running monolith and a handle on its database.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// An HTTP client.
    pub http: reqwest::Client,
    /// The test's database.
    pub pool: PgPool,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Settings for a test: a fresh database.
pub fn settings() -> Settings {
    let mut settings =
        Settings::from_env_with(common::config::Profile::Development).expect("valid test settings");
    settings.db.url = testkit::database("checkout_test_legacy");
    settings
}

/// Starts the monolith with test settings.
pub async fn spawn() -> TestApp {
    spawn_with(settings()).await
}

/// Starts the monolith with `settings`.
pub async fn spawn_with(settings: Settings) -> TestApp {
    common::service::install_crypto();
    let app = legacy::build(&settings).await.expect("the app builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(common::http::serve(listener, app, shutdown.clone()));
    TestApp {
        url,
        http: reqwest::Client::new(),
        pool: PgPool::connect(&settings.db.url).await.unwrap(),
        shutdown,
    }
}

impl TestApp {
    /// Puts a product in the shared catalog and answers its sku (unique to this call).
    pub async fn product(&self, name: &str, unit_price: i64, currency: &str) -> String {
        let sku = format!("{}-{}", name, &common::id::new_id("p")[4..12]).to_uppercase();
        sqlx::query(
            "INSERT INTO catalog.products (sku, name, unit_price, currency, active)
             VALUES ($1, $2, $3, $4, true)",
        )
        .bind(&sku)
        .bind(name)
        .bind(unit_price)
        .bind(currency)
        .execute(&self.pool)
        .await
        .unwrap();
        sku
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    /// `method path` with a JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> reqwest::Response {
        self.http
            .request(method, format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.send(reqwest::Method::POST, path, body).await
    }

    /// A new cart; answers its id.
    pub async fn create_cart(&self) -> String {
        let response = self.post("/v1/carts", json!({"currency": "USD"})).await;
        assert_eq!(response.status(), 201);
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `POST /v1/carts/{cart}/items`.
    pub async fn add(&self, cart: &str, sku: &str, quantity: i64) -> reqwest::Response {
        self.post(
            &format!("/v1/carts/{cart}/items"),
            json!({"sku": sku, "quantity": quantity}),
        )
        .await
    }

    /// The cart, asserting it exists.
    pub async fn cart(&self, id: &str) -> Value {
        let response = self.get(&format!("/v1/carts/{id}")).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// `POST /v1/orders` with an `Idempotency-Key`.
    pub async fn checkout(&self, key: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}/v1/orders", self.url))
            .header("idempotency-key", key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// `PUT /__legacy/faults`.
    pub async fn faults(&self, body: Value) -> reqwest::Response {
        self.send(reqwest::Method::PUT, "/__legacy/faults", body)
            .await
    }
}
