//! The platform's processes in a chaos run: each on a free port with its output in a log
//! file, killed with SIGKILL and restarted by the nemesis, and watched for exits nobody
//! asked for (each one is a finding, and the process is started again so the run goes on).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;

use crate::{
    services::{Profile, SERVICES},
    target_dir,
};

/// One process of the platform.
pub struct Proc {
    /// `orders-worker-1`, `payments`, …
    pub label: String,
    /// Its base URL.
    pub url: String,
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log: PathBuf,
    child: Option<Child>,
}

impl Proc {
    /// The process's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Starts the process (again); output goes to the end of its log file.
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = Command::new(&self.binary)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL, and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL after a grace period.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::time::Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The exit status, when the process has ended by itself.
    pub fn exited(&mut self) -> Option<String> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status.to_string())
            }
            _ => None,
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Settings that make a short run meaningful: payment timeouts, reconciliation, sweeps and
/// retries in seconds rather than minutes.
const TUNING: &[(&str, &[(&str, &str)])] = &[
    (
        "stripe-sim",
        &[
            ("SIM_WEBHOOK_MAX_ATTEMPTS", "10"),
            ("SIM_WEBHOOK_RETRY_BASE_MS", "100"),
            ("SIM_WEBHOOK_RETRY_MAX_MS", "2000"),
            ("SIM_WEBHOOK_TIMEOUT_MS", "5000"),
        ],
    ),
    (
        "cart",
        &[
            ("DB_MAX_CONNECTIONS", "5"),
            // Redis fsyncs every write here; on a shared CI disk one fsync can stall it past
            // the default 500 ms, and that 503 would be the disk's, not the platform's.
            ("REDIS_TIMEOUT_MS", "2000"),
        ],
    ),
    (
        "orders",
        &[
            ("PAYMENT_TIMEOUT_SECS", "8"),
            // A small job budget makes dead letters, and so their compensation, happen.
            ("JOB_MAX_ATTEMPTS", "4"),
            ("SWEEP_INTERVAL_SECS", "2"),
            ("STUCK_AFTER_SECS", "10"),
            ("UPSTREAM_TIMEOUT_MS", "3000"),
            ("JOB_BACKOFF_BASE_MS", "100"),
            ("JOB_BACKOFF_MAX_MS", "2000"),
            ("JOB_TIMEOUT_MS", "10000"),
            ("JOB_POLL_MS", "200"),
            ("DB_MAX_CONNECTIONS", "10"),
        ],
    ),
    (
        "payments",
        &[
            ("RECONCILE_INTERVAL_SECS", "2"),
            ("RECONCILE_AFTER_SECS", "5"),
            ("STRIPE_TIMEOUT_MS", "5000"),
            ("ORDERS_TIMEOUT_MS", "3000"),
            ("JOB_BACKOFF_BASE_MS", "100"),
            ("JOB_BACKOFF_MAX_MS", "2000"),
            ("JOB_TIMEOUT_MS", "10000"),
            ("JOB_POLL_MS", "200"),
            ("DB_MAX_CONNECTIONS", "10"),
        ],
    ),
    (
        "gateway",
        &[
            // Every request comes from this one machine: the rollback watches the money
            // path's faults, not an edge policy, so it must not take the routes away.
            ("ROLLBACK_MIN_SAMPLE", "1000000000"),
            ("GATEWAY_INITIAL_ROLLOUT", "100"),
            ("REDIS_TIMEOUT_MS", "2000"),
            ("UPSTREAM_TIMEOUT_MS", "20000"),
            ("DB_MAX_CONNECTIONS", "4"),
        ],
    ),
];

/// Every process of a chaos run, in start order.
pub struct Procs {
    /// stripe-sim, cart, orders-api, orders-worker-1, orders-worker-2, payments, gateway.
    pub all: Vec<Proc>,
}

