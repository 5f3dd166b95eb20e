//! `cargo xtask`: the project's own commands. `up` runs the whole stack locally, `test` runs
//! the test suite against real Postgres and Redis (then a short chaos run), `chaos` checks
//! the platform's invariants under faults, `seed` fills the demo catalog, `compose-run`
//! starts the compose topology without Docker and `bench` measures the services. Postgres and Redis come from `DATABASE_URL`/`REDIS_URL` when they
//! answer, or are started as throw-away instances under cargo's target directory (wherever
//! `CARGO_TARGET_DIR` or `build.target-dir` puts it).

mod api_check;
mod bench;
mod bench_gateway;
mod bench_orders;
mod bench_payments;
mod bench_queue;
mod chaos;
mod compose_check;
mod compose_run;
mod deploy_check;
mod redis_cluster;
mod seed;
mod services;
mod stack;
mod target_dir;

use std::process::ExitCode;

use anyhow::{Context as _, bail};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  up               start Postgres/Redis if needed, migrate, seed, run every service
  test [ARGS...]   start Postgres/Redis if needed, run the whole test suite, then a short
                   chaos run (45 s of load; CHAOS_IN_TEST=0 skips it)
  chaos [--minutes N] [--seed S] [--release] [--shoppers N]
                   the whole stack on private durable Postgres/Redis under seeded storefront
                   traffic and faults; checks every money, stock and idempotency invariant
  seed             fill the demo catalog
  api-check [SVC]  schemathesis against every service's /openapi.json (or only cart, orders, ...)
  compose-check    docker-compose.yml and Dockerfile: schema, hadolint, every service's environment
  compose-run      the compose topology from the debug binaries, one network namespace per
                   service (root and `ip`), and one checkout through its gateway to confirmed
  deploy-check     render and validate deploy/k8s, promtool the alert rules, check the dashboard's metrics
  bench cart [--redis single|cluster]
                   throughput and latency of the cart service (release build), on the
                   stack's Redis or on a three-master Redis Cluster started for the run
  bench orders     checkout throughput, backlog drain, accept-to-confirmed latency
  bench payments   verified Stripe webhook events per second
  bench gateway    proxy throughput: direct, through nginx, through the gateway
  bench queue      the job queue alone: enqueue, drain and the payment rate cap, next to BullMQ

