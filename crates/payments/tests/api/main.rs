//! Black-box tests of the payments service: the real payments API and worker, real
//! Postgres, stripe-sim in-process as Stripe (delivering signed webhooks), and a stand-in
//! for orders that records every notification.

mod api;
mod flows;
mod money;
mod openapi;
mod orders_stub;
mod refunds;
mod security;
mod signatures;
mod support;
mod webhooks;
