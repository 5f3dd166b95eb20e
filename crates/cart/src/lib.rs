//! The cart service: shopping carts in Redis, priced from the Postgres catalog through an
//! in-process cache. `build` assembles the app (tests serve it on a random port); `run`
//! serves it until shutdown.

pub mod catalog;
pub mod config;
pub mod domain;
pub mod error;
pub mod routes;
pub mod store;
pub mod view;

use anyhow::Context as _;
use axum::Router;
use common::health::Check;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Settings;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The carts.
    pub store: store::CartStore,
    /// Product prices and names.
    pub catalog: catalog::Catalog,
}

/// Connects the stores, applies migrations when configured, and assembles the app.
pub async fn build(settings: &Settings) -> anyhow::Result<Router> {
    let pool = settings.db.open().await?;
    let redis =
        common::redis::connect(&settings.redis_url, settings.redis_timeout).with_context(|| {
            format!(
                "REDIS_URL {} is not a Redis URL",
                common::db::redact_url(&settings.redis_url)
            )
        })?;

    let state = AppState {
        store: store::CartStore::new(
            redis.clone(),
            settings.key_prefix.clone(),
            settings.cart_ttl,
            settings.redis_timeout,
            settings.max_lines,
        ),
        catalog: catalog::Catalog::new(
            pool.clone(),
            settings.catalog_cache_ttl,
            settings.catalog_cache_capacity,
        ),
    };
    let checks = vec![Check::postgres(pool), Check::redis(redis)];
    Ok(common::http::with_standard_layers(
        routes::router(state, checks),
        settings.max_body_bytes,
    ))
}

/// Serves the cart service until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let app = build(&settings).await?;
    let listener = TcpListener::bind(settings.listen_addr)
        .await
        .with_context(|| format!("binding LISTEN_ADDR {}", settings.listen_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "cart service listening");
    common::http::serve(listener, app, shutdown).await?;
    Ok(())
}
