//! Rail Gun's database: schema, models, migrations and connection settings.
//!
//! Features: `docker` runs the local services (used by `cargo xtask up`); `testing` adds the
//! test harness that hands each test its own migrated database.

use diesel_migrations::{EmbeddedMigrations, embed_migrations};

pub mod config;
pub mod connect;
#[cfg(feature = "docker")]
pub mod docker;
pub mod models;
pub mod redis;
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;
pub mod url;

/// Every migration in `db/migrations`, built into the app.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");
