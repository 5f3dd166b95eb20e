//! The `orders` binary: `orders serve` (the API), `orders work` (the order processor), or
//! both in one process when no role is given.

use std::process::ExitCode;

use common::service::Role;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(role) = Role::from_args() else {
        eprintln!("usage: orders [serve|work]");
        return ExitCode::from(2);
    };
    common::service::main(
        "orders",
        orders::Settings::from_env,
        |settings, shutdown| orders::run(settings, role, shutdown),
    )
    .await
}
