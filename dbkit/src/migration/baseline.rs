//! `migration baseline`: a database with no bookkeeping (made by hand, restored from
//! elsewhere, migrated by another tool) adopted by the migrations. What the migrations produce,
//! in a throwaway database, is compared with it ([`crate::catalog`]); only when they are equal
//! is each migration recorded as applied (with its files, as the runner records them), in one
//! transaction. Any difference is listed and nothing is recorded.

use anyhow::{Context as _, Result, bail};
use diesel::Connection;
use url::Url;

use super::source::MigrationFiles;
use super::{Locked, runner};
use crate::catalog::{Catalog, Difference};

/// What a baseline found.
#[derive(Debug)]
pub enum Outcome {
    /// Equal: this many migrations are now recorded as applied.
    Recorded(usize),
    /// Different (from what the migrations make to what the database has): nothing recorded.
    Differs(Vec<Difference>),
}

/// Compares the database at `url` with what `migrations` make, and records them as applied when
/// equal. Refused when the database already records any migration.
pub fn baseline(url: &Url, migrations: &[MigrationFiles]) -> Result<Outcome> {
    let mut conn = crate::connect::establish(url)?;
    if let Some(applied) = runner::applied(&mut conn)?.filter(|a| !a.is_empty()) {
        bail!(
            hint!("the database records {} applied migration(s) already: a baseline is for one with no bookkeeping", applied.len();
            "`cargo xtask migration show` says where it stands; `cargo xtask migration run` applies the rest")
        );
    }
    if migrations.is_empty() {
        bail!(
            hint!("there are no migrations to compare the database with"; "write them first (`cargo xtask migration generate NAME` writes one from schema.rs)")
        );
    }
    let have = Catalog::read(&mut conn)?;
    drop(conn);
    let scratch = crate::scratch::Scratch::empty(url, "baseline")?;
    let mut made = Locked::acquire(&scratch.url)?;
    for migration in migrations {
        made.apply(migration).with_context(|| format!("apply {} in a throwaway database", migration.name))?;
    }
    let want = Catalog::read(&mut made.conn)?;
    drop(made);
    scratch.drop_now()?;
    let differences = want.diff(&have);
    if !differences.is_empty() {
        return Ok(Outcome::Differs(differences));
    }
    let mut session = Locked::acquire(url)?;
    session.conn.transaction(|conn| -> Result<()> {
        for migration in migrations {
            runner::record_applied(conn, migration, &migration.sql("up.sql")?)?;
        }
        Ok(())
    })?;
    Ok(Outcome::Recorded(migrations.len()))
}
