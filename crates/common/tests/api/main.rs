//! The shared pieces against real Postgres: one test binary for the crate.

mod worker;
