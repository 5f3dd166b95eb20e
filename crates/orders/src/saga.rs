//! The checkout saga's steps. Each step locks the order, checks where it is, acts, and
//! commits — so running a step twice (a retried job, a duplicate webhook) finds the work done
//! and does nothing. The two steps every order takes (reserving; confirming a payment answered
//! `succeeded`) are single statements that do all of that at once, and fall back to the
//! general way when the order is not where they expect it. Compensation (release stock, end
//! the order, close its payment) lives here too, next to the steps it undoes.
//!
//! The money rule: an order that ends without confirming leaves no payable PaymentIntent.
//! Ending it after the payment step queues `close_payment` in the same transaction; payments
//! then cancels the intent, or refunds what it took, and refunds a success that comes later.

use std::sync::Arc;

use common::{
    notify::Notifier,
    queue::{JobError, NewJob, Queue},
};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use time::OffsetDateTime;

use crate::{
    clients::{Clients, UpstreamError},
    domain::{Holding, OrderId, PaymentId, Status},
    ratelimit::PaymentLimiter,
    store::orders::{self, Order, StoreError},
};

/// Job kinds.
pub const PROCESS_ORDER: &str = "process_order";
/// Cancels an order whose payment did not settle in time.
pub const PAYMENT_TIMEOUT: &str = "payment_timeout";
/// Deletes a confirmed order's cart.
pub const CLEAR_CART: &str = "clear_cart";
/// Tells payments that an order ended without its payment's money.
pub const CLOSE_PAYMENT: &str = "close_payment";
/// Attempts of a `close_payment` job: money may be at stake, so it outlasts any outage the
/// saga's own budget gives up on (with backoff, well over a day).
const CLOSE_ATTEMPTS: i32 = 60;
/// The priority of jobs no customer waits for: every due saga step is claimed before them.
pub const HOUSEKEEPING: i16 = -10;

/// What the saga needs.
#[derive(Clone)]
pub struct Saga {
    /// Postgres.
    pub pool: PgPool,
    /// The orders queue.
    pub queue: Queue,
    /// Tells the event streams which orders changed (`store::orders::EVENTS_CHANNEL`).
    pub changes: Notifier,
    /// Cart and payments.
    pub clients: Clients,
    /// The cap on payment creations.
    pub limiter: Arc<PaymentLimiter>,
    /// How long a payment may stay unsettled.
    pub payment_timeout: std::time::Duration,
    /// How long, and how much, unpaid orders may hold stock.
    pub holds: crate::holds::HoldPolicy,
    /// Attempts for follow-up jobs.
    pub max_attempts: i32,
}

/// A payment outcome, from the payments service's status names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentOutcome {
    /// Money captured.
    Succeeded,
    /// Declined or failed.
    Failed,
    /// Canceled at the provider.
    Canceled,
    /// Anything else (requires_action, processing, refunded…): recorded, no move.
    Pending,
}

impl PaymentOutcome {
    /// Sorts a payment status.
    pub fn of(status: &str) -> Self {
        match status {
            "succeeded" => Self::Succeeded,
            "failed" | "payment_failed" => Self::Failed,
            "canceled" | "cancelled" => Self::Canceled,
            _ => Self::Pending,
        }
    }
}

fn db(e: impl std::fmt::Display) -> JobError {
    JobError::Transient(format!("database: {e}"))
}

impl Saga {
    /// The job that starts or resumes an order's saga.
    pub fn process_job(&self, order_id: &OrderId) -> NewJob {
        NewJob::new(PROCESS_ORDER, serde_json::json!({ "order_id": order_id }))
            .dedup(format!("process:{order_id}"))
            .attempts(self.max_attempts)
    }

    /// The job that deletes a confirmed order's cart.
    fn clear_cart_job(&self, order: &Order) -> NewJob {
        NewJob::new(CLEAR_CART, serde_json::json!({ "cart_id": order.cart_id }))
            .dedup(format!("clear:{}", order.id))
            .attempts(self.max_attempts)
            .priority(HOUSEKEEPING)
    }

    /// The job that closes order `order`'s payment, for `reason` (a public reason code).
    /// Its dedup key is `close:<order>`; a close for a success that came later has its own
    /// (`close:<order>:paid`), so a first close still running cannot swallow it.
    fn close_payment_job(&self, order: &Order, reason: &str) -> NewJob {
        NewJob::new(
            CLOSE_PAYMENT,
            serde_json::json!({
                "order_id": order.id,
                "amount": order.total.amount,
                "currency": order.total.currency,
                "reason": reason,
            }),
        )
        .dedup(format!("close:{}", order.id))
        .attempts(CLOSE_ATTEMPTS)
    }

