//! Starting gateways for a test: a fresh database and a private flag channel per test (the
//! flags are global state, so tests that change them must not share), fake upstreams, and
//! each gateway served in-process on `127.0.0.1:0` with a manual clock.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use gateway::{Settings, clock::ManualClock, proxy::Upstream};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection, PgPool};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;

use crate::fakes::Fake;

/// The admin bearer token of test gateways.
pub const ADMIN_TOKEN: &str = "test-admin-token";
const DATABASE_PREFIX: &str = "checkout_test_gateway_";

static CLEANED: OnceCell<()> = OnceCell::const_new();
static NEXT_DATABASE: AtomicUsize = AtomicUsize::new(0);

fn server_url() -> String {
    let base = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/checkout".to_owned());
    base.rsplit_once('/')
        .map(|(server, _)| server.to_owned())
        .expect("DATABASE_URL names a database")
}

/// A fresh, empty database for one test (the gateway migrates it). Databases left by an
/// earlier run of this binary are dropped first.
async fn fresh_database() -> String {
    let server = server_url();
    let mut admin = PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("Postgres answers at DATABASE_URL");
    CLEANED
        .get_or_init(|| async {
            let stale: Vec<(String,)> =
                sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE $1")
                    .bind(format!("{DATABASE_PREFIX}%"))
                    .fetch_all(&mut admin)
                    .await
                    .unwrap();
            for (name,) in stale {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .unwrap();
            }
        })
        .await;
    let name = format!(
        "{DATABASE_PREFIX}{}",
        NEXT_DATABASE.fetch_add(1, Ordering::SeqCst)
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap();
    format!("{server}/{name}")
}

/// One test's world: its database, its flag channel and the fake upstreams.
pub struct World {
    /// The fake monolith.
    pub legacy: Fake,
    /// The fake cart service.
    pub cart: Fake,
    /// The fake orders service.
    pub orders: Fake,
    /// The fake payments service.
    pub payments: Fake,
    database_url: String,
    channel: String,
}

impl World {
    /// A fresh database, a private channel and four fakes.
    pub async fn new() -> Self {
        common::service::install_crypto();
        Self {
            legacy: Fake::start("legacy").await,
            cart: Fake::start("cart").await,
            orders: Fake::start("orders").await,
            payments: Fake::start("payments").await,
            database_url: fresh_database().await,
            channel: format!("test:{}:flags", common::id::new_id("t")),
        }
    }

    /// Settings for a gateway in this world: no rate limit, a generous in-flight cap.
    pub fn settings(&self) -> Settings {
        let upstream = |name: &str, fake: &Fake| Upstream::parse(name, &fake.url).unwrap();
        let mut settings = Settings::from_env().expect("valid test settings");
        settings.database_url = self.database_url.clone();
        settings.redis_url =
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
        settings.flags_channel = self.channel.clone();
        settings.cart_url = upstream("CART_URL", &self.cart);
        settings.orders_url = upstream("ORDERS_URL", &self.orders);
        settings.payments_url = upstream("PAYMENTS_URL", &self.payments);
        settings.legacy_url = Some(upstream("LEGACY_URL", &self.legacy));
        settings.admin_token = common::Secret::new(ADMIN_TOKEN);
        settings.rate_limit_per_second = 0;
        settings.max_in_flight = 1024;
        settings.initial_rollout = None;
        settings
    }

    /// A gateway with default test settings.
    pub async fn gateway(&self) -> TestGateway {
        self.gateway_with(self.settings()).await
    }

    /// A gateway with the given settings.
    pub async fn gateway_with(&self, settings: Settings) -> TestGateway {
        let clock = Arc::new(ManualClock::new());
        let shutdown = CancellationToken::new();
        let app = gateway::build(&settings, clock.clone(), shutdown.clone())
            .await
            .expect("the gateway builds");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(gateway::serve(listener, app, shutdown.clone()));
        TestGateway {
            url,
            http: reqwest::Client::new(),
            pool: PgPool::connect(&settings.database_url).await.unwrap(),
            clock,
            shutdown,
        }
    }
}

/// A running gateway.
pub struct TestGateway {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    /// An HTTP client.
    pub http: reqwest::Client,
    /// The gateway's database.
    pub pool: PgPool,
    /// The clock of its rollback windows and rate limits.
    pub clock: Arc<ManualClock>,
    shutdown: CancellationToken,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestGateway {
    /// A request to `path`.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url))
    }

    /// An admin request, with the token.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.request(method, path).bearer_auth(ADMIN_TOKEN)
    }

    /// `GET path`, answered with its JSON body (asserting 200).
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.request(Method::GET, path).send().await.unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// Sends `request` and answers which side answered it.
    pub async fn side(&self, request: RequestBuilder) -> String {
        let response = request.send().await.unwrap();
        let body: Value = response.json().await.unwrap();
        body["side"]
            .as_str()
            .expect("an upstream answered")
            .to_owned()
    }

    /// Sets a flag through the admin API.
    pub async fn set_flag(&self, name: &str, enabled: bool, rollout_percent: u8) -> Value {
        let response = self
            .admin(Method::PUT, &format!("/admin/flags/{name}"))
            .json(&json!({"enabled": enabled, "rollout_percent": rollout_percent}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// The flag as this gateway routes by it.
    pub async fn flag(&self, name: &str) -> Value {
        let response = self
            .admin(Method::GET, &format!("/admin/flags/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// The flag's audit entries, newest first.
    pub async fn audit(&self, name: &str) -> Vec<Value> {
        let response = self
            .admin(Method::GET, &format!("/admin/flags/{name}/audit"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        body["entries"].as_array().unwrap().clone()
    }
}

/// A cart id as the cart service mints them.
pub fn new_cart_id() -> String {
    common::id::new_id("crt")
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

/// Polls `check` until it holds, failing the test after a generous deadline; answers how
/// long it took.
pub async fn eventually<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    let deadline = started + Duration::from_secs(15);
    while Instant::now() < deadline {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what} did not happen within 15 s");
}
