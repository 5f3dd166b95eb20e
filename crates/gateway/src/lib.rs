//! The gateway: the strangler-fig edge router in front of the checkout. It sends each route
//! group (cart, orders, payments) to the new service or to the legacy monolith by flag and
//! sticky bucket, rolls a group back by itself when the new service fails, and serves the
//! admin API for the flags on a listener of its own (`ADMIN_LISTEN_ADDR`), never on the
//! public port. `build` assembles the app (tests serve it on random ports); `run` serves it
//! until shutdown.

pub mod admin;
pub mod bucket;
pub mod clock;
pub mod config;
pub mod edge;
pub mod error;
pub mod flags;
pub mod forwarding;
pub mod group;
mod http1;
mod hyper_server;
mod hyper_upstream;
pub mod limits;
pub mod meters;
pub mod proxy;
pub mod rollback;
pub mod routing;
pub mod webhook;

use std::{convert::Infallible, net::SocketAddr, rc::Rc, sync::Arc, time::Duration};

use anyhow::Context as _;
use axum::{
    Json, Router,
    body::Body,
    extract::{ConnectInfo, DefaultBodyLimit},
    middleware,
    response::Response,
    routing::{any, get},
};
use common::health::Check;
use futures_util::future::Either;
use hyper::{body::Incoming, server::conn::http1 as server_http1};
use tokio::{
    net::TcpListener,
    sync::mpsc,
    task::{JoinSet, LocalSet},
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tower_http::trace::TraceLayer;
use tracing::Instrument as _;
use utoipa::OpenApi as _;

pub use config::Settings;

use crate::{
    clock::{Clock, MonotonicClock},
    edge::{Edge, Upstreams},
    flags::Flags,
    forwarding::Client,
    http1::DownstreamBody,
    limits::{ConnectionCounts, InFlight, RateLimiter, StreamCounts},
    proxy::{Proxy, ProxySettings},
    rollback::{Policy, Rollback},
};

/// Admin request bodies are a few bytes of JSON.
const ADMIN_BODY_LIMIT: usize = 16 * 1024;
const LIMITER_SWEEP: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The assembled gateway: its own public routes, the proxy every other request goes to, and
/// the admin listener's routes.
#[derive(Clone)]
pub struct App {
    router: Router,
    admin: Router,
    edge: Arc<Edge>,
    threads: usize,
    http: config::HttpPath,
    connections: Arc<ConnectionCounts>,
}

impl App {
    /// Answers one request from `client`, read by hyper: a request for one of the gateway's
    /// own routes goes through the router, any other straight to the proxy. The app is the
    /// serving thread's own copy: holding it costs the request no write to memory another
    /// thread uses.
    fn call(
        self: &Rc<Self>,
        request: axum::http::Request<Incoming>,
        client: &Client,
    ) -> impl Future<Output = Result<Response, Infallible>> + use<> {
        let mut request = request.map(|incoming| Body::new(DownstreamBody::new(incoming)));
        if let Err(refused) = edge::screen(&mut request) {
            return Either::Right(Either::Left(std::future::ready(Ok(refused))));
        }
        if is_own(request.uri().path()) {
            request.extensions_mut().insert(ConnectInfo(client.addr));
            return Either::Left(self.router.clone().oneshot(request));
        }
        let proxied = self.proxy(request, client);
        Either::Right(Either::Right(async move { Ok(proxied.await) }))
    }

    /// Proxies `request` from `client`, in the request's span.
    fn proxy(
        self: &Rc<Self>,
        request: axum::extract::Request,
        client: &Client,
    ) -> impl Future<Output = Response> + use<> {
        let (app, client) = (self.clone(), client.clone());
        let span = common::telemetry::request_span(&request);
        async move {
            let handled = app.edge.handle(request, &client);
            // A disabled span (tracing below info) is not entered on every poll.
            if span.is_disabled() {
                return handled.await;
            }
            let response = handled.instrument(span.clone()).await;
            span.record("status", response.status().as_u16());
            response
        }
    }
}

/// Whether `path` is, or looks like, one of the gateway's own routes. On the public port
/// the admin paths, `/metrics` and `/openapi.json` answer 404 (they live on the admin
/// listener); what the router does not know otherwise is proxied.
fn is_own(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/readyz" | "/metrics" | "/openapi.json" | "/admin"
    ) || path.starts_with("/admin/")
}

