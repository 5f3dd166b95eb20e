//! The payments service's settings, read once from the environment at start-up. A value
//! that does not parse stops start-up with a message naming its variable.

use std::{net::SocketAddr, time::Duration};

use common::{ConfigError, Secret, config};

/// Everything the payments service can be configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `LISTEN_ADDR`: where the HTTP API binds.
    pub listen_addr: SocketAddr,
    /// `DATABASE_URL`, `DB_MAX_CONNECTIONS`, `MIGRATE_ON_START`.
    pub db: common::db::Settings,
    /// `STRIPE_API_BASE`: Stripe's origin (stripe-sim locally); no path.
    pub stripe_api_base: String,
    /// `STRIPE_SECRET_KEY`: the API key.
    pub stripe_secret_key: Secret,
    /// `STRIPE_WEBHOOK_SECRETS`: comma-separated signing secrets; any of them verifies an
    /// event, so a secret can be rotated without dropping events.
    pub stripe_webhook_secrets: Vec<Secret>,
    /// `STRIPE_TIMEOUT_MS`: bound on one call to Stripe.
    pub stripe_timeout: Duration,
    /// `WEBHOOK_TOLERANCE_SECS`: how far a signature's timestamp may be from now.
    pub webhook_tolerance: Duration,
    /// `WEBHOOK_BATCH_MAX`: most webhook events written in one transaction.
    pub webhook_batch_max: usize,
    /// `WEBHOOK_WRITERS`: transactions writing webhook events at once.
    pub webhook_writers: usize,
    /// `ORDERS_URL`: the orders service, told about every settled payment.
    pub orders_url: String,
    /// `ORDERS_TIMEOUT_MS`: bound on one call to orders.
    pub orders_timeout: Duration,
    /// `INTERNAL_TOKEN`: bearer for service-to-service calls, both ways.
    pub internal_token: Secret,
    /// `ADMIN_TOKEN`: bearer for `/admin`.
    pub admin_token: Secret,
    /// The queue worker: `WORKER_CONCURRENCY`, `JOB_TIMEOUT_MS`, `JOB_BACKOFF_BASE_MS`,
    /// `JOB_BACKOFF_MAX_MS`, `JOB_POLL_MS`.
    pub worker: common::queue::WorkerConfig,
    /// `EVENT_MAX_ATTEMPTS`: attempts to apply one Stripe event before it is a dead letter.
    pub event_max_attempts: i32,
    /// `NOTIFY_MAX_ATTEMPTS`: attempts to tell orders about an outcome before giving up.
    pub notify_max_attempts: i32,
    /// `RECONCILE_INTERVAL_SECS`: how often unsettled payments are looked for.
    pub reconcile_interval: Duration,
    /// `RECONCILE_AFTER_SECS`: a payment unsettled this long is checked with Stripe.
    pub reconcile_after: Duration,
    /// `MAX_BODY_BYTES`: larger request bodies are refused with 413.
    pub max_body_bytes: usize,
}

impl Settings {
    /// Reads the settings; an unusable value names its variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        let settings = Self {
            listen_addr: config::parse("LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 8083)))?,
            db: common::db::Settings::from_env(20)?,
            stripe_api_base: config::string("STRIPE_API_BASE", "http://127.0.0.1:12111"),
            stripe_secret_key: Secret::new(config::string("STRIPE_SECRET_KEY", "sk_test_local")),
            stripe_webhook_secrets: secrets(&config::string(
                "STRIPE_WEBHOOK_SECRETS",
                "whsec_sim_local",
            )),
            stripe_timeout: config::millis("STRIPE_TIMEOUT_MS", Duration::from_secs(10))?,
            webhook_tolerance: config::secs("WEBHOOK_TOLERANCE_SECS", Duration::from_secs(300))?,
            webhook_batch_max: config::parse("WEBHOOK_BATCH_MAX", 128)?,
            webhook_writers: config::parse("WEBHOOK_WRITERS", 4)?,
            orders_url: config::string("ORDERS_URL", "http://127.0.0.1:8082"),
            orders_timeout: config::millis("ORDERS_TIMEOUT_MS", Duration::from_secs(5))?,
            internal_token: Secret::new(config::string("INTERNAL_TOKEN", "dev-internal-token")),
            admin_token: Secret::new(config::string("ADMIN_TOKEN", "dev-admin-token")),
            worker: common::queue::WorkerConfig::from_env("payments", Duration::from_secs(30))?,
            event_max_attempts: config::parse("EVENT_MAX_ATTEMPTS", 12)?,
            notify_max_attempts: config::parse("NOTIFY_MAX_ATTEMPTS", 25)?,
            reconcile_interval: config::secs("RECONCILE_INTERVAL_SECS", Duration::from_secs(60))?,
            reconcile_after: config::secs("RECONCILE_AFTER_SECS", Duration::from_secs(600))?,
            max_body_bytes: config::parse("MAX_BODY_BYTES", 256 * 1024)?,
        };
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let at_least_one = [
            ("WEBHOOK_BATCH_MAX", self.webhook_batch_max),
            ("WEBHOOK_WRITERS", self.webhook_writers),
        ];
        for (name, value) in at_least_one {
            if value == 0 {
                return Err(ConfigError::new(name, "must be at least 1"));
            }
        }
        for (name, value) in [
            ("EVENT_MAX_ATTEMPTS", self.event_max_attempts),
            ("NOTIFY_MAX_ATTEMPTS", self.notify_max_attempts),
        ] {
            if value < 1 {
                return Err(ConfigError::new(name, "must be at least 1"));
            }
        }
        if self.stripe_webhook_secrets.is_empty() {
            return Err(ConfigError::new(
                "STRIPE_WEBHOOK_SECRETS",
                "at least one secret is needed",
            ));
        }
        if !is_origin(&self.stripe_api_base) {
            return Err(ConfigError::new(
                "STRIPE_API_BASE",
                format!(
                    "{:?} is not an http(s) origin (scheme, host and port, no path)",
                    self.stripe_api_base
                ),
            ));
        }
        if !(self.orders_url.starts_with("http://") || self.orders_url.starts_with("https://")) {
            return Err(ConfigError::new(
                "ORDERS_URL",
                format!("{:?} is not an http(s) URL", self.orders_url),
            ));
        }
        Ok(())
    }
}

/// The comma-separated secrets of `raw`, blanks dropped.
fn secrets(raw: &str) -> Vec<Secret> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Secret::new)
        .collect()
}

/// Whether `url` is `http(s)://host[:port]` with at most a trailing `/`: async-stripe
/// appends `v1/...` to the base, so a path would be silently mangled.
fn is_origin(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return false;
    };
    let host = rest.strip_suffix('/').unwrap_or(rest);
    !host.is_empty() && !host.contains(['/', '?', '#', ' '])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_secrets_are_split_on_commas() {
        let parsed = secrets(" whsec_a, ,whsec_b ");
        let exposed: Vec<_> = parsed.iter().map(Secret::expose).collect();
        assert_eq!(exposed, ["whsec_a", "whsec_b"]);
    }

    #[test]
    fn the_stripe_base_must_be_an_origin() {
        assert!(is_origin("http://127.0.0.1:12111"));
        assert!(is_origin("https://api.stripe.com/"));
        for bad in ["127.0.0.1:12111", "http://host/v1", "http://", "ftp://host"] {
            assert!(!is_origin(bad), "{bad}");
        }
    }
}
