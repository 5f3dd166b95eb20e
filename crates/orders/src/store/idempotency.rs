//! Idempotency keys for `POST /v1/orders`. A key is claimed in the transaction that creates
//! the order, so a concurrent request with the same key waits on the row and then sees the
//! stored response; the stored response is replayed for 24 h (configurable).

use std::time::Duration;

use sqlx::{PgConnection, PgPool};

/// What a key remembers.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Stored {
    /// The canonical request body the key was first used with.
    pub request: String,
    /// The response status.
    pub status_code: i32,
    /// The response body.
    pub response: serde_json::Value,
}

/// The stored response for `key`, when the key is known and not expired.
pub async fn find(pool: &PgPool, key: &str) -> Result<Option<Stored>, sqlx::Error> {
    sqlx::query_as(
        "SELECT request, status_code, response FROM orders.idempotency_keys WHERE key = $1 AND expires_at > now()",
    )
    .bind(key)
    .fetch_optional(pool)
    .await
}

/// Claims `key` for `request` inside the caller's transaction; `false` when another request
/// holds it (that request's transaction has committed by the time this returns).
pub async fn claim(
    conn: &mut PgConnection,
    key: &str,
    request: &str,
    ttl: Duration,
) -> Result<bool, sqlx::Error> {
    sqlx::query("DELETE FROM orders.idempotency_keys WHERE key = $1 AND expires_at <= now()")
        .bind(key)
        .execute(&mut *conn)
        .await?;
    let claimed = sqlx::query(
        "INSERT INTO orders.idempotency_keys (key, request, order_id, status_code, response, expires_at)
         VALUES ($1, $2, '', 0, 'null', now() + $3 * interval '1 second')
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(key)
    .bind(request)
    .bind(ttl.as_secs() as i64)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(claimed == 1)
}

/// Stores the response for a claimed key.
pub async fn complete(
    conn: &mut PgConnection,
    key: &str,
    order_id: &str,
    status_code: u16,
    response: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE orders.idempotency_keys SET order_id = $2, status_code = $3, response = $4 WHERE key = $1")
        .bind(key)
        .bind(order_id)
        .bind(i32::from(status_code))
        .bind(response)
        .execute(conn)
        .await?;
    Ok(())
}

/// Forgets expired keys.
pub async fn purge_expired(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("DELETE FROM orders.idempotency_keys WHERE expires_at <= now()")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}
