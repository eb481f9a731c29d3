//! The confirmation by applying: the merge base's migrations, then REF's new ones, then the
//! branch's, each through the runner as `migration run` applies it, in a throwaway database
//! ([`Scratch`], `railgun_check_<pid>_<n>`) that is always dropped. When one of the branch's
//! fails, a second one, with the merge base's and the branch's only, tells a conflict (it applies
//! there, without REF's) from a migration that fails on its own.

use anyhow::Result;
use url::Url;

use crate::connect::{Retries, establish_with};
use crate::migration::runner::Locked;
use crate::migration::source::MigrationFiles;
use crate::scratch::Scratch;

/// What applying said.
#[derive(Debug)]
pub enum Applied {
    /// Every migration applied, in the merged order.
    Clean,
    /// No server answered at the URL, or it would not make a database: nothing was applied.
    Skipped(String),
    /// A migration of the merge base failed on this server: nothing to compare on.
    BaseFails { migration: String, error: String },
    /// One of REF's own migrations failed on the merge base's schema (not this branch's doing).
    TheirsFail { migration: String, error: String },
    /// One of the branch's failed after REF's; `alone` if it fails on the merge base too.
    OursFail { migration: String, error: String, alone: bool },
}

/// Applies `base`, `theirs` and then `ours` in a throwaway database on the server of `url`.
pub fn apply(
    url: &Url,
    base: &[MigrationFiles],
    theirs: &[MigrationFiles],
    ours: &[MigrationFiles],
) -> Result<Applied> {
    let mut admin = url.clone();
    admin.set_path("/postgres");
    // One try: a server that is not there is said, not waited for.
    if let Err(error) = establish_with(&admin, &Retries { attempts: 1, ..Retries::command_line() }) {
        return Ok(Applied::Skipped(crate::error::describe(&error)));
    }
    let merged = match throwaway(url) {
        Ok(merged) => merged,
        // A role without CREATEDB: the static reading stands alone.
        Err(error) => return Ok(Applied::Skipped(crate::error::describe(&error))),
    };
    let mut session = Locked::acquire(&merged.url)?;
    let failed = |migrations: &[MigrationFiles], session: &mut Locked| {
        migrations.iter().find_map(|m| session.apply(m).err().map(|e| (m.name.clone(), crate::error::describe(&e))))
    };
    if let Some((migration, error)) = failed(base, &mut session) {
        return Ok(Applied::BaseFails { migration, error });
    }
    if let Some((migration, error)) = failed(theirs, &mut session) {
        return Ok(Applied::TheirsFail { migration, error });
    }
    let Some((migration, error)) = failed(ours, &mut session) else { return Ok(Applied::Clean) };
    drop(session);
    drop(merged);
    let alone = throwaway(url)?;
    let mut session = Locked::acquire(&alone.url)?;
    let upto = ours.iter().position(|m| m.name == migration).map_or(ours.len(), |n| n + 1);
    let fails_alone = failed(base, &mut session).is_some() || failed(&ours[..upto], &mut session).is_some();
    Ok(Applied::OursFail { migration, error, alone: fails_alone })
}

/// An empty database of the check's own, named on stderr (a killed check leaves it behind).
fn throwaway(url: &Url) -> Result<Scratch> {
    let scratch = Scratch::empty(url, "check")?;
    eprintln!("applying in the throwaway database {} (dropped afterwards)", scratch.name);
    Ok(scratch)
}
