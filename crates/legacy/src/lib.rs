//! A stand-in for the monolithic checkout the platform migrates away from. It answers the
//! public cart and order paths with the new services' JSON shapes, under its own plain
//! numeric ids and in its own Postgres schema (`legacy`), plus a product page. Orders are
//! confirmed in the request that places them. Its faults (latency, a share of failures) can
//! be set at start-up or at run time, so a migration can be rehearsed against a sick legacy.

pub mod config;
pub mod error;
pub mod faults;
pub mod routes;
pub mod store;
pub mod view;

use anyhow::Context as _;
use axum::Router;
use common::health::Check;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Settings;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The monolith's database.
    pub pool: PgPool,
    /// The faults it is told to show.
    pub faults: faults::Faults,
}

/// Connects the database, applies migrations when configured, and assembles the app.
pub async fn build(settings: &Settings) -> anyhow::Result<Router> {
    let pool = settings.db.open().await?;
    let state = AppState {
        pool: pool.clone(),
        faults: faults::Faults::new(settings.faults),
    };
    Ok(common::http::with_standard_layers(
        routes::router(state, vec![Check::postgres(pool)]),
        settings.max_body_bytes,
    ))
}

/// Serves the monolith until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let app = build(&settings).await?;
    let listener = TcpListener::bind(settings.listen_addr)
        .await
        .with_context(|| format!("binding LISTEN_ADDR {}", settings.listen_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "legacy checkout listening");
    common::http::serve(listener, app, shutdown).await?;
    Ok(())
}
