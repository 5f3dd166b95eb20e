//! The gateway's settings, read once from the environment at start-up. A bad value fails
//! start-up with a message naming its variable.

use std::{net::SocketAddr, time::Duration};

use common::{ConfigError, config};

use crate::{admin::Tokens, forwarding::TrustedProxies, proxy::Upstream};

/// Everything the gateway can be configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `LISTEN_ADDR`: where the public HTTP server binds.
    pub listen_addr: SocketAddr,
    /// `ADMIN_LISTEN_ADDR`: where the admin API and `/metrics` are served, apart from the
    /// public port; `off` serves them nowhere.
    pub admin_listen_addr: Option<SocketAddr>,
    /// `DATABASE_URL`, `DB_MAX_CONNECTIONS`, `MIGRATE_ON_START`.
    pub db: common::db::Settings,
    /// `REDIS_URL`: Redis carrying flag changes.
    pub redis_url: String,
    /// `REDIS_TIMEOUT_MS`: bound on every Redis command.
    pub redis_timeout: Duration,
    /// `CART_URL`: the cart service.
    pub cart_url: Upstream,
    /// `ORDERS_URL`: the orders service.
    pub orders_url: Upstream,
    /// `PAYMENTS_URL`: the payments service.
    pub payments_url: Upstream,
    /// `LEGACY_URL`: the monolith; unset, requests routed to legacy answer 502.
    pub legacy_url: Option<Upstream>,
    /// `ADMIN_TOKEN` (actor `admin`) and `ADMIN_TOKENS` (`actor:token,…`): the admin API's
    /// bearer tokens, each naming who acts; none set, every admin call is refused.
    pub admin_tokens: Tokens,
    /// `ADMIN_MAX_FAILURES`: wrong admin tokens a client may present before it is locked out.
    pub admin_max_failures: u32,
    /// `ADMIN_LOCKOUT_SECS`: how long a locked-out client is refused every admin call.
    pub admin_lockout: Duration,
    /// `MAX_BODY_BYTES`: request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// `WEBHOOK_MAX_BODY_BYTES`: cap on the Stripe webhook body, read whole to route it.
    pub webhook_max_body_bytes: usize,
    /// `UPSTREAM_CONNECT_TIMEOUT_MS`: bound on opening a connection to an upstream.
    pub upstream_connect_timeout: Duration,
    /// `UPSTREAM_TIMEOUT_MS`: bound on waiting for an upstream's response headers.
    pub upstream_timeout: Duration,
    /// `UPSTREAM_POOL_IDLE_SECS`: idle upstream connections close after this.
    pub upstream_pool_idle: Duration,
    /// `UPSTREAM_POOL_MAX_IDLE`: idle connections kept per upstream.
    pub upstream_pool_max_idle: usize,
    /// `RATE_LIMIT_PER_SECOND`: sustained requests per client; 0 turns the limit off.
    pub rate_limit_per_second: u32,
    /// `RATE_LIMIT_BURST`: requests a client may send at once above the sustained rate.
    pub rate_limit_burst: u32,
    /// `TRUSTED_PROXIES`: comma-separated networks or addresses of the proxies in front of
    /// the gateway; from them, the client's address (for the rate limit) is read from
    /// `X-Forwarded-For`. Empty by default: the peer is the client.
    pub trusted_proxies: TrustedProxies,
    /// `MAX_IN_FLIGHT`: requests waiting on an upstream at once; past it the gateway sheds
    /// with 503 at once instead of queueing. 0 turns shedding off.
    pub max_in_flight: usize,
    /// `BODY_TIMEOUT_MS`: a request body (a webhook's included) must have arrived whole
    /// within this; past it the request is a 408 and its slot is free again.
    pub body_timeout: Duration,
    /// `MAX_CONNECTIONS_PER_CLIENT`: open connections from one address; past it a new
    /// connection is answered 429 and closed. 0 turns the cap off.
    pub max_connections_per_client: usize,
    /// `MAX_STREAMS_PER_CLIENT`: event streams one client may hold open; past it 429.
    /// 0 turns the cap off.
    pub max_streams_per_client: usize,
    /// `STREAM_MAX_SECS`: an event stream is ended after this; the client reconnects.
    pub stream_max: Duration,
    /// `GATEWAY_HTTP`: who speaks HTTP/1 on both sides of the proxy.
    pub http: HttpPath,
    /// `GATEWAY_THREADS`: serving threads, each with its own event loop (nginx's
    /// `worker_processes`); 0, the default, means one per core.
    pub serve_threads: usize,
    /// `ROLLBACK_ERROR_RATE_PERCENT`: new-side error rate above which a group rolls back.
    pub rollback_error_rate_percent: f64,
    /// `ROLLBACK_WINDOW_SECS`: how far back new-side outcomes count.
    pub rollback_window: Duration,
    /// `ROLLBACK_MIN_SAMPLE`: outcomes the window must hold before the rate is judged.
    pub rollback_min_sample: u64,
    /// `ROLLBACK_MIN_CLIENTS`: distinct clients whose requests failed in the window before
    /// the rate is judged, so no one client can roll a group back.
    pub rollback_min_clients: usize,
    /// `FLAGS_RESYNC_MS`: how often flags are reloaded from Postgres in case a broadcast
    /// was lost.
    pub flags_resync: Duration,
    /// `FLAGS_CHANNEL`: the Redis pub/sub channel carrying flag changes.
    pub flags_channel: String,
    /// `GATEWAY_INITIAL_ROLLOUT`: at start-up, the rollout given to every flag nobody has
    /// changed since the migration seeded it; later changes always win.
    pub initial_rollout: Option<u8>,
    /// Whether `OTEL_EXPORTER_OTLP_ENDPOINT` is set: upstreams then get the gateway's own
    /// span as the `traceparent` parent.
    pub otel_enabled: bool,
}

