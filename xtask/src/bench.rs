//! `cargo xtask bench`: a closed-loop HTTP load generator (one keep-alive HTTP/1.1
//! connection per virtual user) and the scenarios it drives. It runs the release build on
//! this machine, load generator included, and prints throughput and latency percentiles.

use std::{
    process::ExitCode,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, body::Bytes, header};
use hyper_util::rt::TokioIo;

use crate::{
    seed,
    services::{self, Profile},
    stack::{Stack, free_port},
};

/// Runs the benchmark named by `args[0]`.
pub async fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    if cfg!(debug_assertions) {
        // The load generator shares the machine with the services: run it optimised too.
        let status = tokio::process::Command::from(crate::target_dir::cargo())
            .current_dir(crate::stack::workspace_root())
            .args([
                "run",
                "--release",
                "--quiet",
                "--package",
                "xtask",
                "--",
                "bench",
            ])
            .args(args)
            .status()
            .await
            .context("running the release build of xtask")?;
        return Ok(if status.success() {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    match args.first().map(String::as_str) {
        Some("cart") => cart(CartStore::parse(&args[1..])?)
            .await
            .map(|()| ExitCode::SUCCESS),
        Some("orders") => crate::bench_orders::orders()
            .await
            .map(|()| ExitCode::SUCCESS),
        Some("payments") => crate::bench_payments::payments()
            .await
            .map(|()| ExitCode::SUCCESS),
        Some("gateway") => crate::bench_gateway::gateway()
            .await
            .map(|()| ExitCode::SUCCESS),
        Some("queue") => crate::bench_queue::queue()
            .await
            .map(|()| ExitCode::SUCCESS),
        other => {
            bail!("unknown benchmark {other:?}; available: cart, orders, payments, gateway, queue")
        }
    }
}

/// One request a virtual user sends.
pub struct Call {
    /// The method.
    pub method: Method,
    /// Path and query.
    pub path: String,
    /// A JSON body, sent byte for byte.
    pub body: Option<Bytes>,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
}

impl Call {
    /// A GET.
    pub fn get(path: String) -> Self {
        Self {
            method: Method::GET,
            path,
            body: None,
            headers: Vec::new(),
        }
    }

    /// A POST of a JSON body.
    pub fn post(path: String, body: serde_json::Value) -> Self {
        Self {
            method: Method::POST,
            path,
            body: Some(Bytes::from(body.to_string())),
            headers: Vec::new(),
        }
    }

    /// Adds a request header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn into_request(self, addr: &str) -> anyhow::Result<Request<Full<Bytes>>> {
        let mut request = Request::builder()
            .method(self.method)
            .uri(self.path)
            .header(header::HOST, addr);
        if self.body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in self.headers {
            request = request.header(name, value);
        }
        Ok(request.body(Full::new(self.body.unwrap_or_default()))?)
    }
}

/// What one scenario measured.
pub struct Report {
    /// The scenario's name.
    pub name: String,
    /// 2xx answers.
    pub ok: u64,
    /// Other answers.
    pub failed: u64,
    /// How long the run took.
    pub elapsed: Duration,
    /// Every request's latency, sorted.
    pub latencies_us: Vec<u32>,
}

impl Report {
    /// The `p`-quantile latency in milliseconds.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1000.0
    }

    /// Requests per second over the run.
    pub fn rate(&self) -> f64 {
        (self.ok + self.failed) as f64 / self.elapsed.as_secs_f64()
    }

    /// Prints one line of figures.
    pub fn print(&self) {
        println!(
            "{:<34} {:>9.0} req/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  ({} requests, {} non-2xx)",
            self.name,
            self.rate(),
            self.percentile(0.50),
            self.percentile(0.90),
            self.percentile(0.99),
            self.percentile(1.0),
            self.ok + self.failed,
            self.failed,
        );
    }
}

pub fn setting(name: &str, default: u64) -> anyhow::Result<u64> {
    std::env::var(name).map_or(Ok(default), |v| {
        v.parse()
            .with_context(|| format!("{name}={v:?} is not a number"))
    })
}

type Outcome = (u64, u64, Vec<u32>);

