//! `stripe-sim`: runs the Stripe simulator with settings from the environment. Logs and
//! traces go through the platform's telemetry (`LOG_FORMAT`, `RUST_LOG`, `NO_COLOR`,
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`), like every service's.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    common::service::install_crypto();
    let _telemetry = common::telemetry::init("stripe-sim");
    let config = match stripe_sim::Config::from_env() {
        Ok(config) => config,
        Err(err) => {
            tracing::error!("{err}");
            return ExitCode::FAILURE;
        }
    };
    match stripe_sim::run(config, stripe_sim::shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let cause = std::error::Error::source(&err).map(ToString::to_string);
            tracing::error!(error = %err, cause, "stripe-sim stopped");
            ExitCode::FAILURE
        }
    }
}
