//! `cargo xtask compose-run`: the compose topology started for real, without a Docker
//! engine. Each service of `docker-compose.yml` runs in a network namespace of its own and
//! reaches the others by their compose hostnames; ours run the debug binaries their
//! `command:` names with exactly the compose `environment:` (interpolated from
//! `.env.example`) over the image's `ENV`; Postgres and Redis run from the system's binaries
//! on throw-away data; images we cannot run (tracing, metrics, dashboards) are skipped.
//! Services start in `depends_on` order, each dependency's compose healthcheck polled in its
//! namespace, and then one checkout goes through the gateway to `confirmed`. Everything is
//! torn down on exit, on failure and on ctrl-c.

mod checkout;
mod net;
mod plan;
mod stores;

use std::{
    collections::BTreeSet,
    path::PathBuf,
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use net::Network;
pub use net::unsupported;
use plan::{Condition, Kind, Plan, Service};

use crate::{
    compose_check::{self, COMPOSE_FILE, ENV_FILE},
    seed,
    services::{self, Profile},
    stack::{self, workspace_root},
    target_dir,
};

/// How often a healthcheck is retried while a dependent waits.
const PROBE_EVERY: Duration = Duration::from_millis(250);
/// What a container's environment has before the image's `ENV` and compose's.
const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Starts the topology, runs one checkout through the gateway and tears everything down.
pub async fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    if let Some(arg) = args.first() {
        bail!("compose-run takes no arguments, not {arg:?}");
    }
    if let Some(why) = unsupported() {
        bail!("compose-run cannot run here: {why}");
    }
    let started = Instant::now();
    let root = workspace_root();
    let venv = compose_check::ensure_tools()?;
    let compose = compose_check::yaml_to_json(&venv, &root.join(COMPOSE_FILE))?;
    let env_file = std::fs::read_to_string(root.join(ENV_FILE))
        .with_context(|| format!("reading {ENV_FILE}"))?;
    let plan = Plan::read(&compose, &compose_check::parse_env_file(&env_file))?;
    let dockerfile =
        std::fs::read_to_string(root.join("Dockerfile")).context("reading Dockerfile")?;
    println!("compose-run: {COMPOSE_FILE} with the variables of {ENV_FILE}");
    for (name, image) in &plan.skipped {
        println!(
            "  skipped {name} ({image}): no container engine here; the services run without it"
        );
    }
    for (name, dep) in &plan.dropped {
        println!("  {name}: its dependency on skipped {dep} is not honoured");
    }

    let binaries: BTreeSet<&str> = plan
        .services
        .iter()
        .filter_map(|s| match &s.kind {
            Kind::App { binary, .. } => Some(binary.as_str()),
            _ => None,
        })
        .collect();
    println!(
        "compose-run: building {}",
        binaries.iter().copied().collect::<Vec<_>>().join(", ")
    );
    services::build_only(Profile::Debug, &binaries.into_iter().collect::<Vec<_>>())?;

    net::clear_stale();
    clear_stale_data()?;
    let mut topology = Topology::new(&plan, plan::image_env(&dockerfile))?;
    let mut stopped = true;
    let outcome = tokio::select! {
        outcome = topology.up_and_check_out() => {
            stopped = false;
            outcome
        }
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        _ = terminated() => Err(anyhow::anyhow!("terminated")),
    };
    if let Err(e) = &outcome {
        eprintln!("compose-run: {e:#}");
        if !stopped {
            topology.print_logs();
        }
    }
    topology.keep_logs = outcome.is_err();
    println!("compose-run: tearing down");
    drop(topology);
    println!(
        "compose-run: {} in {:.1} s",
        if outcome.is_ok() { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    Ok(if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Resolves when SIGTERM arrives.
async fn terminated() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut signal) => {
            signal.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}

/// One run: its processes, then its network and scratch directory (dropped in that order,
/// so nothing still runs in a namespace that goes away).
struct Topology<'p> {
    processes: Vec<Process>,
    net: Network,
    dir: PathBuf,
    keep_logs: bool,
    plan: &'p Plan,
    image_env: Vec<(String, String)>,
    healthy: BTreeSet<String>,
    started: Instant,
}

/// A started service.
struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    /// The signal that stops it cleanly: the official Postgres image's is SIGINT (a fast
    /// shutdown; SIGTERM would wait for every client to leave).
    stop_signal: &'static str,
}

impl<'p> Topology<'p> {
    fn new(plan: &'p Plan, image_env: Vec<(String, String)>) -> anyhow::Result<Self> {
        let names: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
        let net = Network::create(&names)?;
        println!(
            "compose-run: one network namespace per service, bridge {}",
            net.bridge()
        );
        for service in &plan.services {
            println!(
                "  {:<14} {:<15} {}",
                service.name,
                net.addresses[&service.name].to_string(),
                describe(&service.kind)
            );
        }
        let dir = target_dir::scratch("compose-run")?.join(std::process::id().to_string());
        std::fs::create_dir_all(dir.join("logs"))?;
        Ok(Self {
            processes: Vec::new(),
            net,
            dir,
            keep_logs: false,
            plan,
            image_env,
            healthy: BTreeSet::new(),
            started: Instant::now(),
        })
    }

    async fn up_and_check_out(&mut self) -> anyhow::Result<()> {
        let plan = self.plan;
        let mut seeded = false;
        for service in &plan.services {
            for (dep, condition) in &service.depends_on {
                if *condition == Condition::Healthy {
                    self.wait_healthy(dep).await?;
                }
            }
            if matches!(service.kind, Kind::App { .. }) && !seeded {
                self.seed().await?;
                seeded = true;
            }
            self.start(service)?;
        }
        // As `docker compose up --wait`: every service with a healthcheck is healthy.
        for service in &plan.services {
            if service.healthcheck.is_some() {
                self.wait_healthy(&service.name).await?;
            }
        }
        for process in &mut self.processes {
            if let Some(status) = process.child.try_wait()? {
                bail!("{} exited ({status})", process.name);
            }
        }
        println!("compose-run: every service is up ({:.1} s)", self.secs());
        checkout::run(plan, &self.net.addresses).await
    }

    /// Seeds the catalog and stock as `cargo xtask up` does, through the compose Postgres.
    async fn seed(&mut self) -> anyhow::Result<()> {
        let plan = self.plan;
        let Some(postgres) = plan.services.iter().find(|s| s.kind == Kind::Postgres) else {
            bail!("the compose file has no postgres service to seed");
        };
        self.wait_healthy(&postgres.name).await?;
        let url = stores::database_url(postgres, self.net.addresses[&postgres.name]);
        seed::seed(&url).await
    }

    fn start(&mut self, service: &Service) -> anyhow::Result<()> {
        let log = self.dir.join("logs").join(format!("{}.log", service.name));
        let out = std::fs::File::create(&log)?;
        let mut command = match &service.kind {
            Kind::App { binary, args } => {
                let mut command = self
                    .net
                    .command(&service.name, target_dir::binary(Profile::Debug, binary)?);
                command
                    .args(args)
                    .env_clear()
                    .env("PATH", BASE_PATH)
                    .env("HOSTNAME", &service.name)
                    .envs(self.image_env.iter().cloned())
                    .envs(&service.env);
                command
            }
            Kind::Postgres => stores::postgres(&self.net, service, &self.data_dir(&service.name)?)?,
            Kind::Redis => stores::redis(&self.net, service, &self.data_dir(&service.name)?),
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", service.name))?;
        println!(
            "compose-run: started {} ({:.1} s)",
            service.name,
            self.secs()
        );
        self.processes.push(Process {
            name: service.name.clone(),
            child,
            log,
            stop_signal: if service.kind == Kind::Postgres {
                "-INT"
            } else {
                "-TERM"
            },
        });
        Ok(())
    }

    /// Waits until `name`'s healthcheck passes in its namespace, within compose's bound.
    async fn wait_healthy(&mut self, name: &str) -> anyhow::Result<()> {
        if self.healthy.contains(name) {
            return Ok(());
        }
        let plan = self.plan;
        let Some(service) = plan.service(name) else {
            bail!("no service {name}");
        };
        let Some(check) = &service.healthcheck else {
            bail!("a service waits for {name} to be healthy, but it has no healthcheck");
        };
        let waited = Instant::now();
        let mut last = String::new();
        while waited.elapsed() < check.deadline {
            if let Some(process) = self.processes.iter_mut().find(|p| p.name == name)
                && let Some(status) = process.child.try_wait()?
            {
                bail!("{name} exited ({status}) before it was healthy");
            }
            match self.probe(service, check).await {
                Ok(()) => {
                    println!(
                        "compose-run: {name} healthy: `{}` passed ({:.1} s)",
                        check.test.join(" "),
                        self.secs()
                    );
                    self.healthy.insert(name.to_owned());
                    return Ok(());
                }
                Err(e) => last = e,
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
        bail!(
            "{name} is not healthy after {:.0} s: `{}` said {last}",
            check.deadline.as_secs_f64(),
            check.test.join(" ")
        )
    }

    /// One run of the healthcheck in the service's namespace.
    async fn probe(&self, service: &Service, check: &plan::Healthcheck) -> Result<(), String> {
        let (program, args) = check.test.split_first().ok_or("an empty test")?;
        let program = match program.as_str() {
            // The image installs deploy/compose/healthcheck under that name.
            "healthcheck" => workspace_root().join("deploy/compose/healthcheck"),
            "pg_isready" => stack::find_postgres_binary(program).map_err(|e| e.to_string())?,
            other => PathBuf::from(other),
        };
        let mut command = tokio::process::Command::from(self.net.command(&service.name, program));
        command.args(args).kill_on_drop(true).stdin(Stdio::null());
        if service.kind == Kind::Postgres {
            // The container's socket directory is its own; here it is the data directory.
            let socket_dir = stores::socket_dir(&self.dir.join("data").join(&service.name));
            command.env("PGHOST", socket_dir);
        }
        match tokio::time::timeout(check.timeout, command.output()).await {
            Err(_) => Err(format!("nothing within {:?}", check.timeout)),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(output)) if output.status.success() => Ok(()),
            Ok(Ok(output)) => Err(format!(
                "{} {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )),
        }
    }

    fn data_dir(&self, service: &str) -> anyhow::Result<PathBuf> {
        let dir = self.dir.join("data").join(service);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// The last lines of every service's log, for a failed run.
    fn print_logs(&self) {
        for process in &self.processes {
            let text = std::fs::read_to_string(&process.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "--- {} (last lines of {})",
                process.name,
                process.log.display()
            );
            for line in &lines[lines.len().saturating_sub(15)..] {
                eprintln!("  {}", line.chars().take(400).collect::<String>());
            }
        }
    }

    fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

impl Drop for Topology<'_> {
    fn drop(&mut self) {
        // SIGTERM first so each service drains as under `docker compose down`; then a kill.
        for process in self.processes.iter().rev() {
            let _ = Command::new("kill")
                .args([process.stop_signal, &process.child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for process in &mut self.processes {
            while Instant::now() < deadline && matches!(process.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = process.child.kill();
            let _ = process.child.wait();
        }
        let _ = std::fs::remove_dir_all(self.dir.join("data"));
        if self.keep_logs {
            eprintln!(
                "compose-run: the services' logs are in {}",
                self.dir.join("logs").display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Removes the data directories of runs that were killed outright; their logs stay.
fn clear_stale_data() -> anyhow::Result<()> {
    for entry in std::fs::read_dir(target_dir::scratch("compose-run")?)?.flatten() {
        let name = entry.file_name();
        let pid = name.to_string_lossy();
        let data = entry.path().join("data");
        if pid.parse::<u32>().is_ok()
            && !PathBuf::from("/proc").join(&*pid).exists()
            && data.exists()
        {
            println!(
                "compose-run: removing {}, left by a run that was killed",
                data.display()
            );
            std::fs::remove_dir_all(&data)?;
        }
    }
    Ok(())
}

/// What runs a service, for the listing.
fn describe(kind: &Kind) -> String {
    match kind {
        Kind::App { binary, args } => {
            let mut argv = vec![format!("target/debug/{binary}")];
            argv.extend(args.iter().cloned());
            argv.join(" ")
        }
        Kind::Postgres => "the system's postgres, throw-away data".to_owned(),
        Kind::Redis => "the system's redis-server, throw-away data".to_owned(),
    }
}