environment:
  DATABASE_URL, REDIS_URL   used when they answer; otherwise local throw-away instances start
  BENCH_SECONDS             seconds per benchmark scenario (default 10)
  BENCH_CONNECTIONS         concurrent connections (default 64)
  COMPOSE_RUN_IN_TEST       0 skips compose-run in `test` (default on where it can run)
  CHAOS_IN_TEST             0 skips the chaos run in `test` (default on)
  CHAOS_SEED                the seed of the chaos run in `test` (default: random, printed)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(dispatch(&args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(args: &[String]) -> anyhow::Result<ExitCode> {
    match args.first().map(String::as_str) {
        Some("up") => up().await,
        Some("test") => test(&args[1..]).await,
        Some("seed") => {
            let stack = stack::Stack::ensure().await?;
            seed::seed(&stack.database_url).await?;
            Ok(ExitCode::SUCCESS)
        }
        Some("bench") => bench::run(&args[1..]).await,
        Some("chaos") => chaos::run(chaos::Options::parse(&args[1..])?).await,
        Some("api-check") => api_check::run(&args[1..]).await,
        Some("compose-check") => compose_check::run(&args[1..]),
        Some("compose-run") => compose_run::run(&args[1..]).await,
        Some("deploy-check") => deploy_check::run(&args[1..]),
        Some("help" | "-h" | "--help") | None => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        Some(other) => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

async fn up() -> anyhow::Result<ExitCode> {
    let stack = stack::Stack::ensure().await?;
    seed::seed(&stack.database_url).await?;
    services::build(services::Profile::Debug)?;
    let mut running = services::start_all(&stack, services::Profile::Debug).await?;
    println!();
    for service in &running.services {
        println!("  {:<10} {}", service.name, service.url);
    }
    println!(
        "\n  Postgres   {}\n  Redis      {}",
        common::db::redact_url(&stack.database_url),
        stack.redis_url
    );
    println!(
        "\nTry the checkout in README.md, or:\n  curl -s -X POST http://127.0.0.1:8080/v1/carts   (through the gateway)\n\
         \nOn a fresh database every route group starts at 0 %: the gateway creates carts and orders\n\
         in legacy until a group is ramped (README, \"Migrating from the monolith\").\n\nctrl-c stops everything."
    );
    tokio::select! {
        _ = tokio::signal::ctrl_c() => println!("\nstopping"),
        exited = running.any_exited() => bail!("{exited} exited; see its output above"),
    }
    drop(running);
    drop(stack);
    Ok(ExitCode::SUCCESS)
}

async fn test(extra: &[String]) -> anyhow::Result<ExitCode> {
    let stack = stack::Stack::ensure().await?;
    let status = tokio::process::Command::from(target_dir::cargo())
        .args(["test", "--workspace", "--all-targets"])
        .args(extra)
        .env("DATABASE_URL", &stack.database_url)
        .env("REDIS_URL", &stack.redis_url)
        .status()
        .await
        .context("running cargo test")?;
    drop(stack);
    if !status.success() {
        return Ok(ExitCode::FAILURE);
    }
    // What users start and deploy: the compose file and image, the manifests, the alert rules
    // and the dashboard, all checked statically.
    if step_on("DEPLOY_CHECKS_IN_TEST") {
        println!("\nxtask: compose-check and deploy-check (DEPLOY_CHECKS_IN_TEST=0 skips them)");
        if compose_check::run(&[])? != ExitCode::SUCCESS
            || deploy_check::run(&[])? != ExitCode::SUCCESS
        {
            return Ok(ExitCode::FAILURE);
        }
    }
    // The same compose topology started for real, and a checkout through it.
    if step_on("COMPOSE_RUN_IN_TEST") {
        if let Some(why) = compose_run::unsupported() {
            println!("xtask: compose-run is skipped: {why} (COMPOSE_RUN_IN_TEST=0 silences this)");
        } else {
            println!("\nxtask: compose-run (COMPOSE_RUN_IN_TEST=0 skips it)");
            if compose_run::run(&[]).await? != ExitCode::SUCCESS {
                return Ok(ExitCode::FAILURE);
            }
        }
    } else {
        println!("xtask: COMPOSE_RUN_IN_TEST is off; compose-run is skipped");
    }
    // The documents say what the servers do: schemathesis against every service.
    if step_on("API_CHECK_IN_TEST") {
        println!("\nxtask: schemathesis against every service (API_CHECK_IN_TEST=0 skips it)");
        if api_check::run(&[]).await? != ExitCode::SUCCESS {
            return Ok(ExitCode::FAILURE);
        }
    } else {
        println!("xtask: API_CHECK_IN_TEST is off; schemathesis is skipped");
    }
    if !step_on("CHAOS_IN_TEST") {
        println!("xtask: CHAOS_IN_TEST is off; the short chaos run is skipped");
        return Ok(ExitCode::SUCCESS);
    }
    // The tests pass; now the promise under faults: a short seeded chaos run on debug builds.
    println!("\nxtask: the short chaos run (CHAOS_IN_TEST=0 skips it, CHAOS_SEED=<n> replays one)");
    let mut args = vec!["--minutes".to_owned(), "0.75".to_owned()];
    if let Ok(seed) = std::env::var("CHAOS_SEED") {
        args.extend(["--seed".to_owned(), seed]);
    }
    chaos::run(chaos::Options::parse(&args)?).await
}

/// Whether a step of `cargo xtask test` after the suite runs: yes unless `variable` is `0`,
/// `false`, `off` or `no`.
fn step_on(variable: &str) -> bool {
    std::env::var(variable).map_or(true, |v| {
        !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "0" | "false" | "off" | "no"
        )
    })
}
