//! Starting gateways for a test: a fresh database and a private flag channel per test (the
//! flags are global state, so tests that change them must not share), fake upstreams, and
//! each gateway served in-process on `127.0.0.1:0` (its admin listener on another port) with
//! a manual clock. Distinct clients are distinct loopback source addresses (`127.0.0.x`).

use std::{net::IpAddr, sync::Arc, time::Duration};

use gateway::{Settings, admin::Tokens, clock::ManualClock, config::HttpPath, proxy::Upstream};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use crate::fakes::Fake;

/// The admin bearer token of test gateways (`ADMIN_TOKEN`: actor `admin`).
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// Alice's admin token (`ADMIN_TOKENS=alice:…`).
pub const ALICE_TOKEN: &str = "alice-admin-token-0123";

/// The size of the large uploads and downloads the tests stream.
pub const FIVE_MB: usize = 5 * 1024 * 1024;

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
    redis_url: String,
    http: HttpPath,
}

impl World {
    /// A fresh database, a private channel and four fakes; its gateways speak HTTP/1 as
    /// `GATEWAY_HTTP` says (their own code by default).
    pub async fn new() -> Self {
        let http = Settings::from_env().expect("valid test settings").http;
        Self::on(http).await
    }

    /// A world whose gateways speak HTTP/1 the `http` way.
    pub async fn on(http: HttpPath) -> Self {
        common::service::install_crypto();
        Self {
            http,
            legacy: Fake::start("legacy").await,
            cart: Fake::start("cart").await,
            orders: Fake::start("orders").await,
            payments: Fake::start("payments").await,
            database_url: testkit::database("checkout_test_gateway"),
            channel: format!("test:{}:flags", common::id::new_id("t")),
            redis_url: testkit::redis_url(),
        }
    }

    /// This world's flag channel.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Points this world's gateways at another Redis (a cluster's `redis+cluster://` URL).
    pub fn use_redis(&mut self, url: String) {
        self.redis_url = url;
    }

    /// Settings for a gateway in this world: no rate limit, a generous in-flight cap.
    pub fn settings(&self) -> Settings {
        let upstream = |name: &str, fake: &Fake| Upstream::parse(name, &fake.url).unwrap();
        let mut settings = Settings::from_env().expect("valid test settings");
        settings.db.url = self.database_url.clone();
        settings.redis_url = self.redis_url.clone();
        settings.flags_channel = self.channel.clone();
        settings.cart_url = upstream("CART_URL", &self.cart);
        settings.orders_url = upstream("ORDERS_URL", &self.orders);
        settings.payments_url = upstream("PAYMENTS_URL", &self.payments);
        settings.legacy_url = Some(upstream("LEGACY_URL", &self.legacy));
        settings.admin_tokens = Tokens::new([("admin", ADMIN_TOKEN), ("alice", ALICE_TOKEN)]);
        settings.rate_limit_per_second = 0;
        settings.max_in_flight = 1024;
        settings.initial_rollout = None;
        settings.http = self.http;
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
        let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin_url = format!("http://{}", admin.local_addr().unwrap());
        tokio::spawn(gateway::serve_admin(admin, app.clone(), shutdown.clone()));
        tokio::spawn(gateway::serve(listener, app, shutdown.clone()));
        TestGateway {
            url,
            admin_url,
            http: reqwest::Client::new(),
            pool: PgPool::connect(&settings.db.url).await.unwrap(),
            clock,
            shutdown,
            process: None,
        }
    }

