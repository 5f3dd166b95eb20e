//! `cargo xtask chaos`: proves the platform's promise under faults. It starts the whole
//! platform on private, durable Postgres and Redis, drives seeded storefront traffic through
//! the gateway while a nemesis kills processes and stores and makes stripe-sim misbehave,
//! lets the platform settle, then checks every invariant against the books (Postgres and
//! stripe-sim's ledger). Any violation makes the exit status non-zero; the seed replays it.

mod faults;
mod flows;
pub(crate) mod http;
mod invariants;
mod money;
mod platform;
mod procs;
mod report;
mod rng;
mod snapshot;
mod stores;
mod traffic;

use std::{
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::json;

use crate::{seed, services::Profile, target_dir};

/// The hot SKU: limited stock, raced for.
const HOT_SKU: &str = "HOT-SNEAKER";
/// How long orders waits for a payment in a chaos run (`PAYMENT_TIMEOUT_SECS`).
const PAYMENT_TIMEOUT: Duration = Duration::from_secs(8);

/// A run's settings.
#[derive(Debug, Clone)]
pub struct Options {
    /// Length of the load, in minutes.
    pub minutes: f64,
    /// The seed of the traffic and the fault schedule.
    pub seed: u64,
    /// Which build runs.
    pub profile: Profile,
    /// Concurrent shoppers.
    pub shoppers: usize,
}

impl Options {
    /// Parses `[--minutes N] [--seed S] [--release] [--shoppers N]`.
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut options = Self {
            minutes: 1.0,
            seed: random_seed(),
            profile: Profile::Debug,
            shoppers: 8,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next()
                    .with_context(|| format!("{name} needs a value"))
                    .cloned()
            };
            match arg.as_str() {
                "--minutes" => {
                    options.minutes = value("--minutes")?.parse().context("--minutes")?
                }
                "--seed" => options.seed = value("--seed")?.parse().context("--seed")?,
                "--shoppers" => {
                    options.shoppers = value("--shoppers")?.parse().context("--shoppers")?
                }
                "--release" => options.profile = Profile::Release,
                other => bail!(
                    "unknown chaos option {other:?}; usage: cargo xtask chaos [--minutes N] [--seed S] [--release] [--shoppers N]"
                ),
            }
        }
        if options.minutes.is_nan() || options.minutes <= 0.0 || options.shoppers == 0 {
            bail!("--minutes and --shoppers must be positive");
        }
        Ok(options)
    }
}

fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    rng::Rng::new(nanos ^ u64::from(std::process::id())).next() % 1_000_000_000
}

