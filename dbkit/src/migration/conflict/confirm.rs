//! The confirmation by applying: the merge base's migrations, then REF's new ones, then the
//! branch's, each through the runner as `migration run` applies it, in a throwaway database
//! (`railgun_check_<pid>_<n>`) created on the server and always dropped. When one of the
//! branch's fails, a second throwaway copy of the merge base's schema tells a conflict (it
//! applies there, without REF's) from a migration that fails on its own.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context as _, Result};
use diesel::RunQueryDsl;
use url::Url;

use crate::connect::{Retries, establish, establish_with};
use crate::migration::runner::Locked;
use crate::migration::source::MigrationFiles;

/// What applying said.
#[derive(Debug)]
pub enum Applied {
    /// Every migration applied, in the merged order.
    Clean,
    /// No server answered at the URL: nothing was applied.
    Skipped(String),
    /// A migration of the merge base failed on this server: nothing to compare on.
    BaseFails { migration: String, error: String },
    /// One of REF's own migrations failed on the merge base's schema (not this branch's doing).
    TheirsFail { migration: String, error: String },
    /// One of the branch's failed after REF's; `alone` if it fails on the merge base too.
    OursFail { migration: String, error: String, alone: bool },
}

/// Applies `base`, `theirs` and then `ours` in throwaway databases on the server of `url`.
pub fn apply(
    url: &Url,
    base: &[MigrationFiles],
    theirs: &[MigrationFiles],
    ours: &[MigrationFiles],
) -> Result<Applied> {
    let mut admin = url.clone();
    admin.set_path("/postgres");
    let quick = Retries { attempts: 1, ..Retries::command_line() };
    let mut admin_conn = match establish_with(&admin, &quick) {
        Ok(conn) => conn,
        Err(error) => return Ok(Applied::Skipped(crate::error::describe(&error))),
    };
    let merged = match Throwaway::create(&mut admin_conn, url, None) {
        Ok(merged) => merged,
        // A role without CREATEDB: the static reading stands alone.
        Err(error) => return Ok(Applied::Skipped(crate::error::describe(&error))),
    };
    let mut session = Locked::acquire(&merged.url)?;
    for migration in base {
        if let Err(error) = session.apply(migration) {
            return Ok(Applied::BaseFails { migration: migration.name.clone(), error: crate::error::describe(&error) });
        }
    }
    drop(session);
    // The merge base's schema, kept aside in case one of the branch's fails.
    let base_copy = Throwaway::create(&mut admin_conn, url, Some(&merged.name))?;
    let mut session = Locked::acquire(&merged.url)?;
    for migration in theirs {
        if let Err(error) = session.apply(migration) {
            return Ok(Applied::TheirsFail {
                migration: migration.name.clone(),
                error: crate::error::describe(&error),
            });
        }
    }
    for (n, migration) in ours.iter().enumerate() {
        if let Err(error) = session.apply(migration) {
            let mut alone = Locked::acquire(&base_copy.url)?;
            let fails_alone = ours[..=n].iter().any(|m| alone.apply(m).is_err());
            return Ok(Applied::OursFail {
                migration: migration.name.clone(),
                error: crate::error::describe(&error),
                alone: fails_alone,
            });
        }
    }
    Ok(Applied::Clean)
}

/// A database of the check's own, dropped when this goes (after an error too).
struct Throwaway {
    name: String,
    url: Url,
    admin: Url,
}

impl Throwaway {
    /// An empty database, or a copy of `template`.
    fn create(admin_conn: &mut diesel::PgConnection, url: &Url, template: Option<&str>) -> Result<Throwaway> {
        static N: AtomicUsize = AtomicUsize::new(1);
        let name = format!("railgun_check_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let from = template.map(|t| format!(" TEMPLATE \"{t}\"")).unwrap_or_default();
        diesel::sql_query(format!("CREATE DATABASE \"{name}\"{from}"))
            .execute(admin_conn)
            .with_context(|| format!("create the throwaway database {name}"))?;
        eprintln!("applying in the throwaway database {name} (dropped afterwards)");
        let mut throwaway_url = url.clone();
        throwaway_url.set_path(&format!("/{name}"));
        let mut admin = url.clone();
        admin.set_path("/postgres");
        Ok(Throwaway { name, url: throwaway_url, admin })
    }
}

impl Drop for Throwaway {
    fn drop(&mut self) {
        let dropped = establish(&self.admin).and_then(|mut conn| {
            diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).execute(&mut conn)?;
            Ok(())
        });
        if let Err(e) = dropped {
            eprintln!("warning: could not drop the throwaway database {}: {e:#}; drop it by hand", self.name);
        }
    }
}
