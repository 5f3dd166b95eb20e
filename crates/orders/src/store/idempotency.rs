//! Idempotency keys for `POST /v1/orders`. A key is claimed by the statement that places the
//! order (`orders::place`), so a concurrent request with the same key waits on the row and
//! then sees the stored response; the response is replayed for 24 h (configurable).
//!
//! A client's key is stored scoped to the cart it checks out ([`scoped`]): the cart id is the
//! shopper's access token, so one shopper's keys neither collide with another's nor tell
//! anyone else that they exist.

use sqlx::PgPool;

/// The stored form of the client's `key` used with `cart_id`. A cart id has a fixed length,
/// so the concatenation is unambiguous whatever the key holds.
pub fn scoped(cart_id: &str, key: &str) -> String {
    format!("{cart_id}/{key}")
}

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

/// Forgets `key` if it has expired, so it can be claimed again; `true` when it did.
pub async fn forget_if_expired(pool: &PgPool, key: &str) -> Result<bool, sqlx::Error> {
    let deleted =
        sqlx::query("DELETE FROM orders.idempotency_keys WHERE key = $1 AND expires_at <= now()")
            .bind(key)
            .execute(pool)
            .await?;
    Ok(deleted.rows_affected() == 1)
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

#[cfg(test)]
mod tests {
    use super::scoped;

    #[test]
    fn one_key_on_two_carts_is_two_claims() {
        let (a, b) = (common::id::new_id("crt"), common::id::new_id("crt"));
        assert_ne!(scoped(&a, "k"), scoped(&b, "k"));
        assert_eq!(scoped(&a, "k"), scoped(&a, "k"));
    }
}
