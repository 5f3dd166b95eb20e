//! The `cart` binary: reads its settings and serves until SIGTERM or ctrl-c.

use std::process::ExitCode;

// Requests, rows and JSON are allocated and freed on every runtime thread; mimalloc's
// thread-local free lists make that cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let settings = || {
        let settings = cart::Settings::from_env()?;
        settings.profile.warn_if_development("cart");
        Ok(settings)
    };
    common::service::main("cart", settings, cart::run).await
}