impl Procs {
    /// Lays out the processes (nothing starts yet): the services' own environment from
    /// [`SERVICES`] with their URLs moved to this run's ports, plus [`TUNING`].
    pub fn plan(
        profile: Profile,
        database_url: &str,
        redis_url: &str,
        logs: &Path,
    ) -> anyhow::Result<Self> {
        let mut ports = HashMap::new();
        for spec in SERVICES {
            ports.insert(spec.name, crate::stack::free_port()?);
        }
        let roles: &[(&str, &str, &[&str])] = &[
            ("stripe-sim", "stripe-sim", &[]),
            ("cart", "cart", &[]),
            ("orders", "orders-api", &["serve"]),
            ("orders", "orders-worker-1", &["work"]),
            ("orders", "orders-worker-2", &["work"]),
            ("payments", "payments", &[]),
            ("gateway", "gateway", &[]),
        ];
        let mut all = Vec::new();
        for (name, label, args) in roles {
            let spec = SERVICES
                .iter()
                .find(|s| s.name == *name)
                .with_context(|| format!("no service {name}"))?;
            let port = if *label == spec.name || *label == "orders-api" {
                ports[spec.name]
            } else {
                // A worker serves health and metrics on a port of its own.
                crate::stack::free_port()?
            };
            let mut env: Vec<(String, String)> = vec![
                ("LISTEN_ADDR".into(), format!("127.0.0.1:{port}")),
                ("DATABASE_URL".into(), database_url.into()),
                ("REDIS_URL".into(), redis_url.into()),
                ("RUST_LOG".into(), "info,sqlx=warn".into()),
                ("APP_ENV".into(), "development".into()),
                ("NO_COLOR".into(), "1".into()),
            ];
            for (k, v) in spec.env {
                env.push(((*k).into(), moved(v, &ports)));
            }
            for (service, tuning) in TUNING {
                if service == name {
                    env.extend(tuning.iter().map(|(k, v)| ((*k).into(), (*v).into())));
                }
            }
            all.push(Proc {
                label: (*label).to_owned(),
                url: format!("http://127.0.0.1:{port}"),
                binary: target_dir::binary(profile, name)?,
                args: args.iter().map(|a| (*a).to_owned()).collect(),
                env,
                log: logs.join(format!("{label}.log")),
                child: None,
            });
        }
        Ok(Self { all })
    }

    /// The process labelled `label`.
    pub fn get(&mut self, label: &str) -> &mut Proc {
        self.all
            .iter_mut()
            .find(|p| p.label == label)
            .expect("a known process")
    }

    /// The base URL of `label`.
    pub fn url(&self, label: &str) -> String {
        self.all
            .iter()
            .find(|p| p.label == label)
            .map(|p| p.url.clone())
            .expect("a known process")
    }

    /// The value a service was given for `var` (a token, a secret), as `SERVICES` sets it.
    pub fn env_of(&self, label: &str, var: &str) -> Option<String> {
        let proc = self.all.iter().find(|p| p.label == label)?;
        proc.env
            .iter()
            .rev()
            .find(|(k, _)| k == var)
            .map(|(_, v)| v.clone())
    }
}

/// `value` with every `127.0.0.1:<default port>` of a service moved to this run's port.
fn moved(value: &str, ports: &HashMap<&'static str, u16>) -> String {
    let mut value = value.to_owned();
    for spec in SERVICES {
        value = value.replace(
            &format!("127.0.0.1:{}", spec.port),
            &format!("127.0.0.1:{}", ports[spec.name]),
        );
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_move_to_the_run_s_ports() {
        let ports: HashMap<&'static str, u16> = SERVICES
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name, 40_000 + i as u16))
            .collect();
        let payments = SERVICES.iter().find(|s| s.name == "payments").unwrap();
        let orders = SERVICES.iter().find(|s| s.name == "orders").unwrap();

        let moved_url = moved(
            &format!("http://127.0.0.1:{}/v1/webhooks/stripe", payments.port),
            &ports,
        );
        let untouched = moved("dev-internal-token", &ports);

        assert_eq!(
            moved_url,
            format!("http://127.0.0.1:{}/v1/webhooks/stripe", ports["payments"])
        );
        assert_ne!(ports["orders"], orders.port);
        assert_eq!(untouched, "dev-internal-token");
    }
}
