//! Reading settings from the environment. Every service keeps its own `Settings` struct;
//! these helpers give them one behaviour: a local default when a variable is unset, and a
//! start-up error naming the variable when a value does not parse.

use std::{fmt, str::FromStr, time::Duration};

/// A setting that could not be read; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for {name}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub name: String,
    /// Why its value was refused.
    pub reason: String,
}

impl ConfigError {
    /// An error for `name` with a human-readable reason.
    pub fn new(name: &str, reason: impl fmt::Display) -> Self {
        Self {
            name: name.to_owned(),
            reason: reason.to_string(),
        }
    }
}

/// The variable's value, or `None` when it is unset or empty.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Parses `name` from the environment, falling back to `default` when unset.
pub fn parse<T>(name: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| ConfigError::new(name, format!("{raw:?}: {e}"))),
    }
}

/// A string setting with a default.
pub fn string(name: &str, default: &str) -> String {
    var(name).unwrap_or_else(|| default.to_owned())
}

/// A duration given in whole milliseconds (`FOO_MS=250`).
pub fn millis(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    parse(name, default.as_millis() as u64).map(Duration::from_millis)
}

/// A duration given in whole seconds (`FOO_SECS=30`).
pub fn secs(name: &str, default: Duration) -> Result<Duration, ConfigError> {
    parse(name, default.as_secs()).map(Duration::from_secs)
}

/// A boolean accepting `true/false/1/0/yes/no`.
pub fn flag(name: &str, default: bool) -> Result<bool, ConfigError> {
    match var(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) => match v.as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::new(name, format!("{v:?} is not a boolean"))),
        },
    }
}

/// `APP_ENV`: how strict start-up is about secrets. Only an explicit `development` relaxes
/// it; unset means production, so a binary deployed with its defaults refuses to start
/// instead of running with values that are public in this repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `APP_ENV=development`: unset secrets take their local development values.
    Development,
    /// Anything deployed: every secret must be set, and not to a development value.
    Production,
}

impl Profile {
    /// Reads `APP_ENV` (`development`, `production` or unset).
    pub fn from_env() -> Result<Self, ConfigError> {
        match var("APP_ENV").map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(Self::Production),
            Some(v) => match v.as_str() {
                "development" | "dev" => Ok(Self::Development),
                "production" | "prod" => Ok(Self::Production),
                _ => Err(ConfigError::new(
                    "APP_ENV",
                    format!("{v:?} is neither development nor production"),
                )),
            },
        }
    }

    /// Whether this is the development profile.
    pub fn is_development(self) -> bool {
        self == Self::Development
    }

    /// Logs, once per process start, that the development profile is on. Call it after
    /// telemetry is up.
    pub fn warn_if_development(self, service: &str) {
        if self.is_development() {
            tracing::warn!(
                service,
                "APP_ENV=development: unset secrets use public development values; never deploy this"
            );
        }
    }
}

/// Values this repository uses for local runs: public, so refused outside development.
pub const DEVELOPMENT_SECRETS: &[&str] = &[
    "dev-internal-token",
    "dev-admin-token",
    "dev-orders-token",
    "dev-payments-token",
    "whsec_sim_local",
    "sk_test_local",
];

/// The shortest secret accepted outside development.
pub const MIN_SECRET_LEN: usize = 16;

/// A secret setting. In development an unset variable takes `development_value`; outside it,
/// an unset variable, a short one or a known development value fails start-up naming `name`.
/// A variable set to nothing but blanks is refused in every profile: an explicit empty value
/// is a mistake, never a request for the default.
pub fn secret(
    name: &str,
    profile: Profile,
    development_value: &str,
) -> Result<Secret, ConfigError> {
    let raw = std::env::var(name).ok();
    if raw.as_deref().is_some_and(|v| v.trim().is_empty()) {
        return Err(ConfigError::new(name, "is set but empty"));
    }
    match (raw, profile) {
        (Some(value), profile) => check_secret(name, profile, value.trim()).map(Secret::new),
        (None, Profile::Development) => Ok(Secret::new(development_value)),
        (None, Profile::Production) => Err(ConfigError::new(
            name,
            "is required (set APP_ENV=development to run with local development values)",
        )),
    }
}

/// A comma-separated list of secrets (a rotation: old and new accepted together), each under
/// the rules of [`secret`].
pub fn secrets(
    name: &str,
    profile: Profile,
    development_value: &str,
) -> Result<Vec<Secret>, ConfigError> {
    let joined = secret(name, profile, development_value)?;
    joined
        .expose()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| check_secret(name, profile, s).map(Secret::new))
        .collect()
}

fn check_secret(name: &str, profile: Profile, value: &str) -> Result<String, ConfigError> {
    if profile == Profile::Production {
        if DEVELOPMENT_SECRETS.contains(&value) {
            return Err(ConfigError::new(
                name,
                "is a public development value; set a secret of your own",
            ));
        }
        if value.len() < MIN_SECRET_LEN {
            return Err(ConfigError::new(
                name,
                format!("is shorter than {MIN_SECRET_LEN} characters"),
            ));
        }
    }
    Ok(value.to_owned())
}

/// A secret value (token, password, key) that never appears in `Debug` output or logs.
#[derive(Clone, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        assert_eq!(format!("{:?}", Secret::new("hunter2")), "Secret(***)");
    }

    #[test]
    fn production_refuses_development_and_short_secrets() {
        for value in ["dev-admin-token", "whsec_sim_local", "short"] {
            let e = check_secret("ADMIN_TOKEN", Profile::Production, value).unwrap_err();
            assert_eq!(e.name, "ADMIN_TOKEN");
        }
        let own = "a-long-secret-of-our-own";
        assert_eq!(
            check_secret("ADMIN_TOKEN", Profile::Production, own).unwrap(),
            own
        );
        assert!(check_secret("ADMIN_TOKEN", Profile::Development, "dev-admin-token").is_ok());
    }
}
