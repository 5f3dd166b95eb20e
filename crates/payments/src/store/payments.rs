//! Payment rows. A payment is claimed (inserted) in the transaction that creates its
//! PaymentIntent, so a concurrent request for the same order or key waits on the row and then
//! sees the first one's result; every later change happens to a row locked `FOR UPDATE`.

use std::time::Duration;

use common::queue::{NewJob, Queue};
use sqlx::{AssertSqlSafe, PgConnection, PgPool};
use time::OffsetDateTime;

use crate::{domain::NewPayment, state::Status, stripe::Intent};

/// A payment row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Payment {
    /// `pay_…`.
    pub id: String,
    /// The order it pays for.
    pub order_id: String,
    /// The caller's Idempotency-Key.
    pub idempotency_key: String,
    /// The canonical request it was created with.
    pub request: String,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: String,
    /// The payment method confirmed server-side, if any.
    pub payment_method: Option<String>,
    /// Where it is.
    #[sqlx(try_from = "String")]
    pub status: Status,
    /// `pi_…`.
    pub provider_id: Option<String>,
    /// For Stripe.js.
    pub client_secret: Option<String>,
    /// Why it failed or was canceled.
    pub failure_reason: Option<String>,
    /// Given back so far.
    pub amount_refunded: i64,
    /// Created at.
    pub created_at: OffsetDateTime,
    /// Last changed at.
    pub updated_at: OffsetDateTime,
    /// When its order said it will not take this payment's money.
    pub closed_at: Option<OffsetDateTime>,
    /// Why the order ended without it.
    pub close_reason: Option<String>,
    /// The W3C trace context of the request that created it (the checkout's): the work its
    /// events cause later joins that trace.
    pub traceparent: Option<String>,
}

impl Payment {
    /// Whether money may still move at Stripe against a closed payment: its PaymentIntent is
    /// confirmable, or was paid and not all of it given back. Such a payment is settled.
    pub fn needs_settling(&self) -> bool {
        self.closed_at.is_some()
            && !matches!(
                self.status,
                Status::Canceled | Status::Refunded | Status::Disputed
            )
            && !(self.provider_id.is_none() && self.request.is_empty())
    }

    /// The request it was created with, for asking Stripe again under the same key.
    pub fn new_payment(&self) -> Option<NewPayment> {
        NewPayment::from_canonical(&self.request)
    }
}

const COLUMNS: &str = "id, order_id, idempotency_key, request, amount, currency, payment_method, status, \
                       provider_id, client_secret, failure_reason, amount_refunded, created_at, updated_at, \
                       closed_at, close_reason, traceparent";

