//! The `payments` binary: `payments serve` (the API and webhook intake), `payments work`
//! (event processing, orders notifications, reconciliation), or both in one process when no
//! role is given.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _telemetry = common::telemetry::init("payments");
    let role = std::env::args().nth(1).unwrap_or_else(|| "all".to_owned());
    if !matches!(role.as_str(), "serve" | "work" | "all") {
        eprintln!("usage: payments [serve|work]");
        return ExitCode::from(2);
    }
    let settings = match payments::Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("payments: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown = common::http::shutdown_on_signal();
    let result = async {
        let core = payments::connect(&settings).await?;
        match role.as_str() {
            "serve" => payments::serve(&core, &settings, shutdown).await,
            "work" => {
                let (served, ()) = tokio::join!(
                    payments::serve_ops(&core, &settings, shutdown.clone()),
                    payments::work(&core, &settings, shutdown)
                );
                served
            }
            _ => {
                let (served, ()) = tokio::join!(
                    payments::serve(&core, &settings, shutdown.clone()),
                    payments::work(&core, &settings, shutdown)
                );
                served
            }
        }
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("payments: {e:#}");
            ExitCode::FAILURE
        }
    }
}
