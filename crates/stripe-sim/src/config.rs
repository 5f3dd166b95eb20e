//! Start-up settings of the simulator, read once from the environment.
//!
//! Everything has a local default so `cargo run -p stripe-sim` just works; a value that does
//! not parse stops start-up with an error naming the variable.

use std::net::SocketAddr;
use std::time::Duration;

/// Default address the simulator listens on.
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:12111";
/// Default secret used to sign webhook payloads.
pub const DEFAULT_WEBHOOK_SECRET: &str = "whsec_sim_local";

/// Simulator settings.
#[derive(Clone)]
pub struct Config {
    /// Address the HTTP server binds (`LISTEN_ADDR`).
    pub listen_addr: SocketAddr,
    /// Where events are delivered (`SIM_WEBHOOK_URLS`, comma separated, may be empty).
    pub webhook_urls: Vec<String>,
    /// Secret used for `Stripe-Signature` (`SIM_WEBHOOK_SECRET`).
    pub webhook_secret: String,
    /// Attempts per delivery before giving up (`SIM_WEBHOOK_MAX_ATTEMPTS`).
    pub webhook_max_attempts: u32,
    /// First retry delay; doubles on each further attempt (`SIM_WEBHOOK_RETRY_BASE_MS`).
    pub webhook_retry_base: Duration,
    /// Upper bound for one retry delay (`SIM_WEBHOOK_RETRY_MAX_MS`).
    pub webhook_retry_max: Duration,
    /// Per-attempt timeout of a webhook POST (`SIM_WEBHOOK_TIMEOUT_MS`).
    pub webhook_timeout: Duration,
    /// First attempts in flight at once per endpoint (`SIM_WEBHOOK_CONCURRENCY`): 1 delivers
    /// strictly in the order events happened; more, as Stripe does, lets them overtake.
    pub webhook_concurrency: usize,
    /// The event types delivered, as a Stripe endpoint's `enabled_events`
    /// (`SIM_WEBHOOK_EVENTS`, comma separated); `None` (unset or `*`) delivers every type.
    pub webhook_events: Option<Vec<String>>,
    /// When set, the only secret key accepted; otherwise any `sk_test_…` key is (`SIM_API_KEY`).
    pub api_key: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("webhook_urls", &self.webhook_urls)
            .field("webhook_secret", &"<redacted>")
            .field("webhook_max_attempts", &self.webhook_max_attempts)
            .field("webhook_retry_base", &self.webhook_retry_base)
            .field("webhook_retry_max", &self.webhook_retry_max)
            .field("webhook_timeout", &self.webhook_timeout)
            .field("webhook_concurrency", &self.webhook_concurrency)
            .field("webhook_events", &self.webhook_events)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen_addr: DEFAULT_LISTEN_ADDR.parse().expect("default address parses"),
            webhook_urls: Vec::new(),
            webhook_secret: DEFAULT_WEBHOOK_SECRET.to_owned(),
            webhook_max_attempts: 5,
            webhook_retry_base: Duration::from_millis(100),
            webhook_retry_max: Duration::from_secs(10),
            webhook_timeout: Duration::from_secs(10),
            webhook_concurrency: 1,
            webhook_events: None,
            api_key: None,
        }
    }
}

/// A variable that is set but unusable.
#[derive(Debug, thiserror::Error)]
#[error("invalid {var}: {reason}")]
pub struct ConfigError {
    /// Name of the offending environment variable.
    pub var: &'static str,
    /// What is wrong with its value.
    pub reason: String,
}

impl Config {
    /// Reads the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`, which maps a variable name to its value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = Self::default();
        let get = |var: &'static str| lookup(var).filter(|v| !v.trim().is_empty());