impl Settings {
    /// Reads the settings; an unparsable value names its variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        let profile = config::Profile::from_env()?;
        Self {
            listen_addr: config::parse("LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            admin_listen_addr: admin_listen_addr()?,
            db: common::db::Settings::from_env(4)?,
            redis_url: config::string("REDIS_URL", "redis://127.0.0.1:6379"),
            redis_timeout: config::millis("REDIS_TIMEOUT_MS", Duration::from_millis(500))?,
            cart_url: upstream("CART_URL", "http://127.0.0.1:8081")?,
            orders_url: upstream("ORDERS_URL", "http://127.0.0.1:8082")?,
            payments_url: upstream("PAYMENTS_URL", "http://127.0.0.1:8083")?,
            legacy_url: config::var("LEGACY_URL")
                .map(|url| Upstream::parse("LEGACY_URL", &url))
                .transpose()?,
            admin_tokens: Tokens::from_env(profile)?,
            admin_max_failures: config::parse("ADMIN_MAX_FAILURES", 5)?,
            admin_lockout: config::secs("ADMIN_LOCKOUT_SECS", Duration::from_secs(300))?,
            max_body_bytes: config::parse("MAX_BODY_BYTES", 10 * 1024 * 1024)?,
            webhook_max_body_bytes: config::parse("WEBHOOK_MAX_BODY_BYTES", 256 * 1024)?,
            upstream_connect_timeout: config::millis(
                "UPSTREAM_CONNECT_TIMEOUT_MS",
                Duration::from_secs(1),
            )?,
            upstream_timeout: config::millis("UPSTREAM_TIMEOUT_MS", Duration::from_secs(30))?,
            upstream_pool_idle: config::secs("UPSTREAM_POOL_IDLE_SECS", Duration::from_secs(90))?,
            upstream_pool_max_idle: config::parse("UPSTREAM_POOL_MAX_IDLE", 1024)?,
            rate_limit_per_second: config::parse("RATE_LIMIT_PER_SECOND", 100)?,
            rate_limit_burst: config::parse("RATE_LIMIT_BURST", 200)?,
            trusted_proxies: config::parse("TRUSTED_PROXIES", TrustedProxies::default())?,
            max_in_flight: config::parse("MAX_IN_FLIGHT", 4096)?,
            body_timeout: config::millis("BODY_TIMEOUT_MS", Duration::from_secs(30))?,
            max_connections_per_client: config::parse("MAX_CONNECTIONS_PER_CLIENT", 1024)?,
            max_streams_per_client: config::parse("MAX_STREAMS_PER_CLIENT", 16)?,
            stream_max: config::secs("STREAM_MAX_SECS", Duration::from_secs(900))?,
            http: config::parse("GATEWAY_HTTP", HttpPath::Own)?,
            serve_threads: config::parse("GATEWAY_THREADS", 0)?,
            rollback_error_rate_percent: config::parse("ROLLBACK_ERROR_RATE_PERCENT", 1.0)?,
            rollback_window: config::secs("ROLLBACK_WINDOW_SECS", Duration::from_secs(30))?,
            rollback_min_sample: config::parse("ROLLBACK_MIN_SAMPLE", 100)?,
            rollback_min_clients: config::parse("ROLLBACK_MIN_CLIENTS", 5)?,
            flags_resync: config::millis("FLAGS_RESYNC_MS", Duration::from_secs(5))?,
            flags_channel: config::string("FLAGS_CHANNEL", "flags:changed"),
            initial_rollout: config::var("GATEWAY_INITIAL_ROLLOUT")
                .map(|raw| {
                    raw.trim().parse::<u8>().map_err(|e| {
                        ConfigError::new("GATEWAY_INITIAL_ROLLOUT", format!("{raw:?}: {e}"))
                    })
                })
                .transpose()?,
            otel_enabled: config::var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some(),
        }
        .checked()
    }

