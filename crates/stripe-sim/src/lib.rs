//! A stateful local stand-in for the part of Stripe's API the payments service uses.
//!
//! It speaks Stripe's wire format (form-encoded requests, Stripe's JSON objects and errors,
//! `Idempotency-Key`, `Stripe-Version`), follows the documented test payment methods, and
//! delivers signed webhooks, with latency, failures, duplicates and reordering on demand
//! through `/_sim`. It is for development and tests only and never deployed.

// Stripe objects are wide; `json!` needs more macro depth than the default for them.
#![recursion_limit = "256"]

mod cards;
mod config;
mod controls;
mod error;
mod form;
mod idempotency;
mod ids;
mod ledger;
mod money;
mod objects;
mod routes;
mod sim;
mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::Router;
use tokio::net::TcpListener;

pub use config::{Config, ConfigError};
pub use controls::{Controls, ControlsUpdate};
pub use sim::Sim;
pub use webhooks::{DeliveryOutcome, DeliveryRecord, signature_header};

/// The Stripe API version the simulator renders objects and events in (async-stripe's pin).
pub const API_VERSION: &str = "2026-09-30.endive";

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address from `LISTEN_ADDR`.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server error")]
    Serve(#[source] std::io::Error),
}

/// Builds the application and its handle. Spawns the webhook dispatcher, so it must run
/// inside a Tokio runtime.
pub async fn build(config: Config) -> (Router, Sim) {
    // reqwest is built without a default TLS provider; webhooks to https endpoints need one.
    // An error only means a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sim = Sim::new(&config);
    // A span per request, joining the caller's trace, exported when OTLP is configured.
    let router = routes::router(sim.clone()).layer(
        tower_http::trace::TraceLayer::new_for_http()
            .make_span_with(common::telemetry::request_span),
    );
    (router, sim)
}

/// Serves `router` on `listener` until `shutdown` completes, then drains open requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Binds `config.listen_addr` and serves until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let addr = config.listen_addr;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| RunError::Bind { addr, source })?;
    tracing::info!(
        %addr,
        webhook_urls = ?config.webhook_urls,
        api_version = API_VERSION,
        "stripe-sim listening"
    );
    let (router, _sim) = build(config).await;
    serve(listener, router, shutdown)
        .await
        .map_err(RunError::Serve)
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

/// Locks `mutex`, carrying on after a panic elsewhere: the state stays usable for a test tool.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
