//! What becomes of an attempt, as an apalis layer: the job is done (its row deleted), retried
//! later (backoff written to `run_at`, so it survives restarts), or out of attempts (its
//! compensation runs, then it stays as a dead letter). apalis's own answer to a failure
//! (refetch at once, or drop on a panic) is not used: the queue's row is the record.
//!
//! A job done is recorded with the others that finished meanwhile ([`super::acks`]).
//!
//! A panic is a transient failure here, retried with backoff like a timeout, so a job whose
//! handler panics is never lost: at worst it runs out of attempts and is compensated.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use apalis_core::{error::BoxDynError, task::Task};
use tokio::task::JoinHandle;
use tower::{Layer, Service};
use tracing::Instrument as _;

use super::{ClaimedJob, Handler, JobError, Queue, WorkerConfig, acks::Acks, backend::Slots};

/// The innermost service: one attempt of the job by the handler.
pub(super) struct Attempt<H> {
    handler: Arc<H>,
}

impl<H> Attempt<H> {
    pub(super) fn new(handler: Arc<H>) -> Self {
        Self { handler }
    }
}

impl<H> Clone for Attempt<H> {
    fn clone(&self) -> Self {
        Self {
            handler: self.handler.clone(),
        }
    }
}

impl<H: Handler> Service<Task<ClaimedJob>> for Attempt<H> {
    type Response = ();
    type Error = JobError;
    type Future = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), JobError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, task: Task<ClaimedJob>) -> Self::Future {
        let handler = self.handler.clone();
        Box::pin(async move { handler.handle(&task.args).await })
    }
}

/// Settles every attempt the inner service makes.
pub(super) struct SettleLayer<H> {
    queue: Queue,
    acks: Acks,
    handler: Arc<H>,
    config: Arc<WorkerConfig>,
    slots: Arc<Slots>,
}

impl<H> SettleLayer<H> {
    pub(super) fn new(
        queue: Queue,
        handler: Arc<H>,
        config: Arc<WorkerConfig>,
        slots: Arc<Slots>,
    ) -> Self {
        Self {
            acks: Acks::start(queue.clone(), config.name.clone()),
            queue,
            handler,
            config,
            slots,
        }
    }
}

impl<S, H> Layer<S> for SettleLayer<H> {
    type Service = Settle<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Settle {
            inner,
            queue: self.queue.clone(),
            acks: self.acks.clone(),
            handler: self.handler.clone(),
            config: self.config.clone(),
            slots: self.slots.clone(),
        }
    }
}

/// See [`SettleLayer`].
pub(super) struct Settle<S, H> {
    inner: S,
    queue: Queue,
    acks: Acks,
    handler: Arc<H>,
    config: Arc<WorkerConfig>,
    slots: Arc<Slots>,
}

impl<S, H> Service<Task<ClaimedJob>> for Settle<S, H>
where
    S: Service<Task<ClaimedJob>, Response = ()>,
    S::Error: Into<BoxDynError>,
    S::Future: Send + 'static,
    H: Handler,
{
    type Response = ();
    type Error = BoxDynError;
    type Future = Settling;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxDynError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<ClaimedJob>) -> Self::Future {
        let job = task.args.clone();
        let span = tracing::info_span!("job", kind = %job.kind, id = job.id, attempt = job.attempt);
        if let Some(traceparent) = &job.traceparent {
            crate::telemetry::follow_traceparent(&span, traceparent);
        }
        for link in &job.links {
            crate::telemetry::link_traceparent(&span, link);
        }
        // The inner layers' spans open here, so they are children of the job's.
        let attempt = span.in_scope(|| self.inner.call(task));
        let (queue, acks, handler, config, slots) = (
            self.queue.clone(),
            self.acks.clone(),
            self.handler.clone(),
            self.config.clone(),
            self.slots.clone(),
        );
        // Each job on a task of its own: the worker's stream polls them all from one task,
        // and the handlers' work should spread over the runtime's threads.
        Settling(tokio::spawn(
            async move {
                let _slot = Slot(slots);
                settle(&queue, &acks, handler.as_ref(), &config, job, attempt).await;
            }
            .instrument(span),
        ))
    }
}

/// A running attempt; dropping it (the drain bound passed at shutdown) stops the attempt,
/// and the job's lease hands it to another worker.
pub(super) struct Settling(JoinHandle<()>);

impl Future for Settling {
    type Output = Result<(), BoxDynError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|done| done.map_err(Into::into))
    }
}

impl Drop for Settling {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Gives the job's slot back however its task ends.
struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release();
    }
}

async fn settle<H: Handler, F, E>(
    queue: &Queue,
    acks: &Acks,
    handler: &H,
    config: &WorkerConfig,
    job: ClaimedJob,
    attempt: F,
) where
    F: Future<Output = Result<(), E>>,
    E: Into<BoxDynError>,
{
    let started = Instant::now();
    let outcome = match tokio::time::timeout(config.job_timeout, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(job_error(e.into())),
        Err(_) => Err(JobError::Transient(format!(
            "timed out after {:?}",
            config.job_timeout
        ))),
    };
    let kind = job.kind.clone();
    metrics::histogram!("job_duration_seconds", "kind" => kind.clone())
        .record(started.elapsed().as_secs_f64());
    let (label, result) = match outcome {
        Ok(()) => ("done", acks.done(job.id).await),
        Err(JobError::Transient(e)) if job.attempt < job.max_attempts => {
            let delay = config.backoff.delay(job.attempt);
            tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "job failed; will retry");
            (
                "retried",
                queue
                    .retry_later(&job, &config.name, delay, &e)
                    .await
                    .map_err(|e| e.to_string()),
            )
        }
        Err(e) => {
            let error = e.to_string();
            tracing::error!(error = %error, "job failed for good; compensating");
            match handler.on_dead(&job, &error).await {
                Ok(()) => (
                    "dead",
                    queue
                        .bury(&job, &config.name, &error)
                        .await
                        .map_err(|e| e.to_string()),
                ),
                Err(comp) => {
                    tracing::error!(error = %comp, "compensation failed; will try again");
                    let delay = config.backoff.delay(job.attempt);
                    (
                        "retried",
                        queue
                            .retry_later(&job, &config.name, delay, &comp)
                            .await
                            .map_err(|e| e.to_string()),
                    )
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

/// The handler's own verdict, or, for anything else the layers answer (a caught panic), a
/// transient failure.
fn job_error(error: BoxDynError) -> JobError {
    match error.downcast::<JobError>() {
        Ok(verdict) => *verdict,
        Err(other) => JobError::Transient(other.to_string()),
    }
}
