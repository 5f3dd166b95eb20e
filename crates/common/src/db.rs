//! The Postgres pool and the schema migrations. Migrations are embedded in every binary and
//! applied at start-up; sqlx's migrator holds a Postgres advisory lock while it runs, so
//! several services or replicas starting at once apply each migration exactly once.

use std::time::Duration;

use sqlx::{
    PgPool, Postgres, Transaction,
    migrate::{MigrateError, Migrator},
    postgres::PgPoolOptions,
};
use tracing::Instrument as _;

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

/// Begins a transaction, and never leaves one open on a pooled connection when the caller
/// stops waiting: take every transaction here, not with `PgPool::begin`.
///
/// A `PgPool::begin` dropped while its `BEGIN` is on the way (a job's timeout, an aborted
/// worker task, an HTTP client gone mid-request) leaves the session inside a transaction that
/// sqlx (0.9.0) neither tracks nor rolls back: it counts the transaction only once it has read
/// the answer, and rolls back on drop only what it counted. The pool then hands that session
/// on, and whoever borrows it next writes into a transaction nobody commits: visible on that
/// session alone, lost or committed by whichever later transaction lands there. Here the begin
/// runs on a task of its own, so it always completes; a transaction nobody awaits any more is
/// dropped there, counted, and so rolled back before its connection is reused.
pub async fn begin(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let pool = pool.clone();
    match tokio::spawn(async move { pool.begin().await }.in_current_span()).await {
        Ok(begun) => begun,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only a runtime shutting down cancels the task.
        Err(e) => Err(sqlx::Error::Io(std::io::Error::other(e))),
    }
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
