//! The queue as an apalis backend: the stream of jobs an apalis worker runs. It claims due
//! jobs in batches, as many as the worker has free slots (a claimed job is leased, so taking
//! more than can start would only keep them from other workers), and claims again when a job
//! settles, on the queue's NOTIFY channel, or at the poll interval. Jobs it claimed but never
//! handed out are handed back when the worker stops.

use std::{
    collections::VecDeque,
    convert::Infallible,
    future::Future,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::{Duration, Instant},
};

use apalis_core::{
    backend::{Backend, BackendConfig, finalize::Ephemeral},
    task::{Task, builder::TaskBuilder, task_id::TaskId},
    worker::context::WorkerContext,
};
use futures_util::task::AtomicWaker;
use sqlx::postgres::PgListener;
use tokio_util::sync::{CancellationToken, DropGuard};
use tower::layer::util::Identity;

use super::{ClaimedJob, Queue, WorkerConfig};

/// How often a worker that finds a backlog refreshes the queue table's statistics.
const STATISTICS_REFRESH: Duration = Duration::from_secs(10);

/// Tells the backend that claiming may find something: a job settled (a slot is free and
/// its saga may have queued the next step), a notification, or the poll interval.
#[derive(Default)]
pub(super) struct Wake {
    due: AtomicBool,
    waker: AtomicWaker,
}

impl Wake {
    /// Marks a claim as due and wakes the worker.
    pub(super) fn raise(&self) {
        self.due.store(true, Ordering::Release);
        self.waker.wake();
    }

    fn take(&self) -> bool {
        self.due.swap(false, Ordering::AcqRel)
    }
}

/// Jobs handed to the worker and not yet settled; settling gives the slot back.
pub(super) struct Slots {
    running: AtomicUsize,
    wake: Wake,
}

impl Slots {
    /// A job settled: its slot is free.
    pub(super) fn release(&self) {
        self.running.fetch_sub(1, Ordering::AcqRel);
        self.wake.raise();
    }
}

type Claim = Pin<Box<dyn Future<Output = Result<Vec<ClaimedJob>, sqlx::Error>> + Send>>;
type Closing = Pin<Box<dyn Future<Output = ()> + Send>>;

/// One worker's source of jobs.
pub(super) struct QueueBackend {
    queue: Queue,
    config: Arc<WorkerConfig>,
    kinds: &'static [&'static str],
    slots: Arc<Slots>,
    ready: VecDeque<ClaimedJob>,
    claim: Option<Claim>,
    closing: Option<Closing>,
    listening: Option<DropGuard>,
    analyzed: Option<Instant>,
}

impl QueueBackend {
    /// A backend claiming `kinds` from `queue` for the worker `config` describes.
    pub(super) fn new(
        queue: Queue,
        config: Arc<WorkerConfig>,
        kinds: &'static [&'static str],
    ) -> Self {
        let slots = Arc::new(Slots {
            running: AtomicUsize::new(0),
            wake: Wake::default(),
        });
        slots.wake.raise();
        Self {
            queue,
            config,
            kinds,
            slots,
            ready: VecDeque::new(),
            claim: None,
            closing: None,
            listening: None,
            analyzed: None,
        }
    }

    /// The slots the worker's settling gives back.
    pub(super) fn slots(&self) -> Arc<Slots> {
        self.slots.clone()
    }

    /// Starts the task that raises a claim on each notification and at the poll interval.
    fn listen(&mut self) {
        if self.listening.is_some() {
            return;
        }
        let stop = CancellationToken::new();
        self.listening = Some(stop.clone().drop_guard());
        let (queue, slots, interval) = (
            self.queue.clone(),
            self.slots.clone(),
            self.config.poll_interval,
        );
        tokio::spawn(async move {
            let mut listener = listener(&queue).await;
            loop {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = notified(&mut listener) => {}
                    () = tokio::time::sleep(interval) => {}
                }
                slots.wake.raise();
            }
        });
    }

    fn start_claim(&mut self) {
        let running = self.slots.running.load(Ordering::Acquire);
        let free = self.config.concurrency.saturating_sub(running);
        if free == 0 {
            return;
        }
        let (queue, config, kinds) = (self.queue.clone(), self.config.clone(), self.kinds);
        let refresh = self
            .analyzed
            .is_none_or(|at| at.elapsed() >= STATISTICS_REFRESH);
        self.claim = Some(Box::pin(async move {
            let jobs = queue
                .claim(&config.name, kinds, free as i64, config.job_timeout * 2)
                .await?;
            if jobs.len() == free && refresh {
                // A backlog: the planner must know it, or it reads every pending job on
                // each claim (statistics from when the table was nearly empty make that
                // look cheap, and autovacuum looks only once a minute).
                tokio::spawn(async move { queue.refresh_statistics().await });
            }
            Ok(jobs)
        }));
        if refresh {
            // Counted from the attempt: an idle queue never reaches the refresh anyway.
            self.analyzed = Some(Instant::now());
        }
    }

    fn hand_out(&mut self, job: ClaimedJob) -> Task<ClaimedJob> {
        self.slots.running.fetch_add(1, Ordering::AcqRel);
        let id = TaskId::from(job.id as u64);
        let (attempt, max_attempts) = (
            job.attempt.max(0) as usize,
            job.max_attempts.max(1) as usize,
        );
        TaskBuilder::new(job)
            .task_id(id)
            .attempt(attempt)
            .max_attempts(max_attempts)
            .build()
    }
}

