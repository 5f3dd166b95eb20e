//! The payments service's settings, read once from the environment at start-up. A value
//! that does not parse stops start-up with a message naming its variable; outside
//! `APP_ENV=development` so does a missing, empty, short or public secret, and a Stripe origin
//! that is not `https://` (a simulator on this machine excepted).

use std::{net::SocketAddr, time::Duration};

use common::{
    ConfigError, Secret,
    config::{self, Profile, ServiceTokens},
};

/// Everything the payments service can be configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `APP_ENV`: how strict start-up is about secrets.
    pub profile: Profile,
    /// `LISTEN_ADDR`: where the HTTP API binds.
    pub listen_addr: SocketAddr,
    /// `DATABASE_URL`, `DB_MAX_CONNECTIONS`, `MIGRATE_ON_START`.
    pub db: common::db::Settings,
    /// `STRIPE_API_BASE`: Stripe's origin (stripe-sim locally); no path; `https://` outside
    /// development unless the host is this machine.
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
    /// `PAYMENTS_INTERNAL_TOKEN`: the bearer payments' internal API accepts (orders sends it).
    pub payments_internal_token: Secret,
    /// `ORDERS_INTERNAL_TOKEN`: the bearer sent to orders' internal API.
    pub orders_internal_token: Secret,
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
    /// Reads the settings under the profile `APP_ENV` names (unset: production); an unusable
    /// value names its variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_env_with(Profile::from_env()?)
    }

    /// Reads the settings under `profile`, whatever `APP_ENV` says: the tests run in
    /// development without touching the process environment.
    pub fn from_env_with(profile: Profile) -> Result<Self, ConfigError> {
        let env = config::process_env;
        let tokens = ServiceTokens::read(&env, profile)?;
        let (stripe_secret_key, stripe_webhook_secrets) = stripe_secrets(&env, profile)?;
        let settings = Self {
            profile,
            listen_addr: config::parse("LISTEN_ADDR", SocketAddr::from(([127, 0, 0, 1], 8083)))?,
            db: common::db::Settings::from_env(20)?,
            stripe_api_base: config::string("STRIPE_API_BASE", "http://127.0.0.1:12111"),
            stripe_secret_key,
            stripe_webhook_secrets,
            stripe_timeout: config::millis("STRIPE_TIMEOUT_MS", Duration::from_secs(10))?,
            webhook_tolerance: config::secs("WEBHOOK_TOLERANCE_SECS", Duration::from_secs(300))?,
            webhook_batch_max: config::parse("WEBHOOK_BATCH_MAX", 128)?,
            webhook_writers: config::parse("WEBHOOK_WRITERS", 4)?,
            orders_url: config::string("ORDERS_URL", "http://127.0.0.1:8082"),
            orders_timeout: config::millis("ORDERS_TIMEOUT_MS", Duration::from_secs(5))?,
            payments_internal_token: tokens.payments_internal,
            orders_internal_token: tokens.orders_internal,
            admin_token: tokens.admin,
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
        stripe_base_allowed(self.profile, &self.stripe_api_base)?;
        if !(self.orders_url.starts_with("http://") || self.orders_url.starts_with("https://")) {
            return Err(ConfigError::new(
                "ORDERS_URL",
                format!("{:?} is not an http(s) URL", self.orders_url),
            ));
        }
        Ok(())
    }
}

/// `STRIPE_SECRET_KEY` and `STRIPE_WEBHOOK_SECRETS` from `lookup`. The webhook secrets prove
/// an event comes from Stripe, so even an empty list (`" , "`) fails start-up: there is no
/// default to fall back on outside development.
fn stripe_secrets(
    lookup: &dyn Fn(&str) -> Option<String>,
    profile: Profile,
) -> Result<(Secret, Vec<Secret>), ConfigError> {
    let key = config::secret_from(lookup, "STRIPE_SECRET_KEY", profile, "sk_test_local")?;
    let webhook =
        config::secrets_from(lookup, "STRIPE_WEBHOOK_SECRETS", profile, "whsec_sim_local")?;
    if webhook.is_empty() {
        return Err(ConfigError::new(
            "STRIPE_WEBHOOK_SECRETS",
            "at least one secret is needed",
        ));
    }
    Ok((key, webhook))
}

