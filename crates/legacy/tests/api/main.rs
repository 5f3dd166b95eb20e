//! Black-box tests of the legacy monolith stand-in: the real app on a random port against a
//! fresh Postgres database, driven over HTTP.

mod carts;
mod errors;
mod faults;
mod orders;
mod storage;
mod support;
