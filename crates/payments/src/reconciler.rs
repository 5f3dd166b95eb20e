//! The reconciler: webhooks get lost (an outage here, an endpoint misconfigured, Stripe
//! giving up), so payments whose PaymentIntent may still move are checked with Stripe: open
//! ones, and failed ones for a day (a declined intent takes another card). Closed payments
//! that may still hold or take money are settled again. Each check is a queued job, so a
//! backlog drains at the worker's pace with retries, and the same job is what an
//! out-of-order event triggers. It also exports the payment and queue gauges.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::{jobs::PaymentJobs, state::Status, store};

/// Most payments queued for a check per round.
const BATCH: i64 = 500;
/// How long a failed payment is still checked: Stripe lets a declined PaymentIntent be
/// confirmed again with another card until it is canceled.
const FAILED_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Every `interval`, queues a check of the payments open for longer than `age`.
pub async fn run(
    jobs: &PaymentJobs,
    interval: Duration,
    age: Duration,
    shutdown: CancellationToken,
) {
    loop {
        if let Err(e) = reconcile_once(jobs, age).await {
            tracing::warn!(error = %e, "reconciliation round failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// One round; answers how many checks it queued.
pub async fn reconcile_once(jobs: &PaymentJobs, age: Duration) -> Result<u64, sqlx::Error> {
    let ledger = &jobs.ledger;
    let mut tx = common::db::begin(&ledger.pool).await?;
    let due = store::payments::take_unsettled(&mut tx, age, FAILED_WINDOW, BATCH).await?;
    let closed = store::payments::take_closed_unsettled(&mut tx, age, BATCH).await?;
    let mut queued = 0;
    let jobs = due
        .iter()
        .map(|id| jobs.reconcile_job(id))
        .chain(closed.iter().map(|id| ledger.settle_job(id)));
    for job in jobs {
        queued += u64::from(ledger.queue.enqueue(&mut tx, job).await?.is_some());
    }
    ledger.queue.commit(tx).await?;
    if queued > 0 {
        tracing::info!(queued, "checking unsettled payments with Stripe");
        metrics::counter!("payments_reconciliations_total").increment(queued);
    }
    ledger.queue.export_depth().await?;
    let counts = store::payments::count_by_status(&ledger.pool).await?;
    for status in Status::ALL {
        let count = counts
            .iter()
            .find(|(s, _)| s == status.as_str())
            .map_or(0, |(_, c)| *c);
        metrics::gauge!("payments", "status" => status.as_str()).set(count as f64);
    }
    Ok(queued)
}