/// Outside development the Stripe origin must be `https://`: the secret key travels in every
/// request's header. Plain `http://` stays allowed to this machine's loopback addresses,
/// where a simulator or stripe-mock listens and nothing crosses a network.
fn stripe_base_allowed(profile: Profile, base: &str) -> Result<(), ConfigError> {
    if profile.is_development() || base.starts_with("https://") {
        return Ok(());
    }
    let authority = base
        .strip_prefix("http://")
        .unwrap_or_default()
        .trim_end_matches('/');
    // The port follows the last colon, except inside an IPv6 literal's brackets.
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') && !host.is_empty() => host,
        _ => authority,
    };
    if config::is_loopback_host(host) {
        Ok(())
    } else {
        Err(ConfigError::new(
            "STRIPE_API_BASE",
            format!(
                "{base:?} must be https:// (plain http:// only to this machine: localhost, \
                 127.0.0.0/8, ::1)"
            ),
        ))
    }
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
    fn the_stripe_base_must_be_an_origin() {
        assert!(is_origin("http://127.0.0.1:12111"));
        assert!(is_origin("https://api.stripe.com/"));
        for bad in ["127.0.0.1:12111", "http://host/v1", "http://", "ftp://host"] {
            assert!(!is_origin(bad), "{bad}");
        }
    }

    #[test]
    fn outside_development_the_stripe_base_is_https_or_this_machine() {
        for ok in [
            "https://api.stripe.com",
            "http://127.0.0.1:12111",
            "http://localhost:12111/",
            "http://127.1.2.3",
            "http://[::1]:12111",
            "http://localhost",
        ] {
            assert!(stripe_base_allowed(Profile::Production, ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://api.stripe.com",
            "http://10.0.0.5:12111",
            "http://localhost.attacker.example",
            "http://[::2]:80",
        ] {
            let e = stripe_base_allowed(Profile::Production, bad).unwrap_err();
            assert_eq!(e.name, "STRIPE_API_BASE", "{bad}");
        }
        assert!(stripe_base_allowed(Profile::Development, "http://stripe-sim:12111").is_ok());
    }

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn outside_development_stripe_secrets_must_be_set_and_private() {
        let good_key = ("STRIPE_SECRET_KEY", "sk_live_0123456789abcdef");
        let good_hooks = ("STRIPE_WEBHOOK_SECRETS", "whsec_0123456789abcdef");
        for (name, values) in [
            (
                "STRIPE_SECRET_KEY",
                &["", "  ", "sk_test_local", "sk_short"][..],
            ),
            (
                "STRIPE_WEBHOOK_SECRETS",
                &[
                    "",
                    " , ",
                    "whsec_sim_local",
                    "whsec_0123456789abcdef,whsec_sim_local",
                ][..],
            ),
        ] {
            let other = if name == good_key.0 {
                good_hooks
            } else {
                good_key
            };
            let unset = stripe_secrets(&env(&[other]), Profile::Production);
            assert_eq!(unset.unwrap_err().name, name);
            for value in values {
                let refused = stripe_secrets(&env(&[other, (name, value)]), Profile::Production);
                assert_eq!(refused.unwrap_err().name, name, "{name}={value:?}");
            }
        }
        let (key, hooks) = stripe_secrets(&env(&[good_key, good_hooks]), Profile::Production)
            .expect("private secrets are accepted");
        assert_eq!((key.expose(), hooks.len()), (good_key.1, 1));
    }

    #[test]
    fn development_uses_the_simulator_secrets_but_not_an_empty_list() {
        let (key, hooks) = stripe_secrets(&env(&[]), Profile::Development).unwrap();
        assert_eq!(
            (key.expose(), hooks[0].expose()),
            ("sk_test_local", "whsec_sim_local")
        );
        let empty = stripe_secrets(
            &env(&[("STRIPE_WEBHOOK_SECRETS", "")]),
            Profile::Development,
        );
        assert_eq!(empty.unwrap_err().name, "STRIPE_WEBHOOK_SECRETS");
    }
}
