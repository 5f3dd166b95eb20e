//! The `gateway` binary: reads its settings and serves until SIGTERM or ctrl-c.

use std::process::ExitCode;

// Every proxied request allocates and frees its heads and buffers on its serving thread;
// mimalloc's thread-local free lists make that markedly cheaper than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    common::service::main("gateway", gateway::Settings::from_env, gateway::run).await
}
