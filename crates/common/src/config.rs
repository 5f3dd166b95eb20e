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
    secret_from(&process_env, name, profile, development_value)
}

/// A comma-separated list of secrets (a rotation: old and new accepted together), each under
/// the rules of [`secret`].
pub fn secrets(
    name: &str,
    profile: Profile,
    development_value: &str,
) -> Result<Vec<Secret>, ConfigError> {
    secrets_from(&process_env, name, profile, development_value)
}

/// [`secret`], reading the variable from `lookup` instead of the process environment, so the
/// rules can be exercised (and settings assembled) without mutating the environment, which
/// other threads may be reading.
pub fn secret_from(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &str,
    profile: Profile,
    development_value: &str,
) -> Result<Secret, ConfigError> {
    let raw = lookup(name);
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

/// [`secrets`], reading the variable from `lookup` instead of the process environment.
pub fn secrets_from(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &str,
    profile: Profile,
    development_value: &str,
) -> Result<Vec<Secret>, ConfigError> {
    let joined = secret_from(lookup, name, profile, development_value)?;
    joined
        .expose()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| check_secret(name, profile, s).map(Secret::new))
        .collect()
}

/// The process environment as a lookup for [`secret_from`] and [`secrets_from`]: the raw
/// value, blanks included, so an empty variable is told apart from an unset one.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Whether `host` (a URL's host, IPv6 with or without brackets) names this machine:
/// `localhost`, 127.0.0.0/8 or ::1. Plain `http://` to such a host never leaves it.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The bearer tokens orders and payments share, one per direction, and the admin token. Each
/// direction has its own token so that one leaked service credential does not open the other
/// service's internal API.
#[derive(Debug, Clone)]
pub struct ServiceTokens {
    /// `PAYMENTS_INTERNAL_TOKEN`: what payments' internal API accepts; orders sends it.
    pub payments_internal: Secret,
    /// `ORDERS_INTERNAL_TOKEN`: what orders' internal API accepts; payments sends it.
    pub orders_internal: Secret,
    /// `ADMIN_TOKEN`: what `/admin` accepts.
    pub admin: Secret,
}

impl ServiceTokens {
    /// Reads the three tokens under `profile`'s rules. Outside development they must also
    /// differ from one another, and the retired `INTERNAL_TOKEN` must be unset, so that an
    /// operator never believes a variable is protecting something when it is not.
    pub fn read(
        lookup: &dyn Fn(&str) -> Option<String>,
        profile: Profile,
    ) -> Result<Self, ConfigError> {
        let tokens = Self {
            payments_internal: token_list(
                lookup,
                "PAYMENTS_INTERNAL_TOKEN",
                profile,
                "dev-payments-token",
            )?,
            orders_internal: token_list(
                lookup,
                "ORDERS_INTERNAL_TOKEN",
                profile,
                "dev-orders-token",
            )?,
            admin: token_list(lookup, "ADMIN_TOKEN", profile, "dev-admin-token")?,
        };
        if profile == Profile::Production {
            if lookup("INTERNAL_TOKEN").is_some() {
                return Err(ConfigError::new(
                    "INTERNAL_TOKEN",
                    "is no longer read: set PAYMENTS_INTERNAL_TOKEN (orders to payments) and \
                     ORDERS_INTERNAL_TOKEN (payments to orders), then unset it",
                ));
            }
            // Two variables that share any token are one credential.
            let same = |a: &Secret, b: &Secret| {
                let (a, b) = (a.expose(), b.expose());
                a.split(',')
                    .any(|t| b.split(',').any(|u| t.trim() == u.trim()))
            };
            if same(&tokens.orders_internal, &tokens.payments_internal) {
                return Err(ConfigError::new(
                    "ORDERS_INTERNAL_TOKEN",
                    "must differ from PAYMENTS_INTERNAL_TOKEN (one token per direction)",
                ));
            }
            if same(&tokens.admin, &tokens.payments_internal)
                || same(&tokens.admin, &tokens.orders_internal)
            {
                return Err(ConfigError::new(
                    "ADMIN_TOKEN",
                    "must differ from the internal tokens",
                ));
            }
        }
        Ok(tokens)
    }
}

