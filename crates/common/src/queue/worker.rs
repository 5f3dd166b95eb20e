//! A worker: an apalis worker over the queue ([`super::backend`]), run by an apalis monitor
//! that gives it its concurrency limit, panic catching, tracing and graceful shutdown. What
//! becomes of an attempt (done, retry later, dead letter with compensation) is decided by
//! [`super::settle`], ours, because the queue's table is the record of it.

use std::{future::Future, sync::Arc, time::Duration};

use apalis::prelude::{Monitor, WorkerBuilder, WorkerBuilderExt as _};
use tokio_util::sync::CancellationToken;

use super::{
    Backoff, ClaimedJob, Queue,
    backend::QueueBackend,
    settle::{Attempt, SettleLayer},
};
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

    /// Runs until `shutdown`, then lets running jobs finish for up to the drain timeout; jobs
    /// still running after that are dropped and left to their lease, and another worker
    /// retries them. Jobs claimed but not started are handed back at once.
    pub async fn run(self, shutdown: CancellationToken) {
        let Self {
            queue,
            handler,
            config,
        } = self;
        let drain = config.drain_timeout;
        let monitor = Monitor::new()
            .register(move |_| {
                let backend = QueueBackend::new(queue.clone(), config.clone(), handler.kinds());
                let settle = SettleLayer::new(
                    queue.clone(),
                    handler.clone(),
                    config.clone(),
                    backend.slots(),
                );
                WorkerBuilder::new(config.name.as_str())
                    .backend(backend)
                    .concurrency(config.concurrency)
                    .layer(settle)
                    .enable_tracing()
                    .catch_panic()
                    .build(Attempt::new(handler.clone()))
            })
            .with_terminator(async move {
                tokio::time::sleep(drain).await;
                tracing::warn!("jobs still running at shutdown; their leases will hand them on");
            });
        let stopped = async move {
            shutdown.cancelled().await;
            Ok(())
        };
        if let Err(e) = monitor.run_with_signal(stopped).await {
            tracing::error!(error = %e, "the job worker stopped with an error");
        }
    }
}
