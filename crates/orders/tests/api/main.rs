//! Black-box tests of the orders service: the real orders API and worker, the real cart app,
//! real Postgres and Redis, and a fault-injecting stand-in for the payments service.

mod checkout;
mod faults;
mod money;
mod openapi;
mod operations;
mod saga;
mod security;
mod shutdown;
mod support;
