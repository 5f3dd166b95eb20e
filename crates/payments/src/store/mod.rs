//! Postgres access for the `payments` schema, one module per table.

pub mod events;
pub mod payments;
pub mod refunds;
