//! Starting the cart app for a test: a fresh database per test, a random Redis key
//! prefix per test, the app served in-process on `127.0.0.1:0`.

use std::time::Duration;

use cart::Settings;
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

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
    pub redis: common::redis::Connection,
    shutdown: CancellationToken,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Which Redis a test app keeps its carts in.
#[derive(Debug, Clone, Copy)]
pub enum Store {
    /// The test Redis (`REDIS_URL`).
    Single,
    /// The Redis Cluster this test binary shares.
    Cluster,
}

/// Settings for a test app on `store`.
pub async fn settings_on(store: Store) -> Settings {
    let mut settings = settings();
    if let Store::Cluster = store {
        settings.redis_url = testkit::redis_cluster::RedisCluster::shared().await.url();
    }
    settings
}

/// Starts the app with default test settings on `store`.
pub async fn spawn_on(store: Store) -> TestApp {
    spawn_with(settings_on(store).await).await
}

/// Settings for a test app: the test database, the test Redis and a random key prefix.
pub fn settings() -> Settings {
    let mut settings =
        Settings::from_env_with(common::config::Profile::Development).expect("valid test settings");
    settings.db.url = testkit::database("checkout_test_cart");
    settings.redis_url = testkit::redis_url();
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
    let pool = PgPool::connect(&settings.db.url).await.unwrap();
    let redis = common::redis::connect(&settings.redis_url, Duration::from_secs(5)).unwrap();
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

    /// Creates carts until one is stored on master `node` of `cluster`; answers its id.
    pub async fn cart_on(
        &self,
        cluster: &testkit::redis_cluster::RedisCluster,
        node: usize,
    ) -> String {
        loop {
            let cart = self.create_cart("USD").await;
            if cluster.node_of(&format!("{}{cart}", self.prefix)).await == node {
                return cart;
            }
        }
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

pub use testkit::{eventually, problem};
