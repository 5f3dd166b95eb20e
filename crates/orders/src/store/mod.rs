//! Everything orders keeps in Postgres (schema `orders`).

pub mod holds;
pub mod idempotency;
pub mod inventory;
pub mod orders;