/// Connects the stores, applies migrations when configured, loads the flags, starts the
/// flag subscriber and resync (they stop with `shutdown`) and assembles the app. Rollback
/// windows and rate limits run on `clock`.
pub async fn build(
    settings: &Settings,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) -> anyhow::Result<App> {
    let pool = settings.db.open().await?;
    let redis_url = common::db::redact_url(&settings.redis_url);
    let redis = common::redis::connect(&settings.redis_url, settings.redis_timeout)
        .with_context(|| format!("REDIS_URL {redis_url} is not a Redis URL"))?;
    let subscriber = flags::sync::subscriber_clients(&settings.redis_url)
        .with_context(|| format!("REDIS_URL {redis_url} is not a Redis URL"))?;

    let policy = Policy {
        max_error_rate: settings.rollback_error_rate_percent / 100.0,
        window: settings.rollback_window,
        min_sample: settings.rollback_min_sample,
        min_clients: settings.rollback_min_clients,
    };
    let rollback = Arc::new(Rollback::new(policy, clock.clone()));
    let flags = Flags::load(
        pool.clone(),
        redis.clone(),
        settings.flags_channel.clone(),
        rollback.clone(),
        shutdown.clone(),
    )
    .await
    .context("loading the flags")?;
    let flags = Arc::new(flags);
    if let Some(rollout) = settings.initial_rollout {
        let changed = flags
            .initial_rollout(rollout)
            .await
            .context("applying GATEWAY_INITIAL_ROLLOUT")?;
        for record in &changed {
            tracing::info!(flag = %record.name, rollout, "initial rollout applied");
        }
    }
    flags::sync::spawn(
        flags.clone(),
        subscriber,
        settings.flags_channel.clone(),
        settings.flags_resync,
        shutdown.clone(),
    );

    let door = Arc::new(admin::Door::new(
        settings.admin_tokens.clone(),
        settings.admin_max_failures,
        settings.admin_lockout,
        clock.clone(),
    ));
    let limiter = RateLimiter::new(
        settings.rate_limit_per_second,
        settings.rate_limit_burst,
        clock,
    )
    .map(Arc::new);
    if let Some(limiter) = &limiter {
        tokio::spawn(sweep(limiter.clone(), shutdown));
    }
    let edge = Edge {
        flags: flags.clone(),
        rollback,
        limiter,
        trusted_proxies: settings.trusted_proxies.clone(),
        in_flight: InFlight::new(settings.max_in_flight),
        proxy: Proxy::new(ProxySettings {
            connect_timeout: settings.upstream_connect_timeout,
            response_timeout: settings.upstream_timeout,
            pool_idle: settings.upstream_pool_idle,
            pool_max_idle: settings.upstream_pool_max_idle,
            max_body_bytes: settings.max_body_bytes,
            body_timeout: settings.body_timeout,
            inject_trace: settings.otel_enabled,
            http: settings.http,
        }),
        upstreams: Upstreams {
            cart: settings.cart_url.clone(),
            orders: settings.orders_url.clone(),
            payments: settings.payments_url.clone(),
            legacy: settings.legacy_url.clone(),
        },
        webhook_max_body_bytes: settings.webhook_max_body_bytes,
        body_timeout: settings.body_timeout,
        streams: StreamCounts::new(settings.max_streams_per_client),
        stream_max: settings.stream_max,
        meters: meters::RequestMeters::new(),
    };
    let checks = vec![Check::postgres(pool), Check::redis(redis)];
    let edge = Arc::new(edge);
    let threads = match settings.serve_threads {
        0 => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        n => n,
    };
    Ok(App {
        router: router(edge.clone(), checks.clone()),
        admin: admin_router(flags, door, checks, settings.body_timeout),
        edge,
        threads,
        http: settings.http,
        connections: Arc::new(ConnectionCounts::new(
            settings.max_connections_per_client,
            settings.trusted_proxies.clone(),
        )),
    })
}

