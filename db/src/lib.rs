//! Rail Gun's database: schema, models, migrations and connection settings.
//!
//! The workflow itself (the migration runner, the test harness, the tools) is the `dbkit`
//! library; this crate is what the app owns. Feature `testing` adds [`testing`]: each test its
//! own database with these migrations applied.

pub mod config;
pub mod models;
pub mod schema;
#[cfg(feature = "testing")]
pub mod testing;

use anyhow::Result;
use url::Url;

/// Every migration in `db/migrations`, built into the app (see `build.rs`).
pub const MIGRATIONS: &[dbkit::migration::Embedded] = include!(concat!(env!("OUT_DIR"), "/migrations.rs"));

/// The migrations, as the runner takes them.
pub fn migrations() -> Vec<dbkit::migration::MigrationFiles> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    dbkit::migration::source::embedded(&dir, MIGRATIONS).expect("the embedded migrations are well formed")
}

/// Applies the pending migrations to the database at `url` under the migration lock (the same
/// runner and lock as `cargo xtask migration run`: app instances starting at once apply each
/// migration once); returns how many ran.
pub fn migrate(url: &Url) -> Result<usize> {
    dbkit::migration::run(url, &migrations())
}
