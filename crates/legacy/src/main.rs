//! The `legacy` binary: the old checkout's stand-in, serving until SIGTERM or ctrl-c.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = || {
        let settings = legacy::Settings::from_env()?;
        settings.profile.warn_if_development("legacy");
        Ok(settings)
    };
    common::service::main("legacy", settings, legacy::run).await
}