/// The public port's own routes (health), 404 for the admin listener's, and every other
/// request proxied.
fn router(edge: Arc<Edge>, checks: Vec<Check>) -> Router {
    let not_here = || async { common::Problem::not_found("The resource") };
    let own = Router::new()
        .route("/admin", any(not_here))
        .route("/admin/{*rest}", any(not_here))
        .route("/metrics", any(not_here))
        .route("/openapi.json", any(not_here))
        .merge(common::health::router(checks))
        .layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT))
        .layer(middleware::from_fn(common::metrics::track));
    let proxied = Router::new().fallback(edge::forward).with_state(edge);
    traced(
        own.merge(proxied)
            .method_not_allowed_fallback(common::problem::method_not_allowed_fallback),
    )
}

/// The admin listener's routes: the admin API, its description, metrics and health. A body
/// must arrive within `body_timeout`.
fn admin_router(
    flags: Arc<Flags>,
    door: Arc<admin::Door>,
    checks: Vec<Check>,
    body_timeout: Duration,
) -> Router {
    let router = Router::new()
        .merge(admin::router(flags, door))
        .route(
            "/openapi.json",
            get(|| async { Json(common::openapi::document(&admin::ApiDoc::openapi())) }),
        )
        .merge(common::health::router(checks))
        .merge(common::metrics::router())
        .fallback(|| async { common::Problem::not_found("The resource") })
        .method_not_allowed_fallback(common::problem::method_not_allowed_fallback)
        .layer(DefaultBodyLimit::max(ADMIN_BODY_LIMIT))
        .layer(tower_http::timeout::RequestBodyDeadlineLayer::new(
            body_timeout,
        ))
        .layer(middleware::from_fn(common::metrics::track));
    traced(router)
}

/// `router` with a request span per request.
fn traced(router: Router) -> Router {
    router.layer(
        TraceLayer::new_for_http()
            .make_span_with(common::telemetry::request_span)
            .on_request(())
            .on_response(
                |response: &axum::http::Response<_>, _latency: Duration, span: &tracing::Span| {
                    span.record("status", response.status().as_u16());
                },
            )
            .on_failure(()),
    )
}

