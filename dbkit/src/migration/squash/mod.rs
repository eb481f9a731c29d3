//! `migration squash`: the migrations up to a version become one, proven before any file
//! changes. Its up.sql is what they produce (pg_dump's schema and the rows they inserted, in
//! pg_dump's order: tables, rows, then indexes, constraints and triggers), its down.sql drops
//! what it made. The proof: the history and the squash, each applied to a throwaway database of
//! its own, give the same catalog ([`crate::catalog`]) and the same rows in every table, and the
//! squash's down.sql gives back an empty database. The history is applied twice (once for the
//! dump, once for the proof): migrations whose rows differ from run to run (`now()`, `random()`)
//! cannot be squashed faithfully, and are refused by name.
//!
//! The squash keeps the version of the last migration it replaces and lists them all in its
//! `metadata.toml` (`squashes`, a key diesel ignores): a database that applied them all takes it
//! as applied ([`reconcile`]: its bookkeeping rewritten in one transaction), a new one applies it,
//! one part way through is refused with what to do.

#[cfg(feature = "tools")]
mod make;

use std::collections::HashMap;

use anyhow::{Result, bail};
use diesel::sql_types::Text;
use diesel::{Connection, RunQueryDsl};

use super::source::{MigrationFiles, shown};
use super::{Locked, checksum};
#[cfg(feature = "tools")]
pub use make::{Outcome, squash};

/// Takes each squash among `migrations` as applied where the database applied every migration
/// it replaced: their rows in the bookkeeping become the squash's, in one transaction (the run
/// time of the last one kept). Refused where only some were applied. Returns the squashes taken.
pub fn reconcile(session: &mut Locked, migrations: &[MigrationFiles]) -> Result<Vec<String>> {
    let mut taken = Vec::new();
    for squash in migrations.iter().filter(|m| !m.squashes.is_empty()) {
        let applied = session.applied()?;
        let run_on: HashMap<&str, chrono::NaiveDateTime> =
            applied.iter().map(|a| (a.version.as_str(), a.run_on)).collect();
        let others: Vec<&String> = squash.squashes.iter().filter(|v| **v != squash.version).collect();
        let done: Vec<&&String> = others.iter().filter(|v| run_on.contains_key(v.as_str())).collect();
        let itself = run_on.get(squash.version.as_str());
        match (itself, done.len()) {
            (_, 0) => continue,
            (Some(at), n) if n == others.len() => {
                let at = *at;
                let up = squash.sql("up.sql")?;
                session.conn.transaction(|conn| -> Result<()> {
                    let stale: Vec<String> = others.iter().map(|v| v.to_string()).collect();
                    diesel::sql_query("DELETE FROM __diesel_schema_migrations WHERE version = ANY($1)")
                        .bind::<diesel::sql_types::Array<Text>, _>(&stale)
                        .execute(conn)?;
                    diesel::sql_query(format!("DELETE FROM {} WHERE version = ANY($1)", checksum::TABLE))
                        .bind::<diesel::sql_types::Array<Text>, _>(&stale)
                        .execute(conn)?;
                    checksum::record(conn, squash, &up, at)
                })?;
                eprintln!(
                    "took {} as applied: the database had applied the {} migrations it replaces",
                    squash.name,
                    squash.squashes.len()
                );
                taken.push(squash.name.clone());
            }
            _ => bail!(
                hint!("the database applied {} of the {} migrations that {} replaces, not all: it cannot take the squash as applied, and applying it would make again what exists", done.len() + usize::from(itself.is_some()), squash.squashes.len(), squash.name;
                "apply the rest of the old history first: check out the migrations folder of the commit before the squash into a folder of its own (git log -- {} finds it) and run `cargo xtask --migration-dir THAT_FOLDER migration run`; then run again", shown(&squash.dir))
            ),
        }
    }
    Ok(taken)
}
