//! What every service binary does around its own work: the TLS crypto provider, telemetry,
//! the open-files limit, settings from the environment, the role it was started in, and the
//! exit code.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::ConfigError;

/// Installs the process's rustls crypto provider (ring) once; later calls do nothing. Every
/// TLS client (Postgres, Redis, Stripe) needs it before its first connection.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Raises the process's soft limit on open files to its hard limit, as nginx's
/// `worker_rlimit_nofile` does, and answers the limit in force. Every client connection,
/// and every connection to an upstream or a store, takes a descriptor: at the soft limit
/// many systems start services with (1,024), a proxy tops out near 500 concurrent clients
/// while the hard limit allows hundreds of times more.
#[cfg(unix)]
pub fn raise_open_files_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` only writes the `rlimit` it is given, which lives across the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `setrlimit` only reads the `rlimit` it is given, which lives across the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        limit = raised;
    }
    Ok(limit.rlim_cur)
}

/// Runs a service binary named `name`: settings from `from_env` (a bad value exits 2 with a
/// message naming its variable), then `run` until SIGTERM or ctrl-c cancels its token (an
/// error exits 1).
pub async fn main<S, F>(
    name: &'static str,
    from_env: impl FnOnce() -> Result<S, ConfigError>,
    run: impl FnOnce(S, CancellationToken) -> F,
) -> ExitCode
where
    F: Future<Output = anyhow::Result<()>>,
{
    install_crypto();
    let _telemetry = crate::telemetry::init(name);
    #[cfg(unix)]
    match raise_open_files_limit() {
        Ok(limit) => tracing::info!(limit, "open files"),
        Err(e) => tracing::warn!(error = %e, "the open-files limit could not be raised"),
    }
    let settings = match from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    match run(settings, crate::http::shutdown_on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What a process with an API and a queue worker runs: `serve`, `work`, or both (no
/// argument).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The HTTP API only.
    Serve,
    /// The worker, with health and metrics on the API's port.
    Work,
    /// Both in one process.
    All,
}

impl Role {
    /// Runs what this role runs until the futures end: `api` (the whole HTTP API) for
    /// `Serve`, `ops` (health and metrics only) beside `work` for `Work`, `api` beside `work`
    /// for `All`. Futures do nothing until polled, so the ones a role does not need are
    /// merely dropped.
    pub async fn run(
        self,
        api: impl Future<Output = anyhow::Result<()>>,
        ops: impl Future<Output = anyhow::Result<()>>,
        work: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let (served, ()) = match self {
            Self::Serve => return api.await,
            Self::Work => tokio::join!(ops, work),
            Self::All => tokio::join!(api, work),
        };
        served
    }

    /// The role named by the first command-line argument; `None` for anything else.
    pub fn from_args() -> Option<Self> {
        match std::env::args().nth(1).as_deref() {
            None => Some(Self::All),
            Some("serve") => Some(Self::Serve),
            Some("work") => Some(Self::Work),
            Some(_) => None,
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn open_files() -> libc::rlimit {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as in `raise_open_files_limit`.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) },
            0
        );
        limit
    }

    #[test]
    fn the_open_files_limit_is_raised_to_the_hard_limit() {
        let hard = open_files().rlim_max;
        // One below the hard limit: lower than it, without starving the tests running
        // alongside of descriptors.
        let lowered = libc::rlimit {
            rlim_cur: hard - 1,
            rlim_max: hard,
        };
        // SAFETY: as in `raise_open_files_limit`.
        assert_eq!(
            unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lowered) },
            0
        );
        assert_eq!(raise_open_files_limit().unwrap(), hard);
        assert_eq!(open_files().rlim_cur, hard);
    }
}
