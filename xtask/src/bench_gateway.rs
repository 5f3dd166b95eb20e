//! `cargo xtask bench gateway`: what the gateway costs as a proxy, and what its two HTTP/1
//! paths cost against each other. The same requests, at the same concurrency, go (1) straight
//! to a trivial upstream, (2) through nginx (`proxy_pass` to an `upstream` block with
//! `keepalive`; installed with apt-get when missing and possible), and through the gateway's
//! release build with every group at 100 % and a serving thread per core, (3) with its own
//! HTTP/1 code (`GATEWAY_HTTP=own`) and (4) with hyper on both sides (`GATEWAY_HTTP=hyper`).
//! All of it runs on this machine, load generator included, so only differences mean
//! anything: the proxies take turns for `BENCH_ROUNDS` rounds (default 5), and each figure is
//! the median of its rounds.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use sqlx::{Connection as _, PgConnection};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};

use crate::{
    bench::{Call, load, request, setting},
    services::{self, Profile},
    stack::{Stack, free_port, with_database},
};

/// The gateway gets a database of its own, created afresh, so its flags start as seeded.
const DATABASE: &str = "checkout_bench_gateway";

/// The gateway's HTTP/1 paths, by `GATEWAY_HTTP` value and the name the report gives them.
const PATHS: [(&str, &str); 2] = [
    ("own", "gateway, own HTTP/1 (GATEWAY_HTTP=own)"),
    ("hyper", "gateway, hyper (GATEWAY_HTTP=hyper)"),
];

/// Runs the scenarios.
pub async fn gateway() -> anyhow::Result<()> {
    let seconds = setting("BENCH_SECONDS", 10)?;
    let conns = setting("BENCH_CONNECTIONS", 64)? as usize;
    let rounds = setting("BENCH_ROUNDS", 5)?.max(1);
    let duration = Duration::from_secs(seconds);

    let upstream = TcpListener::bind("127.0.0.1:0").await?;
    let upstream_addr = upstream.local_addr()?.to_string();
    let upstream_task = tokio::spawn(trivial_upstream(upstream));

    let stack = Stack::ensure().await?;
    let database_url = fresh_database(&stack.database_url).await?;
    services::build_only(Profile::Release, &["gateway"])?;
    let upstream_url = format!("http://{upstream_addr}");
    let mut gateways = Vec::new();
    for (http, _) in PATHS {
        let port = free_port()?;
        let gateway = services::start(
            &stack,
            Profile::Release,
            "gateway",
            port,
            &[
                ("DATABASE_URL", database_url.as_str()),
                ("CART_URL", upstream_url.as_str()),
                ("ORDERS_URL", upstream_url.as_str()),
                ("PAYMENTS_URL", upstream_url.as_str()),
                ("LEGACY_URL", upstream_url.as_str()),
                ("GATEWAY_INITIAL_ROLLOUT", "100"),
                ("GATEWAY_HTTP", http),
                ("RATE_LIMIT_PER_SECOND", "0"),
                // Two gateways run at once; neither needs its admin listener.
                ("ADMIN_LISTEN_ADDR", "off"),
                ("RUST_LOG", "warn"),
            ],
        )?;
        services::wait_ready(&gateway).await?;
        gateways.push((gateway, format!("127.0.0.1:{port}")));
    }

    let nginx = Nginx::start(&upstream_addr)?;
    if nginx.is_none() {
        println!(
            "\nnginx is not installed and apt-get could not install it; skipping the nginx \
             scenario"
        );
    }

    // Every request is a new-cart read bucketed by customer: at 100 % it is the cart group's.
    let call = |user: usize, _n: u64| {
        Call::get("/v1/carts".to_owned()).header("x-customer-id", format!("bench-customer-{user}"))
    };
    for (_, addr) in &gateways {
        let (status, _) = request(addr, call(0, 0)).await?;
        if status != 200 {
            bail!("the gateway answered {status} before the benchmark (flags not at 100 %?)");
        }
    }

    println!(
        "\nproxy overhead: GET /v1/carts, {conns} connections, {seconds} s per scenario, release builds, \
         load generator and upstream on this machine; the proxies take turns for {rounds} \
         rounds, so a drift of the machine's speed falls on all of them\n"
    );
    measure(
        "direct (trivial upstream)",
        &upstream_addr,
        None,
        conns,
        duration,
        call,
    )
    .await?;
    let mut proxies = Vec::new();
    if let Some(nginx) = &nginx {
        proxies.push((
            "nginx (proxy_pass, keepalive)",
            nginx.addr.clone(),
            nginx.child.id(),
        ));
    }
    for ((gateway, addr), (_, name)) in gateways.iter().zip(PATHS) {
        proxies.push((name, addr.clone(), gateway.pid()));
    }
    let mut figures = vec![Vec::new(); proxies.len()];
    for _ in 0..rounds {
        for ((name, addr, pid), figures) in proxies.iter().zip(&mut figures) {
            figures.push(measure(name, addr, Some(*pid), conns, duration, call).await?);
        }
    }
    summarise(&proxies, &figures, nginx.is_some());
    if let Some(nginx) = &nginx {
        println!("\nnginx configuration: {}", nginx.config.display());
    }

    drop(nginx);
    drop(gateways);
    upstream_task.abort();
    Ok(())
}

