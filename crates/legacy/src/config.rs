//! The monolith's settings, read once from the environment at start-up. It holds no secret;
//! it reads `APP_ENV` like every service so that a development run says so in its log.

use std::{net::SocketAddr, time::Duration};

use common::{
    ConfigError,
    config::{self, Profile},
};

use crate::faults::FaultSettings;

/// Everything the monolith can be configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `APP_ENV`: development or production.
    pub profile: Profile,
    /// `LISTEN_ADDR`: where the HTTP server binds.
    pub listen_addr: SocketAddr,
    /// `DATABASE_URL`, `DB_MAX_CONNECTIONS`, `MIGRATE_ON_START`.
    pub db: common::db::Settings,
    /// `MAX_BODY_BYTES`: request bodies larger than this are refused with 413.
    pub max_body_bytes: usize,
    /// `LEGACY_LATENCY_MS` and `LEGACY_ERROR_RATE`: the faults it starts with.
    pub faults: FaultSettings,
}

impl Settings {
    /// Reads the settings under the profile `APP_ENV` names (unset: production); an
    /// unparsable value names its variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with(Profile::from_env()?)
    }

    /// Reads the settings under `profile`, whatever `APP_ENV` says.
    pub fn from_env_with(profile: Profile) -> Result<Self, ConfigError> {
        let faults = FaultSettings {
            latency: config::millis("LEGACY_LATENCY_MS", Duration::ZERO)?,
            error_rate: config::parse("LEGACY_ERROR_RATE", 0.0)?,
        };
        faults
            .check()
            .map_err(|(field, reason)| ConfigError::new(env_name(field), reason))?;
        Ok(Self {
            profile,
            listen_addr: config::parse("LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 8084)))?,
            db: common::db::Settings::from_env(10)?,
            max_body_bytes: config::parse("MAX_BODY_BYTES", 16 * 1024)?,
            faults,
        })
    }
}

fn env_name(field: &str) -> &'static str {
    if field == "latency_ms" {
        "LEGACY_LATENCY_MS"
    } else {
        "LEGACY_ERROR_RATE"
    }
}
