//! `cargo xtask api-check`: every service's OpenAPI document checked against the service
//! itself. The services run as debug binaries on free ports against a database of their own;
//! schemathesis (PyPI) generates requests from each `/openapi.json`, valid and invalid, and
//! fails on a 5xx, an undocumented status, content type or body, or invalid data accepted.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitCode},
};

use anyhow::{Context as _, bail};
use hyper::{Method, body::Bytes};
use serde_json::{Value, json};

use crate::{
    bench::{Call, request},
    seed,
    services::{self, Profile, Service},
    stack::{Stack, free_port, with_database},
    target_dir,
};

/// The schemathesis release the check is written against.
const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// The checks every run applies.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
    response_schema_conformance,negative_data_rejection";
/// The schemathesis phases run by default: documented examples, the boundaries of every
/// schema (valid and just invalid), random cases, then sequences that follow the links it
/// infers (a cart created, then its items changed).
const PHASES: &str = "examples,coverage,fuzzing,stateful";
/// Bearer tokens of a development stack (see `services.rs`).
const ADMIN_TOKEN: &str = "dev-admin-token";
const ORDERS_INTERNAL_TOKEN: &str = "dev-orders-token";
const PAYMENTS_INTERNAL_TOKEN: &str = "dev-payments-token";
/// The check's own database and Redis key space, so a running `cargo xtask up` is untouched.
const DATABASE: &str = "checkout_api_check";

/// One schemathesis run: a service's document, the operations it covers and their token.
struct Run {
    name: String,
    schema: String,
    include: Option<&'static str>,
    exclude: Option<&'static str>,
    token: Option<&'static str>,
}