/// A bearer token setting that may list several tokens, comma-separated (the new and the old
/// during a rotation: the receiving side accepts each, a sender sends the first), each under
/// the rules of [`secret`]. Answered as one secret holding the list.
pub fn token_list(
    lookup: &dyn Fn(&str) -> Option<String>,
    name: &str,
    profile: Profile,
    development_value: &str,
) -> Result<Secret, ConfigError> {
    let tokens = secrets_from(lookup, name, profile, development_value)?;
    let joined: Vec<&str> = tokens.iter().map(Secret::expose).collect();
    Ok(Secret::new(joined.join(",")))
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

#[cfg(test)]
mod secret_tests {
    use std::collections::HashMap;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const GOOD: &[(&str, &str)] = &[
        ("PAYMENTS_INTERNAL_TOKEN", "payments-token-0123456789"),
        ("ORDERS_INTERNAL_TOKEN", "orders-token-0123456789"),
        ("ADMIN_TOKEN", "admin-token-0123456789"),
    ];

    /// The good tokens with `name` set to `value` (or unset).
    fn with(name: &str, value: Option<&str>) -> Vec<(String, String)> {
        GOOD.iter()
            .filter(|(k, _)| *k != name)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .chain(value.map(|v| (name.to_owned(), v.to_owned())))
            .collect()
    }

    fn read(pairs: &[(String, String)], profile: Profile) -> Result<ServiceTokens, ConfigError> {
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        ServiceTokens::read(&env(&pairs), profile)
    }

    #[test]
    fn production_refuses_every_token_unset_empty_short_or_public() {
        for name in [
            "PAYMENTS_INTERNAL_TOKEN",
            "ORDERS_INTERNAL_TOKEN",
            "ADMIN_TOKEN",
        ] {
            for value in [
                None,
                Some(""),
                Some("  "),
                Some("short"),
                Some("dev-payments-token"),
                Some("dev-orders-token"),
                Some("dev-admin-token"),
                Some("dev-internal-token"),
            ] {
                let e = read(&with(name, value), Profile::Production).unwrap_err();
                assert_eq!(e.name, name, "{name}={value:?}: {e}");
            }
        }
        let tokens = read(&with("", None), Profile::Production).unwrap();
        assert_eq!(tokens.admin.expose(), "admin-token-0123456789");
    }

    #[test]
    fn development_fills_in_public_values_but_still_refuses_empty_ones() {
        let tokens = ServiceTokens::read(&env(&[]), Profile::Development).unwrap();
        assert_eq!(tokens.payments_internal.expose(), "dev-payments-token");
        assert_eq!(tokens.orders_internal.expose(), "dev-orders-token");
        assert_eq!(tokens.admin.expose(), "dev-admin-token");
        let e =
            ServiceTokens::read(&env(&[("ADMIN_TOKEN", "")]), Profile::Development).unwrap_err();
        assert_eq!(e.name, "ADMIN_TOKEN");
    }

    #[test]
    fn production_wants_one_token_per_direction_and_no_retired_variable() {
        let mut same = with("ORDERS_INTERNAL_TOKEN", Some("payments-token-0123456789"));
        let e = read(&same, Profile::Production).unwrap_err();
        assert_eq!(e.name, "ORDERS_INTERNAL_TOKEN");
        same = with("ADMIN_TOKEN", Some("orders-token-0123456789"));
        assert_eq!(
            read(&same, Profile::Production).unwrap_err().name,
            "ADMIN_TOKEN"
        );
        let mut retired = with("", None);
        retired.push((
            "INTERNAL_TOKEN".to_owned(),
            "an-old-shared-token-0123".to_owned(),
        ));
        assert_eq!(
            read(&retired, Profile::Production).unwrap_err().name,
            "INTERNAL_TOKEN"
        );
    }

    #[test]
    fn a_list_of_secrets_refuses_a_public_member_and_an_empty_variable() {
        let lookup = env(&[(
            "STRIPE_WEBHOOK_SECRETS",
            "whsec_sim_local,whsec_0123456789abcdef",
        )]);
        let e =
            secrets_from(&lookup, "STRIPE_WEBHOOK_SECRETS", Profile::Production, "x").unwrap_err();
        assert_eq!(e.name, "STRIPE_WEBHOOK_SECRETS");
        let empty = env(&[("STRIPE_WEBHOOK_SECRETS", "")]);
        for profile in [Profile::Production, Profile::Development] {
            let e = secrets_from(&empty, "STRIPE_WEBHOOK_SECRETS", profile, "whsec_sim_local")
                .unwrap_err();
            assert_eq!(e.name, "STRIPE_WEBHOOK_SECRETS");
        }
        let two = env(&[("S", "whsec_0123456789abcdef, whsec_fedcba9876543210")]);
        assert_eq!(
            secrets_from(&two, "S", Profile::Production, "x")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn loopback_hosts_are_this_machine_only() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.9.8.7",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "api.stripe.com",
            "10.0.0.1",
            "localhost.example.com",
            "[::2]",
            "128.0.0.1",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
    }

    #[test]
    fn a_token_may_list_the_new_and_the_old_each_under_the_rules() {
        let rolling = with(
            "ORDERS_INTERNAL_TOKEN",
            Some("orders-token-new-0123456789, orders-token-0123456789"),
        );
        let tokens = read(&rolling, Profile::Production).unwrap();
        assert_eq!(
            crate::auth::outgoing(&tokens.orders_internal),
            "orders-token-new-0123456789"
        );
        let weak = with(
            "ORDERS_INTERNAL_TOKEN",
            Some("orders-token-new-0123456789,dev-orders-token"),
        );
        assert_eq!(
            read(&weak, Profile::Production).unwrap_err().name,
            "ORDERS_INTERNAL_TOKEN"
        );
        let shared = with(
            "ORDERS_INTERNAL_TOKEN",
            Some("orders-token-new-0123456789,payments-token-0123456789"),
        );
        assert!(
            read(&shared, Profile::Production).is_err(),
            "one token in both lists"
        );
    }
}