/// `COLUMNS` of the payments table named `alias`, for a query that joins it.
pub(crate) fn columns(alias: &str) -> String {
    COLUMNS
        .split(", ")
        .map(|c| format!("{alias}.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The payment `id`.
pub async fn find(pool: &PgPool, id: &str) -> Result<Option<Payment>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM payments.payments WHERE id = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Inserts the payment for `new` under `key`, created in the trace `traceparent` names, and
/// answers it (the row stays locked until the commit); `None` when the order or the key
/// already has one (after waiting for a concurrent claim to commit or roll back).
pub async fn claim(
    conn: &mut PgConnection,
    id: &str,
    key: &str,
    new: &NewPayment,
    traceparent: Option<&str>,
) -> Result<Option<Payment>, sqlx::Error> {
    let sql = format!(
        "INSERT INTO payments.payments
             (id, order_id, idempotency_key, request, amount, currency, payment_method, status,
              traceparent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'requires_payment_method', $8)
         ON CONFLICT DO NOTHING
         RETURNING {COLUMNS}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(&new.order_id)
        .bind(key)
        .bind(new.canonical())
        .bind(new.amount)
        .bind(new.currency.as_str())
        .bind(&new.payment_method)
        .bind(traceparent)
        .fetch_optional(conn)
        .await
}

/// The payments holding `key` or `order_id`, locked; the one with the key first.
pub async fn lock_claimed(
    conn: &mut PgConnection,
    key: &str,
    order_id: &str,
) -> Result<Vec<Payment>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM payments.payments WHERE idempotency_key = $1 OR order_id = $2
         ORDER BY (idempotency_key = $1) DESC FOR UPDATE"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(key)
        .bind(order_id)
        .fetch_all(conn)
        .await
}

/// The payment of order `order_id`, locked for a change.
pub async fn lock_by_order(
    conn: &mut PgConnection,
    order_id: &str,
) -> Result<Option<Payment>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM payments.payments WHERE order_id = $1 FOR UPDATE");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(order_id)
        .fetch_optional(conn)
        .await
}

/// Marks the locked `payment` closed: its order ended without it.
pub async fn close(
    conn: &mut PgConnection,
    payment: &mut Payment,
    reason: &str,
) -> Result<(), sqlx::Error> {
    let (closed_at, close_reason): (OffsetDateTime, Option<String>) = sqlx::query_as(
        "UPDATE payments.payments
         SET closed_at = coalesce(closed_at, now()), close_reason = coalesce(close_reason, $2),
             updated_at = now()
         WHERE id = $1 RETURNING closed_at, close_reason",
    )
    .bind(&payment.id)
    .bind(reason)
    .fetch_one(conn)
    .await?;
    payment.closed_at = Some(closed_at);
    payment.close_reason = close_reason;
    Ok(())
}

/// Records that order `order_id` closed before it asked for a payment: a `canceled`, closed
/// row holds its place, so a payment asked for later (a late retry) is refused instead of
/// charged. Answers the row, or `None` when the order has a payment after all.
pub async fn insert_closed(
    conn: &mut PgConnection,
    id: &str,
    order: &ClosedOrder<'_>,
) -> Result<Option<Payment>, sqlx::Error> {
    let sql = format!(
        "INSERT INTO payments.payments
             (id, order_id, idempotency_key, request, amount, currency, status, failure_reason,
              closed_at, close_reason)
         VALUES ($1, $2, 'closed-' || $2, '', $3, $4, 'canceled', 'order_closed', now(), $5)
         ON CONFLICT DO NOTHING
         RETURNING {COLUMNS}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(order.order_id)
        .bind(order.amount)
        .bind(order.currency)
        .bind(order.reason)
        .fetch_optional(conn)
        .await
}

/// An order that ended without its payment.
#[derive(Debug)]
pub struct ClosedOrder<'a> {
    /// `ord_…`.
    pub order_id: &'a str,
    /// Its total, minor units.
    pub amount: i64,
    /// ISO 4217.
    pub currency: &'a str,
    /// Why it ended.
    pub reason: &'a str,
}

/// Records a PaymentIntent Stripe holds for order `order_id` that no payment of ours holds
/// (its record was lost, or the intent was made elsewhere with our metadata). The row is
/// closed, so the money rules settle it; `None` when the order has a payment after all.
pub async fn adopt(
    conn: &mut PgConnection,
    id: &str,
    intent: &Intent,
    order_id: &str,
) -> Result<Option<Payment>, sqlx::Error> {
    let sql = format!(
        "INSERT INTO payments.payments
             (id, order_id, idempotency_key, request, amount, currency, status, provider_id,
              closed_at, close_reason)
         VALUES ($1, $2, 'adopted-' || $3, '', $4, $5, $6, $3, now(), 'no_payment_record')
         ON CONFLICT DO NOTHING
         RETURNING {COLUMNS}"
    );
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .bind(order_id)
        .bind(&intent.id)
        .bind(intent.amount)
        .bind(&intent.currency)
        .bind(intent.status.as_str())
        .fetch_optional(conn)
        .await
}

/// The payment `id`, locked for a change.
pub async fn lock(conn: &mut PgConnection, id: &str) -> Result<Option<Payment>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM payments.payments WHERE id = $1 FOR UPDATE");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// The payment of PaymentIntent `provider_id`, locked for a change.
pub async fn lock_by_provider(
    conn: &mut PgConnection,
    provider_id: &str,
) -> Result<Option<Payment>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM payments.payments WHERE provider_id = $1 FOR UPDATE");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(provider_id)
        .fetch_optional(conn)
        .await
}

/// What to write to a locked payment: each part is optional, and nothing changes that none
/// names.
#[derive(Debug, Default)]
pub struct Change<'a> {
    /// Its PaymentIntent (`provider_id`, `client_secret`).
    pub intent: Option<&'a Intent>,
    /// A status the state machine allowed, and why, for a failure or cancellation.
    pub status: Option<(Status, Option<&'a str>)>,
    /// The refunded total; it only ever rises (reports arrive out of order).
    pub refunded: Option<i64>,
}

impl Change<'_> {
    fn is_empty(&self) -> bool {
        self.intent.is_none() && self.status.is_none() && self.refunded.is_none()
    }
}

