//! The payments service: creates each order's payment as a Stripe PaymentIntent (never two
//! for one order, never a double charge), takes Stripe's signed webhooks, moves payments
//! through one forward-only state machine, and tells orders about every outcome until it
//! acknowledges. One crate, two roles: the API (with the webhook intake) and the worker
//! (event processing, orders notifications, reconciliation with Stripe).

// Stripe's object graph is deep; proving a job's future `Send` walks all of it.
#![recursion_limit = "256"]

pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod intake;
pub mod jobs;
pub mod ledger;
pub mod orders_client;
pub mod reconciler;
pub mod routes;
pub mod settle;
pub mod signature;
pub mod state;
pub mod store;
pub mod stripe;

use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use common::{
    Secret,
    health::Check,
    queue::{Queue, Worker},
};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

pub use config::Settings;

/// The queue's table and NOTIFY channel.
pub const QUEUE_TABLE: &str = "payments.jobs";
const QUEUE_CHANNEL: &str = "payments_jobs";

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Applies provider reports (pool, queue, Stripe).
    pub ledger: ledger::Ledger,
    /// Records verified webhook events.
    pub intake: intake::Intake,
    /// Checks webhook signatures.
    pub verifier: Arc<signature::Verifier>,
    /// Bearer `/internal` accepts (`PAYMENTS_INTERNAL_TOKEN`).
    pub internal_token: Secret,
    /// Bearer for `/admin`.
    pub admin_token: Secret,
}

/// The connected store and clients, shared by the API and the worker.
#[derive(Clone)]
pub struct Core {
    /// Postgres.
    pub pool: PgPool,
    /// Applies provider reports.
    pub ledger: ledger::Ledger,
    /// Tells orders.
    pub orders: orders_client::OrdersClient,
}

/// Connects Postgres, applies migrations when configured, and builds the clients.
pub async fn connect(settings: &Settings) -> anyhow::Result<Core> {
    let pool = settings.db.open().await?;
    let stripe = stripe::Stripe::new(
        &settings.stripe_api_base,
        &settings.stripe_secret_key,
        settings.stripe_timeout,
    )
    .context("STRIPE_API_BASE / STRIPE_SECRET_KEY")?;
    let ledger = ledger::Ledger {
        pool: pool.clone(),
        queue: Queue::new(pool.clone(), QUEUE_TABLE, QUEUE_CHANNEL),
        stripe,
        notify_attempts: settings.notify_max_attempts,
    };
    let orders = orders_client::OrdersClient::new(
        &settings.orders_url,
        settings.orders_internal_token.clone(),
        settings.orders_timeout,
    );
    Ok(Core {
        pool,
        ledger,
        orders,
    })
}

/// The HTTP app. Starts the webhook intake's writers, which stop when the app is dropped.
pub fn app(core: &Core, settings: &Settings) -> Router {
    let state = AppState {
        ledger: core.ledger.clone(),
        intake: intake::Intake::start(
            core.pool.clone(),
            core.ledger.queue.clone(),
            settings.event_max_attempts,
            settings.webhook_batch_max,
            settings.webhook_writers,
        ),
        verifier: Arc::new(signature::Verifier::new(
            settings.stripe_webhook_secrets.clone(),
            settings.webhook_tolerance,
        )),
        internal_token: settings.payments_internal_token.clone(),
        admin_token: settings.admin_token.clone(),
    };
    let checks = vec![Check::postgres(core.pool.clone())];
    common::http::with_standard_layers(routes::router(state, checks), settings.max_body_bytes)
}

/// The queue's job handler.
pub fn jobs(core: &Core, settings: &Settings) -> jobs::PaymentJobs {
    jobs::PaymentJobs {
        ledger: core.ledger.clone(),
        orders: core.orders.clone(),
        event_attempts: settings.event_max_attempts,
    }
}

/// The worker: the queue consumer plus the reconciler, until `shutdown`.
pub async fn work(core: &Core, settings: &Settings, shutdown: CancellationToken) {
    let handler = Arc::new(jobs(core, settings));
    let worker = Worker::new(
        core.ledger.queue.clone(),
        handler.clone(),
        settings.worker.clone(),
    );
    let reconciler = reconciler::run(
        &handler,
        settings.reconcile_interval,
        settings.reconcile_after,
        shutdown.clone(),
    );
    tokio::join!(worker.run(shutdown), reconciler);
}

/// Serves the API until `shutdown`.
pub async fn serve(
    core: &Core,
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = app(core, settings);
    common::http::listen(settings.listen_addr, app, "payments API", shutdown).await
}

/// Serves only `/healthz`, `/readyz` and `/metrics` until `shutdown`: what a worker-only
/// process exposes.
pub async fn serve_ops(
    core: &Core,
    settings: &Settings,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let ops = common::http::ops_app(vec![Check::postgres(core.pool.clone())]);
    common::http::listen(
        settings.listen_addr,
        ops,
        "payments worker (health, metrics)",
        shutdown,
    )
    .await
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