/// Builds the binaries, then runs the harness; success only when every invariant holds.
pub async fn run(options: Options) -> anyhow::Result<ExitCode> {
    println!(
        "chaos: seed {} ({} min of load, {} shoppers, {:?} build); replay with: cargo xtask chaos --seed {} --minutes {}{}",
        options.seed,
        options.minutes,
        options.shoppers,
        options.profile,
        options.seed,
        options.minutes,
        if options.profile == Profile::Release {
            " --release"
        } else {
            ""
        }
    );
    let mut cargo = target_dir::cargo();
    cargo
        .current_dir(crate::stack::workspace_root())
        .args(["build", "--bins"]);
    if options.profile == Profile::Release {
        cargo.arg("--release");
    }
    if !cargo.status().context("running cargo build")?.success() {
        bail!("cargo build failed");
    }
    let dir =
        target_dir::scratch("chaos")?.join(format!("{}-{}", options.seed, std::process::id()));
    std::fs::create_dir_all(dir.join("logs"))?;
    let run_started = Instant::now();
    let stores = stores::Stores::start(dir.join("stores")).await?;
    // On ctrl-c the run is dropped, and with it every process and store it started.
    let outcome = tokio::select! {
        outcome = drive(&options, &dir, stores) => outcome,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    println!(
        "chaos: whole run took {:.0} s; logs and report in {}",
        run_started.elapsed().as_secs_f64(),
        dir.display()
    );
    outcome
}

async fn drive(
    options: &Options,
    dir: &std::path::Path,
    stores: stores::Stores,
) -> anyhow::Result<ExitCode> {
    seed::seed(&stores.database_url).await?;
    let pool = common::db::connect(&stores.database_url, 4).await?;
    seed::upsert_products(
        &pool,
        std::iter::once((HOT_SKU.to_owned(), "Limited sneaker".to_owned(), 12_000)),
    )
    .await?;
    let mut procs = procs::Procs::plan(
        options.profile,
        &stores.database_url,
        &stores.redis_url,
        &dir.join("logs"),
    )?;
    for p in &mut procs.all {
        p.spawn()?;
    }
    for p in &procs.all {
        platform::wait_ready(&p.label, &p.url, Duration::from_secs(90)).await?;
    }
    let orders_api = procs
        .url("orders-api")
        .trim_start_matches("http://")
        .to_owned();
    let admin_token = procs
        .env_of("orders-api", "ADMIN_TOKEN")
        .unwrap_or_else(|| "dev-admin-token".into());
    let sim_key = procs
        .env_of("payments", "STRIPE_SECRET_KEY")
        .unwrap_or_else(|| "sk_test_local".into());
    let gateway = procs
        .url("gateway")
        .trim_start_matches("http://")
        .to_owned();
    let sim = procs
        .url("stripe-sim")
        .trim_start_matches("http://")
        .to_owned();
    let cart_addr = procs.url("cart").trim_start_matches("http://").to_owned();
    let log_files: Vec<(String, std::path::PathBuf)> = procs
        .all
        .iter()
        .map(|p| (p.label.clone(), p.log().to_path_buf()))
        .collect();

    // Stock through the admin API, as an operator would: plenty of everything but the hot SKU.
    let load = Duration::from_secs_f64(options.minutes * 60.0);
    let hot_stock = ((load.as_secs_f64() * 0.4) as i64).max(10);
    let mut products: Vec<(String, i64)> = seed::PRODUCTS
        .iter()
        .map(|(s, _, p)| (s.to_string(), *p))
        .collect();
    products.push((HOT_SKU.to_owned(), 12_000));
    let initial_stock = platform::set_stock(&orders_api, &admin_token, &products, |sku| {
        if sku == HOT_SKU { hot_stock } else { 1_000_000 }
    })
    .await?;
    products.retain(|(s, _)| s != HOT_SKU);

    let mut rng = rng::Rng::new(options.seed);
    let lanes = faults::plan(&mut rng.fork(), load.as_secs_f64());
    faults::print(&lanes);

    let started = Instant::now();
    let client = http::Client::new(started);
    let procs = Arc::new(Mutex::new(procs));
    let stores = Arc::new(tokio::sync::Mutex::new(stores));
    let timeline = Arc::new(Mutex::new(Vec::new()));
    let target = faults::Target {
        procs: procs.clone(),
        stores: stores.clone(),
        sim: sim.clone(),
        started,
        timeline: timeline.clone(),
    };
    let exits = Arc::new(Mutex::new(Vec::new()));
    let watching = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let monitor = tokio::spawn(platform::watch(
        procs.clone(),
        exits.clone(),
        watching.clone(),
        started,
    ));

    let shop = Arc::new(traffic::Shop {
        client: client.clone(),
        gateway,
        sim: sim.clone(),
        sim_key,
        products,
        hot: HOT_SKU.to_owned(),
        load_end: Instant::now() + load,
        payment_timeout: PAYMENT_TIMEOUT,
        checkouts: Mutex::default(),
        kept_carts: Mutex::default(),
    });
    let load_start = client.now();
    println!("\nchaos: load for {:.0} s", load.as_secs_f64());
    let nemesis = [
        tokio::spawn(target.clone().play(lanes.0, load_start)),
        tokio::spawn(target.clone().play(lanes.1, load_start)),
    ];
    let shoppers: Vec<_> = (0..options.shoppers)
        .map(|who| {
            let (shop, shopper_rng) = (shop.clone(), rng.fork());
            tokio::spawn(async move { flows::shopper(&shop, shopper_rng, who).await })
        })
        .collect();
    for s in shoppers {
        s.await?;
    }
    for n in nemesis {
        n.await?;
    }
    let load_took = client.now() - load_start;

    // Settle: every fault off, every process up, then wait for the platform to go quiet.
    target
        .sim_control(
            json!({ "failure_share": 0.0, "lost_response_share": 0.0, "webhook_copies": 1,
        "webhook_reorder_window": 0, "webhook_delay_ms": 0, "webhook_drop_share": 0.0 }),
        )
        .await?;
    let urls: Vec<(String, String)> = procs
        .lock()
        .expect("procs")
        .all
        .iter()
        .map(|p| (p.label.clone(), p.url.clone()))
        .collect();
    for (label, url) in &urls {
        platform::wait_ready(label, url, Duration::from_secs(60)).await?;
    }
    let (quiet, settled, last) =
        platform::settle(&pool, Duration::from_secs(90) + PAYMENT_TIMEOUT).await;
    println!(
        "chaos: load took {load_took:.0} s; settled {} after {:.0} s ({} open orders, {} busy jobs)",
        if quiet { "quiet" } else { "NOT quiet" },
        settled.as_secs_f64(),
        last.0,
        last.1
    );
    watching.store(false, std::sync::atomic::Ordering::SeqCst);
    let _ = monitor.await;

    let snap = snapshot::take(&pool, &sim).await?;
    let kept: Vec<traffic::KeptCart> = shop.kept_carts.lock().expect("carts").clone();
    let kept_now = platform::read_carts(&cart_addr, kept).await;
    let happened = timeline.lock().expect("timeline").clone();
    let checkouts = shop.checkouts.lock().expect("checkouts").clone();
    let samples = client.samples();
    let evidence = invariants::Evidence {
        snap: &snap,
        checkouts: &checkouts,
        samples: &samples,
        outages: happened
            .iter()
            .filter(|h| h.outage)
            .map(|h| (h.start, h.end))
            .collect(),
        initial_stock: &initial_stock,
        kept_carts: &kept_now,
        redis_kills: happened
            .iter()
            .filter(|h| h.name.contains("redis"))
            .map(|h| h.start)
            .collect(),
        panics: platform::panics(&log_files),
        exits: exits.lock().expect("exits").clone(),
    };
    let checks = invariants::check_all(&evidence);

    let mut out = String::new();
    report::flows(&mut out, &checkouts, &samples, &kept_now, &snap);
    report::timeline(&mut out, &happened, load_start);
    let mut full = out.clone();
    let failed = report::invariants(&mut out, &mut full, &checks, &snap, &checkouts);
    let verdict = format!(
        "\nchaos: seed {}: {} of {} invariants hold{}\n",
        options.seed,
        checks.len() - failed,
        checks.len(),
        if failed == 0 {
            String::new()
        } else {
            format!("; {failed} broken — replay with --seed {}", options.seed)
        }
    );
    out.push_str(&verdict);
    full.push_str(&verdict);
    print!("{out}");
    std::fs::write(dir.join("report.txt"), &full)?;
    // Services stop before their stores.
    drop(target);
    drop(procs);
    drop(stores);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
