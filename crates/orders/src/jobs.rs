//! The order processor: the queue handler that runs the saga's jobs, and the sweeper that
//! hands stuck orders back to it.

use std::time::Duration;

use common::{
    money::{InvalidCurrency, Money},
    queue::{ClaimedJob, Handler, JobError, NewJob},
};
use tokio_util::sync::CancellationToken;

use crate::{
    clients::UpstreamError,
    domain::{CartId, OrderId},
    holds::RELEASE_HOLD,
    saga::{CLEAR_CART, CLOSE_PAYMENT, PAYMENT_TIMEOUT, PROCESS_ORDER, Saga},
};

/// Runs the orders queue's jobs.
pub struct OrderJobs(pub Saga);

fn field<'a>(job: &'a ClaimedJob, name: &str) -> Result<&'a str, JobError> {
    job.payload[name]
        .as_str()
        .ok_or_else(|| JobError::Permanent(format!("job has no {name}")))
}

/// The job's id field `name`, parsed: a malformed one will never parse, so it is permanent.
fn id<T>(job: &ClaimedJob, name: &str) -> Result<T, JobError>
where
    T: TryFrom<String, Error = common::id::MalformedId>,
{
    T::try_from(field(job, name)?.to_owned()).map_err(|e| JobError::Permanent(e.to_string()))
}

impl Handler for OrderJobs {
    fn kinds(&self) -> &'static [&'static str] {
        &[
            PROCESS_ORDER,
            PAYMENT_TIMEOUT,
            CLEAR_CART,
            CLOSE_PAYMENT,
            RELEASE_HOLD,
        ]
    }

    async fn handle(&self, job: &ClaimedJob) -> Result<(), JobError> {
        match job.kind.as_str() {
            PROCESS_ORDER => self.0.advance(&id(job, "order_id")?).await,
            PAYMENT_TIMEOUT => self.0.expire_payment(&id(job, "order_id")?).await,
            CLEAR_CART => self
                .0
                .clients
                .delete_cart(&id::<CartId>(job, "cart_id")?)
                .await
                .map_err(|e| JobError::Transient(format!("cart: {e}"))),
            CLOSE_PAYMENT => self.close_payment(job).await,
            RELEASE_HOLD => self.0.release_hold(&id(job, "order_id")?).await,
            other => Err(JobError::Permanent(format!("unknown job kind {other}"))),
        }
    }

    async fn on_dead(&self, job: &ClaimedJob, error: &str) -> Result<(), String> {
        metrics::counter!("dead_letters_total", "kind" => job.kind.clone()).increment(1);
        match job.kind.as_str() {
            PROCESS_ORDER => match id::<OrderId>(job, "order_id") {
                Ok(order_id) => self.0.abandon(&order_id, error).await,
                Err(_) => Ok(()),
            },
            CLOSE_PAYMENT => {
                // Payments never heard the order ended: its PaymentIntent may still be paid.
                // The job stays listed for an operator to replay once payments answers.
                tracing::error!(payload = %job.payload, error, "an ended order's payment could not be closed; replay the job");
                Ok(())
            }
            // A cart that could not be cleared expires by itself; a timeout check that died
            // is redone by the sweeper.
            _ => Ok(()),
        }
    }
}

