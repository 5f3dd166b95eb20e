//! Black-box tests of the cart service: the real app on a random port, real Postgres and
//! Redis, driven over HTTP. The tests of what the store guarantees (atomic writes, If-Match,
//! TTL) run twice: on a single Redis and on a Redis Cluster.

/// Runs the async test body `$body(store)` as two tests, `$body::single_redis` and
/// `$body::redis_cluster`.
macro_rules! on_every_store {
    ($body:ident) => {
        mod $body {
            #[tokio::test]
            async fn single_redis() {
                super::$body(crate::support::Store::Single).await
            }

            #[tokio::test]
            async fn redis_cluster() {
                super::$body(crate::support::Store::Cluster).await
            }
        }
    };
}

mod carts;
mod concurrency;
mod errors;
mod openapi;
mod operations;
mod resilience;
mod security;
mod support;
