//! Refunds issued through the admin API, one row per Stripe Refund. The idempotency key is
//! unique, so an admin's retry finds the refund it already made.

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;

/// A refund row.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct Refund {
    /// `rfd_…`.
    pub id: String,
    /// The payment refunded.
    pub payment_id: String,
    /// The Stripe Refund (`re_…`).
    pub provider_id: String,
    /// Minor units.
    pub amount: i64,
    /// Stripe's status (`succeeded`, `pending`, …).
    pub status: String,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The refund made under `key`.
pub async fn find_by_key(
    conn: &mut PgConnection,
    key: &str,
) -> Result<Option<Refund>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, payment_id, provider_id, amount, status, created_at FROM payments.refunds
         WHERE idempotency_key = $1",
    )
    .bind(key)
    .fetch_optional(conn)
    .await
}

/// How many refunds the payment has.
pub async fn count(conn: &mut PgConnection, payment_id: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM payments.refunds WHERE payment_id = $1")
        .bind(payment_id)
        .fetch_one(conn)
        .await
}

/// Records a refund Stripe made.
pub async fn insert(
    conn: &mut PgConnection,
    refund: &Refund,
    key: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payments.refunds (id, payment_id, provider_id, amount, status, idempotency_key, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&refund.id)
    .bind(&refund.payment_id)
    .bind(&refund.provider_id)
    .bind(refund.amount)
    .bind(&refund.status)
    .bind(key)
    .bind(refund.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records a refund payments made by itself (money that came for an order that did not
/// happen); a retry that reached the same Stripe Refund under `key` records nothing more.
pub async fn insert_automatic(
    conn: &mut PgConnection,
    refund: &Refund,
    key: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO payments.refunds
             (id, payment_id, provider_id, amount, status, idempotency_key, created_at, automatic)
         VALUES ($1, $2, $3, $4, $5, $6, $7, true)
         ON CONFLICT DO NOTHING",
    )
    .bind(&refund.id)
    .bind(&refund.payment_id)
    .bind(&refund.provider_id)
    .bind(refund.amount)
    .bind(&refund.status)
    .bind(key)
    .bind(refund.created_at)
    .execute(conn)
    .await?;
    Ok(())
}
