//! Black-box tests of the cart service: the real app on a random port, real Postgres and
//! Redis, driven over HTTP.

mod carts;
mod concurrency;
mod errors;
mod openapi;
mod operations;
mod resilience;
mod security;
mod support;
