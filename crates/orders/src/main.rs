//! The `orders` binary: `orders serve` (the API), `orders work` (the order processor), or
//! both in one process when no role is given.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let _telemetry = common::telemetry::init("orders");
    let role = std::env::args().nth(1).unwrap_or_else(|| "all".to_owned());
    if !matches!(role.as_str(), "serve" | "work" | "all") {
        eprintln!("usage: orders [serve|work]");
        return ExitCode::from(2);
    }
    let settings = match orders::Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("orders: {e}");
            return ExitCode::from(2);
        }
    };
    let shutdown = common::http::shutdown_on_signal();
    let result = async {
        let core = orders::connect(&settings).await?;
        match role.as_str() {
            "serve" => orders::serve(&core, &settings, shutdown).await,
            "work" => {
                let (served, ()) = tokio::join!(
                    orders::serve_ops(&core, &settings, shutdown.clone()),
                    orders::work(&core, &settings, shutdown)
                );
                served
            }
            _ => {
                let (served, ()) = tokio::join!(
                    orders::serve(&core, &settings, shutdown.clone()),
                    orders::work(&core, &settings, shutdown)
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
            eprintln!("orders: {e:#}");
            ExitCode::FAILURE
        }
    }
}
