//! What the services' integration tests share: a fresh, migrated Postgres database per test,
//! a private `redis-server` a test can stop and restart, polling with a generous deadline,
//! and the checks every problem+json answer must pass. Tests find Postgres and Redis through
//! `DATABASE_URL` and `REDIS_URL`, as the services do.

use std::{
    future::Future,
    process::Stdio,
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::Value;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection, PgPool};
use tokio::process::{Child, Command};

/// How long `eventually` waits before failing the test.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The Redis tests use.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// `DATABASE_URL` without its database name.
fn database_server() -> String {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/checkout".to_owned());
    url.rsplit_once('/')
        .map(|(server, _)| server.to_owned())
        .expect("DATABASE_URL names a database")
}

/// Runs `work` to completion on a thread with a runtime of its own: a test's runtime ends
/// with the test, and the template database outlives every test of the binary.
fn on_own_runtime<T: Send + 'static>(work: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(work)
    })
    .join()
    .expect("the database set-up thread")
}

async fn admin(server: &str) -> PgConnection {
    PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("Postgres answers at DATABASE_URL")
}

async fn execute(conn: &mut PgConnection, sql: String) {
    sqlx::query(AssertSqlSafe(sql)).execute(conn).await.unwrap();
}

/// A fresh database for one test, with every migration applied, answered as a URL.
///
/// The first call in a test binary drops the databases an earlier run left under `prefix`
/// and migrates a template named `prefix`; every call then copies that template (a copy is
/// much faster than migrating). Tests of one binary run in parallel, each on its own data,
/// queue and flags.
pub fn database(prefix: &'static str) -> String {
    static TEMPLATE: OnceLock<&'static str> = OnceLock::new();
    let server = database_server();
    let template = *TEMPLATE.get_or_init(|| {
        let server = server.clone();
        on_own_runtime(async move {
            let mut admin = admin(&server).await;
            let stale: Vec<String> =
                sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
                    .bind(format!("{prefix}%"))
                    .fetch_all(&mut admin)
                    .await
                    .unwrap();
            for name in stale {
                execute(
                    &mut admin,
                    format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                )
                .await;
            }
            execute(&mut admin, format!("CREATE DATABASE {prefix}")).await;
            let pool = PgPool::connect(&format!("{server}/{prefix}"))
                .await
                .unwrap();
            common::db::migrate(&pool).await.unwrap();
            pool.close().await;
        });
        prefix
    });
    assert_eq!(template, prefix, "one database prefix per test binary");
    let name = format!("{prefix}_{}", &common::id::new_id("d")[2..14]);
    let copy = format!("CREATE DATABASE {name} TEMPLATE {prefix}");
    let admin_server = server.clone();
    on_own_runtime(async move { execute(&mut admin(&admin_server).await, copy).await });
    format!("{server}/{name}")
}

/// Polls `check` until it holds, failing the test after `DEADLINE`; answers how long it took.
pub async fn eventually<F, Fut>(what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < DEADLINE {
        if check().await {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("{what} did not happen within {DEADLINE:?}");
}

/// Polls `read` until the resource it answers has `status`; answers that resource, or fails
/// the test after `DEADLINE` with the last one seen.
pub async fn until_status<F, Fut>(what: &str, status: &str, mut read: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Value>,
{
    let started = Instant::now();
    let mut last = Value::Null;
    while started.elapsed() < DEADLINE {
        last = read().await;
        if last["status"] == status {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} never reached {status}; last seen {last}");
}

/// Asserts a problem+json answer (RFC 9457) with this status; answers its body.
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

/// A private `redis-server` on a free port, keeping nothing on disk, so a test can take Redis
/// away and bring it back.
pub struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    /// Starts it and waits until it answers.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self { port, child: None };
        redis.restart().await;
        redis
    }

    /// Starts it again on the same port (empty) and waits until it answers.
    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server is installed");
        self.child = Some(child);
        let url = self.url();
        eventually("redis-server answers", || {
            let url = url.clone();
            async move {
                let Ok(mut conn) = redis::Client::open(url.as_str())
                    .unwrap()
                    .get_multiplexed_async_connection()
                    .await
                else {
                    return false;
                };
                redis::cmd("PING")
                    .query_async::<String>(&mut conn)
                    .await
                    .is_ok()
            }
        })
        .await;
    }

    /// Kills it.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.unwrap();
        }
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}
