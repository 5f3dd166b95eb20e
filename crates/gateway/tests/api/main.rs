//! Black-box tests of the gateway: the real app on a random port, real Postgres and Redis,
//! fake upstreams standing in for legacy and the new services, driven over HTTP.

mod admin;
mod desync;
mod fakes;
mod limits;
mod openapi;
mod outages;
mod propagation;
mod proxy;
mod rollback;
mod routing;
mod security;
mod support;
