//! Stock levels per sku: `on_hand` counts units in the warehouse, `reserved` those held for
//! open orders; `available = on_hand - reserved` is what checkout can still sell.

use serde::Serialize;
use sqlx::PgPool;

/// A sku's stock.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Stock {
    /// The product.
    pub sku: String,
    /// Units in the warehouse.
    pub on_hand: i64,
    /// Units held for open orders.
    pub reserved: i64,
    /// `on_hand - reserved`.
    pub available: i64,
}

/// The sku's stock, `None` when it has never been stocked.
pub async fn get(pool: &PgPool, sku: &str) -> Result<Option<Stock>, sqlx::Error> {
    sqlx::query_as("SELECT sku, on_hand, reserved, on_hand - reserved AS available FROM orders.inventory WHERE sku = $1")
        .bind(sku)
        .fetch_optional(pool)
        .await
}

/// Sets `on_hand`; answers `None` when it would fall below what is reserved.
pub async fn set_on_hand(
    pool: &PgPool,
    sku: &str,
    on_hand: i64,
) -> Result<Option<Stock>, sqlx::Error> {
    sqlx::query_as(
        "INSERT INTO orders.inventory (sku, on_hand) VALUES ($1, $2)
         ON CONFLICT (sku) DO UPDATE SET on_hand = EXCLUDED.on_hand, updated_at = now()
             WHERE orders.inventory.reserved <= EXCLUDED.on_hand
         RETURNING sku, on_hand, reserved, on_hand - reserved AS available",
    )
    .bind(sku)
    .bind(on_hand)
    .fetch_optional(pool)
    .await
}
