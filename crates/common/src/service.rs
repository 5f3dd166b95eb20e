//! What every service binary does around its own work: the TLS crypto provider, telemetry,
//! settings from the environment, the role it was started in, and the exit code.

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::ConfigError;

/// Installs the process's rustls crypto provider (ring) once; later calls do nothing. Every
/// TLS client (Postgres, Redis, Stripe) needs it before its first connection.
pub fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
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
