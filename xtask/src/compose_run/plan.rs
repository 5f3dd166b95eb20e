//! What `compose-run` will start, read from the compose file as compose itself would read it:
//! each service's kind (one of our binaries, Postgres, Redis, or an image we cannot run),
//! its environment interpolated from the settings file, its `depends_on` conditions, its
//! healthcheck with compose's timing, and a start order that honours the dependencies.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::compose_check::{IMAGE, environment, interpolate};

/// The topology to start, in an order where every service comes after its dependencies.
#[derive(Debug)]
pub struct Plan {
    /// The services that run, in start order.
    pub services: Vec<Service>,
    /// `(service, image)` of the services that need an engine we do not have.
    pub skipped: Vec<(String, String)>,
    /// Dependencies on skipped services, which the run cannot honour: `(service, dependency)`.
    pub dropped: Vec<(String, String)>,
}

/// One compose service that runs.
#[derive(Debug)]
pub struct Service {
    /// Its compose name, which is also its hostname.
    pub name: String,
    /// What runs it.
    pub kind: Kind,
    /// Its `environment:`, interpolated.
    pub env: BTreeMap<String, String>,
    /// `depends_on`, with each dependency's condition.
    pub depends_on: Vec<(String, Condition)>,
    /// Its healthcheck, unless it has none or disables it.
    pub healthcheck: Option<Healthcheck>,
}

/// How a compose service is run here.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind {
    /// The platform's image: `binary args...` of its `command:`.
    App { binary: String, args: Vec<String> },
    /// The official `postgres` image, from the system's server binaries.
    Postgres,
    /// The official `redis` image, from the system's `redis-server`.
    Redis,
}

/// A `depends_on` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// `service_started` (and the short list form).
    Started,
    /// `service_healthy`.
    Healthy,
}

/// A healthcheck: the command and how long compose would give it before calling the service
/// unhealthy.
#[derive(Debug, PartialEq, Eq)]
pub struct Healthcheck {
    /// The command, as argv (`CMD-SHELL` becomes `sh -c`).
    pub test: Vec<String>,
    /// How long one probe may take.
    pub timeout: Duration,
    /// `start_period + interval × retries`: past this a service that never passed is unhealthy.
    pub deadline: Duration,
}

impl Plan {
    /// The plan of `compose` (the file as JSON) with `vars` for interpolation.
    pub fn read(compose: &Value, vars: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let mut services = BTreeMap::new();
        let mut skipped = Vec::new();
        let Some(all) = compose["services"].as_object() else {
            bail!("the compose file has no services");
        };
        for (name, definition) in all {
            match kind(definition, vars).with_context(|| format!("service {name}"))? {
                Some(kind) => {
                    services.insert(name.clone(), service(name, kind, definition, vars)?);
                }
                None => skipped.push((
                    name.clone(),
                    definition["image"].as_str().unwrap_or("?").to_owned(),
                )),
            }
        }
        let mut dropped = Vec::new();
        for service in services.values_mut() {
            let mut kept = Vec::new();
            for (dep, condition) in std::mem::take(&mut service.depends_on) {
                if skipped.iter().any(|(s, _)| *s == dep) {
                    dropped.push((service.name.clone(), dep));
                } else if all.contains_key(&dep) {
                    kept.push((dep, condition));
                } else {
                    bail!("{} depends on {dep}, which is no service", service.name);
                }
            }
            service.depends_on = kept;
        }
        Ok(Self {
            services: start_order(services)?,
            skipped,
            dropped,
        })
    }