    /// Releases the locked order's stock and ends it (`failed` or `cancelled`) for
    /// `reason`; an order past the payment step also has its payment closed, in the same
    /// transaction, so no money can be taken for it any more.
    pub async fn end_unpaid(
        &self,
        conn: &mut PgConnection,
        order: &mut Order,
        to: Status,
        reason: &str,
    ) -> Result<(), StoreError> {
        let may_have_payment = order.status != Status::Pending || order.payment_id.is_some();
        compensate(conn, order, to, reason).await?;
        if may_have_payment {
            let code = orders::public_reason(reason);
            self.queue
                .enqueue(conn, self.close_payment_job(order, code))
                .await?;
        }
        Ok(())
    }

    /// Runs the saga as far as it can go now: up to awaiting the payment, or a final state.
    pub async fn advance(&self, order_id: &OrderId) -> Result<(), JobError> {
        let mut order = self.reserve(order_id).await?;
        loop {
            order = match order.status {
                Status::Reserved => self.create_payment(order).await?,
                Status::Paid => self.confirm_step(order_id).await?,
                _ => return Ok(()),
            };
        }
    }

    /// Holds the order's stock, or fails it `out_of_stock`; answers the order as committed.
    async fn reserve(&self, order_id: &OrderId) -> Result<Order, JobError> {
        self.before_reserve(order_id).await?;
        if let Some(order) = orders::reserve_pending(&self.pool, order_id)
            .await
            .map_err(db)?
        {
            self.changes.send(order_id.as_str());
            return Ok(order);
        }
        // Not pending: a retry, or the job of an order that moved on without it.
        let order = orders::find(&self.pool, order_id)
            .await
            .map_err(db)?
            .ok_or_else(|| JobError::Permanent(format!("no order {order_id}")))?;
        if order.status == Status::Pending {
            // A pending order holds no stock; one that does is for an operator (the dead
            // job's compensation hands the stock back).
            return Err(JobError::Permanent(format!(
                "order {order_id} is pending with stock {}",
                order.stock
            )));
        }
        Ok(order)
    }

    /// Creates the payment (idempotent at payments by the order's key) and records it.
    async fn create_payment(&self, order: Order) -> Result<Order, JobError> {
        self.limiter
            .acquire()
            .await
            .map_err(|e| JobError::Transient(format!("rate limiter: {e}")))?;
        let payment = self
            .clients
            .create_payment(&order.id, order.total, order.payment_method.as_deref())
            .await
            .map_err(|e| match e {
                UpstreamError::Transient(e) => JobError::Transient(format!("payments: {e}")),
                UpstreamError::Rejected { status, detail } => JobError::Permanent(format!(
                    "payments refused the payment ({status}): {detail}"
                )),
            })?;

        if PaymentOutcome::of(&payment.status) == PaymentOutcome::Succeeded {
            // Confirmed server-side and paid at once, the usual case: one statement.
            let answer = orders::PaymentAnswer {
                id: &payment.id,
                status: &payment.status,
                client_secret: payment.client_secret.as_deref(),
            };
            let clear = self.clear_cart_job(&order);
            if let Some(order) =
                orders::confirm_paid_at_once(&self.pool, &order.id, answer, &self.queue, &clear)
                    .await
                    .map_err(db)?
            {
                self.changes.send(order.id.as_str());
                return Ok(order);
            }
        }
        let mut tx = common::db::begin(&self.pool).await.map_err(db)?;
        let mut order = orders::lock(&mut tx, &order.id)
            .await
            .map_err(db)?
            .ok_or_else(|| JobError::Permanent(format!("no order {}", order.id)))?;
        if order.status == Status::Reserved {
            let due = OffsetDateTime::now_utc() + self.payment_timeout;
            orders::record_payment(
                &mut tx,
                &mut order,
                &payment.id,
                &payment.status,
                payment.client_secret.as_deref(),
                Some(due),
            )
            .await
            .map_err(db)?;
            orders::transition(&mut tx, &mut order, Status::AwaitingPayment, None)
                .await
                .map_err(db)?;
            if PaymentOutcome::of(&payment.status) == PaymentOutcome::Pending {
                let timeout =
                    NewJob::new(PAYMENT_TIMEOUT, serde_json::json!({ "order_id": order.id }))
                        .dedup(format!("timeout:{}", order.id))
                        .attempts(self.max_attempts)
                        .delay(self.payment_timeout);
                self.queue.enqueue(&mut tx, timeout).await.map_err(db)?;
                if let Some(release) = self.release_hold_job(&order.id) {
                    self.queue.enqueue(&mut tx, release).await.map_err(db)?;
                }
            }
        }
        // A server-side confirmation may already have settled the payment.
        self.apply_payment(&mut tx, &mut order, &payment.id, &payment.status, None)
            .await
            .map_err(db)?;
        self.commit(tx, &order.id).await.map_err(db)?;
        Ok(order)
    }

