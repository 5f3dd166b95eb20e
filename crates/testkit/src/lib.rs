//! What the services' integration tests share: a fresh, migrated Postgres database per test,
//! a private `redis-server` a test can stop and restart, polling with a generous deadline,
//! and the checks every problem+json answer must pass. Tests find Postgres and Redis through
//! `DATABASE_URL` and `REDIS_URL`, as the services do. [`otlp`] receives the spans services
//! export, to follow a trace across them; [`redis_cluster`] runs a Redis Cluster.

pub mod background;
pub mod openapi;
pub mod otlp;
pub mod redis_cluster;

use std::{
    future::Future,
    process::Stdio,
    sync::OnceLock,
    time::{Duration, Instant},
};

use serde_json::Value;
use sqlx::{
    AssertSqlSafe, ConnectOptions as _, Connection as _, PgConnection, PgPool,
    postgres::PgConnectOptions,
};
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
/// The first call in a test binary migrates a template for this run, named
/// `{prefix}_{pid}_{seconds}`; every call then copies it (a copy is much faster than
/// migrating). Tests of one binary run in parallel, each on its own data, queue and flags.
/// While the binary runs, one session of its own stays open under the template's name
/// (`application_name`): the first call also drops the databases under `prefix` that no live
/// run claims that way, what runs that ended left behind, and never those of a run of the
/// same binary going on beside it.
pub fn database(prefix: &'static str) -> String {
    static TEMPLATE: OnceLock<(&'static str, String)> = OnceLock::new();
    let server = database_server();
    let (first_prefix, template) = TEMPLATE.get_or_init(|| {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_secs();
        let template = format!("{prefix}_{}_{started}", std::process::id());
        hold_run(&server, &template);
        let (server, name) = (server.clone(), template.clone());
        on_own_runtime(async move {
            let mut admin = admin(&server).await;
            let live: Vec<String> =
                sqlx::query_scalar("SELECT DISTINCT application_name FROM pg_stat_activity")
                    .fetch_all(&mut admin)
                    .await
                    .unwrap();
            let ours: Vec<String> =
                sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE $1")
                    .bind(format!("{prefix}%"))
                    .fetch_all(&mut admin)
                    .await
                    .unwrap();
            for stale in ours
                .iter()
                .filter(|db| !live.iter().any(|run| is_of_run(db, run)))
            {
                execute(
                    &mut admin,
                    format!("DROP DATABASE IF EXISTS {stale} WITH (FORCE)"),
                )
                .await;
            }
            execute(&mut admin, format!("CREATE DATABASE {name}")).await;
            let pool = PgPool::connect(&format!("{server}/{name}")).await.unwrap();
            common::db::migrate(&pool).await.unwrap();
            pool.close().await;
        });
        (prefix, template)
    });
    assert_eq!(*first_prefix, prefix, "one database prefix per test binary");
    let name = format!("{template}_{}", &common::id::new_id("d")[2..10]);
    let copy = format!("CREATE DATABASE {name} TEMPLATE {template}");
    let admin_server = server.clone();
    on_own_runtime(async move { execute(&mut admin(&admin_server).await, copy).await });
    format!("{server}/{name}")
}

/// Whether database `name` is run `template`'s: the template or one of its copies.
fn is_of_run(name: &str, template: &str) -> bool {
    !template.is_empty()
        && name
            .strip_prefix(template)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
}

/// Opens the session that marks run `template` live, on a thread of its own, for as long as
/// the process lives; answers once it is open.
fn hold_run(server: &str, template: &str) {
    let url = format!("{server}/postgres");
    let name = template.to_owned();
    let (opened, open) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime")
            .block_on(async move {
                let options: PgConnectOptions = url.parse().expect("DATABASE_URL parses");
                let _session = options
                    .application_name(&name)
                    .connect()
                    .await
                    .expect("Postgres answers at DATABASE_URL");
                let _ = opened.send(());
                // Held until the process exits; Postgres then ends the session.
                std::future::pending::<()>().await;
            });
    });
    open.recv().expect("the run's session opens");
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

/// Sends `request` and answers its body as JSON, whatever its status.
pub async fn json_of<T: serde::de::DeserializeOwned>(request: reqwest::RequestBuilder) -> T {
    let response = request.send().await.unwrap();
    response.json().await.unwrap()
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

/// Runs the service `binary` as a deployment would (no `APP_ENV`, nothing but `production`
/// changed by `change`: `None` unsets a variable) and asserts it refuses to start: exit
/// status 2, naming `variable`. Should it start after all, it reaches nothing real (its
/// stores point at closed ports) and is killed after a generous deadline.
pub fn refuses_to_start(
    binary: &str,
    production: &[(&str, &str)],
    change: &[(&str, Option<&str>)],
    variable: &str,
) {
    use std::process::Command as StdCommand;

    let mut command = StdCommand::new(binary);
    command
        .env_clear()
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env("RUST_LOG", "off")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (name, value) in production {
        command.env(name, value);
    }
    for (name, value) in change {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let mut child = command.spawn().expect("the service binary runs");
    // Waiting for a process to exit: a child has no future to await on this thread.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{binary} started with {change:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(2), "{change:?}: {stderr}");
    assert!(
        stderr.contains(variable),
        "{change:?} names {variable}: {stderr}"
    );
}
