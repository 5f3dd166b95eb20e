//! `cargo xtask bench orders`: (1) checkout throughput and latency at 64 connections, with
//! the API alone; (2) the time the order processor takes to drain a 10,000-order backlog
//! through payments and stripe-sim at zero latency with no rate cap; (3) the time from 202 to
//! `confirmed` at a steady 100 orders/s. Release builds, everything on this machine.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use sqlx::PgPool;

use crate::{
    bench::{Call, load, paced, request, setting},
    seed,
    services::{self, Profile, Service},
    stack::{Stack, free_port},
};

/// Checkouts spread over a catalogue of this many products (one line each), as a store's
/// are; every order of one product would queue on that product's stock row.
const SKUS: usize = 100;
const BACKLOG: i64 = 10_000;
const TRUNCATE: &str = "TRUNCATE orders.orders, orders.order_lines, orders.order_events, orders.jobs, orders.idempotency_keys";

fn sku(i: usize) -> String {
    format!("BENCH-ORDER-{:03}", i % SKUS)
}

/// Runs the three orders scenarios.
pub async fn orders() -> anyhow::Result<()> {
    let seconds = setting("BENCH_SECONDS", 10)?;
    let conns = setting("BENCH_CONNECTIONS", 64)? as usize;
    let only = std::env::var("BENCH_ORDERS_ONLY").ok();
    let runs = |scenario: &str| only.as_deref().is_none_or(|o| o == scenario);
    let stack = Stack::ensure().await?;
    seed::seed(&stack.database_url).await?;
    let pool = common::db::connect(&stack.database_url, 4).await?;
    let skus: Vec<String> = (0..SKUS).map(sku).collect();
    seed::upsert_products(
        &pool,
        skus.iter()
            .map(|sku| (sku.clone(), format!("Bench product {sku}"), 1999)),
    )
    .await?;
    seed::stock(&pool, &skus, 1_000_000_000).await?;
    // Start from an empty orders schema so the figures describe this run only.
    sqlx::query(TRUNCATE).execute(&pool).await?;
    services::build_only(
        Profile::Release,
        &["cart", "orders", "payments", "stripe-sim"],
    )?;

    let ports = Ports {
        cart: free_port()?,
        orders: free_port()?,
        payments: free_port()?,
        sim: free_port()?,
    };
    let urls = ports.urls();
    let prefix = format!("bench:{}:", std::process::id());
    let cart = services::start(
        &stack,
        Profile::Release,
        "cart",
        ports.cart,
        &[("CART_KEY_PREFIX", &prefix), ("RUST_LOG", "warn")],
    )?;
    let orders_env = [
        ("CART_URL", urls.cart.as_str()),
        ("PAYMENTS_URL", urls.payments.as_str()),
        ("PAYMENTS_INTERNAL_TOKEN", "bench-payments-token"),
        ("ORDERS_INTERNAL_TOKEN", "bench-orders-token"),
        ("DB_MAX_CONNECTIONS", "20"),
        ("RUST_LOG", "warn"),
    ];
    let api = services::start_role(
        &stack,
        Profile::Release,
        "orders",
        &["serve"],
        ports.orders,
        &orders_env,
    )?;
    services::wait_ready(&cart).await?;
    services::wait_ready(&api).await?;
    let cart_addr = format!("127.0.0.1:{}", ports.cart);
    let orders_addr = format!("127.0.0.1:{}", ports.orders);

    let mut carts = Vec::with_capacity(conns);
    for user in 0..conns {
        carts.push(cart_with(&cart_addr, &sku(user)).await?);
    }
    let carts = Arc::new(carts);
    println!("\norders, release build, {conns} connections, load generator on the same machine\n");

    // (1) Checkout alone: the worker is not running, so every accepted order stays pending.
    let run = std::process::id();
    let checkout = |tag: &'static str| {
        let carts = carts.clone();
        move |user: usize, n: u64| {
            let body = serde_json::json!({"cart_id": carts[user], "email": "bench@example.com", "payment_method": "pm_card_visa"});
            Call::post("/v1/orders".into(), body)
                .header("idempotency-key", format!("{run}-{tag}-{user}-{n}"))
        }
    };
    if runs("checkout") {
        let report = load(
            "POST /v1/orders (saturated)",
            &orders_addr,
            conns,
            Duration::from_secs(seconds),
            checkout("a"),
        )
        .await?;
        report.print();
        let report = paced(
            "POST /v1/orders at 1,000/s",
            &orders_addr,
            conns,
            1000,
            Duration::from_secs(seconds),
            checkout("p"),
        )
        .await?;
        report.print();
    }

    // (2) A backlog of (at least) 10,000 fresh orders, then drain it.
    sqlx::query(TRUNCATE).execute(&pool).await?;
    let backlog_size = if runs("drain") { BACKLOG } else { 0 };
    let mut round = 0;
    while pending(&pool).await? < backlog_size {
        round += 1;
        let tag: &'static str = Box::leak(format!("top{round}").into_boxed_str());
        load(
            "(backlog top-up)",
            &orders_addr,
            conns,
            Duration::from_secs(1),
            checkout(tag),
        )
        .await?;
    }
    let backlog = pending(&pool).await?;
    let sim = services::start(
        &stack,
        Profile::Release,
        "stripe-sim",
        ports.sim,
        &[
            (
                "SIM_WEBHOOK_URLS",
                &format!("{}/v1/webhooks/stripe", urls.payments),
            ),
            ("SIM_WEBHOOK_SECRET", "whsec_bench"),
            // As Stripe does, events overtake each other: one at a time, the webhooks of a
            // backlog would trail the orders by minutes and be left out of the drain's figure.
            ("SIM_WEBHOOK_CONCURRENCY", "32"),
            ("SIM_WEBHOOK_EVENTS", services::PAYMENTS_WEBHOOK_EVENTS),
            ("RUST_LOG", "warn"),
        ],
    )?;
    let payments = services::start(
        &stack,
        Profile::Release,
        "payments",
        ports.payments,
        &[
            ("STRIPE_API_BASE", urls.sim.as_str()),
            ("STRIPE_WEBHOOK_SECRETS", "whsec_bench"),
            ("ORDERS_URL", urls.orders.as_str()),
            ("PAYMENTS_INTERNAL_TOKEN", "bench-payments-token"),
            ("ORDERS_INTERNAL_TOKEN", "bench-orders-token"),
            ("DB_MAX_CONNECTIONS", "20"),
            ("RUST_LOG", "warn"),
        ],
    )?;
    services::wait_ready(&payments).await?;
    // Timed by the database, from before the worker starts to the last order's final event,
    // so the (coarse, to stay light) polling for the end adds nothing to it.
    let started: time::OffsetDateTime = sqlx::query_scalar("SELECT now()").fetch_one(&pool).await?;
    let worker = start_worker(&stack, &orders_env)?;
    wait_until_settled(&pool, Duration::from_secs(600)).await?;
    if runs("drain") {
        let drained: f64 = sqlx::query_scalar(
            "SELECT extract(epoch FROM max(at) - $1)::float8 FROM orders.order_events WHERE at >= $1",
        )
        .bind(started)
        .fetch_one(&pool)
        .await?;
        let drained = Duration::from_secs_f64(drained);
        let confirmed: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orders.orders WHERE status = 'confirmed'")
                .fetch_one(&pool)
                .await?;
        println!(
            "{:<34} {:>9.0} orders/s  {backlog} orders in {:.1} s ({confirmed} confirmed)",
            "drain backlog (no cap, sim 0 ms)",
            backlog as f64 / drained.as_secs_f64(),
            drained.as_secs_f64()
        );
    }

    // The follow-up work of the drain (clearing carts, telling orders of each payment) is
    // still queued: let it finish, so the steady phase measures a quiet system.
    wait_for_queues(&pool, Duration::from_secs(600)).await?;
    if !runs("steady") {
        drop((worker, api, payments, sim, cart));
        return Ok(());
    }

    // (3) A steady 100 orders/s: accepted-to-confirmed latency, measured by the database from
    // the order's `pending` event (its commit, the moment of the 202; `created_at` is whole
    // seconds, as the API shows it) to its `confirmed` event.
    let since: time::OffsetDateTime = sqlx::query_scalar("SELECT now()").fetch_one(&pool).await?;
    // A confirmed order deletes its cart: every steady checkout gets a cart of its own.
    let mut fresh = Vec::new();
    for n in 0..100 * seconds as usize {
        fresh.push(cart_with(&cart_addr, &sku(n)).await?);
    }
    steady(
        &orders_addr,
        &Arc::new(fresh),
        100,
        Duration::from_secs(seconds),
    )
    .await?;
    wait_until_settled(&pool, Duration::from_secs(120)).await?;
    let (count, p50, p99, max): (i64, Option<f64>, Option<f64>, Option<f64>) = sqlx::query_as(
        "SELECT count(*),
                percentile_cont(0.5) WITHIN GROUP (ORDER BY ms),
                percentile_cont(0.99) WITHIN GROUP (ORDER BY ms),
                max(ms)
         FROM (SELECT (extract(epoch FROM c.at - p.at) * 1000)::float8 AS ms
               FROM orders.order_events p
               JOIN orders.order_events c ON c.order_id = p.order_id AND c.to_status = 'confirmed'
               WHERE p.to_status = 'pending' AND p.at >= $1) t",
    )
    .bind(since)
    .fetch_one(&pool)
    .await?;
    println!(
        "{:<34} p50 {:>6.1} ms  p99 {:>6.1} ms  max {:>6.1} ms  ({count} orders)",
        "202 -> confirmed at 100 orders/s",
        p50.unwrap_or_default(),
        p99.unwrap_or_default(),
        max.unwrap_or_default()
    );
    drop((worker, api, payments, sim, cart));
    Ok(())
}

