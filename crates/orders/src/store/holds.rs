//! The queries behind the stock-hold rules (`crate::holds`): a cart's earlier open orders, a
//! customer's orders waiting for payment, and holding a released order's stock again.

use sqlx::{PgConnection, PgPool};

use crate::{
    domain::{Holding, OrderId},
    store::orders::Order,
};

/// What the hold rules need to know before order `id` reserves: the ids of its cart's
/// earlier open orders (oldest first), and how many orders its customer has waiting for
/// payment. `None` when the order is not pending.
pub async fn before_reserve(
    pool: &PgPool,
    id: &OrderId,
) -> Result<Option<(Vec<OrderId>, i64)>, sqlx::Error> {
    // Placement order is the order of each order's first event (a sequence); `created_at`
    // is kept to the second and cannot tell two quick checkouts apart.
    let found: Option<(Vec<String>, i64)> = sqlx::query_as(
        "WITH placed AS (
             SELECT e.id, (SELECT min(ev.id) FROM orders.order_events ev WHERE ev.order_id = e.id) AS seq
             FROM orders.orders e, orders.orders o
             WHERE o.id = $1 AND e.cart_id = o.cart_id
               AND e.status IN ('pending', 'reserved', 'awaiting_payment'))
         SELECT
             coalesce((SELECT array_agg(p.id ORDER BY p.seq) FROM placed p
                       WHERE p.seq < (SELECT seq FROM placed WHERE id = $1)), '{}'),
             (SELECT count(*) FROM orders.orders w WHERE w.email = o.email AND w.status = 'awaiting_payment')
         FROM orders.orders o WHERE o.id = $1 AND o.status = 'pending'",
    )
    .bind(id.as_str())
    .fetch_optional(pool)
    .await?;
    let Some((earlier, awaiting)) = found else {
        return Ok(None);
    };
    let earlier = earlier
        .into_iter()
        .map(OrderId::try_from)
        .collect::<Result<_, _>>()
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    Ok(Some((earlier, awaiting)))
}

/// Holds the stock of the locked `order`, whose hold was released, again: every line or
/// none. Answers whether it did.
pub async fn reserve_again(
    conn: &mut PgConnection,
    order: &mut Order,
) -> Result<bool, sqlx::Error> {
    let held: Option<bool> = sqlx::query_scalar(
        "WITH wanted AS (
             SELECT l.sku, l.quantity, i.on_hand - i.reserved >= l.quantity AS enough
             FROM orders.order_lines l JOIN orders.inventory i ON i.sku = l.sku
             WHERE l.order_id = $1 ORDER BY l.sku FOR UPDATE OF i),
         verdict AS (
             SELECT coalesce(bool_and(enough), false)
                    AND count(*) = (SELECT count(*) FROM orders.order_lines WHERE order_id = $1)
                    AND EXISTS (SELECT 1 FROM orders.orders WHERE id = $1 AND stock = 'released') AS ok
             FROM wanted),
         held AS (
             UPDATE orders.inventory i SET reserved = i.reserved + w.quantity, updated_at = now()
             FROM wanted w, verdict v WHERE v.ok AND i.sku = w.sku RETURNING i.sku)
         UPDATE orders.orders o SET stock = 'reserved', updated_at = now()
         FROM verdict v WHERE o.id = $1 AND v.ok
         RETURNING v.ok",
    )
    .bind(order.id.as_str())
    .fetch_optional(conn)
    .await?;
    let held = held.unwrap_or(false);
    if held {
        order.stock = Holding::Reserved;
    }
    Ok(held)
}