    /// A gateway in a process of its own (the `gateway` binary), in this world, reloading
    /// its flags from Postgres every `resync`; answered once it is ready.
    pub async fn gateway_process(&self, resync: Duration) -> TestGateway {
        let settings = self.settings();
        let free_port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .unwrap()
                .port()
        };
        let (port, admin_port) = (free_port(), free_port());
        let url = format!("http://127.0.0.1:{port}");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_gateway"))
            .env_clear()
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .env("ADMIN_LISTEN_ADDR", format!("127.0.0.1:{admin_port}"))
            .env("DATABASE_URL", &settings.db.url)
            .env("REDIS_URL", &settings.redis_url)
            .env("FLAGS_CHANNEL", &settings.flags_channel)
            .env("FLAGS_RESYNC_MS", resync.as_millis().to_string())
            .env("CART_URL", &self.cart.url)
            .env("ORDERS_URL", &self.orders.url)
            .env("PAYMENTS_URL", &self.payments.url)
            .env("LEGACY_URL", &self.legacy.url)
            .env("ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RATE_LIMIT_PER_SECOND", "0")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("the gateway binary starts");
        let gateway = TestGateway {
            http: reqwest::Client::new(),
            pool: PgPool::connect(&settings.db.url).await.unwrap(),
            clock: Arc::new(ManualClock::new()),
            shutdown: CancellationToken::new(),
            process: Some(child),
            url,
            admin_url: format!("http://127.0.0.1:{admin_port}"),
        };
        let ready = format!("{}/readyz", gateway.admin_url);
        eventually("the gateway process is ready", || async {
            let answer = gateway.http.get(&ready).send().await;
            answer.is_ok_and(|answer| answer.status() == 200)
        })
        .await;
        gateway
    }
}

/// A running gateway.
pub struct TestGateway {
    /// `http://127.0.0.1:<port>`: the public port.
    pub url: String,
    /// The admin listener's `http://127.0.0.1:<port>`.
    pub admin_url: String,
    /// An HTTP client.
    pub http: reqwest::Client,
    /// The gateway's database.
    pub pool: PgPool,
    /// The clock of its rollback windows and rate limits.
    pub clock: Arc<ManualClock>,
    shutdown: CancellationToken,
    /// The gateway's own process, when it has one.
    process: Option<std::process::Child>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
}

impl TestGateway {
    /// A request to `path`.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url))
    }

    /// A request to `path` from the client at `127.0.0.<n>`.
    pub fn request_from(&self, n: u8, method: Method, path: &str) -> RequestBuilder {
        client_at(n).request(method, format!("{}{path}", self.url))
    }

    /// A request to the admin listener, without a token.
    pub fn admin_request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.admin_url))
    }

    /// An admin request, with the token.
    pub fn admin(&self, method: Method, path: &str) -> RequestBuilder {
        self.admin_request(method, path).bearer_auth(ADMIN_TOKEN)
    }

    /// The `/metrics` text, from the admin listener.
    pub async fn metrics(&self) -> String {
        let response = self
            .admin_request(Method::GET, "/metrics")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    }

    /// `POST path` with a body of `bytes` from a client that writes all of it before it
    /// reads anything; answers the response as text, after checking that the connection
    /// then serves another request. Were the unread rest of the body left in the gateway's
    /// socket when it closed, the close would be a reset, failing the write or the read
    /// after it.
    pub async fn upload_unheeding(&self, path: &str, bytes: usize) -> String {
        let authority = self.url.trim_start_matches("http://");
        let mut client = tokio::net::TcpStream::connect(authority).await.unwrap();
        let mut request =
            format!("POST {path} HTTP/1.1\r\nHost: shop\r\nContent-Length: {bytes}\r\n\r\n")
                .into_bytes();
        request.resize(request.len() + bytes, 7);
        client
            .write_all(&request)
            .await
            .expect("the gateway reads the rest of the upload");
        let answer = read_response(&mut client).await;
        client
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: shop\r\n\r\n")
            .await
            .unwrap();
        let next = read_response(&mut client).await;
        assert!(next.starts_with("HTTP/1.1 200"), "after {answer}: {next}");
        answer
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

/// An HTTP client whose connections come from `127.0.0.<n>`: a client of its own to the
/// gateway's per-address limits and rollback.
pub fn client_at(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, 0, n]))
        .build()
        .unwrap()
}

/// A cart id as the cart service mints them.
pub fn new_cart_id() -> String {
    common::id::new_id("crt")
}

pub use testkit::{eventually, problem};

/// Reads from `stream` until one whole response with a `Content-Length` body is in.
pub async fn read_response(stream: &mut tokio::net::TcpStream) -> String {
    let mut wire = Vec::new();
    loop {
        let mut piece = [0u8; 4096];
        let n = stream.read(&mut piece).await.unwrap();
        assert!(n > 0, "closed before a whole response");
        wire.extend_from_slice(&piece[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = response.parse(&wire).unwrap() {
            let length: usize = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap();
            if wire.len() >= head + length {
                return String::from_utf8(wire).unwrap();
            }
        }
    }
}
