//! The HTTP server every service runs: the shared middleware stack (request span with trace
//! context, metrics, body limit, fallbacks) and graceful shutdown on SIGTERM or ctrl-c, with
//! in-flight requests drained before the process exits, for a bounded time: a request or a
//! stream that never ends must not keep a stopping process alive until it is killed.

use std::{future::IntoFuture as _, net::SocketAddr, time::Duration};

use anyhow::Context as _;
use axum::{Router, extract::DefaultBodyLimit, middleware};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::trace::TraceLayer;

use crate::{health::Check, problem, telemetry};

/// Wraps a service's routes with the shared layers: request span, metrics, body limit and
/// problem+json fallbacks for unknown routes and methods.
pub fn with_standard_layers(router: Router, body_limit: usize) -> Router {
    router
        .fallback(problem::not_found_fallback)
        .method_not_allowed_fallback(problem::method_not_allowed_fallback)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(crate::metrics::track))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(telemetry::request_span)
                .on_request(())
                .on_response(
                    |response: &axum::http::Response<_>,
                     latency: std::time::Duration,
                     span: &tracing::Span| {
                        span.record("status", response.status().as_u16());
                        tracing::debug!(latency_ms = latency.as_secs_f64() * 1e3, "response");
                    },
                )
                .on_failure(()),
        )
}

/// What a worker-only process serves: `/healthz`, `/readyz` (over `checks`) and `/metrics`,
/// so it can be probed and scraped (queue depth drives autoscaling).
pub fn ops_app(checks: Vec<Check>) -> Router {
    let ops = Router::new()
        .merge(crate::health::router(checks))
        .merge(crate::metrics::router());
    with_standard_layers(ops, 1024)
}

/// Binds `addr` (the service's `LISTEN_ADDR`, named in the error) and serves `app` there
/// until `shutdown`, logging `what` is listening.
pub async fn listen(
    addr: SocketAddr,
    app: Router,
    what: &str,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding LISTEN_ADDR {addr}"))?;
    tracing::info!(addr = %listener.local_addr()?, "{what} listening");
    serve(listener, app, shutdown).await?;
    Ok(())
}

/// How long in-flight requests may take to finish once shutdown begins. The deployments give
/// a pod 20 s after SIGTERM: 5 s to leave the load balancers, this, and a margin.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains in-flight requests
/// for up to [`DRAIN_TIMEOUT`].
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_draining_for(listener, app, shutdown, DRAIN_TIMEOUT).await
}

/// [`serve`] with another drain bound. Past it, the connections still open are left to the
/// runtime's end (a process exits; a test's runtime drops them), and the server returns.
pub async fn serve_draining_for(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    let bound = async {
        shutdown.cancelled().await;
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        served = server => served,
        () = bound => {
            tracing::warn!(drain_secs = drain.as_secs_f64(), "requests still in flight after the drain bound; leaving them");
            Ok(())
        }
    }
}

/// A token cancelled on SIGTERM or ctrl-c.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => {}
            () = term => {}
        }
        tracing::info!("shutdown requested; draining");
        cancel.cancel();
    });
    token
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::routing::get;
    use tokio::{io::AsyncWriteExt as _, sync::Notify};

    use super::*;

    #[tokio::test]
    async fn a_request_that_never_ends_does_not_hold_shutdown_past_the_drain_bound() {
        let entered = Arc::new(Notify::new());
        let arrived = entered.clone();
        let app = Router::new().route(
            "/forever",
            get(move || async move {
                arrived.notify_one();
                std::future::pending::<()>().await
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve_draining_for(
            listener,
            app,
            shutdown.clone(),
            Duration::from_millis(200),
        ));

        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET /forever HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        entered.notified().await;
        shutdown.cancel();

        // Generous: the point is that it returns at all while the request is still open.
        let served = tokio::time::timeout(Duration::from_secs(30), server)
            .await
            .expect("the server returns once the drain bound passes")
            .unwrap();
        assert!(served.is_ok());
        drop(client);
    }
}
