//! Rail Gun's database: schema, models, migrations and connection settings.
//!
//! Features: `docker` runs the local services (used by `cargo xtask up`); `testing` adds the
//! test harness that hands each test its own migrated database.

#[cfg(feature = "docker")]
pub mod docker;
pub mod url;
