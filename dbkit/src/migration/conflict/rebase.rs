//! `migration rebase`: the branch's new migrations get versions after REF's newest, in their
//! order, as `migration create` makes them (`YYYY-MM-DD-HHMMSS`, now or a second after the
//! previous one); `git mv` for a tracked folder, a rename for an untracked one. Where the local
//! database applied them, their bookkeeping (`__diesel_schema_migrations`, and the checksums'
//! table with its folder name) moves to the new versions in the same transaction, committed only
//! once every folder is renamed.

use anyhow::{Context as _, Result, bail};
use chrono::{NaiveDateTime, TimeDelta, Timelike, Utc};
use diesel::sql_types::Text;
use diesel::{Connection, RunQueryDsl};
use url::Url;

use super::{Sides, folder};
use crate::error::escaped;
use crate::migration::checksum;
use crate::migration::runner::{self, Locked};
use crate::migration::source::shown;

/// One folder to rename.
#[derive(Debug, Clone)]
pub struct Move {
    pub from: String,
    pub to: String,
    pub from_version: String,
    pub to_version: String,
}

/// What a rebase does.
pub struct Plan {
    pub label: String,
    pub moves: Vec<Move>,
    /// REF's newest migration, which the branch's now follow.
    pub after: Option<String>,
}

/// The renames that put the branch's new migrations after `onto`'s newest, none when they
/// already sort after it. Refused while the migrations folder has uncommitted changes other
/// than the branch's own new migrations.
pub fn plan(sides: &Sides) -> Result<Plan> {
    let ours_names: Vec<String> = sides.ours.iter().map(folder).collect();
    let foreign: Vec<String> = sides.repo.uncommitted()?.into_iter().filter(|f| !ours_names.contains(f)).collect();
    if !foreign.is_empty() {
        bail!(
            hint!("the migrations folder has uncommitted changes besides this branch's new migrations: {}", foreign.iter().map(|f| escaped(f).into_owned()).collect::<Vec<_>>().join(", ");
            "commit or stash them first (git stash -- {}), then rebase", shown(&sides.repo.dir))
        );
    }
    let newest = sides.newest_there();
    let mut plan =
        Plan { label: sides.label.clone(), moves: Vec::new(), after: newest.as_ref().map(|(_, n)| n.to_string()) };
    let Some((newest_version, _)) = newest else { return Ok(plan) };
    if sides.ours.iter().all(|m| m.version > newest_version) {
        return Ok(plan);
    }
    let stamp = |at: NaiveDateTime| at.format("%Y-%m-%d-%H%M%S").to_string();
    let now = Utc::now().naive_utc();
    let mut at = now.with_nanosecond(0).unwrap_or(now);
    if let Ok(newest_at) = NaiveDateTime::parse_from_str(newest_version.get(..14).unwrap_or_default(), "%Y%m%d%H%M%S") {
        at = at.max(newest_at + TimeDelta::seconds(1));
    }
    for migration in &sides.ours {
        let name = folder(migration);
        let rest = name.split_once('_').map_or(name.as_str(), |(_, rest)| rest);
        let mut to = format!("{}_{rest}", stamp(at));
        let mut to_version = crate::migration::source::version_of(&to);
        while to_version <= newest_version {
            at += TimeDelta::seconds(1);
            to = format!("{}_{rest}", stamp(at));
            to_version = crate::migration::source::version_of(&to);
        }
        plan.moves.push(Move { from: name, to, from_version: migration.version.clone(), to_version });
        at += TimeDelta::seconds(1);
    }
    Ok(plan)
}

/// What the rebase did to the local database.
#[derive(Debug, Default)]
pub struct Mended {
    /// Versions moved in the bookkeeping (applied locally).
    pub versions: Vec<(String, String)>,
}

/// Renames the folders and, when `url` is given, moves their bookkeeping in one transaction
/// under the migration lock: committed once every folder is renamed, rolled back (and the
/// folders renamed back) when anything fails.
pub fn apply(sides: &Sides, plan: &Plan, url: Option<&Url>) -> Result<Mended> {
    for m in &plan.moves {
        if sides.repo.dir.join(&m.to).exists() {
            bail!(
                hint!("{} exists already", shown(&sides.repo.dir.join(&m.to)); "remove or rename it, then rebase again")
            );
        }
    }
    let Some(url) = url else {
        rename_all(sides, &plan.moves)?;
        return Ok(Mended::default());
    };
    let mut session = Locked::acquire(url)?;
    let applied: Vec<String> =
        runner::applied(&mut session.conn)?.unwrap_or_default().into_iter().map(|a| a.version).collect();
    let mut mended = Mended::default();
    let mut renamed = false;
    let result = session.conn.transaction::<(), anyhow::Error, _>(|conn| {
        for m in plan.moves.iter().filter(|m| applied.contains(&m.from_version)) {
            diesel::sql_query("UPDATE __diesel_schema_migrations SET version = $2 WHERE version = $1")
                .bind::<Text, _>(&m.from_version)
                .bind::<Text, _>(&m.to_version)
                .execute(conn)
                .with_context(|| {
                    format!("move {} to {} in __diesel_schema_migrations", m.from_version, m.to_version)
                })?;
            diesel::sql_query(format!("UPDATE {} SET version = $2, name = $3 WHERE version = $1", checksum::TABLE))
                .bind::<Text, _>(&m.from_version)
                .bind::<Text, _>(&m.to_version)
                .bind::<Text, _>(escaped(&m.to))
                .execute(conn)
                .with_context(|| format!("move {} to {} in {}", m.from_version, m.to_version, checksum::TABLE))?;
            mended.versions.push((m.from_version.clone(), m.to_version.clone()));
        }
        rename_all(sides, &plan.moves)?;
        renamed = true;
        Ok(())
    });
    if let Err(error) = result {
        if renamed {
            for m in plan.moves.iter().rev() {
                let _ = rename(sides, &m.to, &m.from);
            }
        }
        return Err(error);
    }
    Ok(mended)
}

/// Renames every folder, or none: a failure renames back those already done.
fn rename_all(sides: &Sides, moves: &[Move]) -> Result<()> {
    let mut done: Vec<(&Move, bool)> = Vec::new();
    for m in moves {
        match rename(sides, &m.from, &m.to) {
            Ok(tracked) => done.push((m, tracked)),
            Err(error) => {
                for (m, _) in done.iter().rev() {
                    let _ = rename(sides, &m.to, &m.from);
                }
                return Err(error);
            }
        }
    }
    Ok(())
}

/// `git mv` when git tracks the folder, else a rename; whether it was tracked.
fn rename(sides: &Sides, from: &str, to: &str) -> Result<bool> {
    let repo = &sides.repo;
    if repo.tracked(from)? {
        repo.git_mv(from, to)?;
        return Ok(true);
    }
    let (from, to) = (repo.dir.join(from), repo.dir.join(to));
    std::fs::rename(&from, &to).with_context(|| format!("rename {} to {}", shown(&from), shown(&to)))?;
    Ok(false)
}
