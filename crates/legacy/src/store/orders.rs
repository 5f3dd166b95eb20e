//! Orders in `legacy.orders` and `legacy.order_lines`. Placing one is a single transaction:
//! the cart is locked and priced, the order and its lines are written confirmed, and the cart
//! is deleted. The `Idempotency-Key` is a unique column, so a retry finds the first order.

use sqlx::{PgPool, Postgres, Transaction};
use time::OffsetDateTime;

use crate::{
    error::LegacyError,
    store::{carts, products},
    view::{OrderLineView, OrderView, rfc3339},
};

/// How a checkout ended.
#[derive(Debug)]
pub enum Placed {
    /// A new order.
    New(OrderView),
    /// The order an earlier request with the same key and body placed.
    Replayed(OrderView),
}

/// What a checkout asks for, after validation.
#[derive(Debug)]
pub struct Checkout<'a> {
    /// The client's `Idempotency-Key`.
    pub key: &'a str,
    /// The request as compared on a replay.
    pub request: &'a str,
    /// The cart's number.
    pub cart_id: i64,
    /// Where the confirmation goes.
    pub email: &'a str,
}

type OrderRow = (i64, String, String, String, i64, String, OffsetDateTime);

/// Places (and confirms) the order, or finds the one placed with the same key.
pub async fn place(pool: &PgPool, checkout: &Checkout<'_>) -> Result<Placed, LegacyError> {
    let mut tx = common::db::begin(pool).await?;
    if let Some(placed) = replay(&mut tx, checkout).await? {
        return Ok(placed);
    }
    let cart = match carts::load(&mut tx, checkout.cart_id, true).await {
        Ok(cart) => cart,
        // A request with the same key may have ordered (and so deleted) the cart while this
        // one waited for its lock.
        Err(LegacyError::NotFound(_)) => {
            return match replay(&mut tx, checkout).await? {
                Some(placed) => Ok(placed),
                None => Err(LegacyError::CartNotOrderable(
                    "the cart does not exist or has expired".into(),
                )),
            };
        }
        Err(e) => return Err(e),
    };
    if cart.lines.is_empty() {
        return Err(LegacyError::CartNotOrderable("the cart is empty".into()));
    }
    let skus: Vec<String> = cart.lines.iter().map(|(s, _)| s.clone()).collect();
    let priced = products::lookup(pool, &skus).await?;
    let mut lines = Vec::with_capacity(cart.lines.len());
    for (sku, quantity) in &cart.lines {
        let product = priced
            .get(sku)
            .filter(|p| p.active && p.currency == cart.currency)
            .ok_or_else(|| {
                LegacyError::CartNotOrderable(format!(
                    "{sku} is no longer sold; remove it from the cart"
                ))
            })?;
        lines.push(OrderLineView {
            sku: sku.clone(),
            name: product.name.clone(),
            quantity: *quantity,
            unit_price: product.unit_price,
            line_total: product.unit_price.saturating_mul(i64::from(*quantity)),
        });
    }
    let total = lines.iter().map(|l| l.line_total).sum::<i64>();
    let row: Option<OrderRow> = sqlx::query_as(
        "INSERT INTO legacy.orders (status, cart_id, email, currency, total, idempotency_key, request)
         VALUES ('confirmed', $1, $2, $3, $4, $5, $6)
         ON CONFLICT (idempotency_key) DO NOTHING
         RETURNING id, status, email, currency::text, total, request, created_at",
    )
    .bind(cart.id)
    .bind(checkout.email)
    .bind(&cart.currency)
    .bind(total)
    .bind(checkout.key)
    .bind(checkout.request)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        // Taken since the first look: the other request's order is committed by now.
        return replay(&mut tx, checkout)
            .await?
            .ok_or(LegacyError::KeyReused);
    };
    for line in &lines {
        sqlx::query(
            "INSERT INTO legacy.order_lines (order_id, sku, name, quantity, unit_price, line_total)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(row.0)
        .bind(&line.sku)
        .bind(&line.name)
        .bind(line.quantity)
        .bind(line.unit_price)
        .bind(line.line_total)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("DELETE FROM legacy.carts WHERE id = $1")
        .bind(cart.id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Placed::New(view(row, lines)))
}

/// The order, `None` when unknown.
pub async fn get(pool: &PgPool, id: i64) -> Result<Option<OrderView>, LegacyError> {
    let mut tx = common::db::begin(pool).await?;
    let row: Option<OrderRow> = sqlx::query_as(
        "SELECT id, status, email, currency::text, total, request, created_at
         FROM legacy.orders WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let lines = lines(&mut tx, row.0).await?;
    tx.commit().await?;
    Ok(Some(view(row, lines)))
}

/// The order placed with `checkout`'s key: replayed when the body is the same, refused when
/// it is not, `None` when the key is new.
async fn replay(
    tx: &mut Transaction<'static, Postgres>,
    checkout: &Checkout<'_>,
) -> Result<Option<Placed>, LegacyError> {
    let row: Option<OrderRow> = sqlx::query_as(
        "SELECT id, status, email, currency::text, total, request, created_at
         FROM legacy.orders WHERE idempotency_key = $1",
    )
    .bind(checkout.key)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    if row.5 != checkout.request {
        return Err(LegacyError::KeyReused);
    }
    let lines = lines(tx, row.0).await?;
    Ok(Some(Placed::Replayed(view(row, lines))))
}

async fn lines(
    tx: &mut Transaction<'static, Postgres>,
    order_id: i64,
) -> Result<Vec<OrderLineView>, sqlx::Error> {
    sqlx::query_as(
        "SELECT sku, name, quantity, unit_price, line_total FROM legacy.order_lines
         WHERE order_id = $1 ORDER BY sku",
    )
    .bind(order_id)
    .fetch_all(&mut **tx)
    .await
}

fn view(
    (id, status, email, currency, total, _request, created_at): OrderRow,
    items: Vec<OrderLineView>,
) -> OrderView {
    OrderView {
        id: id.to_string(),
        status,
        items,
        total,
        currency,
        email,
        created_at: rfc3339(created_at),
        failure_reason: None,
        payment: None,
    }
}
