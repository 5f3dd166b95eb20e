//! `cargo xtask bench queue`: the job queue itself, with no service around it. 10,000 no-op
//! jobs are enqueued three ways (one by one, 256 in flight, one batch statement) and drained
//! by one worker at concurrency 32; then jobs that take a slot of the payment rate cap (100/s,
//! shared through Redis) are drained and the most calls that started in any sliding second
//! is counted. Postgres keeps its durable settings. Each figure is the median of the rounds,
//! printed beside BullMQ 6.7's measured on this machine (Redis, concurrency 32).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use common::queue::{ClaimedJob, Handler, JobError, NewJob, Queue, Worker, WorkerConfig};
use sqlx::{Connection as _, PgConnection, PgPool};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    bench::setting,
    stack::{Stack, with_database},
};

/// The benchmark's own database: dropped and created at each run, so it touches no one's data.
const DATABASE: &str = "bench_queue";
/// A queue table the migrations create; in the benchmark's database it holds only its jobs.
const TABLE: &str = "orders.jobs";
const CHANNEL: &str = "bench_queue_jobs";
const KIND: &str = "bench_noop";
const CAPPED: &str = "bench_capped";
/// The cap under test, in calls per second.
const CAP: u32 = 100;

/// BullMQ 6.7 on this machine: (drain jobs/s, enqueue jobs/s with 256 in flight, most jobs
/// let through in one sliding second at a cap of 100/s).
const BULLMQ: (f64, f64, usize) = (11_460.0, 20_860.0, 183);

/// Runs the queue benchmark.
pub async fn queue() -> anyhow::Result<()> {
    let jobs = setting("BENCH_JOBS", 10_000)? as usize;
    let rounds = setting("BENCH_ROUNDS", 5)?.max(1) as usize;
    let capped = setting("BENCH_CAPPED_JOBS", 500)? as usize;
    let stack = Stack::ensure().await?;
    let url = fresh_database(&stack.database_url).await?;
    let pool = common::db::connect(&url, 40).await?;
    common::db::migrate(&pool).await?;
    let queue = Queue::new(pool.clone(), TABLE, CHANNEL);
    let (fsync, sync_commit): (String, String) =
        sqlx::query_as("SELECT current_setting('fsync'), current_setting('synchronous_commit')")
            .fetch_one(&pool)
            .await?;
    println!(
        "\nqueue benchmark, release build, {jobs} no-op jobs, {rounds} rounds (medians), \
         worker concurrency 32, Postgres fsync={fsync} synchronous_commit={sync_commit}\n"
    );

    let mut figures: [Vec<f64>; 4] = Default::default();
    let mut peaks = Vec::new();
    for round in 1..=rounds {
        let one_by_one = rate(jobs, enqueue_one_by_one(&queue, jobs).await?);
        clear(&pool).await?;
        let in_flight = rate(jobs, enqueue_in_flight(&queue, jobs, 256).await?);
        clear(&pool).await?;
        let batch = rate(jobs, enqueue_batch(&queue, jobs).await?);
        let drain = rate(jobs, drain(&queue, jobs).await?);
        let peak = rate_capped(&queue, &stack.redis_url, capped, round).await?;
        println!(
            "round {round}: enqueue one by one {one_by_one:.0}/s, 256 in flight {in_flight:.0}/s, \
             batch {batch:.0}/s; drain {drain:.0}/s; capped {peak} in the busiest second"
        );
        for (series, value) in figures
            .iter_mut()
            .zip([one_by_one, in_flight, batch, drain])
        {
            series.push(value);
        }
        peaks.push(peak);
    }
    let [one_by_one, in_flight, batch, drain] = figures.map(median);
    peaks.sort_unstable();
    let peak = peaks[peaks.len() / 2];
    println!();
    println!("{:<44} {:>14} {:>14}", "", "ours", "BullMQ 6.7");
    println!(
        "{:<44} {:>12.0}/s {:>14}",
        "enqueue, one by one", one_by_one, "-"
    );
    println!(
        "{:<44} {:>12.0}/s {:>12.0}/s",
        "enqueue, 256 in flight", in_flight, BULLMQ.1
    );
    println!(
        "{:<44} {:>12.0}/s {:>14}",
        "enqueue, one batch statement", batch, "-"
    );
    println!(
        "{:<44} {:>12.0}/s {:>12.0}/s",
        "drain, one worker, concurrency 32", drain, BULLMQ.0
    );
    println!(
        "{:<44} {:>14} {:>14}",
        format!("rate cap {CAP}/s: most calls in a sliding second"),
        peak,
        BULLMQ.2
    );
    println!(
        "\n(the cap is counted on the instants the limiter let each call start, which is when a \
         call to the provider would be sent; {capped} jobs per round)"
    );
    Ok(())
}

/// Each job its own statement and its own commit, one after another.
async fn enqueue_one_by_one(queue: &Queue, jobs: usize) -> anyhow::Result<Duration> {
    let mut conn = queue.pool().acquire().await?;
    let started = Instant::now();
    for _ in 0..jobs {
        queue.enqueue(&mut conn, noop()).await?;
    }
    Ok(started.elapsed())
}