/// A keep-alive HTTP/1.1 connection to `addr`.
async fn connect(
    addr: &str,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one call; answers whether it succeeded.
async fn send(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    addr: &str,
    call: Call,
) -> anyhow::Result<bool> {
    let response = sender.send_request(call.into_request(addr)?).await?;
    let status = response.status();
    response.into_body().collect().await?;
    Ok(status.is_success())
}

fn micros(elapsed: Duration) -> u32 {
    elapsed.as_micros().min(u128::from(u32::MAX)) as u32
}

/// Gathers the virtual users' outcomes into one report.
async fn report(
    name: &str,
    started: Instant,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Outcome>>>,
) -> anyhow::Result<Report> {
    let mut report = Report {
        name: name.to_owned(),
        ok: 0,
        failed: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    for task in tasks {
        let (ok, failed, latencies) = task.await??;
        report.ok += ok;
        report.failed += failed;
        report.latencies_us.extend(latencies);
    }
    report.elapsed = started.elapsed();
    report.latencies_us.sort_unstable();
    Ok(report)
}

/// Drives `conns` virtual users for `duration` (closed loop: each sends its next request
/// when the last is answered); user `u`'s `n`-th request is `make(u, n)`.
pub async fn load<F>(
    name: &str,
    addr: &str,
    conns: usize,
    duration: Duration,
    make: F,
) -> anyhow::Result<Report>
where
    F: Fn(usize, u64) -> Call + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let started = Instant::now();
    let deadline = started + duration;
    let tasks = (0..conns)
        .map(|user| {
            let (make, addr) = (make.clone(), addr.to_owned());
            tokio::spawn(async move {
                let mut sender = connect(&addr).await?;
                let (mut ok, mut failed, mut latencies) = (0u64, 0u64, Vec::with_capacity(65_536));
                let mut n = 0;
                while Instant::now() < deadline {
                    let sent = Instant::now();
                    let success = send(&mut sender, &addr, make(user, n)).await?;
                    latencies.push(micros(sent.elapsed()));
                    if success {
                        ok += 1
                    } else {
                        failed += 1
                    }
                    n += 1;
                }
                anyhow::Ok((ok, failed, latencies))
            })
        })
        .collect();
    report(name, started, tasks).await
}

/// Sends `rate` requests per second for `duration` over `conns` keep-alive connections, each
/// on a fixed schedule (open loop). Latency counts from the scheduled send time, so a slow
/// answer that delays the next request is charged to that request too.
pub async fn paced<F>(
    name: &str,
    addr: &str,
    conns: usize,
    rate: u32,
    duration: Duration,
    make: F,
) -> anyhow::Result<Report>
where
    F: Fn(usize, u64) -> Call + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let per_conn = Duration::from_secs_f64(conns as f64 / f64::from(rate));
    let total = (duration.as_secs_f64() * f64::from(rate) / conns as f64).ceil() as u64;
    let started = Instant::now();
    let tasks = (0..conns)
        .map(|user| {
            let (make, addr) = (make.clone(), addr.to_owned());
            let offset = per_conn.mul_f64(user as f64 / conns as f64);
            tokio::spawn(async move {
                let mut sender = connect(&addr).await?;
                let (mut ok, mut failed, mut latencies) =
                    (0u64, 0u64, Vec::with_capacity(total as usize));
                for n in 0..total {
                    let scheduled = started + offset + per_conn.mul_f64(n as f64);
                    tokio::time::sleep_until(scheduled.into()).await;
                    let success = send(&mut sender, &addr, make(user, n)).await?;
                    latencies.push(micros(scheduled.elapsed()));
                    if success { ok += 1 } else { failed += 1 }
                }
                anyhow::Ok((ok, failed, latencies))
            })
        })
        .collect();
    report(name, started, tasks).await
}

/// One request outside the measurement; answers status and body.
pub async fn request(addr: &str, call: Call) -> anyhow::Result<(u16, Bytes)> {
    let mut sender = connect(addr).await?;
    let response = sender.send_request(call.into_request(addr)?).await?;
    let status = response.status().as_u16();
    Ok((status, response.into_body().collect().await?.to_bytes()))
}

/// The status of `GET path`, or `None` when nothing answers.
pub async fn get_status(addr: &str, path: &str) -> Option<u16> {
    request(addr, Call::get(path.to_owned()))
        .await
        .ok()
        .map(|(status, _)| status)
}

const BENCH_SKUS: usize = 50;
/// Lines of a cart in the add benchmark: a typical cart, not a 50-line one.
const LINES_PER_CART: u64 = 5;
const CARTS_PER_USER: usize = 16;
const ADDS_PER_CART: u64 = LINES_PER_CART * 98;

/// Where the cart benchmark keeps its carts: `--redis single` (the stack's Redis, the
/// default) or `--redis cluster` (a three-master Redis Cluster started for the run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CartStore {
    Single,
    Cluster,
}

impl CartStore {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        match args {
            [] => Ok(Self::Single),
            [flag, value] if flag == "--redis" && value == "single" => Ok(Self::Single),
            [flag, value] if flag == "--redis" && value == "cluster" => Ok(Self::Cluster),
            other => bail!("bench cart takes --redis single|cluster, not {other:?}"),
        }
    }
}

