//! Carts in `legacy.carts` and `legacy.cart_lines`. A change locks its cart row, so
//! concurrent changes to one cart apply one after the other and each bumps the version once.

use std::time::Duration;

use sqlx::{PgPool, Postgres, Transaction};
use time::OffsetDateTime;

use crate::error::LegacyError;

/// An untouched cart lives this long, as the new cart service's do by default.
pub const CART_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The largest quantity of one line.
pub const MAX_QUANTITY: i32 = 99;
/// Distinct products in one cart at most.
pub const MAX_LINES: i64 = 100;

/// A cart as stored: prices are looked up on read.
#[derive(Debug, Clone)]
pub struct StoredCart {
    /// The cart's number.
    pub id: i64,
    /// Every line's currency.
    pub currency: String,
    /// Grows by one on every change.
    pub version: i64,
    /// The last change; the cart expires `CART_TTL` after it.
    pub updated_at: OffsetDateTime,
    /// `(sku, quantity)`, by sku.
    pub lines: Vec<(String, i32)>,
}

/// A precondition from `If-Match`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expected {
    /// None, or `*`.
    Any,
    /// The cart must be at this version.
    Version(i64),
}

/// What a request does to one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineChange {
    /// Add units of a product priced in the currency given.
    Add(i32, String),
    /// Set the line to units of a product priced in the currency given.
    Set(i32, String),
    /// Remove the line.
    Remove,
}

type CartRow = (i64, String, i64, OffsetDateTime);

/// Creates an empty cart.
pub async fn create(pool: &PgPool, currency: &str) -> Result<StoredCart, LegacyError> {
    let (id, currency, version, updated_at): CartRow = sqlx::query_as(
        "INSERT INTO legacy.carts (currency) VALUES ($1)
         RETURNING id, currency::text, version, updated_at",
    )
    .bind(currency)
    .fetch_one(pool)
    .await?;
    Ok(StoredCart {
        id,
        currency,
        version,
        updated_at,
        lines: Vec::new(),
    })
}

/// The cart, unless it is unknown or expired.
pub async fn get(pool: &PgPool, id: i64) -> Result<StoredCart, LegacyError> {
    let mut tx = common::db::begin(pool).await?;
    let cart = load(&mut tx, id, false).await?;
    tx.commit().await?;
    Ok(cart)
}

/// Applies `change` to the line `sku` when the cart is at `expected`.
pub async fn change_line(
    pool: &PgPool,
    id: i64,
    sku: &str,
    change: LineChange,
    expected: Expected,
) -> Result<StoredCart, LegacyError> {
    let mut tx = common::db::begin(pool).await?;
    let cart = load(&mut tx, id, true).await?;
    check(&cart, expected)?;
    let current = cart.lines.iter().find(|(s, _)| s == sku).map(|(_, q)| *q);
    let target = match &change {
        LineChange::Remove if current.is_none() => return Ok(cart),
        LineChange::Remove => None,
        LineChange::Add(quantity, currency) | LineChange::Set(quantity, currency) => {
            if *currency != cart.currency {
                return Err(LegacyError::field(
                    "sku",
                    "the product is priced in another currency than the cart",
                ));
            }
            if current.is_none() && cart.lines.len() as i64 >= MAX_LINES {
                return Err(LegacyError::field(
                    "sku",
                    "the cart has the most lines allowed",
                ));
            }
            match (&change, current) {
                (LineChange::Add(..), Some(held)) if held + quantity > MAX_QUANTITY => {
                    return Err(LegacyError::field(
                        "quantity",
                        format!(
                            "the line already holds {held}; a line holds at most {MAX_QUANTITY}"
                        ),
                    ));
                }
                (LineChange::Add(..), Some(held)) => Some(held + quantity),
                _ => Some(*quantity),
            }
        }
    };
    match target {
        Some(quantity) => {
            sqlx::query(
                "INSERT INTO legacy.cart_lines (cart_id, sku, quantity) VALUES ($1, $2, $3)
                 ON CONFLICT (cart_id, sku) DO UPDATE SET quantity = EXCLUDED.quantity",
            )
            .bind(id)
            .bind(sku)
            .bind(quantity)
            .execute(&mut *tx)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM legacy.cart_lines WHERE cart_id = $1 AND sku = $2")
                .bind(id)
                .bind(sku)
                .execute(&mut *tx)
                .await?;
        }
    }
    sqlx::query("UPDATE legacy.carts SET version = version + 1, updated_at = now() WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let cart = load(&mut tx, id, false).await?;
    tx.commit().await?;
    Ok(cart)
}

/// Deletes the cart when it is at `expected`.
pub async fn delete(pool: &PgPool, id: i64, expected: Expected) -> Result<(), LegacyError> {
    let mut tx = common::db::begin(pool).await?;
    let cart = load(&mut tx, id, true).await?;
    check(&cart, expected)?;
    sqlx::query("DELETE FROM legacy.carts WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Reads the cart and its lines in `tx`, locking its row when `lock`.
pub async fn load(
    tx: &mut Transaction<'static, Postgres>,
    id: i64,
    lock: bool,
) -> Result<StoredCart, LegacyError> {
    let sql = if lock {
        "SELECT id, currency::text, version, updated_at FROM legacy.carts
         WHERE id = $1 AND updated_at > now() - make_interval(secs => $2) FOR UPDATE"
    } else {
        "SELECT id, currency::text, version, updated_at FROM legacy.carts
         WHERE id = $1 AND updated_at > now() - make_interval(secs => $2)"
    };
    let row: Option<CartRow> = sqlx::query_as(sql)
        .bind(id)
        .bind(CART_TTL.as_secs_f64())
        .fetch_optional(&mut **tx)
        .await?;
    let (id, currency, version, updated_at) = row.ok_or(LegacyError::NotFound("The cart"))?;
    let lines: Vec<(String, i32)> = sqlx::query_as(
        "SELECT sku, quantity FROM legacy.cart_lines WHERE cart_id = $1 ORDER BY sku",
    )
    .bind(id)
    .fetch_all(&mut **tx)
    .await?;
    Ok(StoredCart {
        id,
        currency,
        version,
        updated_at,
        lines,
    })
}

fn check(cart: &StoredCart, expected: Expected) -> Result<(), LegacyError> {
    match expected {
        Expected::Version(v) if v != cart.version => Err(LegacyError::Stale {
            current: cart.version,
        }),
        _ => Ok(()),
    }
}