    fn checked(self) -> Result<Self, ConfigError> {
        if self.initial_rollout.is_some_and(|p| p > 100) {
            return Err(ConfigError::new(
                "GATEWAY_INITIAL_ROLLOUT",
                "must be between 0 and 100",
            ));
        }
        if !(0.0..=100.0).contains(&self.rollback_error_rate_percent) {
            return Err(ConfigError::new(
                "ROLLBACK_ERROR_RATE_PERCENT",
                "must be between 0 and 100",
            ));
        }
        let positive = [
            ("ROLLBACK_WINDOW_SECS", self.rollback_window),
            ("FLAGS_RESYNC_MS", self.flags_resync),
            ("UPSTREAM_TIMEOUT_MS", self.upstream_timeout),
            ("UPSTREAM_CONNECT_TIMEOUT_MS", self.upstream_connect_timeout),
            ("REDIS_TIMEOUT_MS", self.redis_timeout),
            ("BODY_TIMEOUT_MS", self.body_timeout),
            ("STREAM_MAX_SECS", self.stream_max),
            ("ADMIN_LOCKOUT_SECS", self.admin_lockout),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, d)| d.is_zero()) {
            return Err(ConfigError::new(name, "must be at least 1"));
        }
        if self.rate_limit_per_second > 0 && self.rate_limit_burst == 0 {
            return Err(ConfigError::new("RATE_LIMIT_BURST", "must be at least 1"));
        }
        if self.admin_max_failures == 0 {
            return Err(ConfigError::new("ADMIN_MAX_FAILURES", "must be at least 1"));
        }
        Ok(self)
    }
}

/// Who speaks HTTP/1 with clients and upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpPath {
    /// `own`: the gateway's own reader for simple requests, its own upstream client.
    Own,
    /// `hyper`: hyper's server for every request, hyper's client to the upstreams.
    Hyper,
}

impl std::str::FromStr for HttpPath {
    type Err = &'static str;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "own" => Ok(Self::Own),
            "hyper" => Ok(Self::Hyper),
            _ => Err("must be `own` or `hyper`"),
        }
    }
}

/// `ADMIN_LISTEN_ADDR`: an address, or `off`.
fn admin_listen_addr() -> Result<Option<SocketAddr>, ConfigError> {
    match config::var("ADMIN_LISTEN_ADDR") {
        Some(v) if v.trim().eq_ignore_ascii_case("off") => Ok(None),
        _ => config::parse(
            "ADMIN_LISTEN_ADDR",
            SocketAddr::from(([127, 0, 0, 1], 8090)),
        )
        .map(Some),
    }
}

fn upstream(name: &str, default: &str) -> Result<Upstream, ConfigError> {
    Upstream::parse(name, &config::string(name, default))
}
