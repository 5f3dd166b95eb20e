//! A durable job queue on Postgres. A job is a row in the owning service's schema, written
//! in the same transaction as the data that needs it, so neither can exist without the other.
//! Workers claim jobs with `FOR UPDATE SKIP LOCKED` under a lease; a crashed worker's lease
//! runs out and another worker takes the job. Failures retry with jittered exponential backoff
//! that survives restarts (`run_at`); a job out of attempts is kept as a dead letter that an
//! operator can list and replay.
//!
//! A job carries its trace: its span is a child of the span that enqueued it (or of a trace
//! named explicitly, such as the checkout a payment belongs to) and links to any other spans
//! that caused it, so work done later, elsewhere, stays reachable from the request behind it.

mod acks;
mod backend;
mod backoff;
mod settle;
mod worker;

use std::time::Duration;

use serde::Serialize;
use sqlx::{
    AssertSqlSafe, Encode, PgConnection, PgPool, Postgres, Row as _, Transaction, Type,
    postgres::PgArguments,
    query::{QueryAs, QueryScalar},
};
use time::OffsetDateTime;
use utoipa::ToSchema;

pub use backoff::Backoff;
pub use worker::{Handler, JobError, Worker, WorkerConfig};

use crate::notify::Notifier;

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// What the job does (`process_order`); selects the handler.
    pub kind: &'static str,
    /// The job's input.
    pub payload: serde_json::Value,
    /// A key that makes enqueueing idempotent: a second job with the same key is not added.
    pub dedup_key: Option<String>,
    /// Attempts before the job becomes a dead letter.
    pub max_attempts: i32,
    /// Do not run before this delay has passed.
    pub delay: Duration,
    /// Among due jobs, higher priorities are claimed first.
    pub priority: i16,
    /// The W3C `traceparent` the job's span is a child of; `None` for the span enqueuing it.
    pub parent: Option<String>,
    /// Other spans (`traceparent`s) the job's span links to: causes it is not a child of.
    pub links: Vec<String>,
}

impl NewJob {
    /// A job of `kind` with `payload`, five attempts, runnable now.
    pub fn new(kind: &'static str, payload: serde_json::Value) -> Self {
        Self {
            kind,
            payload,
            dedup_key: None,
            max_attempts: 5,
            delay: Duration::ZERO,
            priority: 0,
            parent: None,
            links: Vec::new(),
        }
    }

    /// Makes the job's span a child of the span `traceparent` names instead of the one
    /// enqueuing it.
    pub fn child_of(mut self, traceparent: impl Into<String>) -> Self {
        self.parent = Some(traceparent.into());
        self
    }

    /// Links the job's span to the span `traceparent` names. At most [`MAX_LINKS`] are kept.
    pub fn link(mut self, traceparent: impl Into<String>) -> Self {
        if self.links.len() < MAX_LINKS {
            self.links.push(traceparent.into());
        }
        self
    }

    /// Puts the job in the trace `traceparent` names (the request that began the work it
    /// belongs to): a span enqueuing it in that trace stays its parent; one in another trace
    /// (a webhook's) becomes a link, its cause, and the job a child of `traceparent`. Work
    /// done for a checkout, whatever started it, stays in the checkout's trace. Without a
    /// `traceparent` the job follows the span enqueuing it.
    pub fn in_trace_of(self, traceparent: Option<&str>) -> Self {
        let Some(traceparent) = traceparent else {
            return self;
        };
        match crate::telemetry::current_traceparent() {
            None => self.child_of(traceparent),
            Some(cause)
                if crate::telemetry::trace_id(&cause)
                    == crate::telemetry::trace_id(traceparent) =>
            {
                self
            }
            Some(cause) => self.child_of(traceparent).link(cause),
        }
    }

    /// Sets the deduplication key.
    pub fn dedup(mut self, key: impl Into<String>) -> Self {
        self.dedup_key = Some(key.into());
        self
    }

    /// Sets the number of attempts.
    pub fn attempts(mut self, max_attempts: i32) -> Self {
        self.max_attempts = max_attempts.max(1);
        self
    }

    /// Sets the priority (default 0): among due jobs, higher ones are claimed first, so work
    /// nobody waits for (housekeeping) takes a negative one and never delays a customer's.
    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = priority;
        self
    }

    /// Delays the first run.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// The most span links a job keeps (OpenTelemetry's default limit per span).
pub const MAX_LINKS: usize = 128;

/// A job a worker holds under a lease.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    /// The job's id.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// Its input.
    pub payload: serde_json::Value,
    /// This attempt's number, from 1.
    pub attempt: i32,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// The W3C trace context of the request that enqueued it.
    pub traceparent: Option<String>,
    /// The spans it links to (`traceparent`s).
    pub links: Vec<String>,
}

