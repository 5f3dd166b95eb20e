//! The `orders` binary: `orders serve` (the API), `orders work` (the order processor), or
//! both in one process when no role is given.

use std::process::ExitCode;

use common::service::Role;

// Requests, rows and JSON are allocated and freed on every runtime thread; mimalloc's
// thread-local free lists make that cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(role) = Role::from_args() else {
        eprintln!("usage: orders [serve|work]");
        return ExitCode::from(2);
    };
    common::service::main(
        "orders",
        || {
            let settings = orders::Settings::from_env()?;
            settings.profile.warn_if_development("orders");
            Ok(settings)
        },
        |settings, shutdown| orders::run(settings, role, shutdown),
    )
    .await
}