/// Writes `change` to the locked `payment`, and queues `job` with it, in one statement.
pub async fn write(
    conn: &mut PgConnection,
    payment: &mut Payment,
    change: &Change<'_>,
    job: Option<(&Queue, &NewJob)>,
) -> Result<(), sqlx::Error> {
    if change.is_empty() {
        return Ok(());
    }
    let update = "changed AS (
         UPDATE payments.payments
         SET provider_id = coalesce($2, provider_id), client_secret = coalesce($3, client_secret),
             status = coalesce($4, status), failure_reason = coalesce($5, failure_reason),
             amount_refunded = greatest(amount_refunded, coalesce($6, 0)), updated_at = now()
         WHERE id = $1 RETURNING id)";
    let step = job.map(|(queue, _)| queue.enqueue_step("job", "changed", 7));
    let sql = match &step {
        Some(step) => format!("WITH {update}, {} SELECT count(*) FROM changed", step.cte),
        None => format!("WITH {update} SELECT count(*) FROM changed"),
    };
    let (status, reason) = change.status.unzip();
    let query = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql))
        .bind(&payment.id)
        .bind(change.intent.map(|i| &i.id))
        .bind(change.intent.and_then(|i| i.client_secret.as_ref()))
        .bind(status.map(Status::as_str))
        .bind(reason.flatten())
        .bind(change.refunded);
    match (&step, job) {
        (Some(step), Some((_, job))) => step.bind(query, job).fetch_one(conn).await?,
        _ => query.fetch_one(conn).await?,
    };
    if let Some(intent) = change.intent {
        payment.provider_id = Some(intent.id.clone());
        payment.client_secret.clone_from(&intent.client_secret);
    }
    if let Some((status, reason)) = change.status {
        payment.status = status;
        if let Some(reason) = reason {
            payment.failure_reason = Some(reason.to_owned());
        }
    }
    if let Some(total) = change.refunded {
        payment.amount_refunded = payment.amount_refunded.max(total);
    }
    Ok(())
}

/// Marks up to `limit` payments whose PaymentIntent may still move, not heard of for `age`,
/// as checked now and answers their ids: the reconciler asks Stripe about them. Those are
/// the open ones, and the failed ones younger than `failed_window` (a declined PaymentIntent
/// takes another card at Stripe).
pub async fn take_unsettled(
    conn: &mut PgConnection,
    age: Duration,
    failed_window: Duration,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let open: Vec<&str> = Status::open().map(Status::as_str).collect();
    sqlx::query_scalar(
        "WITH open_due AS (
             SELECT id FROM payments.payments
             WHERE status = ANY($1) AND provider_id IS NOT NULL
               AND updated_at < now() - $2 * interval '1 millisecond'
               AND coalesce(checked_at, updated_at) < now() - $2 * interval '1 millisecond'
             ORDER BY updated_at
             LIMIT $3
             FOR UPDATE SKIP LOCKED),
         failed_due AS (
             SELECT id FROM payments.payments
             WHERE status = 'failed' AND provider_id IS NOT NULL
               AND updated_at > now() - $4 * interval '1 millisecond'
               AND coalesce(checked_at, updated_at) < now() - $2 * interval '1 millisecond'
             ORDER BY updated_at
             LIMIT $3
             FOR UPDATE SKIP LOCKED)
         UPDATE payments.payments SET checked_at = now()
         WHERE id IN (SELECT id FROM open_due UNION ALL SELECT id FROM failed_due)
         RETURNING id",
    )
    .bind(&open)
    .bind(age.as_millis() as i64)
    .bind(limit)
    .bind(failed_window.as_millis() as i64)
    .fetch_all(conn)
    .await
}

/// Up to `limit` closed payments whose PaymentIntent may still hold or take money, last
/// looked at longer than `age` ago, marked as looked at now: each is settled again.
pub async fn take_closed_unsettled(
    conn: &mut PgConnection,
    age: Duration,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE payments.payments SET checked_at = now()
         WHERE id IN (
             SELECT id FROM payments.payments
             WHERE closed_at IS NOT NULL AND status NOT IN ('canceled', 'refunded', 'disputed')
               AND coalesce(checked_at, closed_at) < now() - $1 * interval '1 millisecond'
             ORDER BY closed_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .bind(age.as_millis() as i64)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Payments by status, for the gauges.
pub async fn count_by_status(pool: &PgPool) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT status, count(*) FROM payments.payments GROUP BY status")
        .fetch_all(pool)
        .await
}
