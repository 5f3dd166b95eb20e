//! The platform's services as local processes: build them, start them wired to the stack,
//! wait until each is ready, and stop them when dropped.

use std::{
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::stack::{Stack, workspace_root};

/// Which build the processes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Fast to build; for `up`.
    Debug,
    /// Optimised; for benchmarks.
    Release,
}

impl Profile {
    /// The directory of this profile's build under the target directory.
    pub fn dir(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// One service of the platform: its binary, default port and settings of its own.
pub struct Spec {
    /// The binary.
    pub name: &'static str,
    /// Its port in a local stack.
    pub port: u16,
    /// Extra environment.
    pub env: &'static [(&'static str, &'static str)],
}

/// The shared secrets of a local stack: the public development values, which the services
/// accept only under `APP_ENV=development`.
const PAYMENTS_INTERNAL_TOKEN: &str = "dev-payments-token";
const ORDERS_INTERNAL_TOKEN: &str = "dev-orders-token";
const WEBHOOK_SECRET: &str = "whsec_sim_local";
const ADMIN_TOKEN: &str = "dev-admin-token";
/// A local stack is a development run: without this every service refuses the values above.
const DEVELOPMENT: (&str, &str) = ("APP_ENV", "development");
/// The event types the payments webhook endpoint subscribes to (`payments::events::HANDLED`),
/// as one configures an endpoint's `enabled_events` on Stripe; the rest are never sent.
pub const PAYMENTS_WEBHOOK_EVENTS: &str = "payment_intent.succeeded,payment_intent.payment_failed,\
    payment_intent.canceled,payment_intent.requires_action,payment_intent.processing,\
    charge.refunded,charge.dispute.created";

/// Every service, in start order.
pub const SERVICES: &[Spec] = &[
    Spec {
        name: "stripe-sim",
        port: 12111,
        env: &[
            (
                "SIM_WEBHOOK_URLS",
                "http://127.0.0.1:8083/v1/webhooks/stripe",
            ),
            ("SIM_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("SIM_WEBHOOK_EVENTS", PAYMENTS_WEBHOOK_EVENTS),
        ],
    },
    Spec {
        name: "cart",
        port: 8081,
        env: &[DEVELOPMENT],
    },
    Spec {
        name: "orders",
        port: 8082,
        env: &[
            ("CART_URL", "http://127.0.0.1:8081"),
            ("PAYMENTS_URL", "http://127.0.0.1:8083"),
            DEVELOPMENT,
            ("PAYMENTS_INTERNAL_TOKEN", PAYMENTS_INTERNAL_TOKEN),
            ("ORDERS_INTERNAL_TOKEN", ORDERS_INTERNAL_TOKEN),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    },
    Spec {
        name: "payments",
        port: 8083,
        env: &[
            ("STRIPE_API_BASE", "http://127.0.0.1:12111"),
            ("STRIPE_WEBHOOK_SECRETS", WEBHOOK_SECRET),
            ("ORDERS_URL", "http://127.0.0.1:8082"),
            DEVELOPMENT,
            ("PAYMENTS_INTERNAL_TOKEN", PAYMENTS_INTERNAL_TOKEN),
            ("ORDERS_INTERNAL_TOKEN", ORDERS_INTERNAL_TOKEN),
            ("ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    },
    // The monolith the platform migrates from.
    Spec {
        name: "legacy",
        port: 8084,
        env: &[DEVELOPMENT],
    },
    // Every group starts where the migration starts: its flag at 0 %, so new carts and
    // orders are created by legacy until someone ramps the group (README, "Migrating").
    // Runs that need the new services whole (chaos, api-check) set GATEWAY_INITIAL_ROLLOUT.
    Spec {
        name: "gateway",
        port: 8080,
        env: &[
            ("CART_URL", "http://127.0.0.1:8081"),
            ("ORDERS_URL", "http://127.0.0.1:8082"),
            ("PAYMENTS_URL", "http://127.0.0.1:8083"),
            ("LEGACY_URL", "http://127.0.0.1:8084"),
            DEVELOPMENT,
            ("ADMIN_TOKEN", ADMIN_TOKEN),
            ("RATE_LIMIT_PER_SECOND", "0"),
        ],
    },
];

/// A started service.
pub struct Service {
    /// Its binary's name.
    pub name: &'static str,
    /// Its base URL.
    pub url: String,
    child: Child,
}

impl Service {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The started services; dropping this stops them.
pub struct Running {
    /// In start order.
    pub services: Vec<Service>,
}

impl Running {
    /// Resolves with the name of the first service that exits.
    pub async fn any_exited(&mut self) -> &'static str {
        loop {
            for s in &mut self.services {
                if !matches!(s.child.try_wait(), Ok(None)) {
                    return s.name;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        // SIGTERM lets the service drain; a kill follows if it does not stop in time.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds every service binary.
pub fn build(profile: Profile) -> anyhow::Result<()> {
    build_only(
        profile,
        &SERVICES.iter().map(|s| s.name).collect::<Vec<_>>(),
    )
}

/// Builds the named binaries.
pub fn build_only(profile: Profile, names: &[&str]) -> anyhow::Result<()> {
    let mut cargo = crate::target_dir::cargo();
    cargo.current_dir(workspace_root()).arg("build");
    if profile == Profile::Release {
        cargo.arg("--release");
    }
    for name in names {
        cargo.args(["--bin", name]);
    }
    let status = cargo.status().context("running cargo build")?;
    if !status.success() {
        bail!("cargo build failed");
    }
    Ok(())
}

/// Starts every service against `stack` and waits until each answers `/readyz`.
pub async fn start_all(stack: &Stack, profile: Profile) -> anyhow::Result<Running> {
    let mut running = Running {
        services: Vec::new(),
    };
    for spec in SERVICES {
        running
            .services
            .push(start(stack, profile, spec.name, spec.port, spec.env)?);
    }
    for s in &running.services {
        wait_ready(s).await?;
    }
    Ok(running)
}

/// Starts one service binary on `port` with extra environment.
pub fn start(
    stack: &Stack,
    profile: Profile,
    name: &'static str,
    port: u16,
    env: &[(&str, &str)],
) -> anyhow::Result<Service> {
    start_role(stack, profile, name, &[], port, env)
}

/// Starts one service binary with arguments (`orders work`).
pub fn start_role(
    stack: &Stack,
    profile: Profile,
    name: &'static str,
    args: &[&str],
    port: u16,
    env: &[(&str, &str)],
) -> anyhow::Result<Service> {
    let binary = crate::target_dir::binary(profile, name)?;
    let addr = format!("127.0.0.1:{port}");
    let mut command = Command::new(&binary);
    command
        .args(args)
        .env("LISTEN_ADDR", &addr)
        .env("DATABASE_URL", &stack.database_url)
        .env("REDIS_URL", &stack.redis_url)
        // Everything xtask starts is a local run; `env` may say otherwise.
        .env(DEVELOPMENT.0, DEVELOPMENT.1)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info,sqlx=warn".to_owned()),
        );
    for (k, v) in env {
        command.env(k, v);
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    Ok(Service {
        name,
        url: format!("http://{addr}"),
        child,
    })
}

/// Waits until the service answers `/readyz` with 200 (`/healthz` for one without stores).
pub async fn wait_ready(service: &Service) -> anyhow::Result<()> {
    let addr = service.url.trim_start_matches("http://").to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match crate::bench::get_status(&addr, "/readyz").await {
            Some(200) => return Ok(()),
            Some(404) if crate::bench::get_status(&addr, "/healthz").await == Some(200) => {
                return Ok(());
            }
            _ => {}
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{} did not become ready at {}", service.name, service.url)
}
