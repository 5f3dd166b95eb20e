//! Carts in Redis: one hash per cart (`version`, `currency`, `created_at`, and `l:<sku>` →
//! quantity per line) with a TTL that every write restarts. Every mutation is one Lua script,
//! so concurrent writers never lose an update and a rejected request writes nothing.

use std::{future::Future, time::Duration};

use common::money::Currency;
use common::redis::Connection;
use redis::{RedisError, Script, Value};

use crate::domain::{CartId, Expected, LineTarget, MAX_QUANTITY, Quantity, Sku, StoredCart};

/// Why a store call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The cart does not exist or has expired.
    #[error("no such cart")]
    Missing,
    /// `If-Match` named another version.
    #[error("the cart is at version {0}")]
    Stale(u64),
    /// The product is priced in another currency than the cart.
    #[error("currency mismatch")]
    CurrencyMismatch,
    /// The line would exceed the largest quantity; holds the line's current quantity.
    #[error("the line would exceed the largest quantity")]
    QuantityTooLarge(u32),
    /// The cart already has the most lines allowed.
    #[error("too many lines")]
    TooManyLines,
    /// Redis answered with an error or the connection failed.
    #[error("redis: {0}")]
    Redis(#[from] RedisError),
    /// Redis did not answer in time.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered something this code did not write.
    #[error("unexpected cart data: {0}")]
    Corrupt(&'static str),
}

/// A change to one line.
#[derive(Debug, Clone, Copy)]
pub enum LineChange {
    /// Add `Quantity` to the line; the product's currency must match the cart's.
    Add(Quantity, Currency),
    /// Set or remove the line.
    Set(LineTarget, Option<Currency>),
    /// Remove the line.
    Remove,
}

/// The Redis-backed cart store.
#[derive(Clone)]
pub struct CartStore {
    conn: Connection,
    prefix: String,
    ttl: Duration,
    timeout: Duration,
    max_lines: u32,
    mutate: Script,
    delete: Script,
}

impl CartStore {
    /// A store writing keys `{prefix}{cart id}`.
    pub fn new(
        conn: Connection,
        prefix: String,
        ttl: Duration,
        timeout: Duration,
        max_lines: u32,
    ) -> Self {
        Self {
            conn,
            prefix,
            ttl,
            timeout,
            max_lines,
            mutate: Script::new(include_str!("mutate.lua")),
            delete: Script::new(include_str!("delete.lua")),
        }
    }

    /// The connection, for readiness checks.
    pub fn connection(&self) -> Connection {
        self.conn.clone()
    }

    fn key(&self, id: &CartId) -> String {
        format!("{}{}", self.prefix, id)
    }

    fn ttl_ms(&self) -> u64 {
        self.ttl.as_millis() as u64
    }

    async fn bounded<T>(
        &self,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(StoreError::Redis),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        }
    }

    /// Creates an empty cart.
    #[tracing::instrument(skip(self))]
    pub async fn create(&self, currency: Currency) -> Result<StoredCart, StoreError> {
        let id = CartId::new();
        let created = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut conn = self.conn.clone();
        let key = self.key(&id);
        let fields = [
            ("version", "1".to_owned()),
            ("currency", currency.to_string()),
            ("created_at", created.to_string()),
        ];
        self.bounded(
            redis::pipe()
                .atomic()
                .hset_multiple(&key, &fields)
                .ignore()
                .pexpire(&key, self.ttl_ms() as i64)
                .ignore()
                .query_async::<()>(&mut conn),
        )
        .await?;
        Ok(StoredCart {
            id,
            currency,
            version: 1,
            lines: Vec::new(),
            ttl_ms: self.ttl_ms() as i64,
        })
    }

    /// The cart, as stored.
    #[tracing::instrument(skip(self), fields(cart = %id))]
    pub async fn get(&self, id: &CartId) -> Result<StoredCart, StoreError> {
        let mut conn = self.conn.clone();
        let key = self.key(id);
        let (fields, pttl): (Vec<(String, String)>, i64) = self
            .bounded(
                redis::pipe()
                    .atomic()
                    .hgetall(&key)
                    .pttl(&key)
                    .query_async(&mut conn),
            )
            .await?;
        if fields.is_empty() {
            return Err(StoreError::Missing);
        }
        parse_cart(id.clone(), fields.into_iter(), pttl)
    }

    /// Applies one line change atomically and answers the updated cart.
    #[tracing::instrument(skip(self), fields(cart = %id, sku = sku.as_str()))]
    pub async fn change_line(
        &self,
        id: &CartId,
        sku: &Sku,
        change: LineChange,
        expected: Expected,
    ) -> Result<StoredCart, StoreError> {
        let (op, quantity, currency) = match change {
            LineChange::Add(q, c) => ("add", q.get(), Some(c)),
            LineChange::Set(LineTarget::Set(q), c) => ("set", q.get(), c),
            LineChange::Set(LineTarget::Remove, _) | LineChange::Remove => ("remove", 0, None),
        };
        let mut conn = self.conn.clone();
        let mut invocation = self.mutate.key(self.key(id));
        invocation
            .arg(op)
            .arg(format!("l:{}", sku.as_str()))
            .arg(quantity)
            .arg(expected_arg(expected))
            .arg(self.ttl_ms())
            .arg(currency.map(|c| c.to_string()).unwrap_or_default())
            .arg(MAX_QUANTITY)
            .arg(self.max_lines);
        let reply: Vec<Value> = self.bounded(invocation.invoke_async(&mut conn)).await?;
        match reply.first().map(as_int) {
            Some(Some(0)) => {
                let pttl = reply
                    .get(1)
                    .and_then(as_int)
                    .ok_or(StoreError::Corrupt("ttl"))?;
                let mut fields = Vec::with_capacity(reply.len() / 2);
                let mut rest = reply[2..].iter();
                while let (Some(k), Some(v)) = (rest.next(), rest.next()) {
                    fields.push((as_string(k)?, as_string(v)?));
                }
                parse_cart(id.clone(), fields.into_iter(), pttl)
            }
            Some(Some(1)) => Err(StoreError::Missing),
            Some(Some(2)) => Err(StoreError::Stale(
                reply.get(1).and_then(as_int).unwrap_or_default() as u64,
            )),
            Some(Some(3)) => Err(StoreError::CurrencyMismatch),
            Some(Some(4)) => Err(StoreError::QuantityTooLarge(
                reply.get(1).and_then(as_int).unwrap_or_default() as u32,
            )),
            Some(Some(5)) => Err(StoreError::TooManyLines),
            _ => Err(StoreError::Corrupt("script reply")),
        }
    }

    /// Deletes the cart.
    #[tracing::instrument(skip(self), fields(cart = %id))]
    pub async fn delete(&self, id: &CartId, expected: Expected) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let mut invocation = self.delete.key(self.key(id));
        invocation.arg(expected_arg(expected));
        let reply: Vec<i64> = self.bounded(invocation.invoke_async(&mut conn)).await?;
        match reply.as_slice() {
            [0] => Ok(()),
            [1] => Err(StoreError::Missing),
            [2, version] => Err(StoreError::Stale(*version as u64)),
            _ => Err(StoreError::Corrupt("script reply")),
        }
    }
}