        let listen_addr = match get("LISTEN_ADDR") {
            Some(raw) => raw.trim().parse().map_err(|e| ConfigError {
                var: "LISTEN_ADDR",
                reason: format!("{raw:?} is not a socket address ({e})"),
            })?,
            None => defaults.listen_addr,
        };
        let webhook_urls = match get("SIM_WEBHOOK_URLS") {
            Some(raw) => parse_urls(&raw)?,
            None => Vec::new(),
        };
        let webhook_secret = get("SIM_WEBHOOK_SECRET").unwrap_or(defaults.webhook_secret);
        let positive = |var: &'static str, default: u32| -> Result<u32, ConfigError> {
            match get(var) {
                Some(raw) => match raw.trim().parse::<u32>() {
                    Ok(n) if n >= 1 => Ok(n),
                    _ => Err(ConfigError {
                        var,
                        reason: format!("{raw:?} is not a positive integer"),
                    }),
                },
                None => Ok(default),
            }
        };
        let webhook_max_attempts =
            positive("SIM_WEBHOOK_MAX_ATTEMPTS", defaults.webhook_max_attempts)?;
        let webhook_concurrency = positive(
            "SIM_WEBHOOK_CONCURRENCY",
            defaults.webhook_concurrency as u32,
        )? as usize;
        let millis = |var: &'static str, default: Duration| -> Result<Duration, ConfigError> {
            match get(var) {
                Some(raw) => raw
                    .trim()
                    .parse::<u64>()
                    .map(Duration::from_millis)
                    .map_err(|_| ConfigError {
                        var,
                        reason: format!("{raw:?} is not a number of milliseconds"),
                    }),
                None => Ok(default),
            }
        };
        Ok(Self {
            listen_addr,
            webhook_urls,
            webhook_secret,
            webhook_max_attempts,
            webhook_retry_base: millis("SIM_WEBHOOK_RETRY_BASE_MS", defaults.webhook_retry_base)?,
            webhook_retry_max: millis("SIM_WEBHOOK_RETRY_MAX_MS", defaults.webhook_retry_max)?,
            webhook_timeout: millis("SIM_WEBHOOK_TIMEOUT_MS", defaults.webhook_timeout)?,
            webhook_concurrency,
            webhook_events: match get("SIM_WEBHOOK_EVENTS") {
                Some(raw) if raw.trim() != "*" => Some(
                    raw.split(',')
                        .map(str::trim)
                        .filter(|kind| !kind.is_empty())
                        .map(str::to_owned)
                        .collect(),
                ),
                _ => None,
            },
            api_key: get("SIM_API_KEY"),
        })
    }
}

fn parse_urls(raw: &str) -> Result<Vec<String>, ConfigError> {
    raw.split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| {
            if url.starts_with("http://") || url.starts_with("https://") {
                Ok(url.to_owned())
            } else {
                Err(ConfigError {
                    var: "SIM_WEBHOOK_URLS",
                    reason: format!("{url:?} is not an http(s) URL"),
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let config = with(&[]).unwrap();
        assert_eq!(config.listen_addr.to_string(), DEFAULT_LISTEN_ADDR);
        assert!(config.webhook_urls.is_empty());
        assert_eq!(config.webhook_secret, DEFAULT_WEBHOOK_SECRET);
    }

    #[test]
    fn webhook_urls_are_split_on_commas() {
        let config = with(&[("SIM_WEBHOOK_URLS", "http://a/hook, https://b/hook ,")]).unwrap();
        assert_eq!(config.webhook_urls, ["http://a/hook", "https://b/hook"]);
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = with(&[("LISTEN_ADDR", "nowhere")]).unwrap_err();
        assert_eq!(err.var, "LISTEN_ADDR");
        let err = with(&[("SIM_WEBHOOK_URLS", "ftp://x")]).unwrap_err();
        assert_eq!(err.var, "SIM_WEBHOOK_URLS");
        let err = with(&[("SIM_WEBHOOK_MAX_ATTEMPTS", "0")]).unwrap_err();
        assert_eq!(err.var, "SIM_WEBHOOK_MAX_ATTEMPTS");
        let err = with(&[("SIM_WEBHOOK_RETRY_BASE_MS", "fast")]).unwrap_err();
        assert!(err.to_string().contains("SIM_WEBHOOK_RETRY_BASE_MS"));
    }
}