async fn cart(store: CartStore) -> anyhow::Result<()> {
    let seconds = setting("BENCH_SECONDS", 10)?;
    let conns = setting("BENCH_CONNECTIONS", 64)? as usize;
    let stack = Stack::ensure().await?;
    let cluster = match store {
        CartStore::Single => None,
        CartStore::Cluster => Some(crate::redis_cluster::RedisCluster::start()?),
    };
    let redis_url = cluster
        .as_ref()
        .map_or(stack.redis_url.clone(), |c| c.url());
    seed::seed(&stack.database_url).await?;
    let pool = common::db::connect(&stack.database_url, 2).await?;
    seed::upsert_products(
        &pool,
        (0..BENCH_SKUS).map(|i| {
            (
                format!("BENCH-{i}"),
                format!("Bench product {i}"),
                1000 + i as i64,
            )
        }),
    )
    .await?;
    services::build(Profile::Release)?;
    let port = free_port()?;
    let prefix = format!("bench:{}:", std::process::id());
    let service = services::start(
        &stack,
        Profile::Release,
        "cart",
        port,
        &[
            ("CART_KEY_PREFIX", &prefix),
            ("REDIS_URL", &redis_url),
            ("RUST_LOG", "warn"),
        ],
    )?;
    services::wait_ready(&service).await?;
    let addr = format!("127.0.0.1:{port}");

    // Every user owns a few carts; the first holds five lines, like a typical cart.
    let mut carts = Vec::with_capacity(conns * CARTS_PER_USER);
    for _ in 0..conns * CARTS_PER_USER {
        let (status, body) =
            request(&addr, Call::post("/v1/carts".into(), serde_json::json!({}))).await?;
        if status != 201 {
            bail!("creating a cart answered {status}");
        }
        let cart: serde_json::Value = serde_json::from_slice(&body)?;
        carts.push(cart["id"].as_str().context("cart id")?.to_owned());
    }
    for (user, id) in carts.iter().step_by(CARTS_PER_USER).enumerate() {
        for line in 0..5 {
            let body = serde_json::json!({"sku": format!("BENCH-{}", (user + line) % BENCH_SKUS), "quantity": 1});
            request(&addr, Call::post(format!("/v1/carts/{id}/items"), body)).await?;
        }
    }
    let carts = Arc::new(carts);
    let duration = Duration::from_secs(seconds);
    println!(
        "\ncart service, release build, {conns} connections, {seconds} s per scenario, load generator on the same machine, {}\n",
        match store {
            CartStore::Single => "single Redis",
            CartStore::Cluster => "Redis Cluster of three masters",
        }
    );

    // Warm the catalog cache and the connections.
    let warm = carts.clone();
    load(
        "warm-up",
        &addr,
        conns,
        Duration::from_secs(2),
        move |u, _| Call::get(format!("/v1/carts/{}", warm[u * CARTS_PER_USER])),
    )
    .await?;

    // Reads hit each user's five-line cart. Adds fill a user's carts in turn, at most 98 per
    // line; the paced run starts half-way through them, so both runs together stay within
    // the quantity limit.
    let read = |carts: Arc<Vec<String>>| {
        move |u: usize, _n: u64| Call::get(format!("/v1/carts/{}", carts[u * CARTS_PER_USER]))
    };
    let add = |carts: Arc<Vec<String>>, first: u64| {
        move |u: usize, n: u64| {
            let n = n + first;
            let cart = &carts[u * CARTS_PER_USER + ((n / ADDS_PER_CART) as usize % CARTS_PER_USER)];
            let line = (u + (n % LINES_PER_CART) as usize) % BENCH_SKUS;
            let body = serde_json::json!({"sku": format!("BENCH-{line}"), "quantity": 1});
            Call::post(format!("/v1/carts/{cart}/items"), body)
        }
    };
    let half = ADDS_PER_CART * (CARTS_PER_USER as u64 / 2);
    load(
        "GET /v1/carts/{id}",
        &addr,
        conns,
        duration,
        read(carts.clone()),
    )
    .await?
    .print();
    load(
        "POST /v1/carts/{id}/items",
        &addr,
        conns,
        duration,
        add(carts.clone(), 0),
    )
    .await?
    .print();
    // The same at the target rate, open loop: latency at a steady 5,000 req/s.
    paced(
        "GET /v1/carts/{id} at 5,000/s",
        &addr,
        conns,
        5000,
        duration,
        read(carts.clone()),
    )
    .await?
    .print();
    paced(
        "POST /v1/carts/{id}/items at 5,000/s",
        &addr,
        conns,
        5000,
        duration,
        add(carts.clone(), half),
    )
    .await?
    .print();
    drop(service);
    drop(cluster);
    Ok(())
}