    /// Confirms a paid order (normally done with the payment event, in its transaction).
    async fn confirm_step(&self, order_id: &OrderId) -> Result<Order, JobError> {
        let mut tx = common::db::begin(&self.pool).await.map_err(db)?;
        let mut order = orders::lock(&mut tx, order_id)
            .await
            .map_err(db)?
            .ok_or_else(|| JobError::Permanent(format!("no order {order_id}")))?;
        self.confirm(&mut tx, &mut order).await.map_err(db)?;
        self.commit(tx, order_id).await.map_err(db)?;
        Ok(order)
    }

    /// Applies a payment's status to a locked order: success confirms it, failure or
    /// cancellation compensates. A stale or repeated status changes nothing.
    pub async fn apply_payment(
        &self,
        conn: &mut PgConnection,
        order: &mut Order,
        payment_id: &PaymentId,
        status: &str,
        reason: Option<&str>,
    ) -> Result<(), StoreError> {
        if order.status.is_final() {
            return self
                .closed_order_payment(conn, order, payment_id, status)
                .await;
        }
        if order.payment_id.as_ref() != Some(payment_id)
            || order.payment_status.as_deref() != Some(status)
        {
            orders::record_payment(conn, order, payment_id, status, None, None).await?;
        }
        match PaymentOutcome::of(status) {
            PaymentOutcome::Succeeded => {
                orders::transition(conn, order, Status::Paid, None).await?;
                self.confirm(conn, order).await?;
            }
            // Paid in the browser (Stripe.js), a declined card is one attempt: the shopper may
            // try another on the same PaymentIntent until the payment timeout. Confirmed
            // server-side, nobody is there to try again: the order fails and its intent is
            // canceled.
            PaymentOutcome::Failed if order.payment_method.is_none() => {}
            PaymentOutcome::Failed => {
                let why = format!(
                    "payment_declined{}",
                    reason.map(|r| format!(": {r}")).unwrap_or_default()
                );
                self.end_unpaid(conn, order, Status::Failed, &why).await?;
            }
            PaymentOutcome::Canceled => {
                self.end_unpaid(conn, order, Status::Cancelled, "payment_canceled")
                    .await?
            }
            PaymentOutcome::Pending => {}
        }
        Ok(())
    }

    /// Whether a payment status for an ended order changes anything: it is recorded (the
    /// order shows `refunded`, `canceled`), and a success for an order that did not confirm
    /// has its payment closed again, so payments refunds it.
    pub fn closed_order_news(order: &Order, payment_id: &PaymentId, status: &str) -> bool {
        order.payment_id.as_ref() != Some(payment_id)
            || order.payment_status.as_deref() != Some(status)
    }

    /// Applies a payment status to a locked order that has ended: see
    /// [`Saga::closed_order_news`].
    pub async fn closed_order_payment(
        &self,
        conn: &mut PgConnection,
        order: &mut Order,
        payment_id: &PaymentId,
        status: &str,
    ) -> Result<(), StoreError> {
        if !Self::closed_order_news(order, payment_id, status) {
            return Ok(());
        }
        orders::record_payment(conn, order, payment_id, status, None, None).await?;
        if PaymentOutcome::of(status) == PaymentOutcome::Succeeded
            && order.status != Status::Confirmed
        {
            metrics::counter!("orders_paid_after_close_total").increment(1);
            tracing::warn!(order = %order.id, payment = %payment_id, "payment succeeded for a closed order; closing it again so it is refunded");
            let reason = order
                .failure_reason
                .as_deref()
                .map_or("order_closed", orders::public_reason)
                .to_owned();
            let again = self
                .close_payment_job(order, &reason)
                .dedup(format!("close:{}:paid", order.id));
            self.queue.enqueue(conn, again).await?;
        }
        Ok(())
    }