/// A job out of attempts, as the admin API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeadJob {
    /// The job's id; replay it with this.
    pub id: i64,
    /// Its kind.
    pub kind: String,
    /// Its input.
    pub payload: serde_json::Value,
    /// Attempts made.
    pub attempts: i32,
    /// The last error.
    pub last_error: Option<String>,
    /// When it was enqueued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it died.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// An enqueue written into a caller's statement (`Queue::enqueue_step`).
pub struct EnqueueStep {
    /// The `WITH` item that adds the job.
    pub cte: String,
}

impl EnqueueStep {
    /// Binds `job` as the step's parameters, which must come next in `query`.
    pub fn bind<'q, Q: StepQuery<'q>>(&self, query: Q, job: &'q NewJob) -> Q {
        query
            .with(job.kind)
            .with(&job.payload)
            .with(job.max_attempts)
            .with(job.delay.as_millis() as i64)
            .with(&job.dedup_key)
            .with(
                job.parent
                    .clone()
                    .or_else(crate::telemetry::current_traceparent),
            )
            .with(job.priority)
            .with((!job.links.is_empty()).then(|| job.links.clone()))
    }
}

/// A query an [`EnqueueStep`] can bind its parameters to (`query_scalar`, `query_as`).
pub trait StepQuery<'q>: Sized {
    /// The query with one more parameter.
    fn with<T: 'q + Encode<'q, Postgres> + Type<Postgres>>(self, value: T) -> Self;
}

impl<'q, O> StepQuery<'q> for QueryScalar<'q, Postgres, O, PgArguments> {
    fn with<T: 'q + Encode<'q, Postgres> + Type<Postgres>>(self, value: T) -> Self {
        self.bind(value)
    }
}

impl<'q, O> StepQuery<'q> for QueryAs<'q, Postgres, O, PgArguments> {
    fn with<T: 'q + Encode<'q, Postgres> + Type<Postgres>>(self, value: T) -> Self {
        self.bind(value)
    }
}

/// Joined into the statements that only keep the queue's own books (claiming, completing,
/// rescheduling, handing back): their transaction commits without waiting for the WAL to
/// reach the disk. A crash can lose such a commit, and then a job runs again or once more
/// waits for its lease, which every job is written to tolerate; what a job did is committed
/// by its own statements, durably. One flush fewer per job step: under a backlog the
/// commits queue on the WAL flush more than on anything else.
const BOOKKEEPING: &str = "(SELECT set_config('synchronous_commit', 'off', true)) AS bookkeeping";

/// One queue: a table and the channel that wakes its workers.
#[derive(Clone)]
pub struct Queue {
    pool: PgPool,
    table: &'static str,
    waker: Notifier,
}

impl Queue {
    /// The queue in `table` (`orders.jobs`); enqueues notify `channel`.
    pub fn new(pool: PgPool, table: &'static str, channel: &'static str) -> Self {
        Self {
            waker: Notifier::new(pool.clone(), channel),
            pool,
            table,
        }
    }

    /// Wakes the workers for jobs that a statement added (`commit` does it for a
    /// transaction): after the commit, one coalesced `NOTIFY` (`crate::notify`). Workers
    /// also poll, so a missed call costs latency, never a job.
    pub fn wake(&self) {
        self.waker.send("jobs");
    }

    /// Commits a transaction that enqueued, then wakes the workers.
    pub async fn commit(&self, tx: Transaction<'_, Postgres>) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.wake();
        Ok(())
    }

    /// The pool the queue runs on.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Adds a job inside the caller's transaction; answers its id, or `None` when a job with
    /// the same dedup key exists. Commit the transaction with `commit`, which wakes the workers.
    pub async fn enqueue(
        &self,
        conn: &mut PgConnection,
        job: NewJob,
    ) -> Result<Option<i64>, sqlx::Error> {
        let step = self.enqueue_step("job", "(VALUES (1)) AS once", 1);
        let sql = format!("WITH {} SELECT id FROM job", step.cte);
        let id: Option<i64> = step
            .bind(sqlx::query_scalar(AssertSqlSafe(sql)), &job)
            .fetch_optional(&mut *conn)
            .await?;
        Ok(id)
    }

