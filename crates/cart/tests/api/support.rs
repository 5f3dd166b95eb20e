//! Starting the cart app for a test: one fresh database per test binary, a random Redis key
//! prefix per test, the app served in-process on `127.0.0.1:0`.

use std::{
    future::Future,
    sync::OnceLock,
    time::{Duration, Instant},
};

use cart::Settings;
use redis::aio::ConnectionManager;
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;

static DATABASE: OnceLock<String> = OnceLock::new();

fn base_database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/checkout".to_owned())
}

/// The URL of this binary's database, created afresh on first use.
pub fn database_url() -> String {
    DATABASE
        .get_or_init(|| {
            let base = base_database_url();
            let server = base
                .rsplit_once('/')
                .map(|(s, _)| s.to_owned())
                .expect("DATABASE_URL names a database");
            let name = "checkout_test_cart";
            // Created on a thread with its own runtime: each test has its own runtime.
            let admin = format!("{server}/postgres");
            std::thread::spawn(move || {
                tokio::runtime::Runtime::new().unwrap().block_on(async {
                    let mut conn = PgConnection::connect(&admin)
                        .await
                        .expect("Postgres answers at DATABASE_URL");
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                        .execute(&mut conn)
                        .await
                        .unwrap();
                })
            })
            .join()
            .unwrap();
            format!("{server}/{name}")
        })
        .clone()
}

/// The Redis URL tests use.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A running cart app and handles on its stores.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// An HTTP client.
    pub http: reqwest::Client,
    /// This test's Redis key prefix.
    pub prefix: String,
    /// The catalog database.
    pub pool: PgPool,
    /// Direct access to Redis.
    pub redis: ConnectionManager,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Settings for a test app: the test database, the test Redis and a random key prefix.
pub fn settings() -> Settings {
    let mut settings = Settings::from_env().expect("valid test settings");
    settings.database_url = database_url();
    settings.redis_url = redis_url();
    settings.key_prefix = format!("test:{}:", common::id::new_id("t"));
    settings.redis_timeout = Duration::from_millis(300);
    settings
}

/// Starts the app with default test settings.
pub async fn spawn() -> TestApp {
    spawn_with(settings()).await
}

/// Starts the app with the given settings.
pub async fn spawn_with(settings: Settings) -> TestApp {
    common::service::install_crypto();
    let app = cart::build(&settings).await.expect("the app builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(common::http::serve(listener, app, shutdown.clone()));
    let pool = PgPool::connect(&settings.database_url).await.unwrap();
    let redis = ConnectionManager::new(redis::Client::open(settings.redis_url.as_str()).unwrap())
        .await
        .unwrap();
    TestApp {
        url,
        http: reqwest::Client::new(),
        prefix: settings.key_prefix,
        pool,
        redis,
        shutdown,
    }
}

impl TestApp {
    /// Inserts a product with a sku unique to this test and answers the sku.
    pub async fn product(&self, name: &str, unit_price: i64, currency: &str) -> String {
        let sku = format!("{}-{}", name, &common::id::new_id("p")[2..12]).to_uppercase();
        sqlx::query("INSERT INTO catalog.products (sku, name, unit_price, currency, active) VALUES ($1, $2, $3, $4, true)")
            .bind(&sku)
            .bind(name)
            .bind(unit_price)
            .bind(currency)
            .execute(&self.pool)
            .await
            .unwrap();
        sku
    }

    /// `POST /v1/carts` with the given body; answers the cart's id.
    pub async fn create_cart(&self, currency: &str) -> String {
        let response = self
            .post("/v1/carts", json!({ "currency": currency }))
            .await;
        assert_eq!(response.status(), 201);
        response.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `POST /v1/carts/{id}/items`.
    pub async fn add(&self, cart: &str, sku: &str, quantity: i64) -> reqwest::Response {
        self.post(
            &format!("/v1/carts/{cart}/items"),
            json!({ "sku": sku, "quantity": quantity }),
        )
        .await
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap()
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// The cart as JSON, asserting it exists.
    pub async fn cart(&self, id: &str) -> Value {
        let response = self.get(&format!("/v1/carts/{id}")).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// Milliseconds until the cart's key expires, read straight from Redis.
    pub async fn pttl(&self, cart: &str) -> i64 {
        let mut conn = self.redis.clone();
        redis::cmd("PTTL")
            .arg(format!("{}{cart}", self.prefix))
            .query_async(&mut conn)
            .await
            .unwrap()
    }
}

/// Asserts a problem+json response with this status; answers its body.
pub async fn problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status, "unexpected status");
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("/problems/")),
        "{body}"
    );
    assert!(body["title"].is_string(), "{body}");
    body
}

/// Polls `check` until it holds, failing the test after a generous deadline.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} did not happen within 15 s");
}
