//! The `gateway` binary: reads its settings and serves until SIGTERM or ctrl-c.

use std::process::ExitCode;

// Every proxied request allocates and frees its heads and buffers on two threads; mimalloc's
// thread-local free lists make that markedly cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _telemetry = common::telemetry::init("gateway");
    let settings = match gateway::Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::from(2);
        }
    };
    match gateway::run(settings, common::http::shutdown_on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}
