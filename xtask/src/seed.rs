//! The demo catalog and its stock: a handful of products so a fresh stack has something to
//! put in a cart and check out.

use anyhow::Context as _;

/// `(sku, name, unit price in cents)`, all in USD.
pub const PRODUCTS: &[(&str, &str, i64)] = &[
    ("TSHIRT-BLACK-M", "T-shirt, black, M", 1999),
    ("TSHIRT-WHITE-L", "T-shirt, white, L", 1999),
    ("HOODIE-GREY-M", "Hoodie, grey, M", 4999),
    ("MUG-LOGO", "Mug with logo", 1250),
    ("SOCKS-3PACK", "Socks, pack of 3", 1500),
    ("CAP-NAVY", "Cap, navy", 2200),
    ("TOTE-CANVAS", "Canvas tote bag", 1800),
    ("STICKER-SET", "Sticker set", 500),
    ("BOTTLE-STEEL", "Steel water bottle", 2900),
    ("NOTEBOOK-A5", "Notebook, A5", 900),
];

/// Applies migrations and upserts the demo catalog.
pub async fn seed(database_url: &str) -> anyhow::Result<()> {
    let pool = common::db::connect(database_url, 2)
        .await
        .context("connecting to Postgres")?;
    common::db::migrate(&pool)
        .await
        .context("applying migrations")?;
    upsert_products(
        &pool,
        PRODUCTS
            .iter()
            .map(|(sku, name, price)| (sku.to_string(), name.to_string(), *price)),
    )
    .await?;
    let skus: Vec<String> = PRODUCTS.iter().map(|(sku, _, _)| sku.to_string()).collect();
    stock(&pool, &skus, DEMO_STOCK).await?;
    println!(
        "xtask: seeded {} products with {DEMO_STOCK} units each",
        PRODUCTS.len()
    );
    Ok(())
}

/// Units on hand of each demo product.
pub const DEMO_STOCK: i64 = 1000;

/// Sets `on_hand` of each sku (reservations of open orders are kept).
pub async fn stock(pool: &sqlx::PgPool, skus: &[String], on_hand: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO orders.inventory (sku, on_hand) SELECT sku, $2 FROM UNNEST($1::text[]) AS t(sku)
         ON CONFLICT (sku) DO UPDATE SET on_hand = greatest(EXCLUDED.on_hand, orders.inventory.reserved), updated_at = now()",
    )
    .bind(skus)
    .bind(on_hand)
    .execute(pool)
    .await
    .context("seeding orders.inventory")?;
    Ok(())
}

/// Inserts or updates products (USD, active).
pub async fn upsert_products(
    pool: &sqlx::PgPool,
    products: impl Iterator<Item = (String, String, i64)>,
) -> anyhow::Result<()> {
    let (skus, (names, prices)): (Vec<String>, (Vec<String>, Vec<i64>)) =
        products.map(|(s, n, p)| (s, (n, p))).unzip();
    sqlx::query(
        "INSERT INTO catalog.products (sku, name, unit_price, currency, active)
         SELECT sku, name, price, 'USD', true FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS t(sku, name, price)
         ON CONFLICT (sku) DO UPDATE SET name = EXCLUDED.name, unit_price = EXCLUDED.unit_price,
             currency = EXCLUDED.currency, active = true, updated_at = now()",
    )
    .bind(&skus)
    .bind(&names)
    .bind(&prices)
    .execute(pool)
    .await
    .context("seeding catalog.products")?;
    Ok(())
}
