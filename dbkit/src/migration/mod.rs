//! Migrations in diesel_cli's layout and bookkeeping (`__diesel_schema_migrations`), applied by
//! one runner that holds a Postgres advisory lock: the app at start-up, `cargo xtask` and the
//! test harness all go through [`apply_pending`], so two of them at once never apply one twice.

#[cfg(feature = "tools")]
pub mod create;
pub mod runner;
pub mod source;
pub mod sql;

use anyhow::Result;
use url::Url;

pub use runner::{Applied, Locked};
pub use source::{Embedded, MigrationFiles};

/// How to look at the bookkeeping when the database and the folder disagree.
pub const MISSING_HINT: &str = "it was applied from another branch or checkout, or its folder was renamed or deleted. \
Restore the folder (git log -- db/migrations), or inspect the bookkeeping: \
psql \"$DATABASE_URL\" -c 'SELECT version, run_on FROM __diesel_schema_migrations ORDER BY version'; \
if the migration's changes are truly gone from the database, forget it with \
DELETE FROM __diesel_schema_migrations WHERE version = '<version>'";

/// Connects to `url`, takes the migration lock and applies what is pending of `migrations`,
/// oldest first; returns how many ran. What an app calls at start-up.
pub fn run(url: &Url, migrations: &[MigrationFiles]) -> Result<usize> {
    apply_pending(&mut Locked::acquire(url)?, migrations)
}

/// Applies those of `migrations` the locked database has not applied, oldest first, saying
/// `Running migration NAME` on stderr before each.
pub fn apply_pending(session: &mut Locked, migrations: &[MigrationFiles]) -> Result<usize> {
    apply_pending_with(session, migrations, &mut |migration| eprintln!("Running migration {}", migration.name))
}

/// [`apply_pending`], calling `before` instead of printing (the test harness says nothing).
pub fn apply_pending_with(
    session: &mut Locked,
    migrations: &[MigrationFiles],
    before: &mut dyn FnMut(&MigrationFiles),
) -> Result<usize> {
    let applied: std::collections::HashSet<String> = session.applied()?.into_iter().map(|a| a.version).collect();
    let pending: Vec<_> = migrations.iter().filter(|m| !applied.contains(&m.version)).collect();
    let mut unknown: Vec<&str> =
        applied.iter().filter(|v| !migrations.iter().any(|m| &m.version == *v)).map(String::as_str).collect();
    if !unknown.is_empty() {
        unknown.sort();
        eprintln!(
            "note: the database records {} that no migration folder has: {} ({})",
            if unknown.len() == 1 { "a version" } else { "versions" },
            unknown.join(", "),
            MISSING_HINT
        );
    }
    for migration in &pending {
        before(migration);
        session.apply(migration)?;
    }
    Ok(pending.len())
}

/// Applies pending migrations from this invocation's migrations folder under the lock.
#[cfg(feature = "tools")]
pub fn run_pending(cx: &crate::context::Context, url: &Url) -> Result<usize> {
    run(url, &source::load(&cx.migration_dir()?)?)
}