/// One proxy's figures in one round.
#[derive(Debug, Clone, Copy)]
struct Round {
    /// Requests per second.
    rate: f64,
    /// 99th percentile latency, in milliseconds.
    p99_ms: f64,
    /// CPU time the proxy spent per request, in microseconds.
    cpu_us: f64,
}

/// Prints the median of each proxy's rounds, then how the gateway's paths compare with each
/// other and, when it ran, with nginx (medians of the round-by-round ratios).
fn summarise(proxies: &[(&str, String, u32)], figures: &[Vec<Round>], with_nginx: bool) {
    let median_of =
        |rounds: &[Round], figure: fn(&Round) -> f64| median(rounds.iter().map(figure).collect());
    println!(
        "\nmedians of {} rounds:",
        figures.first().map_or(0, Vec::len)
    );
    println!(
        "{:<40} {:>10} {:>10} {:>16}",
        "", "req/s", "p99 ms", "CPU µs/request"
    );
    for ((name, ..), rounds) in proxies.iter().zip(figures) {
        println!(
            "{name:<40} {:>10.0} {:>10.2} {:>16.1}",
            median_of(rounds, |r| r.rate),
            median_of(rounds, |r| r.p99_ms),
            median_of(rounds, |r| r.cpu_us),
        );
    }
    let ratio = |a: &[Round], b: &[Round], figure: fn(&Round) -> f64| {
        let ratios: Vec<f64> = a
            .iter()
            .zip(b)
            .map(|(a, b)| figure(a) / figure(b))
            .collect();
        let each: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        (median(ratios), each.join(", "))
    };
    let gateways = if with_nginx { &figures[1..] } else { figures };
    if let [own, hyper] = gateways {
        let (cpu, each) = ratio(own, hyper, |r| r.cpu_us);
        println!(
            "\nown / hyper CPU per request: median {cpu:.2} (the own path saves {:.0} %); \
             round by round: {each}",
            (1.0 - cpu) * 100.0
        );
        let (rate, each) = ratio(own, hyper, |r| r.rate);
        println!("own / hyper throughput: median {rate:.2}; round by round: {each}");
    }
    if with_nginx {
        for ((name, ..), gateway) in proxies[1..].iter().zip(&figures[1..]) {
            let (rate, each) = ratio(gateway, &figures[0], |r| r.rate);
            println!("{name} / nginx throughput: median {rate:.2}; round by round: {each}");
            let (cpu, each) = ratio(gateway, &figures[0], |r| r.cpu_us);
            println!("{name} / nginx CPU per request: median {cpu:.2}; round by round: {each}");
        }
    }
}

/// The middle of `values` (the mean of the two middle values when even); 0 when empty.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Warms `addr` up, then loads it for `duration` and prints the report, with the CPU time
/// per request of process `proxy` when given; answers the round's figures.
async fn measure(
    name: &str,
    addr: &str,
    proxy: Option<u32>,
    conns: usize,
    duration: Duration,
    call: impl Fn(usize, u64) -> Call + Copy + Send + Sync + 'static,
) -> anyhow::Result<Round> {
    load("warm-up", addr, conns, Duration::from_secs(2), call).await?;
    let before = proxy.map(cpu_ticks);
    let report = load(name, addr, conns, duration, call).await?;
    report.print();
    let mut cpu_us = 0.0;
    if let (Some(pid), Some(before)) = (proxy, before) {
        let ticks = cpu_ticks(pid) - before;
        let requests = (report.ok + report.failed).max(1) as f64;
        cpu_us = ticks as f64 * 1e6 / CLOCK_TICKS / requests;
        println!(
            "{:<34} {:>9.1} µs CPU per request in the proxy ({:.2} cores busy)",
            "",
            cpu_us,
            ticks as f64 / CLOCK_TICKS / report.elapsed.as_secs_f64(),
        );
    }
    Ok(Round {
        rate: report.rate(),
        p99_ms: report.percentile(0.99),
        cpu_us,
    })
}