/// `in_flight` enqueuers at once, each job its own commit, on the pool's connections.
async fn enqueue_in_flight(
    queue: &Queue,
    jobs: usize,
    in_flight: usize,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..in_flight {
        let queue = queue.clone();
        let share = jobs / in_flight + usize::from(i < jobs % in_flight);
        tasks.spawn(async move {
            for _ in 0..share {
                let mut conn = queue.pool().acquire().await?;
                queue.enqueue(&mut conn, noop()).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(started.elapsed())
}

/// Every job in one statement (the enqueue step over a series of rows).
async fn enqueue_batch(queue: &Queue, jobs: usize) -> anyhow::Result<Duration> {
    let step = queue.enqueue_step("job", "generate_series(1, $9) AS n", 1);
    let sql = format!("WITH {} SELECT count(*) FROM job", step.cte);
    let job = noop();
    let started = Instant::now();
    let added: i64 = step
        .bind(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)), &job)
        .bind(jobs as i32)
        .fetch_one(queue.pool())
        .await?;
    let took = started.elapsed();
    anyhow::ensure!(
        added as usize == jobs,
        "the batch added {added} jobs, not {jobs}"
    );
    Ok(took)
}

/// Starts one worker at concurrency 32 on the queued jobs and times it until none is left.
async fn drain(queue: &Queue, jobs: usize) -> anyhow::Result<Duration> {
    let done = Arc::new(Mutex::new(Vec::with_capacity(jobs)));
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let worker = tokio::spawn(
        Worker::new(queue.clone(), Arc::new(Noop(done.clone())), config()).run(shutdown.clone()),
    );
    wait_until_empty(queue.pool(), Duration::from_secs(120)).await?;
    let took = started.elapsed();
    shutdown.cancel();
    worker.await?;
    let ran = done.lock().expect("never poisoned").len();
    anyhow::ensure!(ran >= jobs, "{ran} of {jobs} jobs ran");
    Ok(took)
}

/// Drains `jobs` jobs that each take a slot of the shared payment cap, and answers the most
/// slots granted within any one second.
async fn rate_capped(
    queue: &Queue,
    redis_url: &str,
    jobs: usize,
    round: usize,
) -> anyhow::Result<usize> {
    let redis = common::redis::connect(redis_url, Duration::from_secs(2))?;
    let key = format!("bench:queue:{}:{round}:cap", std::process::id());
    let limiter = orders::ratelimit::PaymentLimiter::new(0, CAP, redis, key);
    let job = NewJob::new(CAPPED, serde_json::json!({}));
    let step = queue.enqueue_step("job", "generate_series(1, $9) AS n", 1);
    let sql = format!("WITH {} SELECT count(*) FROM job", step.cte);
    let _: i64 = step
        .bind(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)), &job)
        .bind(jobs as i32)
        .fetch_one(queue.pool())
        .await?;
    let starts = Arc::new(Mutex::new(Vec::with_capacity(jobs)));
    let shutdown = CancellationToken::new();
    let handler = Capped {
        limiter,
        starts: starts.clone(),
    };
    let worker =
        tokio::spawn(Worker::new(queue.clone(), Arc::new(handler), config()).run(shutdown.clone()));
    let deadline =
        Duration::from_secs(30) + Duration::from_secs_f64(jobs as f64 / f64::from(CAP) * 2.0);
    wait_until_empty(queue.pool(), deadline).await?;
    shutdown.cancel();
    worker.await?;
    let mut starts = std::mem::take(&mut *starts.lock().expect("never poisoned"));
    anyhow::ensure!(
        starts.len() >= jobs,
        "{} of {jobs} capped jobs ran",
        starts.len()
    );
    starts.sort_unstable();
    Ok(busiest_second(&starts))
}

/// The most instants within any window `[t, t + 1 s)`; checking windows that open at an
/// instant is enough, since sliding a window's start up to its first instant loses none.
fn busiest_second(sorted: &[Instant]) -> usize {
    let mut end = 0;
    let mut most = 0;
    for (start, at) in sorted.iter().enumerate() {
        while end < sorted.len() && sorted[end] < *at + Duration::from_secs(1) {
            end += 1;
        }
        most = most.max(end - start);
    }
    most
}

fn config() -> WorkerConfig {
    WorkerConfig {
        concurrency: 32,
        ..WorkerConfig::new("bench")
    }
}

fn noop() -> NewJob {
    NewJob::new(KIND, serde_json::json!({}))
}

/// Does nothing but count.
struct Noop(Arc<Mutex<Vec<i64>>>);

impl Handler for Noop {
    fn kinds(&self) -> &'static [&'static str] {
        &[KIND]
    }

    async fn handle(&self, job: &ClaimedJob) -> Result<(), JobError> {
        self.0.lock().expect("never poisoned").push(job.id);
        Ok(())
    }
}

/// Takes a slot of the payment cap and notes when it was granted.
struct Capped {
    limiter: orders::ratelimit::PaymentLimiter,
    starts: Arc<Mutex<Vec<Instant>>>,
}

impl Handler for Capped {
    fn kinds(&self) -> &'static [&'static str] {
        &[CAPPED]
    }

    async fn handle(&self, _job: &ClaimedJob) -> Result<(), JobError> {
        self.limiter
            .acquire()
            .await
            .map_err(|e| JobError::Transient(e.to_string()))?;
        self.starts
            .lock()
            .expect("never poisoned")
            .push(Instant::now());
        Ok(())
    }
}

async fn wait_until_empty(pool: &PgPool, deadline: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orders.jobs WHERE status <> 'dead'")
                .fetch_one(pool)
                .await?;
        if left == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < until,
            "{left} jobs still queued after {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn clear(pool: &PgPool) -> anyhow::Result<()> {
    sqlx::query("TRUNCATE orders.jobs").execute(pool).await?;
    Ok(())
}

fn rate(jobs: usize, took: Duration) -> f64 {
    jobs as f64 / took.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Drops and creates the benchmark's database; answers its URL.
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