impl Backend for QueueBackend {
    type Task = Task<ClaimedJob>;
    type Error = Infallible;

    fn poll_ready(
        &mut self,
        _: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), Infallible>> {
        self.listen();
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Infallible>>> {
        self.slots.wake.waker.register(cx.waker());
        loop {
            if let Some(job) = self.ready.pop_front() {
                return Poll::Ready(Some(Ok(self.hand_out(job))));
            }
            if let Some(claim) = self.claim.as_mut() {
                let outcome = std::task::ready!(claim.as_mut().poll(cx));
                self.claim = None;
                match outcome {
                    Ok(jobs) => self.ready.extend(jobs),
                    Err(e) => tracing::warn!(error = %e, "claiming jobs failed"),
                }
                continue;
            }
            if !self.slots.wake.take() {
                return Poll::Pending;
            }
            self.start_claim();
            if self.claim.is_none() {
                // Every slot is taken; the next settled job raises the claim again.
                self.slots.wake.due.store(true, Ordering::Release);
                return Poll::Pending;
            }
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _: &WorkerContext,
    ) -> Poll<Result<(), Infallible>> {
        self.listening = None;
        let closing = self.closing.get_or_insert_with(|| {
            let (queue, worker) = (self.queue.clone(), self.config.name.clone());
            let (claim, mut unstarted) = (self.claim.take(), std::mem::take(&mut self.ready));
            Box::pin(async move {
                // A claim on its way may already hold jobs: wait for it, then hand every
                // job that never started back, its attempt not counted.
                if let Some(Ok(jobs)) = match claim {
                    Some(claim) => Some(claim.await),
                    None => None,
                } {
                    unstarted.extend(jobs);
                }
                for job in unstarted {
                    if let Err(e) = queue.release(&job, &worker).await {
                        tracing::warn!(error = %e, id = job.id, "could not hand a job back; its lease will");
                    }
                }
            })
        });
        closing.as_mut().poll(cx).map(Ok)
    }
}

impl BackendConfig for QueueBackend {
    type Args = ClaimedJob;
    type Id = i64;
    type Kind = Ephemeral;
    type Config = ();
    type Layer = Identity;

    fn config(&self) -> &Self::Config {
        &()
    }

    fn middleware(&mut self, _: &mut WorkerContext) -> Self::Layer {
        Identity::new()
    }
}

async fn listener(queue: &Queue) -> Option<PgListener> {
    let listen = async {
        let mut listener = PgListener::connect_with(queue.pool()).await?;
        listener.listen(queue.waker.channel()).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    listen
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "cannot LISTEN; polling only"))
        .ok()
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
