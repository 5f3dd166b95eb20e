//! Pieces every checkout service shares: configuration from the environment, telemetry,
//! problem+json errors, prefixed ids, money, health and metrics endpoints, store connections
//! and the HTTP server with graceful shutdown. A piece lives here only when two services use it.

pub mod auth;
pub mod config;
pub mod db;
pub mod dead_jobs;
pub mod health;
pub mod http;
pub mod id;
pub mod idempotency;
pub mod metrics;
pub mod money;
pub mod named;
pub mod notify;
pub mod openapi;
pub mod problem;
pub mod queue;
pub mod redis;
pub mod service;
pub mod telemetry;

pub use config::{ConfigError, Secret};
pub use problem::{ApiJson, FieldError, Problem};