async fn sweep(limiter: Arc<RateLimiter>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(LIMITER_SWEEP);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => limiter.sweep(),
        }
    }
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then drains in-flight requests.
///
/// The shape is nginx's: `GATEWAY_THREADS` threads (one per core by default), each with a
/// single-threaded runtime of its own.
/// This task accepts connections and hands them out in turn; a connection, its requests and
/// the upstream connections they use (the proxy pools per thread) then live on one thread, so
/// a proxied request wakes no other thread. Connections carry the client's address, which
/// `X-Forwarded-For` and the rate limit need.
pub async fn serve(
    listener: TcpListener,
    app: App,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let threads = app.threads;
    let mut workers = Vec::with_capacity(threads);
    let mut handoff = Vec::with_capacity(threads);
    for i in 0..threads {
        let (send, receive) = mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (app, shutdown) = (app.clone(), shutdown.clone());
        workers.push(
            std::thread::Builder::new()
                .name(format!("gateway-serve-{i}"))
                .spawn(move || runtime.block_on(serve_connections(receive, app, shutdown)))?,
        );
        handoff.push(send);
    }

    let mut next = 0;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted.and_then(|(stream, peer)| Ok((stream.into_std()?, peer))) {
            Ok((stream, peer)) => {
                let place = app.connections.open(peer.ip());
                if handoff[next].send((stream, peer, place)).is_err() {
                    break;
                }
                next = (next + 1) % threads;
            }
            // Out of file descriptors or a connection reset before it was accepted: the
            // listener itself is fine, so keep accepting after a breath.
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    drop(handoff);
    tokio::task::spawn_blocking(move || {
        for worker in workers {
            let _ = worker.join();
        }
    })
    .await
    .map_err(std::io::Error::other)
}

/// A connection as the accepting task hands it over: its place under the per-client cap,
/// or `None` when its client is over it.
type Accepted = (
    std::net::TcpStream,
    SocketAddr,
    Option<limits::ConnectionPlace>,
);

/// One serving thread: serves the connections handed to it until shutdown, then lets their
/// requests in flight finish. Connections are tasks local to the thread.
async fn serve_connections(
    connections: mpsc::UnboundedReceiver<Accepted>,
    app: App,
    shutdown: CancellationToken,
) {
    LocalSet::new()
        .run_until(serve_local(connections, Rc::new(app), shutdown))
        .await;
}

/// `serve_connections` inside the thread's `LocalSet`.
async fn serve_local(
    mut connections: mpsc::UnboundedReceiver<Accepted>,
    app: Rc<App>,
    shutdown: CancellationToken,
) {
    // The thread's own token: connections wait on it without sharing a lock with the other
    // threads' connections.
    let shutdown = shutdown.child_token();
    let own = app.http == config::HttpPath::Own;
    let ticks = own.then(|| tokio::spawn(http1::run_timer()));
    let mut http = server_http1::Builder::new();
    if own {
        http.timer(http1::Timer);
    } else {
        http.timer(hyper_util::rt::TokioTimer::new());
    }
    // A client that never finishes its request head is dropped instead of held forever.
    http.header_read_timeout(HEADER_READ_TIMEOUT);
    let http = Rc::new(http);
    let mut served = JoinSet::new();
    loop {
        let (stream, peer, place) = tokio::select! {
            () = shutdown.cancelled() => break,
            connection = connections.recv() => match connection {
                Some(connection) => connection,
                None => break,
            },
        };
        let Ok(stream) = tokio::net::TcpStream::from_std(stream) else {
            continue;
        };
        // Small answers go out at once: a proxy must not add Nagle's delay to every hop.
        let _ = stream.set_nodelay(true);
        let Some(place) = place else {
            served.spawn_local(http1::refuse_connection(stream));
            continue;
        };
        let (app, client, http, shutdown) = (
            app.clone(),
            Client::new(peer),
            http.clone(),
            shutdown.clone(),
        );
        if own {
            served.spawn_local(http1::serve(place, stream, app, client, http, shutdown));
        } else {
            served.spawn_local(hyper_server::serve(
                place, stream, app, client, http, shutdown,
            ));
        }
        while served.try_join_next().is_some() {}
    }
    // Idle connections close at once; those with a request in flight answer it first.
    shutdown.cancel();
    while served.join_next().await.is_some() {}
    if let Some(ticks) = ticks {
        ticks.abort();
    }
}

/// Serves the admin listener's routes (admin API, `/metrics`, `/openapi.json`, health) on
/// `listener` until `shutdown` is cancelled, then lets requests in flight finish. A client
/// gets `HEADER_READ_TIMEOUT` for each request head, as on the public port.
pub async fn serve_admin(
    listener: TcpListener,
    app: App,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = server_http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting an admin connection failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        let router = app.admin.clone();
        let service =
            hyper::service::service_fn(move |mut request: axum::http::Request<Incoming>| {
                // Lockouts are per client address.
                request.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(request.map(Body::new))
            });
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// Serves the gateway until `shutdown` is cancelled.
pub async fn run(settings: Settings, shutdown: CancellationToken) -> anyhow::Result<()> {
    let app = build(&settings, Arc::new(MonotonicClock::new()), shutdown.clone()).await?;
    let listener = TcpListener::bind(settings.listen_addr)
        .await
        .with_context(|| format!("binding LISTEN_ADDR {}", settings.listen_addr))?;
    tracing::info!(addr = %listener.local_addr()?, "gateway listening");
    let admin = match settings.admin_listen_addr {
        Some(addr) => {
            let admin = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding ADMIN_LISTEN_ADDR {addr}"))?;
            tracing::info!(addr = %admin.local_addr()?, "admin API listening");
            if settings.admin_tokens.is_empty() {
                tracing::warn!("no ADMIN_TOKEN or ADMIN_TOKENS: every admin call is refused");
            }
            Some(tokio::spawn(serve_admin(
                admin,
                app.clone(),
                shutdown.clone(),
            )))
        }
        None => None,
    };
    serve(listener, app, shutdown).await?;
    if let Some(admin) = admin {
        admin.await??;
    }
    Ok(())
}