/// A new cart holding one of `sku`.
async fn cart_with(cart_addr: &str, sku: &str) -> anyhow::Result<String> {
    let (status, body) = request(
        cart_addr,
        Call::post("/v1/carts".into(), serde_json::json!({})),
    )
    .await?;
    if status != 201 {
        bail!("creating a cart answered {status}");
    }
    let id = serde_json::from_slice::<serde_json::Value>(&body)?["id"]
        .as_str()
        .context("cart id")?
        .to_owned();
    let (status, _) = request(
        cart_addr,
        Call::post(
            format!("/v1/carts/{id}/items"),
            serde_json::json!({"sku": sku, "quantity": 1}),
        ),
    )
    .await?;
    if status != 201 && status != 200 {
        bail!("adding to a cart answered {status}");
    }
    Ok(id)
}

struct Ports {
    cart: u16,
    orders: u16,
    payments: u16,
    sim: u16,
}

struct Urls {
    cart: String,
    orders: String,
    payments: String,
    sim: String,
}

impl Ports {
    fn urls(&self) -> Urls {
        let url = |port: u16| format!("http://127.0.0.1:{port}");
        Urls {
            cart: url(self.cart),
            orders: url(self.orders),
            payments: url(self.payments),
            sim: url(self.sim),
        }
    }
}

