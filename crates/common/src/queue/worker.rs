//! The worker loop: claims due jobs up to its concurrency, runs each under a timeout, and
//! settles it (done, retry later, or dead letter with compensation). It wakes on the queue's
//! NOTIFY channel, so a new job starts at once, and polls as a fallback.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use sqlx::postgres::PgListener;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::{Backoff, ClaimedJob, Queue};
use crate::{ConfigError, config};

/// Why a job attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth retrying: a timeout, a 5xx, a lost connection.
    #[error("transient: {0}")]
    Transient(String),
    /// Retrying cannot help; the job becomes a dead letter at once.
    #[error("permanent: {0}")]
    Permanent(String),
}

/// What a worker runs.
pub trait Handler: Send + Sync + 'static {
    /// The job kinds this handler takes.
    fn kinds(&self) -> &'static [&'static str];

    /// Runs one attempt. Delivery is at least once: a handler must be safe to run twice.
    fn handle(&self, job: &ClaimedJob) -> impl Future<Output = Result<(), JobError>> + Send;

    /// Called when a job runs out of attempts, before it is kept as a dead letter: undo what
    /// the job's saga did. An error here leaves the job to be tried again later.
    fn on_dead(
        &self,
        job: &ClaimedJob,
        error: &str,
    ) -> impl Future<Output = Result<(), String>> + Send {
        let _ = (job, error);
        async { Ok(()) }
    }
}

/// How a worker runs.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Names the worker's claims (`locked_by`); each `Worker` adds a suffix of its own, so
    /// two workers never share one.
    pub name: String,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Bound on one attempt; the lease is twice this, so a live worker never loses a job.
    pub job_timeout: Duration,
    /// How often to look for due jobs without a notification (retries, expired leases).
    pub poll_interval: Duration,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// How long shutdown waits for running jobs.
    pub drain_timeout: Duration,
}

impl WorkerConfig {
    /// Defaults for a worker named `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            concurrency: 32,
            job_timeout: Duration::from_secs(15),
            poll_interval: Duration::from_millis(500),
            backoff: Backoff::default(),
            drain_timeout: Duration::from_secs(10),
        }
    }

    /// The defaults for a worker of `service` (named after it),
    /// with attempts bounded by `job_timeout`, then `WORKER_CONCURRENCY`, `JOB_TIMEOUT_MS`,
    /// `JOB_BACKOFF_BASE_MS`, `JOB_BACKOFF_MAX_MS` and `JOB_POLL_MS` where they are set.
    pub fn from_env(service: &str, job_timeout: Duration) -> Result<Self, ConfigError> {
        let defaults = Self::new(service);
        let config = Self {
            concurrency: config::parse("WORKER_CONCURRENCY", defaults.concurrency)?,
            job_timeout: config::millis("JOB_TIMEOUT_MS", job_timeout)?,
            backoff: Backoff {
                base: config::millis("JOB_BACKOFF_BASE_MS", defaults.backoff.base)?,
                max: config::millis("JOB_BACKOFF_MAX_MS", defaults.backoff.max)?,
            },
            poll_interval: config::millis("JOB_POLL_MS", defaults.poll_interval)?,
            ..defaults
        };
        if config.concurrency == 0 {
            return Err(ConfigError::new("WORKER_CONCURRENCY", "must be at least 1"));
        }
        Ok(config)
    }
}

/// How often a worker that finds a backlog refreshes the queue table's statistics.
const STATISTICS_REFRESH: Duration = Duration::from_secs(10);

/// A worker for one handler.
pub struct Worker<H> {
    queue: Queue,
    handler: Arc<H>,
    config: Arc<WorkerConfig>,
}

impl<H: Handler> Worker<H> {
    /// A worker taking `handler`'s kinds from `queue`.
    pub fn new(queue: Queue, handler: Arc<H>, mut config: WorkerConfig) -> Self {
        config.name = format!("{}-{}", config.name, crate::id::new_id("w"));
        Self {
            queue,
            handler,
            config: Arc::new(config),
        }
    }

