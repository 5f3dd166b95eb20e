//! The orders service's settings, read once from the environment at start-up. A value that
//! does not parse stops start-up naming its variable; outside `APP_ENV=development` so does a
//! missing, empty, short or public token.

use std::{net::SocketAddr, time::Duration};

use common::{
    ConfigError, Secret,
    config::{self, Profile, ServiceTokens},
};

/// Everything the orders service can be configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `APP_ENV`: how strict start-up is about secrets.
    pub profile: Profile,
    /// `LISTEN_ADDR`: where the HTTP API binds.
    pub listen_addr: SocketAddr,
    /// `DATABASE_URL`, `DB_MAX_CONNECTIONS`, `MIGRATE_ON_START`.
    pub db: common::db::Settings,
    /// `REDIS_URL`: Redis for the shared payment-rate limiter.
    pub redis_url: String,
    /// `CART_URL`: the cart service.
    pub cart_url: String,
    /// `PAYMENTS_URL`: the payments service.
    pub payments_url: String,
    /// `ORDERS_INTERNAL_TOKEN`: the bearer orders' internal API accepts (payments sends it).
    pub orders_internal_token: Secret,
    /// `PAYMENTS_INTERNAL_TOKEN`: the bearer sent to payments' internal API.
    pub payments_internal_token: Secret,
    /// `ADMIN_TOKEN`: bearer for `/admin`.
    pub admin_token: Secret,
    /// `UPSTREAM_TIMEOUT_MS`: bound on one call to cart or payments.
    pub upstream_timeout: Duration,
    /// `PAYMENT_TIMEOUT_SECS`: an order still unpaid this long after its payment was created
    /// is cancelled and its stock released.
    pub payment_timeout: Duration,
    /// `RESERVATION_HOLD_SECS`: how long an unpaid order holds its stock; after it the stock
    /// is back on sale and a later payment takes it again if it is still there (at or past
    /// the payment timeout: held until the order is paid or cancelled).
    pub reservation_hold: Duration,
    /// `MAX_AWAITING_ORDERS_PER_CUSTOMER`: orders one customer (by email) may have waiting
    /// for payment; a checkout past it fails `too_many_open_orders` (0: no cap).
    pub max_awaiting_per_customer: u32,
    /// `PAYMENTS_RATE_LIMIT`: payment creations per second across every worker (0: no cap).
    pub payments_rate_limit: u32,
    /// `PAYMENTS_RATE_LIMIT_PER_WORKER`: payment creations per second in this process (0: no cap).
    pub payments_rate_limit_per_worker: u32,
    /// The queue worker: `WORKER_CONCURRENCY`, `JOB_TIMEOUT_MS`, `JOB_BACKOFF_BASE_MS`,
    /// `JOB_BACKOFF_MAX_MS`, `JOB_POLL_MS`.
    pub worker: common::queue::WorkerConfig,
    /// `JOB_MAX_ATTEMPTS`: attempts before a job becomes a dead letter.
    pub job_max_attempts: i32,
    /// `SWEEP_INTERVAL_SECS`: how often stuck orders are looked for.
    pub sweep_interval: Duration,
    /// `STUCK_AFTER_SECS`: an open order untouched this long is handed to the saga again.
    pub stuck_after: Duration,
    /// `IDEMPOTENCY_TTL_SECS`: how long an `Idempotency-Key` is remembered.
    pub idempotency_ttl: Duration,
    /// `MAX_BODY_BYTES`: larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// `EVENT_STREAM_MAX_SECS`: an order's event stream ends after this; the browser's
    /// `EventSource` reconnects by itself, so an abandoned tab cannot hold a stream forever.
    pub event_stream_max_age: Duration,
    /// `EVENT_STREAM_MAX`: event streams this process holds open at once; beyond it 429.
    pub event_stream_max: usize,
}

impl Settings {
    /// Reads the settings under the profile `APP_ENV` names (unset: production); an unusable
    /// value names its variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with(Profile::from_env()?)
    }

    /// Reads the settings under `profile`, whatever `APP_ENV` says: the tests run in
    /// development without touching the process environment.
    pub fn from_env_with(profile: Profile) -> Result<Self, ConfigError> {
        let tokens = ServiceTokens::read(&config::process_env, profile)?;
        let settings = Self {
            profile,
            listen_addr: config::parse("LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 8082)))?,
            db: common::db::Settings::from_env(20)?,
            redis_url: config::string("REDIS_URL", "redis://127.0.0.1:6379"),
            cart_url: config::string("CART_URL", "http://127.0.0.1:8081"),
            payments_url: config::string("PAYMENTS_URL", "http://127.0.0.1:8083"),
            orders_internal_token: tokens.orders_internal,
            payments_internal_token: tokens.payments_internal,
            admin_token: tokens.admin,
            upstream_timeout: config::millis("UPSTREAM_TIMEOUT_MS", Duration::from_secs(5))?,
            payment_timeout: config::secs("PAYMENT_TIMEOUT_SECS", Duration::from_secs(15 * 60))?,
            reservation_hold: config::secs("RESERVATION_HOLD_SECS", Duration::from_secs(5 * 60))?,
            max_awaiting_per_customer: config::parse("MAX_AWAITING_ORDERS_PER_CUSTOMER", 3)?,
            payments_rate_limit: config::parse("PAYMENTS_RATE_LIMIT", 0)?,
            payments_rate_limit_per_worker: config::parse("PAYMENTS_RATE_LIMIT_PER_WORKER", 0)?,
            worker: common::queue::WorkerConfig::from_env("orders", Duration::from_secs(15))?,
            job_max_attempts: config::parse("JOB_MAX_ATTEMPTS", 8)?,
            sweep_interval: config::secs("SWEEP_INTERVAL_SECS", Duration::from_secs(30))?,
            stuck_after: config::secs("STUCK_AFTER_SECS", Duration::from_secs(120))?,
            idempotency_ttl: config::secs("IDEMPOTENCY_TTL_SECS", Duration::from_secs(24 * 3600))?,
            max_body_bytes: config::parse("MAX_BODY_BYTES", 16 * 1024)?,
            event_stream_max_age: config::secs("EVENT_STREAM_MAX_SECS", Duration::from_secs(300))?,
            event_stream_max: config::parse("EVENT_STREAM_MAX", 1000)?,
        };
        if settings.job_max_attempts < 1 {
            return Err(ConfigError::new("JOB_MAX_ATTEMPTS", "must be at least 1"));
        }
        if settings.event_stream_max_age.is_zero() {
            return Err(ConfigError::new(
                "EVENT_STREAM_MAX_SECS",
                "must be at least 1",
            ));
        }
        if settings.event_stream_max == 0 {
            return Err(ConfigError::new("EVENT_STREAM_MAX", "must be at least 1"));
        }
        for (name, url) in [
            ("CART_URL", &settings.cart_url),
            ("PAYMENTS_URL", &settings.payments_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::new(
                    name,
                    format!("{url:?} is not an http(s) URL"),
                ));
            }
        }
        Ok(settings)
    }
}