fn start_worker(stack: &Stack, env: &[(&str, &str)]) -> anyhow::Result<Service> {
    let mut env = env.to_vec();
    env.push(("WORKER_CONCURRENCY", "64"));
    env.push(("JOB_POLL_MS", "100"));
    // A worker serves only health and metrics, on a port of its own.
    services::start_role(
        stack,
        Profile::Release,
        "orders",
        &["work"],
        free_port()?,
        &env,
    )
}

async fn pending(pool: &PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM orders.orders WHERE status = 'pending'")
            .fetch_one(pool)
            .await?,
    )
}

/// Waits until no order is open. It polls twice a second: counting open orders costs the
/// database a few milliseconds while a backlog drains, and it must not slow the drain down.
async fn wait_until_settled(pool: &PgPool, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let open: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM orders.orders WHERE status IN ('pending', 'reserved', 'awaiting_payment', 'paid')",
        )
        .fetch_one(pool)
        .await?;
        if open == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("orders were still open after {limit:?}")
}

/// Waits until neither orders nor payments has a job due.
async fn wait_for_queues(pool: &PgPool, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let due: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM orders.jobs WHERE status <> 'dead' AND run_at <= now())
                  + (SELECT count(*) FROM payments.jobs WHERE status <> 'dead' AND run_at <= now())",
        )
        .fetch_one(pool)
        .await?;
        if due == 0 {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("jobs were still due after {limit:?}")
}

/// Sends `rate` checkouts per second for `duration`, each on its own schedule (open loop).
async fn steady(
    addr: &str,
    carts: &Arc<Vec<String>>,
    rate: u32,
    duration: Duration,
) -> anyhow::Result<()> {
    let interval = Duration::from_secs(1) / rate;
    let mut ticker = tokio::time::interval(interval);
    let total = (duration.as_secs_f64() * f64::from(rate)) as usize;
    let mut sent = tokio::task::JoinSet::new();
    for n in 0..total {
        ticker.tick().await;
        let body = serde_json::json!({"cart_id": carts[n % carts.len()], "email": "bench@example.com", "payment_method": "pm_card_visa"});
        let call = Call::post("/v1/orders".into(), body).header(
            "idempotency-key",
            format!("{}-steady-{n}", std::process::id()),
        );
        let addr = addr.to_owned();
        sent.spawn(async move { request(&addr, call).await });
    }
    for result in sent.join_all().await {
        let (status, _) = result?;
        if status != 202 {
            bail!("a steady-rate checkout answered {status}");
        }
    }
    Ok(())
}