    /// Runs until `shutdown`, then drains running jobs for up to the drain timeout; jobs
    /// still running after that are left to their lease and retried by another worker.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut listener = match PgListener::connect_with(self.queue.pool()).await {
            Ok(mut l) => match l.listen(self.queue.waker.channel()).await {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot LISTEN; polling only");
                    None
                }
            },
            Err(e) => {
                tracing::warn!(error = %e, "cannot LISTEN; polling only");
                None
            }
        };
        let slots = Arc::new(Semaphore::new(self.config.concurrency));
        let mut running = JoinSet::new();
        let kinds = self.handler.kinds();
        let mut analyzed: Option<Instant> = None;
        while !shutdown.is_cancelled() {
            while running.try_join_next().is_some() {}
            let free = slots.available_permits();
            let mut claimed_all = false;
            if free > 0 {
                let lease = self.config.job_timeout * 2;
                match self
                    .queue
                    .claim(&self.config.name, kinds, free as i64, lease)
                    .await
                {
                    Ok(jobs) => {
                        claimed_all = jobs.len() == free;
                        for job in jobs {
                            let permit = slots
                                .clone()
                                .acquire_owned()
                                .await
                                .expect("the semaphore is never closed");
                            let (queue, handler, config) = (
                                self.queue.clone(),
                                self.handler.clone(),
                                self.config.clone(),
                            );
                            running.spawn(async move {
                                settle(&queue, handler.as_ref(), &config, job).await;
                                drop(permit);
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "claiming jobs failed"),
                }
            }
            if claimed_all {
                // A backlog: the planner must know it, or it reads every pending job on
                // each claim (statistics from when the table was nearly empty make that
                // look cheap, and autovacuum looks only once a minute).
                if analyzed.is_none_or(|at| at.elapsed() >= STATISTICS_REFRESH) {
                    analyzed = Some(Instant::now());
                    let queue = self.queue.clone();
                    tokio::spawn(async move { queue.refresh_statistics().await });
                }
                // The queue may hold more; claim again as soon as a slot frees.
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = running.join_next() => {}
                }
                continue;
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = notified(&mut listener) => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        let deadline = Instant::now() + self.config.drain_timeout;
        while !running.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, running.join_next())
                .await
                .is_err()
            {
                tracing::warn!(
                    jobs = running.len(),
                    "jobs still running at shutdown; their leases will hand them on"
                );
                running.abort_all();
                break;
            }
        }
    }
}

async fn notified(listener: &mut Option<PgListener>) {
    match listener {
        Some(l) => {
            if l.recv().await.is_err() {
                // The listener reconnects on the next recv; avoid a hot loop meanwhile.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        None => std::future::pending().await,
    }
}

async fn settle<H: Handler>(queue: &Queue, handler: &H, config: &WorkerConfig, job: ClaimedJob) {
    let span = tracing::info_span!("job", kind = %job.kind, id = job.id, attempt = job.attempt);
    if let Some(traceparent) = &job.traceparent {
        crate::telemetry::follow_traceparent(&span, traceparent);
    }
    for link in &job.links {
        crate::telemetry::link_traceparent(&span, link);
    }
    async {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(config.job_timeout, handler.handle(&job)).await {
            Ok(result) => result,
            Err(_) => Err(JobError::Transient(format!("timed out after {:?}", config.job_timeout))),
        };
        let kind = job.kind.clone();
        metrics::histogram!("job_duration_seconds", "kind" => kind.clone()).record(started.elapsed().as_secs_f64());
        let (label, result) = match outcome {
            Ok(()) => ("done", queue.complete(&job, &config.name).await),
            Err(JobError::Transient(e)) if job.attempt < job.max_attempts => {
                let delay = config.backoff.delay(job.attempt);
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
                ("retried", queue.retry_later(&job, &config.name, delay, &e).await)
            }
            Err(e) => {
                let error = e.to_string();
                tracing::error!(error = %error, "job failed for good; compensating");
                match handler.on_dead(&job, &error).await {
                    Ok(()) => ("dead", queue.bury(&job, &config.name, &error).await),
                    Err(comp) => {
                        tracing::error!(error = %comp, "compensation failed; will try again");
                        ("retried", queue.retry_later(&job, &config.name, config.backoff.delay(job.attempt), &comp).await)
                    }
                }
            }
        };
        metrics::counter!("jobs_total", "kind" => kind, "outcome" => label).increment(1);
        if let Err(e) = result {
            // The lease runs out and the job is run again: handlers are idempotent.
            tracing::error!(error = %e, "could not record the job's outcome");
        }
    }
    .instrument(span)
    .await;
}