/// Starts the services and runs schemathesis against each document.
pub async fn run(args: &[String]) -> anyhow::Result<ExitCode> {
    let max_examples = std::env::var("API_CHECK_MAX_EXAMPLES").unwrap_or_else(|_| "20".into());
    let phases = std::env::var("API_CHECK_PHASES").unwrap_or_else(|_| PHASES.into());
    let only: Vec<&str> = args.iter().map(String::as_str).collect();
    let schemathesis = ensure_schemathesis()?;

    let mut stack = Stack::ensure().await?;
    create_database(&stack.database_url).await?;
    stack.database_url = with_database(&stack.database_url, DATABASE);
    seed::seed(&stack.database_url).await?;

    let names = ["stripe-sim", "cart", "orders", "payments", "gateway"];
    services::build_only(Profile::Debug, &names)?;
    let (running, admin) = start(&stack).await?;
    let url = |name: &str| {
        running
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.url.clone())
            .expect("every service started")
    };

    let document = |base: String| format!("{base}/openapi.json");
    let runs = [
        Run {
            name: "cart".into(),
            schema: document(url("cart")),
            include: None,
            exclude: None,
            token: None,
        },
        Run {
            name: "orders (public)".into(),
            schema: document(url("orders")),
            include: None,
            exclude: Some("^/(internal|admin)/"),
            token: None,
        },
        Run {
            name: "orders (internal)".into(),
            schema: document(url("orders")),
            include: Some("^/internal/"),
            exclude: None,
            token: Some(ORDERS_INTERNAL_TOKEN),
        },
        Run {
            name: "orders (admin)".into(),
            schema: document(url("orders")),
            include: Some("^/admin/"),
            exclude: None,
            token: Some(ADMIN_TOKEN),
        },
        Run {
            name: "payments (public)".into(),
            schema: document(url("payments")),
            include: None,
            exclude: Some("^/(internal|admin)/"),
            token: None,
        },
        Run {
            name: "payments (internal)".into(),
            schema: document(url("payments")),
            include: Some("^/internal/"),
            exclude: None,
            token: Some(PAYMENTS_INTERNAL_TOKEN),
        },
        Run {
            name: "payments (admin)".into(),
            schema: document(url("payments")),
            include: Some("^/admin/"),
            exclude: None,
            token: Some(ADMIN_TOKEN),
        },
        Run {
            name: "gateway (admin listener)".into(),
            schema: document(format!("http://{admin}")),
            include: None,
            exclude: None,
            token: Some(ADMIN_TOKEN),
        },
    ];

    let flags_before = flags(&admin).await?;
    let mut results = Vec::new();
    for run in &runs {
        let service = run.name.split(' ').next().unwrap_or_default();
        if !only.is_empty() && !only.contains(&service) {
            continue;
        }
        results.push((
            run.name.clone(),
            schemathesis_run(&schemathesis, run, &max_examples, &phases)?,
        ));
    }
    // The admin run ramps and rolls back flags at random: put every one back as it was.
    restore_flags(&admin, &flags_before).await?;
    let flags_after = flags(&admin).await?;
    let differ = strip_versions(&flags_before) != strip_versions(&flags_after);
    drop(running);

    println!("\napi-check summary (max {max_examples} examples per operation):");
    let mut failed = differ;
    for (name, outcome) in &results {
        println!("  {:<26} {}", name, outcome.summary);
        failed |= !outcome.passed;
    }
    if differ {
        println!("  gateway flags were not restored: before {flags_before}, after {flags_after}");
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

async fn create_database(server_url: &str) -> anyhow::Result<()> {
    use sqlx::Connection as _;
    let mut admin = sqlx::PgConnection::connect(&with_database(server_url, "postgres"))
        .await
        .context("connecting to Postgres")?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(DATABASE)
            .fetch_one(&mut admin)
            .await?;
    if !exists {
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {DATABASE}")))
            .execute(&mut admin)
            .await?;
    }
    Ok(())
}

/// The services, wired to each other on free ports, and the gateway's admin listener.
async fn start(stores: &Stack) -> anyhow::Result<(Vec<Service>, String)> {
    let [sim, cart, orders, payments, gateway, admin] = [(); 6].map(|()| free_port());
    let (sim, cart, orders, payments, gateway, admin) =
        (sim?, cart?, orders?, payments?, gateway?, admin?);
    let local = |port: u16| format!("http://127.0.0.1:{port}");
    let webhook = format!("{}/v1/webhooks/stripe", local(payments));
    let admin_addr = format!("127.0.0.1:{admin}");
    let dev = ("APP_ENV", "development");
    let tokens = [
        ("PAYMENTS_INTERNAL_TOKEN", PAYMENTS_INTERNAL_TOKEN),
        ("ORDERS_INTERNAL_TOKEN", ORDERS_INTERNAL_TOKEN),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
    ];
    let (cart_url, orders_url, payments_url, sim_url) =
        (local(cart), local(orders), local(payments), local(sim));

    let mut running = Vec::new();
    let sim_env = [
        ("SIM_WEBHOOK_URLS", webhook.as_str()),
        ("SIM_WEBHOOK_SECRET", "whsec_sim_local"),
        ("SIM_WEBHOOK_EVENTS", services::PAYMENTS_WEBHOOK_EVENTS),
    ];
    running.push(services::start(
        stores,
        Profile::Debug,
        "stripe-sim",
        sim,
        &sim_env,
    )?);
    let cart_env = [dev, ("CART_KEY_PREFIX", "api-check:cart:")];
    running.push(services::start(
        stores,
        Profile::Debug,
        "cart",
        cart,
        &cart_env,
    )?);
    let mut orders_env = vec![
        dev,
        ("CART_URL", cart_url.as_str()),
        ("PAYMENTS_URL", payments_url.as_str()),
        // Streams of a real order end soon, so a generated request never waits long.
        ("EVENT_STREAM_MAX_SECS", "2"),
    ];
    orders_env.extend(tokens);
    running.push(services::start(
        stores,
        Profile::Debug,
        "orders",
        orders,
        &orders_env,
    )?);
    let mut payments_env = vec![
        dev,
        ("STRIPE_API_BASE", sim_url.as_str()),
        ("STRIPE_WEBHOOK_SECRETS", "whsec_sim_local"),
        ("ORDERS_URL", orders_url.as_str()),
    ];
    payments_env.extend(tokens);
    running.push(services::start(
        stores,
        Profile::Debug,
        "payments",
        payments,
        &payments_env,
    )?);
    let gateway_env = [
        dev,
        ("CART_URL", cart_url.as_str()),
        ("ORDERS_URL", orders_url.as_str()),
        ("PAYMENTS_URL", payments_url.as_str()),
        ("ADMIN_TOKEN", ADMIN_TOKEN),
        ("ADMIN_LISTEN_ADDR", admin_addr.as_str()),
        ("GATEWAY_INITIAL_ROLLOUT", "100"),
        ("RATE_LIMIT_PER_SECOND", "0"),
        // Every generated admin request carries the right token; none is locked out.
        ("ADMIN_MAX_FAILURES", "1000000"),
    ];
    running.push(services::start(
        stores,
        Profile::Debug,
        "gateway",
        gateway,
        &gateway_env,
    )?);
    for service in &running {
        services::wait_ready(service).await?;
    }
    Ok((running, admin_addr))
}

/// What one schemathesis run ended with.
struct Outcome {
    passed: bool,
    summary: String,
}

fn schemathesis_run(
    binary: &Path,
    run: &Run,
    max_examples: &str,
    phases: &str,
) -> anyhow::Result<Outcome> {
    println!("\n== schemathesis: {} ({})", run.name, run.schema);
    let mut command = Command::new(binary);
    // schemathesis keeps its state in `.schemathesis/` of its working directory.
    command.current_dir(target_dir::scratch("api-check")?);
    command.args([
        "run",
        &run.schema,
        "--checks",
        CHECKS,
        "--max-examples",
        max_examples,
        "--phases",
        phases,
        "--request-timeout",
        "10",
        "--workers",
        "1",
        "--seed",
        "1",
        "--no-color",
        "--suppress-health-check",
        "all",
    ]);
    if let Some(include) = run.include {
        command.args(["--include-path-regex", include]);
    }
    if let Some(exclude) = run.exclude {
        command.args(["--exclude-path-regex", exclude]);
    }
    if let Some(token) = run.token {
        command.args(["--header", &format!("Authorization: Bearer {token}")]);
    }
    let output = command
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    let text = String::from_utf8_lossy(&output.stdout);
    print!("{text}");
    eprint!("{}", String::from_utf8_lossy(&output.stderr));
    // The summary ends with "Test cases:" and, on the next line, "125 generated, 125 passed"
    // or "125 generated, 3 found 3 unique failures".
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let summary = lines
        .iter()
        .position(|l| *l == "Test cases:")
        .and_then(|i| lines.get(i + 1))
        .map(|l| (*l).to_owned())
        .unwrap_or_default();
    Ok(Outcome {
        passed: output.status.success(),
        summary: if summary.is_empty() {
            format!("no summary; exit {}", output.status)
        } else {
            summary
        },
    })
}

/// The schemathesis command: on `PATH`, or installed once into a virtualenv under cargo's
/// target directory.
fn ensure_schemathesis() -> anyhow::Result<PathBuf> {
    let on_path = Command::new("schemathesis").arg("--version").output();
    if on_path.is_ok_and(|o| o.status.success()) {
        return Ok(PathBuf::from("schemathesis"));
    }
    let venv = target_dir::scratch("api-check")?.join("venv");
    let binary = venv.join("bin/schemathesis");
    if binary.exists() {
        return Ok(binary);
    }
    println!("xtask: installing {SCHEMATHESIS} into {}", venv.display());
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context("running python3 -m venv (install python3 and python3-venv)")?;
    if !status.success() {
        bail!("python3 -m venv {} failed", venv.display());
    }
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", SCHEMATHESIS])
        .status()
        .context("running pip")?;
    if !status.success() {
        bail!("pip install {SCHEMATHESIS} failed");
    }
    Ok(binary)
}

/// The gateway's flags as its admin API answers them.
async fn flags(admin: &str) -> anyhow::Result<Value> {
    let (status, body) = request(
        admin,
        Call::get("/admin/flags".into()).header("authorization", format!("Bearer {ADMIN_TOKEN}")),
    )
    .await?;
    if status != 200 {
        bail!("GET /admin/flags answered {status}");
    }
    Ok(serde_json::from_slice(&body)?)
}

async fn restore_flags(admin: &str, before: &Value) -> anyhow::Result<()> {
    for flag in before["flags"].as_array().into_iter().flatten() {
        let name = flag["name"].as_str().unwrap_or_default();
        let body = json!({
            "enabled": flag["enabled"],
            "rollout_percent": flag["rollout_percent"],
            "reason": "api-check: restore the flag as it was before the run",
        });
        let call = Call {
            method: Method::PUT,
            path: format!("/admin/flags/{name}"),
            body: Some(Bytes::from(body.to_string())),
            headers: vec![("authorization", format!("Bearer {ADMIN_TOKEN}"))],
        };
        let (status, answer) = request(admin, call).await?;
        if status != 200 {
            bail!(
                "restoring flag {name} answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
        }
    }
    Ok(())
}

/// The flags without what every change moves (version, time).
fn strip_versions(flags: &Value) -> Vec<(Value, Value, Value)> {
    flags["flags"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["name"].clone(),
                f["enabled"].clone(),
                f["rollout_percent"].clone(),
            )
        })
        .collect()
}
