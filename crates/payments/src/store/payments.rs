//! Payment rows. A payment is claimed (inserted) in the transaction that creates its
//! PaymentIntent, so a concurrent request for the same order or key waits on the row and then
//! sees the first one's result; every later change happens to a row locked `FOR UPDATE`.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
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
}

const COLUMNS: &str = "id, order_id, idempotency_key, request, amount, currency, payment_method, status, \
                       provider_id, client_secret, failure_reason, amount_refunded, created_at, updated_at";

/// The payment `id`.
pub async fn find(pool: &PgPool, id: &str) -> Result<Option<Payment>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM payments.payments WHERE id = $1");
    sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// Inserts the payment for `new` under `key`; `false` when the order or the key already has
/// one (after waiting for a concurrent claim to commit or roll back).
pub async fn claim(
    conn: &mut PgConnection,
    id: &str,
    key: &str,
    new: &NewPayment,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO payments.payments
             (id, order_id, idempotency_key, request, amount, currency, payment_method, status)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'requires_payment_method')
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(&new.order_id)
    .bind(key)
    .bind(new.canonical())
    .bind(new.amount)
    .bind(new.currency.as_str())
    .bind(&new.payment_method)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
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

/// Links the payment to its PaymentIntent.
pub async fn link_intent(
    conn: &mut PgConnection,
    payment: &mut Payment,
    intent: &Intent,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payments.payments SET provider_id = $2, client_secret = $3, updated_at = now()
         WHERE id = $1",
    )
    .bind(&payment.id)
    .bind(&intent.id)
    .bind(&intent.client_secret)
    .execute(conn)
    .await?;
    payment.provider_id = Some(intent.id.clone());
    payment.client_secret.clone_from(&intent.client_secret);
    Ok(())
}

/// Writes a status the state machine allowed, with what came with it.
pub async fn set_status(
    conn: &mut PgConnection,
    payment: &mut Payment,
    status: Status,
    failure_reason: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE payments.payments
         SET status = $2, failure_reason = coalesce($3, failure_reason), updated_at = now()
         WHERE id = $1",
    )
    .bind(&payment.id)
    .bind(status.as_str())
    .bind(failure_reason)
    .execute(conn)
    .await?;
    payment.status = status;
    if let Some(reason) = failure_reason {
        payment.failure_reason = Some(reason.to_owned());
    }
    Ok(())
}

/// Raises the refunded amount to `total` (never lowers it: reports arrive out of order).
pub async fn raise_refunded(
    conn: &mut PgConnection,
    payment: &mut Payment,
    total: i64,
) -> Result<(), sqlx::Error> {
    if total <= payment.amount_refunded {
        return Ok(());
    }
    sqlx::query(
        "UPDATE payments.payments SET amount_refunded = greatest(amount_refunded, $2), updated_at = now()
         WHERE id = $1",
    )
    .bind(&payment.id)
    .bind(total)
    .execute(conn)
    .await?;
    payment.amount_refunded = total;
    Ok(())
}

/// Marks up to `limit` open payments not heard of for `age` as checked now and answers
/// their ids: the reconciler asks Stripe about them.
pub async fn take_unsettled(
    conn: &mut PgConnection,
    age: Duration,
    limit: i64,
) -> Result<Vec<String>, sqlx::Error> {
    let open: Vec<&str> = Status::open().map(Status::as_str).collect();
    sqlx::query_scalar(
        "UPDATE payments.payments SET checked_at = now()
         WHERE id IN (
             SELECT id FROM payments.payments
             WHERE status = ANY($1) AND provider_id IS NOT NULL
               AND updated_at < now() - $2 * interval '1 millisecond'
               AND coalesce(checked_at, updated_at) < now() - $2 * interval '1 millisecond'
             ORDER BY updated_at
             LIMIT $3
             FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .bind(&open)
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