    /// Enqueueing as one step of a caller's own statement, so that a write and its job take
    /// one round trip and need no explicit transaction: `cte` is a `WITH` item named `name`
    /// that adds the job once per row of relation `guard` (not at all when it is empty) and
    /// answers the job's `id`. Its parameters are `$first` to `$first + 7`. Call `wake`
    /// after the statement.
    pub fn enqueue_step(&self, name: &str, guard: &str, first: usize) -> EnqueueStep {
        let p = |i: usize| format!("${}", first + i);
        let (kind, payload, attempts, delay, dedup, trace, priority, links) =
            (p(0), p(1), p(2), p(3), p(4), p(5), p(6), p(7));
        EnqueueStep {
            cte: format!(
                "{name} AS (
                     INSERT INTO {table} (kind, payload, max_attempts, run_at, dedup_key, traceparent, priority, trace_links)
                     SELECT {kind}, {payload}, {attempts}, now() + {delay} * interval '1 millisecond', {dedup}, {trace}, {priority}, {links}
                     FROM {guard}
                     ON CONFLICT (dedup_key) DO NOTHING RETURNING id)",
                table = self.table
            ),
        }
    }

    /// Refreshes the planner's statistics of the queue table (`ANALYZE`), so that claims
    /// keep walking the due-jobs index when a burst has grown the table since the last
    /// autovacuum. A failure (the role does not own the table) is only logged.
    pub async fn refresh_statistics(&self) {
        let sql = format!("ANALYZE {}", self.table);
        if let Err(e) = sqlx::query(AssertSqlSafe(sql)).execute(&self.pool).await {
            tracing::warn!(table = self.table, error = %e, "refreshing queue statistics failed");
        }
    }

    /// Withdraws a job that has not started, by its dedup key, inside the caller's
    /// transaction (a payment-timeout check for an order that was paid).
    pub async fn cancel(
        &self,
        conn: &mut PgConnection,
        dedup_key: &str,
    ) -> Result<bool, sqlx::Error> {
        let sql = format!(
            "DELETE FROM {} WHERE dedup_key = $1 AND status = 'pending'",
            self.table
        );
        Ok(sqlx::query(AssertSqlSafe(sql))
            .bind(dedup_key)
            .execute(conn)
            .await?
            .rows_affected()
            == 1)
    }

    /// Claims up to `limit` runnable jobs of `kinds` (pending and due, or running with an
    /// expired lease) for `worker`, holding each for `lease`.
    pub async fn claim(
        &self,
        worker: &str,
        kinds: &[&str],
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>, sqlx::Error> {
        let sql = format!(
            // Two index walks that stop at `limit` rows each: due pending jobs in claim
            // order, and running jobs whose lease ran out (their worker died). One condition
            // with OR would read every pending job, the whole backlog, on every claim.
            "WITH due AS (
                 SELECT id FROM {t}
                 WHERE status = 'pending' AND run_at <= now() AND kind = ANY($3)
                 ORDER BY priority DESC, run_at
                 LIMIT $4
                 FOR UPDATE SKIP LOCKED),
             expired AS (
                 SELECT id FROM {t}
                 WHERE status = 'running' AND locked_until < now() AND kind = ANY($3)
                 ORDER BY locked_until
                 LIMIT $4
                 FOR UPDATE SKIP LOCKED)
             UPDATE {t} SET status = 'running', attempts = attempts + 1, locked_by = $1,
                 locked_until = now() + $2 * interval '1 millisecond', updated_at = now()
             FROM {BOOKKEEPING}
             WHERE id IN (
                 SELECT id FROM (SELECT id FROM expired UNION ALL SELECT id FROM due) AS claimable
                 LIMIT $4)
             RETURNING id, kind, payload, attempts, max_attempts, traceparent, trace_links",
            t = self.table
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(worker)
            .bind(lease.as_millis() as i64)
            .bind(kinds)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(ClaimedJob {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    payload: row.try_get("payload")?,
                    attempt: row.try_get("attempts")?,
                    max_attempts: row.try_get("max_attempts")?,
                    traceparent: row.try_get("traceparent")?,
                    links: row
                        .try_get::<Option<Vec<String>>, _>("trace_links")?
                        .unwrap_or_default(),
                })
            })
            .collect()
    }

    /// Marks done the jobs of `ids` that `worker` still holds, in one statement. Done jobs
    /// are removed: the data the job produced is the record.
    pub async fn complete(&self, ids: &[i64], worker: &str) -> Result<(), sqlx::Error> {
        let sql = format!(
            "DELETE FROM {} USING {BOOKKEEPING} WHERE id = ANY($1) AND locked_by = $2",
            self.table
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(ids)
            .bind(worker)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Schedules another attempt after `delay`.
    pub async fn retry_later(
        &self,
        job: &ClaimedJob,
        worker: &str,
        delay: Duration,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        let sql = format!(
            "UPDATE {} SET status = 'pending', run_at = now() + $3 * interval '1 millisecond',
                 locked_by = NULL, locked_until = NULL, last_error = $4, updated_at = now()
             FROM {BOOKKEEPING}
             WHERE id = $1 AND locked_by = $2",
            self.table
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(job.id)
            .bind(worker)
            .bind(delay.as_millis() as i64)
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Keeps the job as a dead letter.
    pub async fn bury(
        &self,
        job: &ClaimedJob,
        worker: &str,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        let sql = format!(
            "UPDATE {} SET status = 'dead', locked_by = NULL, locked_until = NULL, last_error = $3, updated_at = now()
             WHERE id = $1 AND locked_by = $2",
            self.table
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(job.id)
            .bind(worker)
            .bind(error)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Hands a job back unfinished (shutdown): runnable again at once, the attempt not counted.
    pub async fn release(&self, job: &ClaimedJob, worker: &str) -> Result<(), sqlx::Error> {
        let sql = format!(
            "UPDATE {} SET status = 'pending', attempts = greatest(attempts - 1, 0), locked_by = NULL,
                 locked_until = NULL, updated_at = now()
             FROM {BOOKKEEPING}
             WHERE id = $1 AND locked_by = $2",
            self.table
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(job.id)
            .bind(worker)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Dead letters, newest first.
    pub async fn dead(&self, limit: i64) -> Result<Vec<DeadJob>, sqlx::Error> {
        self.dead_where("TRUE", limit, 0).await
    }

    /// One dead letter.
    pub async fn dead_job(&self, id: i64) -> Result<Option<DeadJob>, sqlx::Error> {
        Ok(self.dead_where("id = $2", 1, id).await?.pop())
    }

    async fn dead_where(
        &self,
        condition: &str,
        limit: i64,
        id: i64,
    ) -> Result<Vec<DeadJob>, sqlx::Error> {
        let sql = format!(
            "SELECT id, kind, payload, attempts, last_error, created_at, updated_at FROM {}
             WHERE status = 'dead' AND ({condition}) AND $2 = $2 ORDER BY updated_at DESC LIMIT $1",
            self.table
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(limit)
            .bind(id)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|row| {
                Ok(DeadJob {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    payload: row.try_get("payload")?,
                    attempts: row.try_get("attempts")?,
                    last_error: row.try_get("last_error")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// Makes a dead letter runnable again with fresh attempts; `false` when there is no such
    /// dead job.
    pub async fn replay(&self, id: i64) -> Result<bool, sqlx::Error> {
        let sql = format!(
            "UPDATE {} SET status = 'pending', attempts = 0, run_at = now(), last_error = NULL, updated_at = now()
             WHERE id = $1 AND status = 'dead'",
            self.table
        );
        let replayed = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1;
        if replayed {
            self.wake();
        }
        Ok(replayed)
    }

    /// Jobs by kind and status, for the queue-depth gauges.
    pub async fn depth(&self) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
        let sql = format!(
            "SELECT kind, status, count(*) FROM {} GROUP BY kind, status",
            self.table
        );
        sqlx::query_as(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
    }

    /// Publishes the queue depth as `queue_jobs{queue, kind, status}` gauges.
    pub async fn export_depth(&self) -> Result<(), sqlx::Error> {
        let mut seen = std::collections::HashSet::new();
        for (kind, status, count) in self.depth().await? {
            metrics::gauge!("queue_jobs", "queue" => self.table, "kind" => kind.clone(), "status" => status.clone())
                .set(count as f64);
            seen.insert((kind, status));
        }
        // A status that emptied must read 0, not its last value.
        for status in ["pending", "running", "dead"] {
            for kind in seen
                .iter()
                .map(|(k, _)| k.clone())
                .collect::<std::collections::HashSet<_>>()
            {
                if !seen.contains(&(kind.clone(), status.to_owned())) {
                    metrics::gauge!("queue_jobs", "queue" => self.table, "kind" => kind, "status" => status).set(0.0);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECKOUT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_job_outside_any_span_joins_the_trace_it_is_given() {
        let job = NewJob::new("notify_orders", serde_json::json!({})).in_trace_of(Some(CHECKOUT));
        assert_eq!(job.parent.as_deref(), Some(CHECKOUT));
        assert!(job.links.is_empty());
        let untraced = NewJob::new("notify_orders", serde_json::json!({})).in_trace_of(None);
        assert_eq!(untraced.parent, None);
    }

    #[test]
    fn a_job_keeps_at_most_the_span_limit_of_links() {
        let job = (0..MAX_LINKS + 5).fold(
            NewJob::new("process_events", serde_json::json!({})),
            |job, _| job.link(CHECKOUT),
        );
        assert_eq!(job.links.len(), MAX_LINKS);
    }
}
