//! The `cart` binary: reads its settings and serves until SIGTERM or ctrl-c.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    common::service::main("cart", cart::Settings::from_env, cart::run).await
}
