//! Local services in Docker: the engine, the images, the Postgres and Redis containers (and
//! PgBouncer), and their status.
//!
//! `cargo xtask up` runs them for development; the test harness runs a fast, throwaway
//! Postgres from the same images when no server is configured.

#[cfg(feature = "tools")]
pub mod down;
mod engine;
pub mod images;
pub mod services;
#[cfg(feature = "tools")]
pub mod status;
#[cfg(feature = "tools")]
pub mod up;

pub use crate::project::Project;
pub use engine::check_engine;
