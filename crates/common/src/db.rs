//! The Postgres pool and the schema migrations. Migrations are embedded in every binary and
//! applied at start-up; sqlx's migrator holds a Postgres advisory lock while it runs, so
//! several services or replicas starting at once apply each migration exactly once.

use std::time::Duration;

use sqlx::{
    PgPool,
    migrate::{MigrateError, Migrator},
    postgres::PgPoolOptions,
};

/// Every migration of the platform, one schema per service.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations");

/// Opens a pool of at most `max_connections`; fails when Postgres does not answer.
pub async fn connect(url: &str, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url)
        .await
}

/// Where a service's database is and how it uses it.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `DATABASE_URL`.
    pub url: String,
    /// `DB_MAX_CONNECTIONS`: pool size.
    pub max_connections: u32,
    /// `MIGRATE_ON_START`: apply pending migrations at start-up.
    pub migrate_on_start: bool,
}

impl Settings {
    /// Reads the variables; the pool holds `max_connections` unless `DB_MAX_CONNECTIONS`
    /// says otherwise.
    pub fn from_env(max_connections: u32) -> Result<Self, crate::ConfigError> {
        Ok(Self {
            url: crate::config::string(
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/checkout",
            ),
            max_connections: crate::config::parse("DB_MAX_CONNECTIONS", max_connections)?,
            migrate_on_start: crate::config::flag("MIGRATE_ON_START", true)?,
        })
    }

    /// Connects, then applies pending migrations when `migrate_on_start`; an error names
    /// the (redacted) URL or the migration step.
    pub async fn open(&self) -> anyhow::Result<PgPool> {
        use anyhow::Context as _;
        let pool = connect(&self.url, self.max_connections)
            .await
            .with_context(|| format!("connecting to DATABASE_URL {}", redact_url(&self.url)))?;
        if self.migrate_on_start {
            migrate(&pool).await.context("applying migrations")?;
        }
        Ok(pool)
    }
}

/// Applies pending migrations under the migrator's advisory lock.
pub async fn migrate(pool: &PgPool) -> Result<(), MigrateError> {
    MIGRATOR.run(pool).await
}

/// `url` with any password replaced, for log lines and error messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(
            super::redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