    /// The service called `name`.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// How a service runs here, or `None` for an image we cannot run.
fn kind(definition: &Value, vars: &BTreeMap<String, String>) -> anyhow::Result<Option<Kind>> {
    let image = definition["image"].as_str().unwrap_or_default();
    if image == IMAGE || definition.get("build").is_some() {
        let mut argv = strings(&definition["command"])
            .iter()
            .map(|a| interpolate(a, vars).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?
            .into_iter();
        let Some(binary) = argv.next() else {
            bail!("no `command:` names the binary");
        };
        return Ok(Some(Kind::App {
            binary,
            args: argv.collect(),
        }));
    }
    let repository = image.split([':', '@']).next().unwrap_or_default();
    Ok(match repository.trim_start_matches("docker.io/library/") {
        "postgres" => Some(Kind::Postgres),
        "redis" => Some(Kind::Redis),
        _ => None,
    })
}

fn service(
    name: &str,
    kind: Kind,
    definition: &Value,
    vars: &BTreeMap<String, String>,
) -> anyhow::Result<Service> {
    let env = environment(definition)
        .into_iter()
        .map(|(k, v)| {
            let value = interpolate(&v, vars).map_err(|e| anyhow::anyhow!("{name}: {k}: {e}"))?;
            Ok((k, value))
        })
        .collect::<anyhow::Result<_>>()?;
    let depends_on = match &definition["depends_on"] {
        Value::Array(names) => names
            .iter()
            .filter_map(Value::as_str)
            .map(|n| (n.to_owned(), Condition::Started))
            .collect(),
        Value::Object(map) => map
            .iter()
            .map(|(dep, spec)| {
                let condition = match spec["condition"].as_str().unwrap_or("service_started") {
                    "service_started" => Condition::Started,
                    "service_healthy" => Condition::Healthy,
                    other => bail!("{name}: depends_on {dep}: condition {other} is not supported"),
                };
                Ok((dep.clone(), condition))
            })
            .collect::<anyhow::Result<_>>()?,
        _ => Vec::new(),
    };
    Ok(Service {
        name: name.to_owned(),
        kind,
        env,
        depends_on,
        healthcheck: healthcheck(&definition["healthcheck"], vars)
            .with_context(|| format!("{name}: healthcheck"))?,
    })
}

/// Compose's healthcheck with its defaults (interval 30 s, timeout 30 s, 3 retries, no start
/// period).
fn healthcheck(
    definition: &Value,
    vars: &BTreeMap<String, String>,
) -> anyhow::Result<Option<Healthcheck>> {
    if definition.is_null() || definition["disable"] == Value::Bool(true) {
        return Ok(None);
    }
    let test = strings(&definition["test"])
        .iter()
        .map(|a| interpolate(a, vars).map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let test = match test.split_first() {
        None => return Ok(None),
        Some((first, _)) if first == "NONE" => return Ok(None),
        Some((first, rest)) if first == "CMD" => rest.to_vec(),
        Some((first, rest)) if first == "CMD-SHELL" => {
            vec!["sh".into(), "-c".into(), rest.join(" ")]
        }
        // The string form is a shell command.
        Some(_) if definition["test"].is_string() => vec!["sh".into(), "-c".into(), test.join(" ")],
        Some((first, _)) => bail!("test must start with CMD, CMD-SHELL or NONE, not {first}"),
    };
    let duration = |key: &str, default: Duration| match definition[key].as_str() {
        Some(text) => parse_duration(text).with_context(|| format!("{key}: {text:?}")),
        None => Ok(default),
    };
    let interval = duration("interval", Duration::from_secs(30))?;
    let timeout = duration("timeout", Duration::from_secs(30))?;
    let start_period = duration("start_period", Duration::ZERO)?;
    let retries = definition["retries"].as_u64().unwrap_or(3);
    Ok(Some(Healthcheck {
        test,
        timeout,
        deadline: start_period + interval * u32::try_from(retries).unwrap_or(u32::MAX),
    }))
}

/// A compose duration: `1h2m3s`, `90s`, `500ms`, `1.5s`.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let mut total = 0.0;
    let mut rest = text.trim();
    if rest.is_empty() {
        bail!("empty duration");
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .context("a number without a unit")?;
        let number: f64 = rest[..number_end].parse().context("not a number")?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            "us" => 0.000_001,
            unit => bail!("unknown unit {unit:?}"),
        };
        total += number * seconds;
        rest = &rest[unit_end..];
    }
    Ok(Duration::from_secs_f64(total))
}

/// A list of strings, or one string split on whitespace (compose's two spellings).
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The services ordered so each follows its dependencies (ties by name); an error on a cycle.
fn start_order(mut pending: BTreeMap<String, Service>) -> anyhow::Result<Vec<Service>> {
    let mut ordered = Vec::new();
    let mut placed = BTreeSet::new();
    while !pending.is_empty() {
        let ready: Vec<String> = pending
            .values()
            .filter(|s| s.depends_on.iter().all(|(d, _)| placed.contains(d)))
            .map(|s| s.name.clone())
            .collect();
        if ready.is_empty() {
            bail!(
                "depends_on has a cycle among {:?}",
                pending.keys().collect::<Vec<_>>()
            );
        }
        for name in ready {
            ordered.extend(pending.remove(&name));
            placed.insert(name);
        }
    }
    Ok(ordered)
}

/// The `ENV` of the Dockerfile's last stage (the runtime image): a container starts with it,
/// and the compose `environment:` overrides it.
pub fn image_env(dockerfile: &str) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let line = line.trim();
        if current.is_empty() && (line.starts_with('#') || line.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    let last_stage = instructions
        .iter()
        .rposition(|i| i.to_ascii_uppercase().starts_with("FROM "))
        .unwrap_or(0);
    instructions[last_stage..]
        .iter()
        .filter_map(|i| i.strip_prefix("ENV "))
        .flat_map(str::split_whitespace)
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vars() -> BTreeMap<String, String> {
        [("PW", "secret"), ("APP_ENV", "development")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn compose() -> Value {
        json!({"services": {
            "gateway": {
                "image": IMAGE, "command": ["gateway"],
                "environment": {"DATABASE_URL": "postgres://postgres:${PW:?set}@postgres/checkout"},
                "depends_on": {"cart": {"condition": "service_healthy"}},
                "healthcheck": {"test": ["CMD", "healthcheck", "8080"], "interval": "5s",
                                "retries": 12, "start_period": "10s", "timeout": "3s"},
            },
            "cart": {
                "build": {"context": "."}, "command": "cart --flag",
                "environment": ["APP_ENV=${APP_ENV}"],
                "depends_on": ["postgres", "redis", "jaeger"],
                "healthcheck": {"test": "healthcheck 8081"},
            },
            "postgres": {"image": "postgres:16",
                         "healthcheck": {"test": ["CMD-SHELL", "pg_isready", "-q"]}},
            "redis": {"image": "redis:7", "healthcheck": {"test": ["NONE"]}},
            "jaeger": {"image": "jaegertracing/all-in-one:1.62.0"},
        }})
    }

    #[test]
    fn services_start_after_their_dependencies_and_unknown_images_are_skipped() {
        let plan = Plan::read(&compose(), &vars()).unwrap();
        let order: Vec<&str> = plan.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(order, ["postgres", "redis", "cart", "gateway"]);
        assert_eq!(
            plan.skipped,
            [(
                "jaeger".to_owned(),
                "jaegertracing/all-in-one:1.62.0".to_owned()
            )]
        );
        assert_eq!(plan.dropped, [("cart".to_owned(), "jaeger".to_owned())]);
        assert_eq!(plan.service("postgres").unwrap().kind, Kind::Postgres);
        assert_eq!(plan.service("redis").unwrap().kind, Kind::Redis);
    }

    #[test]
    fn commands_environments_and_conditions_are_read_as_compose_reads_them() {
        let plan = Plan::read(&compose(), &vars()).unwrap();
        let cart = plan.service("cart").unwrap();
        assert_eq!(
            cart.kind,
            Kind::App {
                binary: "cart".into(),
                args: vec!["--flag".into()]
            }
        );
        assert_eq!(cart.env["APP_ENV"], "development");
        assert_eq!(
            cart.depends_on,
            [
                ("postgres".to_owned(), Condition::Started),
                ("redis".to_owned(), Condition::Started)
            ]
        );
        let gateway = plan.service("gateway").unwrap();
        assert_eq!(
            gateway.env["DATABASE_URL"],
            "postgres://postgres:secret@postgres/checkout"
        );
        assert_eq!(
            gateway.depends_on,
            [("cart".to_owned(), Condition::Healthy)]
        );
    }

    #[test]
    fn healthchecks_keep_compose_timing_and_forms() {
        let plan = Plan::read(&compose(), &vars()).unwrap();
        let gateway = plan
            .service("gateway")
            .unwrap()
            .healthcheck
            .as_ref()
            .unwrap();
        assert_eq!(gateway.test, ["healthcheck", "8080"]);
        assert_eq!(gateway.timeout, Duration::from_secs(3));
        assert_eq!(gateway.deadline, Duration::from_secs(10 + 5 * 12));
        let cart = plan.service("cart").unwrap().healthcheck.as_ref().unwrap();
        assert_eq!(cart.test, ["sh", "-c", "healthcheck 8081"]);
        assert_eq!(cart.deadline, Duration::from_secs(90));
        let postgres = plan.service("postgres").unwrap().healthcheck.as_ref();
        assert_eq!(postgres.unwrap().test, ["sh", "-c", "pg_isready -q"]);
        assert!(plan.service("redis").unwrap().healthcheck.is_none());
    }

    #[test]
    fn bad_compose_files_are_refused_with_the_reason() {
        let mut cyclic = compose();
        cyclic["services"]["cart"]["depends_on"] = json!(["gateway"]);
        let err = Plan::read(&cyclic, &vars()).unwrap_err().to_string();
        assert!(err.contains("cycle"), "{err}");

        let mut unset = compose();
        unset["services"]["cart"]["environment"] = json!({"X": "${NOPE:?set it}"});
        let err = format!("{:#}", Plan::read(&unset, &vars()).unwrap_err());
        assert!(err.contains("${NOPE}"), "{err}");

        let mut missing = compose();
        missing["services"]["cart"]["depends_on"] = json!(["nowhere"]);
        let err = Plan::read(&missing, &vars()).unwrap_err().to_string();
        assert!(err.contains("nowhere"), "{err}");

        let mut no_command = compose();
        no_command["services"]["cart"]
            .as_object_mut()
            .unwrap()
            .remove("command");
        let err = format!("{:#}", Plan::read(&no_command, &vars()).unwrap_err());
        assert!(err.contains("command"), "{err}");
    }

    #[test]
    fn durations_parse_like_compose() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5d").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn the_image_environment_is_the_last_stage_s() {
        let dockerfile = "FROM rust AS builder\nENV CARGO_INCREMENTAL=0\n\
            FROM debian AS runtime\n# a comment\nENV RUST_LOG=info,sqlx=warn \\\n    LOG_FORMAT=json\nCMD [\"gateway\"]\n";
        assert_eq!(
            image_env(dockerfile),
            [
                ("RUST_LOG".to_owned(), "info,sqlx=warn".to_owned()),
                ("LOG_FORMAT".to_owned(), "json".to_owned())
            ]
        );
    }
}
