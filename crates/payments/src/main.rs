//! The `payments` binary: `payments serve` (the API and webhook intake), `payments work`
//! (event processing, orders notifications, reconciliation), or both in one process when no
//! role is given.

use std::process::ExitCode;

use common::service::Role;

// Requests, rows and JSON are allocated and freed on every runtime thread; mimalloc's
// thread-local free lists make that cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(role) = Role::from_args() else {
        eprintln!("usage: payments [serve|work]");
        return ExitCode::from(2);
    };
    common::service::main(
        "payments",
        || {
            let settings = payments::Settings::from_env()?;
            settings.profile.warn_if_development("payments");
            Ok(settings)
        },
        |settings, shutdown| payments::run(settings, role, shutdown),
    )
    .await
}
