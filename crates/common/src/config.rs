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
}
