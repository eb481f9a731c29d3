//! Phantom migrations: recorded as applied in this database, missing from this checkout's
//! folder, because another branch or checkout applied them. The runner records each
//! migration's files when it applies it (see [`super::checksum`]), so a phantom is reverted
//! from the down.sql recorded with it, newest first, without its folder.

use std::borrow::Cow;
use std::path::PathBuf;

use anyhow::{Result, bail};
use chrono::NaiveDateTime;
use diesel::PgConnection;

use super::runner::{self, Applied, Locked};
use super::source::{Held, Limits, MigrationFiles};
use super::{MISSING_HINT, checksum};
use crate::error::escaped;

/// A version the database records as applied that no migration folder of the checkout has.
#[derive(Debug, Clone)]
pub struct Phantom {
    pub version: String,
    pub run_on: NaiveDateTime,
    /// Its folder's name when it was applied (control characters escaped), if recorded.
    pub name: Option<String>,
    /// Its files as applied, when recorded for this application (a record of an earlier
    /// application, since reverted by diesel_cli and applied again, does not count).
    files: Option<Held>,
    run_in_transaction: bool,
}

impl Phantom {
    /// Its folder's name, else its version.
    pub fn shown(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.version)
    }

    /// Whether its down.sql was recorded, so it can be reverted without its folder.
    pub fn revertible(&self) -> bool {
        self.files.as_ref().is_some_and(|held| held.down.as_ref().is_some_and(|d| !d.trim().is_empty()))
    }

    /// The migration as recorded, to revert with the runner; its folder is shown as
    /// `(recorded)/NAME` in messages, since the checkout has none.
    pub fn migration(&self) -> Option<MigrationFiles> {
        let name = self.shown().to_string();
        Some(MigrationFiles {
            dir: PathBuf::from("(recorded)").join(&name),
            name,
            version: self.version.clone(),
            run_in_transaction: self.run_in_transaction,
            limits: Limits::default(),
            squashes: Vec::new(),
            held: Some(self.files.clone()?),
        })
    }
}

/// The phantoms among `applied`: those of `unknown` (versions no folder has), newest first (the
/// order they are reverted in: by when they were applied, the higher version first).
pub fn read(conn: &mut PgConnection, applied: &[Applied], unknown: &[String]) -> Result<Vec<Phantom>> {
    let kept = checksum::kept_files(conn, unknown)?;
    let mut phantoms: Vec<Phantom> = applied
        .iter()
        .filter(|a| unknown.contains(&a.version))
        .map(|a| {
            let kept = kept.get(&a.version).filter(|k| k.applied_run_on == a.run_on);
            let files = kept.and_then(|k| {
                Some(Held { up: Cow::Owned(k.up_sql.clone()?), down: k.down_sql.clone().map(Cow::Owned) })
            });
            Phantom {
                version: a.version.clone(),
                run_on: a.run_on,
                name: kept.and_then(|k| k.name.as_deref()).map(|n| escaped(n).into_owned()),
                files,
                run_in_transaction: kept.and_then(|k| k.run_in_transaction).unwrap_or(true),
            }
        })
        .collect();
    phantoms.sort_by(|a, b| b.run_on.cmp(&a.run_on).then_with(|| b.version.cmp(&a.version)));
    Ok(phantoms)
}

/// The names of `phantoms`, comma-separated.
pub fn names(phantoms: &[Phantom]) -> String {
    phantoms.iter().map(Phantom::shown).collect::<Vec<_>>().join(", ")
}

/// What to do about `phantoms`: revert them from their recorded down.sql when every one has
/// it; else how to look at the bookkeeping.
pub fn fix(phantoms: &[Phantom]) -> String {
    if !phantoms.is_empty() && phantoms.iter().all(Phantom::revertible) {
        "switch back to the branch or checkout that applied them, or revert them here from the down.sql recorded when they were applied: `cargo xtask migration revert --phantom`".to_string()
    } else {
        MISSING_HINT.to_string()
    }
}

/// Reverts every one of `phantoms` (newest first, as [`read`] orders them) from its recorded
/// down.sql, each in its own transaction unless it ran outside one; `before` is called before
/// each. Refused, before any runs, when one has no recorded down.sql.
pub fn revert_all(session: &mut Locked, phantoms: &[Phantom], before: &mut dyn FnMut(&Phantom)) -> Result<usize> {
    let stuck: Vec<&Phantom> = phantoms.iter().filter(|p| !p.revertible()).collect();
    if let Some(first) = stuck.first() {
        let names: Vec<&str> = stuck.iter().map(|p| p.shown()).collect();
        bail!(
            hint!("cannot revert {} phantom migration(s) without their folder: {} (no down.sql was recorded when {} applied: by diesel_cli, by an older version of this tool, or with an empty down.sql)", stuck.len(), names.join(", "), if stuck.len() == 1 { "it was" } else { "they were" };
            "check out the branch that has {} and revert it there (`cargo xtask migration revert`), or {MISSING_HINT}", first.shown())
        );
    }
    for phantom in phantoms {
        before(phantom);
        let migration = phantom.migration().expect("revertible phantoms have their files");
        runner::revert(&mut session.conn, &migration)?;
    }
    Ok(phantoms.len())
}

/// Rewrites the schema files from the database at `url`, as [`crate::schema::regenerate`]
/// does, unless the database has phantoms: their tables and columns would go into this
/// checkout's files, another branch's objects in a diff of this one. Says so, and the fix,
/// instead.
#[cfg(feature = "tools")]
pub fn regenerate_schema(cx: &crate::context::Context, url: &url::Url) -> Result<()> {
    let migrations = super::source::load(&cx.migration_dir()?)?;
    let mut conn = crate::connect::establish(url)?;
    let plan = super::Plan::read(&mut conn, &migrations)?;
    if !plan.phantoms.is_empty() {
        eprintln!(
            "note: the schema files were not rewritten: the database has {} migration(s) this checkout lacks ({}), and the files would carry their tables and columns into this checkout; {}",
            plan.phantoms.len(),
            names(&plan.phantoms),
            fix(&plan.phantoms)
        );
        return Ok(());
    }
    crate::schema::regenerate_on(cx, url, Some(&mut conn))
}
