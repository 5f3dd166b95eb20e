//! The cart service's settings, read once from the environment at start-up. Cart holds no
//! secret (a cart id is its own access token), but it reads `APP_ENV` like every service so
//! that a development run says so in its log.

use std::{net::SocketAddr, time::Duration};

use common::{
    ConfigError,
    config::{self, Profile},
};

/// Everything the cart service can be configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `APP_ENV`: development or production.
    pub profile: Profile,
    /// `LISTEN_ADDR`: where the HTTP server binds.
    pub listen_addr: SocketAddr,
    /// `DATABASE_URL`, `DB_MAX_CONNECTIONS`, `MIGRATE_ON_START`.
    pub db: common::db::Settings,
    /// `REDIS_URL`: Redis holding the carts; `redis+cluster://` for a Redis Cluster.
    pub redis_url: String,
    /// `REDIS_TIMEOUT_MS`: bound on every Redis call; past it the request answers 503.
    pub redis_timeout: Duration,
    /// `CART_KEY_PREFIX`: prefix of every cart key (lets tests and tenants share a Redis).
    pub key_prefix: String,
    /// `CART_TTL_SECS`: how long an untouched cart lives; every write restarts it.
    pub cart_ttl: Duration,
    /// `CATALOG_CACHE_TTL_MS`: how long a product read from Postgres is served from memory.
    pub catalog_cache_ttl: Duration,
    /// `CATALOG_CACHE_CAPACITY`: products kept in memory at most.
    pub catalog_cache_capacity: u64,
    /// `CART_MAX_LINES`: distinct products in one cart at most.
    pub max_lines: u32,
    /// `MAX_BODY_BYTES`: request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
}

impl Settings {
    /// Reads the settings under the profile `APP_ENV` names (unset: production); an
    /// unparsable value names its variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with(Profile::from_env()?)
    }

    /// Reads the settings under `profile`, whatever `APP_ENV` says.
    pub fn from_env_with(profile: Profile) -> Result<Self, ConfigError> {
        Self {
            profile,
            listen_addr: config::parse("LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 8081)))?,
            db: common::db::Settings::from_env(10)?,
            redis_url: config::string("REDIS_URL", "redis://127.0.0.1:6379"),
            redis_timeout: config::millis("REDIS_TIMEOUT_MS", Duration::from_millis(500))?,
            key_prefix: config::string("CART_KEY_PREFIX", "cart:"),
            cart_ttl: config::secs("CART_TTL_SECS", Duration::from_secs(7 * 24 * 3600))?,
            catalog_cache_ttl: config::millis("CATALOG_CACHE_TTL_MS", Duration::from_secs(30))?,
            catalog_cache_capacity: config::parse("CATALOG_CACHE_CAPACITY", 100_000)?,
            max_lines: config::parse("CART_MAX_LINES", 100)?,
            max_body_bytes: config::parse("MAX_BODY_BYTES", 16 * 1024)?,
        }
        .checked()
    }

    fn checked(self) -> Result<Self, ConfigError> {
        if self.cart_ttl.is_zero() {
            return Err(ConfigError::new("CART_TTL_SECS", "must be at least 1"));
        }
        if self.redis_timeout.is_zero() {
            return Err(ConfigError::new("REDIS_TIMEOUT_MS", "must be at least 1"));
        }
        if self.max_lines == 0 {
            return Err(ConfigError::new("CART_MAX_LINES", "must be at least 1"));
        }
        Ok(self)
    }
}
