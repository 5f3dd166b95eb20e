//! The orders service: checkout (`POST /v1/orders` answers at once) and the order processor,
//! a queue-driven saga that reserves stock, creates the payment and settles the order — never
//! losing, duplicating or overselling one. One crate, two roles: the API and the worker.

pub mod clients;
pub mod config;
pub mod domain;
pub mod error;
pub mod holds;
pub mod jobs;
pub mod ratelimit;
pub mod routes;
pub mod saga;
pub mod store;
pub mod view;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use common::{
    Secret,
    health::Check,
    notify::Notifier,
    queue::{Queue, Worker},
};
use sqlx::{PgPool, postgres::PgListener};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use config::Settings;

/// The queue's table and NOTIFY channel.
pub const QUEUE_TABLE: &str = "orders.jobs";
const QUEUE_CHANNEL: &str = "orders_jobs";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Postgres.
    pub pool: PgPool,
    /// The saga (queue, clients).
    pub saga: saga::Saga,
    /// Order ids whose status changed, for the event streams.
    pub events: broadcast::Sender<String>,
    /// How long idempotency keys live.
    pub idempotency_ttl: std::time::Duration,
    /// Bearer `/internal` accepts (`ORDERS_INTERNAL_TOKEN`).
    pub internal_token: Secret,
    /// Bearer for `/admin`.
    pub admin_token: Secret,
    /// How long one event stream may stay open.
    pub event_stream_max_age: std::time::Duration,
    /// One permit per open event stream; none left answers 429.
    pub event_streams: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the process stops: open event streams end, so the drain is not kept
    /// waiting on them.
    pub shutdown: CancellationToken,
}

/// The connected stores and the saga, shared by the API and the worker.
pub struct Core {
    /// Postgres.
    pub pool: PgPool,
    /// The saga.
    pub saga: saga::Saga,
    redis: common::redis::Connection,
}

/// Connects the stores and applies migrations when configured.
pub async fn connect(settings: &Settings) -> anyhow::Result<Core> {
    let pool = settings.db.open().await?;
    let redis = common::redis::connect(&settings.redis_url, std::time::Duration::from_secs(2))
        .with_context(|| {
            format!(
                "REDIS_URL {} is not a Redis URL",
                common::db::redact_url(&settings.redis_url)
            )
        })?;
    let limiter = ratelimit::PaymentLimiter::new(
        settings.payments_rate_limit_per_worker,
        settings.payments_rate_limit,
        redis.clone(),
        "orders:ratelimit:payments".to_owned(),
    );
    let saga = saga::Saga {
        pool: pool.clone(),
        queue: Queue::new(pool.clone(), QUEUE_TABLE, QUEUE_CHANNEL),
        changes: Notifier::new(pool.clone(), store::orders::EVENTS_CHANNEL),
        clients: clients::Clients::new(
            &settings.cart_url,
            &settings.payments_url,
            settings.payments_internal_token.clone(),
            settings.upstream_timeout,
        ),
        limiter: Arc::new(limiter),
        payment_timeout: settings.payment_timeout,
        holds: holds::HoldPolicy {
            reservation_hold: settings.reservation_hold,
            max_awaiting_per_customer: settings.max_awaiting_per_customer,
        },
        max_attempts: settings.job_max_attempts,
    };
    Ok(Core { pool, saga, redis })
}

/// The HTTP app; its event-stream feed and its open event streams stop with `shutdown`.
pub fn app(core: &Core, settings: &Settings, shutdown: CancellationToken) -> Router {
    let (events, _) = broadcast::channel(1024);
    tokio::spawn(feed_events(
        core.pool.clone(),
        events.clone(),
        shutdown.clone(),
    ));
    let state = AppState {
        pool: core.pool.clone(),
        saga: core.saga.clone(),
        events,
        idempotency_ttl: settings.idempotency_ttl,
        internal_token: settings.orders_internal_token.clone(),
        admin_token: settings.admin_token.clone(),
        event_stream_max_age: settings.event_stream_max_age,
        event_streams: Arc::new(tokio::sync::Semaphore::new(settings.event_stream_max)),
        shutdown,
    };
    common::http::with_standard_layers(routes::router(state, checks(core)), settings.max_body_bytes)
}

/// The worker: the queue consumer plus the sweeper, until `shutdown`.
pub async fn work(core: &Core, settings: &Settings, shutdown: CancellationToken) {
    let worker = Worker::new(
        core.saga.queue.clone(),
        Arc::new(jobs::OrderJobs(core.saga.clone())),
        settings.worker.clone(),
    );
    let sweeper = jobs::sweep(
        core.saga.clone(),
        settings.sweep_interval,
        settings.stuck_after,
        shutdown.clone(),
    );
    tokio::join!(worker.run(shutdown), sweeper);
}

/// Serves the API until `shutdown`.
pub async fn serve(
    core: &Core,
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = app(core, settings, shutdown.clone());
    common::http::listen(settings.listen_addr, app, "orders API", shutdown).await
}

/// Serves only `/healthz`, `/readyz` and `/metrics` until `shutdown`: what a worker-only
/// process exposes.
pub async fn serve_ops(
    core: &Core,
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let ops = common::http::ops_app(checks(core));
    common::http::listen(
        settings.listen_addr,
        ops,
        "orders worker (health, metrics)",
        shutdown,
    )
    .await
}

/// What `/readyz` asks: Postgres and Redis.
fn checks(core: &Core) -> Vec<Check> {
    vec![
        Check::postgres(core.pool.clone()),
        Check::redis(core.redis.clone()),
    ]
}

/// Turns the orders' NOTIFY channel into a broadcast of changed order ids.
async fn feed_events(pool: PgPool, events: broadcast::Sender<String>, shutdown: CancellationToken) {
    loop {
        let mut listener = match PgListener::connect_with(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "order events: cannot listen; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => continue,
                }
            }
        };
        if let Err(e) = listener.listen(store::orders::EVENTS_CHANNEL).await {
            tracing::warn!(error = %e, "order events: LISTEN failed");
            continue;
        }
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                received = listener.recv() => match received {
                    Ok(n) => {
                        for id in common::notify::payloads(n.payload()) {
                            let _ = events.send(id.to_owned());
                        }
                    }
                    Err(e) => { tracing::warn!(error = %e, "order events: connection lost"); break; }
                },
            }
        }
    }
}

/// Runs `role` until `shutdown`: the API, the worker (with health and metrics on the API's
/// port), or both.
pub async fn run(
    settings: Settings,
    role: common::service::Role,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let core = connect(&settings).await?;
    role.run(
        serve(&core, &settings, shutdown.clone()),
        serve_ops(&core, &settings, shutdown.clone()),
        work(&core, &settings, shutdown),
    )
    .await
}
