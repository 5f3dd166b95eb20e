//! Tests that need the whole checkout at once: cart, orders, payments and stripe-sim, each
//! in-process on a runtime of its own.

mod tracing;