    async fn confirm(&self, conn: &mut PgConnection, order: &mut Order) -> Result<(), StoreError> {
        if order.status != Status::Paid || !self.hold_for_sale(conn, order).await? {
            return Ok(());
        }
        orders::transition(conn, order, Status::Confirmed, None).await?;
        self.queue
            .cancel(conn, &format!("timeout:{}", order.id))
            .await?;
        self.queue
            .cancel(conn, &format!("hold:{}", order.id))
            .await?;
        self.queue.enqueue(conn, self.clear_cart_job(order)).await?;
        // Last: the sale locks the inventory rows, which other checkouts wait for.
        orders::sell(conn, order).await?;
        Ok(())
    }

    /// Cancels the order if its payment is overdue.
    pub async fn expire_payment(&self, order_id: &OrderId) -> Result<(), JobError> {
        let mut tx = common::db::begin(&self.pool).await.map_err(db)?;
        let Some(mut order) = orders::lock(&mut tx, order_id).await.map_err(db)? else {
            return Ok(());
        };
        let overdue = order
            .payment_due_at
            .is_some_and(|due| due <= OffsetDateTime::now_utc());
        if matches!(order.status, Status::Reserved | Status::AwaitingPayment) && overdue {
            self.end_unpaid(&mut tx, &mut order, Status::Cancelled, "payment_timeout")
                .await
                .map_err(db)?;
        }
        self.commit(tx, order_id).await.map_err(db)
    }

    /// Ends an order whose saga ran out of attempts.
    pub async fn abandon(&self, order_id: &OrderId, error: &str) -> Result<(), String> {
        let mut tx = common::db::begin(&self.pool)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(mut order) = orders::lock(&mut tx, order_id)
            .await
            .map_err(|e| e.to_string())?
            && !order.status.is_final()
        {
            let why = format!(
                "processing_failed: {}",
                error.chars().take(200).collect::<String>()
            );
            self.end_unpaid(&mut tx, &mut order, Status::Failed, &why)
                .await
                .map_err(|e| e.to_string())?;
        }
        self.commit(tx, order_id).await.map_err(|e| e.to_string())
    }

    /// Reopens an order that was abandoned by a dead job, for a replay; `false` when the
    /// order ended for another reason (it then stays as it is). The move itself is the state
    /// machine's to allow (`orders::reopen`).
    pub async fn reopen(&self, order_id: &OrderId) -> Result<bool, StoreError> {
        let mut tx = common::db::begin(&self.pool).await?;
        let Some(mut order) = orders::lock(&mut tx, order_id).await? else {
            return Ok(false);
        };
        // Abandoned: ended by `abandon`, and holding no stock (its compensation released it).
        let abandoned = order
            .failure_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("processing_failed"))
            && order.stock != Holding::Reserved;
        if !abandoned {
            return Ok(false);
        }
        orders::reopen(&mut tx, &mut order).await?;
        // A close not yet sent is withdrawn; one under way holds the order until payments
        // has it, and then the replay's payment is refused as closed.
        for key in [
            format!("close:{order_id}"),
            format!("close:{order_id}:paid"),
        ] {
            self.queue.cancel(&mut tx, &key).await?;
        }
        self.commit(tx, order_id).await?;
        Ok(true)
    }

    /// Commits a transaction that may have moved order `order_id`, then tells the event
    /// streams. The jobs a saga step queues need no wake-up: a follow-up is housekeeping
    /// (clearing the cart) or delayed (the payment-timeout check), and a worker claims again
    /// as soon as its step ends.
    pub async fn commit(
        &self,
        tx: Transaction<'_, Postgres>,
        order_id: &OrderId,
    ) -> Result<(), sqlx::Error> {
        tx.commit().await?;
        self.changes.send(order_id.as_str());
        Ok(())
    }
}

/// Releases the order's stock and ends it.
pub async fn compensate(
    conn: &mut PgConnection,
    order: &mut Order,
    to: Status,
    reason: &str,
) -> Result<(), StoreError> {
    orders::release(conn, order).await?;
    orders::transition(conn, order, to, Some(reason)).await?;
    metrics::counter!("order_compensations_total", "step" => "end_order", "to" => to.as_str())
        .increment(1);
    Ok(())
}