/// `USER_HZ`: the unit of the CPU times in `/proc/<pid>/stat` (100 on Linux).
const CLOCK_TICKS: f64 = 100.0;

/// User and system CPU time, in clock ticks, of process `root` and its children (nginx's
/// workers are its master's children); 0 where `/proc` cannot tell.
fn cpu_ticks(root: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("stat")).ok())
        .filter_map(|stat| {
            // Fields after the parenthesised command name: state, ppid, ..., utime (14th
            // field overall), stime (15th).
            let (head, rest) = stat.rsplit_once(") ")?;
            let pid: u32 = head.split_once(" (")?.0.parse().ok()?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ppid: u32 = fields.get(1)?.parse().ok()?;
            let (user, system): (u64, u64) =
                (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
            (pid == root || ppid == root).then_some(user + system)
        })
        .sum()
}

/// Drops and creates the gateway's benchmark database; answers its URL.
async fn fresh_database(url: &str) -> anyhow::Result<String> {
    let mut admin = PgConnection::connect(&with_database(url, "postgres"))
        .await
        .context("connecting to Postgres")?;
    for statement in [
        format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"),
        format!("CREATE DATABASE {DATABASE}"),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(statement))
            .execute(&mut admin)
            .await?;
    }
    Ok(with_database(url, DATABASE))
}

/// An HTTP/1.1 server as cheap as one can be: every request head gets the same 11-byte JSON
/// answer on a kept-alive connection. It reads no bodies: the benchmark sends GETs only.
async fn trivial_upstream(listener: TcpListener) {
    while let Ok((stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let _ = answer_requests(stream).await;
        });
    }
}

async fn answer_requests(mut stream: TcpStream) -> std::io::Result<()> {
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{\"ok\":true}";
    stream.set_nodelay(true)?;
    let mut pending = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        pending.extend_from_slice(&chunk[..read]);
        let mut heads = 0;
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            heads += 1;
        }
        if heads > 0 {
            stream.write_all(&RESPONSE.repeat(heads)).await?;
        }
    }
}

/// nginx from the system, run in the foreground with a configuration under the target
/// directory.
struct Nginx {
    addr: String,
    config: std::path::PathBuf,
    child: Child,
}

impl Nginx {
    /// Starts nginx proxying to `upstream`, installing it first when it is missing; `None`
    /// when it is not installed and cannot be.
    fn start(upstream: &str) -> anyhow::Result<Option<Self>> {
        let binary = match find_nginx() {
            Some(binary) => binary,
            None => {
                install_nginx();
                match find_nginx() {
                    Some(binary) => binary,
                    None => return Ok(None),
                }
            }
        };
        let dir = crate::target_dir::scratch("bench-gateway/nginx")?;
        let addr = format!("127.0.0.1:{}", free_port()?);
        let config = dir.join("nginx.conf");
        std::fs::write(&config, nginx_config(&dir, &addr, upstream))?;
        let child = Command::new(binary)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config)
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {binary}"))?;
        let nginx = Self {
            addr,
            config,
            child,
        };
        nginx.wait_listening()?;
        Ok(Some(nginx))
    }

    fn wait_listening(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(&self.addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "nginx did not listen on {}; see {}",
            self.addr,
            self.config.with_file_name("error.log").display()
        )
    }
}

/// The nginx binary, if one runs.
fn find_nginx() -> Option<&'static str> {
    ["nginx", "/usr/sbin/nginx"].into_iter().find(|b| {
        Command::new(b)
            .arg("-v")
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// `apt-get update`, then `apt-get install -y nginx`; what fails (no apt-get, no root) only
/// leaves nginx missing.
fn install_nginx() {
    println!("nginx is missing; installing it with apt-get");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !(apt(&["update"]) && apt(&["install", "-y", "nginx"])) {
        println!("apt-get could not install nginx");
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then exits.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn nginx_config(dir: &Path, listen: &str, upstream: &str) -> String {
    let dir = dir.display();
    format!(
        "# Generated by `cargo xtask bench gateway`.
daemon off;
worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    # The load generator keeps each connection for the whole run (the default closes it
    # after 1,000 requests).
    keepalive_requests 1000000000;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream backend {{
        server {upstream};
        keepalive 128;
        keepalive_requests 1000000000;
    }}
    server {{
        listen {listen};
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Host $proxy_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }}
    }}
}}
"
    )
}
