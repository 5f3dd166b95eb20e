//! Black-box tests: the simulator runs in-process on a random port and is driven over HTTP,
//! by raw form requests and by async-stripe, with an in-test webhook receiver.

mod async_stripe;
mod auth;
mod faults;
mod idempotency;
mod ledger;
mod payment_intents;
mod refunds;
mod support;
mod webhooks;
