//! Product prices and names from `catalog.products`, behind an in-process cache. A warm
//! lookup touches no network; misses for one cart read are fetched in a single query, and
//! unknown skus are cached too, so a flood of bogus skus cannot reach Postgres.

use std::{collections::HashMap, sync::Arc, time::Duration};

use common::money::Currency;
use moka::future::Cache;
use sqlx::PgPool;

/// A product as the cart needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// The sku.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Price of one unit in minor units of `currency`.
    pub unit_price: i64,
    /// The price's currency.
    pub currency: Currency,
    /// Inactive products cannot be added.
    pub active: bool,
}

/// The cached catalog.
#[derive(Clone)]
pub struct Catalog {
    pool: PgPool,
    cache: Cache<String, Option<Arc<Product>>>,
}

impl Catalog {
    /// A catalog whose entries live `ttl` in memory.
    pub fn new(pool: PgPool, ttl: Duration, capacity: u64) -> Self {
        Self {
            pool,
            cache: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .build(),
        }
    }

    /// The product, `None` when the sku is unknown.
    pub async fn product(&self, sku: &str) -> Result<Option<Arc<Product>>, Arc<sqlx::Error>> {
        if let Some(hit) = self.cache.get(sku).await {
            metrics::counter!("catalog_lookups_total", "result" => "hit").increment(1);
            return Ok(hit);
        }
        // Concurrent misses for one sku share a single query.
        self.cache
            .try_get_with(sku.to_owned(), async {
                metrics::counter!("catalog_lookups_total", "result" => "miss").increment(1);
                let mut found = self.load(&[sku.to_owned()]).await?;
                Ok(found.remove(sku))
            })
            .await
    }

    /// Products for many skus; a sku missing from the result is unknown.
    pub async fn products(
        &self,
        skus: &[&str],
    ) -> Result<HashMap<String, Arc<Product>>, sqlx::Error> {
        let mut out = HashMap::with_capacity(skus.len());
        let mut misses = Vec::new();
        for sku in skus {
            match self.cache.get(*sku).await {
                Some(Some(p)) => {
                    out.insert((*sku).to_owned(), p);
                }
                Some(None) => {}
                None => misses.push((*sku).to_owned()),
            }
        }
        metrics::counter!("catalog_lookups_total", "result" => "hit")
            .increment((skus.len() - misses.len()) as u64);
        if misses.is_empty() {
            return Ok(out);
        }
        metrics::counter!("catalog_lookups_total", "result" => "miss")
            .increment(misses.len() as u64);
        let mut found = self.load(&misses).await?;
        for sku in misses {
            let product = found.remove(&sku);
            self.cache.insert(sku.clone(), product.clone()).await;
            if let Some(p) = product {
                out.insert(sku, p);
            }
        }
        Ok(out)
    }

    async fn load(&self, skus: &[String]) -> Result<HashMap<String, Arc<Product>>, sqlx::Error> {
        let rows: Vec<(String, String, i64, String, bool)> =
            sqlx::query_as("SELECT sku, name, unit_price, currency, active FROM catalog.products WHERE sku = ANY($1)")
                .bind(skus)
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(sku, name, unit_price, currency, active)| {
                // The table's CHECK keeps codes well-formed; a row that still fails is skipped.
                let currency = currency.parse().ok()?;
                Some((
                    sku.clone(),
                    Arc::new(Product {
                        sku,
                        name,
                        unit_price,
                        currency,
                        active,
                    }),
                ))
            })
            .collect())
    }
}
