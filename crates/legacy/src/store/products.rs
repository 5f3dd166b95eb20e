//! The monolith's product table. A sku it has never seen is copied from the shared catalog
//! on first sight, so a fresh monolith prices exactly as the new cart service does; once
//! copied, the row is the monolith's own and a later catalog change does not reach it.

use std::collections::HashMap;

use sqlx::{PgExecutor, PgPool};

/// A product as the monolith prices it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Product {
    /// The sku.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// One unit, minor units of `currency`.
    pub unit_price: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Whether it is still sold.
    pub active: bool,
}

/// The products among `skus`; a sku missing from the answer is unknown to both the monolith
/// and the catalog.
pub async fn lookup(
    pool: &PgPool,
    skus: &[String],
) -> Result<HashMap<String, Product>, sqlx::Error> {
    let mut found = select(pool, skus).await?;
    let missing: Vec<String> = skus
        .iter()
        .filter(|s| !found.contains_key(*s))
        .cloned()
        .collect();
    if !missing.is_empty() {
        import(pool, &missing).await?;
        found.extend(select(pool, &missing).await?);
    }
    Ok(found)
}

/// One product, `None` when unknown.
pub async fn one(pool: &PgPool, sku: &str) -> Result<Option<Product>, sqlx::Error> {
    Ok(lookup(pool, &[sku.to_owned()]).await?.remove(sku))
}

async fn select(
    db: impl PgExecutor<'_>,
    skus: &[String],
) -> Result<HashMap<String, Product>, sqlx::Error> {
    let rows: Vec<Product> = sqlx::query_as(
        "SELECT sku, name, unit_price, currency::text AS currency, active
         FROM legacy.products WHERE sku = ANY($1)",
    )
    .bind(skus)
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|p| (p.sku.clone(), p)).collect())
}

async fn import(db: impl PgExecutor<'_>, skus: &[String]) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO legacy.products (sku, name, unit_price, currency, active)
         SELECT sku, name, unit_price, currency, active FROM catalog.products WHERE sku = ANY($1)
         ON CONFLICT (sku) DO NOTHING",
    )
    .bind(skus)
    .execute(db)
    .await?;
    Ok(())
}
