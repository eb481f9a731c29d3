//! Local services in Docker: the engine, the images, and the Postgres and Redis containers.
//!
//! `cargo xtask up` runs them for development; the test harness runs a fast, throwaway
//! Postgres from the same images when no server is configured.

mod engine;
pub mod images;
pub mod services;

pub use engine::check_engine;