fn expected_arg(expected: Expected) -> String {
    match expected {
        Expected::Any => String::new(),
        Expected::Version(v) => v.to_string(),
    }
}

fn as_int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

fn as_string(value: &Value) -> Result<String, StoreError> {
    match value {
        Value::BulkString(bytes) => {
            String::from_utf8(bytes.clone()).map_err(|_| StoreError::Corrupt("utf-8"))
        }
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(i) => Ok(i.to_string()),
        _ => Err(StoreError::Corrupt("field")),
    }
}

fn parse_cart(
    id: CartId,
    fields: impl Iterator<Item = (String, String)>,
    ttl_ms: i64,
) -> Result<StoredCart, StoreError> {
    let mut currency = None;
    let mut version = None;
    let mut lines = Vec::new();
    for (field, value) in fields {
        if let Some(sku) = field.strip_prefix("l:") {
            let quantity = value.parse().map_err(|_| StoreError::Corrupt("quantity"))?;
            lines.push((sku.to_owned(), quantity));
        } else if field == "currency" {
            currency = Some(value.parse().map_err(|_| StoreError::Corrupt("currency"))?);
        } else if field == "version" {
            version = Some(value.parse().map_err(|_| StoreError::Corrupt("version"))?);
        }
    }
    lines.sort_unstable();
    Ok(StoredCart {
        id,
        currency: currency.ok_or(StoreError::Corrupt("currency"))?,
        version: version.ok_or(StoreError::Corrupt("version"))?,
        lines,
        ttl_ms,
    })
}
