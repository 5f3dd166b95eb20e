//! The queue's worker as the services run it (apalis over the queue's table): what a panic
//! and a shutdown do to the jobs it holds.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI32, Ordering},
    },
    time::Duration,
};

use common::queue::{ClaimedJob, Handler, JobError, NewJob, Queue, Worker, WorkerConfig};
use sqlx::PgPool;
use testkit::eventually;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const KIND: &str = "test_job";

async fn queue() -> Queue {
    let pool = common::db::connect(&testkit::database("common"), 8)
        .await
        .unwrap();
    Queue::new(pool, "orders.jobs", "common_test_jobs")
}

fn config(drain: Duration) -> WorkerConfig {
    WorkerConfig {
        poll_interval: Duration::from_millis(50),
        backoff: common::queue::Backoff {
            base: Duration::from_millis(20),
            max: Duration::from_millis(40),
        },
        drain_timeout: drain,
        ..WorkerConfig::new("test")
    }
}

async fn enqueue(queue: &Queue) -> i64 {
    let mut conn = queue.pool().acquire().await.unwrap();
    let id = queue
        .enqueue(
            &mut conn,
            NewJob::new(KIND, serde_json::json!({})).attempts(3),
        )
        .await
        .unwrap()
        .unwrap();
    queue.wake();
    id
}

async fn row(pool: &PgPool, id: i64) -> Option<(String, i32)> {
    sqlx::query_as("SELECT status, attempts FROM orders.jobs WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// Panics on a job's first attempt, succeeds on the next.
struct PanicsOnce {
    succeeded: AtomicI32,
}

impl Handler for PanicsOnce {
    fn kinds(&self) -> &'static [&'static str] {
        &[KIND]
    }

    async fn handle(&self, job: &ClaimedJob) -> Result<(), JobError> {
        assert!(
            job.attempt > 1,
            "the first attempt of job {} panics",
            job.id
        );
        self.succeeded.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test]
async fn a_panicking_job_is_retried_not_lost_and_the_worker_keeps_working() {
    let queue = queue().await;
    let handler = Arc::new(PanicsOnce {
        succeeded: AtomicI32::new(0),
    });
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(
        Worker::new(
            queue.clone(),
            handler.clone(),
            config(Duration::from_secs(5)),
        )
        .run(shutdown.clone()),
    );
    let first = enqueue(&queue).await;

    eventually("the job's second attempt succeeds", || async {
        handler.succeeded.load(Ordering::SeqCst) == 1
    })
    .await;
    eventually("the job is done", || async {
        row(queue.pool(), first).await.is_none()
    })
    .await;

    let second = enqueue(&queue).await;
    eventually("the next job panics, then runs too", || async {
        row(queue.pool(), second).await.is_none()
    })
    .await;
    assert_eq!(handler.succeeded.load(Ordering::SeqCst), 2);
    shutdown.cancel();
    worker.await.unwrap();
}

/// Holds each job until the test lets it go.
struct Held {
    started: AtomicBool,
    finished: AtomicBool,
    release: Notify,
}

impl Handler for Held {
    fn kinds(&self) -> &'static [&'static str] {
        &[KIND]
    }

    async fn handle(&self, _: &ClaimedJob) -> Result<(), JobError> {
        self.started.store(true, Ordering::SeqCst);
        self.release.notified().await;
        self.finished.store(true, Ordering::SeqCst);
        Ok(())
    }
}

fn held() -> Arc<Held> {
    Arc::new(Held {
        started: AtomicBool::new(false),
        finished: AtomicBool::new(false),
        release: Notify::new(),
    })
}

#[tokio::test]
async fn shutdown_lets_a_running_job_finish_and_records_it_done() {
    let queue = queue().await;
    let handler = held();
    let shutdown = CancellationToken::new();
    let mut worker = tokio::spawn(
        Worker::new(
            queue.clone(),
            handler.clone(),
            config(Duration::from_secs(20)),
        )
        .run(shutdown.clone()),
    );
    let id = enqueue(&queue).await;
    eventually("the job starts", || async {
        handler.started.load(Ordering::SeqCst)
    })
    .await;

    shutdown.cancel();
    // The worker waits for the job: give it every chance to stop early, then let the job go.
    let early = tokio::time::timeout(Duration::from_millis(200), &mut worker).await;
    assert!(early.is_err(), "the worker stopped with a job running");
    handler.release.notify_one();
    tokio::time::timeout(testkit::DEADLINE, worker)
        .await
        .expect("the worker stops once its job is done")
        .unwrap();

    assert!(handler.finished.load(Ordering::SeqCst));
    assert_eq!(
        row(queue.pool(), id).await,
        None,
        "the job is recorded done"
    );
}

#[tokio::test]
async fn a_job_still_running_past_the_drain_bound_is_left_to_its_lease() {
    let queue = queue().await;
    let handler = held();
    let shutdown = CancellationToken::new();
    let worker = tokio::spawn(
        Worker::new(
            queue.clone(),
            handler.clone(),
            config(Duration::from_millis(300)),
        )
        .run(shutdown.clone()),
    );
    let id = enqueue(&queue).await;
    eventually("the job starts", || async {
        handler.started.load(Ordering::SeqCst)
    })
    .await;

    shutdown.cancel();
    tokio::time::timeout(testkit::DEADLINE, worker)
        .await
        .expect("the worker stops at the drain bound")
        .unwrap();

    assert!(!handler.finished.load(Ordering::SeqCst));
    let (status, attempts) = row(queue.pool(), id).await.expect("the job is kept");
    assert_eq!(
        (status.as_str(), attempts),
        ("running", 1),
        "another worker takes it when the lease runs out"
    );
}
