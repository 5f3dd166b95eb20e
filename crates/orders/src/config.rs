//! The orders service's settings, read once from the environment at start-up.

use std::{net::SocketAddr, time::Duration};

use common::{ConfigError, Secret, config};

/// Everything the orders service can be configured with.
#[derive(Debug, Clone)]
pub struct Settings {
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
    /// `INTERNAL_TOKEN`: bearer for service-to-service calls, both ways.
    pub internal_token: Secret,
    /// `ADMIN_TOKEN`: bearer for `/admin`.
    pub admin_token: Secret,
    /// `UPSTREAM_TIMEOUT_MS`: bound on one call to cart or payments.
    pub upstream_timeout: Duration,
    /// `PAYMENT_TIMEOUT_SECS`: an order still unpaid this long after its payment was created
    /// is cancelled and its stock released.
    pub payment_timeout: Duration,
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
}

impl Settings {
    /// Reads the settings; an unparsable value names its variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        let settings = Self {
            listen_addr: config::parse("LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 8082)))?,
            db: common::db::Settings::from_env(20)?,
            redis_url: config::string("REDIS_URL", "redis://127.0.0.1:6379"),
            cart_url: config::string("CART_URL", "http://127.0.0.1:8081"),
            payments_url: config::string("PAYMENTS_URL", "http://127.0.0.1:8083"),
            internal_token: Secret::new(config::string("INTERNAL_TOKEN", "dev-internal-token")),
            admin_token: Secret::new(config::string("ADMIN_TOKEN", "dev-admin-token")),
            upstream_timeout: config::millis("UPSTREAM_TIMEOUT_MS", Duration::from_secs(5))?,
            payment_timeout: config::secs("PAYMENT_TIMEOUT_SECS", Duration::from_secs(15 * 60))?,
            payments_rate_limit: config::parse("PAYMENTS_RATE_LIMIT", 0)?,
            payments_rate_limit_per_worker: config::parse("PAYMENTS_RATE_LIMIT_PER_WORKER", 0)?,
            worker: common::queue::WorkerConfig::from_env("orders", Duration::from_secs(15))?,
            job_max_attempts: config::parse("JOB_MAX_ATTEMPTS", 8)?,
            sweep_interval: config::secs("SWEEP_INTERVAL_SECS", Duration::from_secs(30))?,
            stuck_after: config::secs("STUCK_AFTER_SECS", Duration::from_secs(120))?,
            idempotency_ttl: config::secs("IDEMPOTENCY_TTL_SECS", Duration::from_secs(24 * 3600))?,
            max_body_bytes: config::parse("MAX_BODY_BYTES", 16 * 1024)?,
        };
        if settings.job_max_attempts < 1 {
            return Err(ConfigError::new("JOB_MAX_ATTEMPTS", "must be at least 1"));
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