impl OrderJobs {
    /// Closes an ended order's payment. The order is held (`FOR SHARE`) while payments is
    /// told, so an operator's replay that reopens it waits: the close then either happened
    /// (the replay's payment is refused as closed) or finds the order open and does nothing.
    async fn close_payment(&self, job: &ClaimedJob) -> Result<(), JobError> {
        let saga = &self.0;
        let order_id: OrderId = id(job, "order_id")?;
        let amount = job.payload["amount"]
            .as_i64()
            .ok_or_else(|| JobError::Permanent("job has no amount".to_owned()))?;
        let currency = field(job, "currency")?
            .parse()
            .map_err(|e: InvalidCurrency| JobError::Permanent(e.to_string()))?;
        let total = Money::new(amount, currency);
        let db = |e: sqlx::Error| JobError::Transient(format!("database: {e}"));
        let mut tx = common::db::begin(&saga.pool).await.map_err(db)?;
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM orders.orders WHERE id = $1 FOR SHARE")
                .bind(order_id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        let ended = status
            .and_then(|s| s.parse::<crate::domain::Status>().ok())
            .is_some_and(|s| s.is_final() && s != crate::domain::Status::Confirmed);
        if ended {
            saga.clients
                .close_payment(&order_id, total, field(job, "reason")?)
                .await
                .map_err(|e| match e {
                    UpstreamError::Transient(e) => JobError::Transient(format!("payments: {e}")),
                    rejected @ UpstreamError::Rejected { .. } => {
                        JobError::Permanent(format!("payments: {rejected}"))
                    }
                })?;
        }
        tx.commit().await.map_err(db)
    }
}

/// Every `interval`: re-enqueue open orders untouched for `stuck_after`, enqueue timeout
/// checks for overdue payments, forget expired idempotency keys, and export gauges.
pub async fn sweep(
    saga: Saga,
    interval: Duration,
    stuck_after: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(e) = sweep_once(&saga, stuck_after).await {
            tracing::warn!(error = %e, "sweep failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// One sweep; answers how many jobs it enqueued.
pub async fn sweep_once(saga: &Saga, stuck_after: Duration) -> Result<u64, sqlx::Error> {
    let stuck: Vec<String> = sqlx::query_scalar(
        "SELECT o.id FROM orders.orders o
         WHERE o.status IN ('pending', 'reserved', 'paid')
           AND o.updated_at < now() - $1 * interval '1 millisecond'
           AND NOT EXISTS (SELECT 1 FROM orders.jobs j
                           WHERE j.dedup_key = 'process:' || o.id AND j.status <> 'dead')
         LIMIT 1000",
    )
    .bind(stuck_after.as_millis() as i64)
    .fetch_all(&saga.pool)
    .await?;
    let overdue: Vec<String> = sqlx::query_scalar(
        "SELECT o.id FROM orders.orders o
         WHERE o.status IN ('reserved', 'awaiting_payment') AND o.payment_due_at < now()
           AND NOT EXISTS (SELECT 1 FROM orders.jobs j WHERE j.dedup_key = 'timeout:' || o.id AND j.status <> 'dead')
         LIMIT 1000",
    )
    .fetch_all(&saga.pool)
    .await?;
    let mut enqueued = 0;
    let mut tx = common::db::begin(&saga.pool).await?;
    for id in stuck {
        let id = OrderId::try_from(id).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        enqueued += u64::from(
            saga.queue
                .enqueue(&mut tx, saga.process_job(&id))
                .await?
                .is_some(),
        );
    }
    for id in &overdue {
        let job = NewJob::new(PAYMENT_TIMEOUT, serde_json::json!({ "order_id": id }))
            .dedup(format!("timeout:{id}"));
        enqueued += u64::from(saga.queue.enqueue(&mut tx, job).await?.is_some());
    }
    saga.queue.commit(tx).await?;
    if enqueued > 0 {
        tracing::warn!(enqueued, "sweeper re-enqueued stuck orders");
        metrics::counter!("orders_swept_total").increment(enqueued);
    }
    crate::store::idempotency::purge_expired(&saga.pool).await?;
    saga.queue.export_depth().await?;
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM orders.orders GROUP BY status")
            .fetch_all(&saga.pool)
            .await?;
    for status in crate::domain::Status::ALL {
        let count = by_status
            .iter()
            .find(|(s, _)| s == status.as_str())
            .map_or(0, |(_, c)| *c);
        metrics::gauge!("orders", "status" => status.as_str()).set(count as f64);
    }
    Ok(enqueued)
}
