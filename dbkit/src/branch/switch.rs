//! The switch: `.env` to the checked-out branch's database, made on its first checkout by
//! cloning the database the checkout was on (`CREATE DATABASE ... TEMPLATE`), then brought to
//! the checkout's migrations: phantoms (another branch's) reverted from their recorded down.sql,
//! pending ones applied. One switch at a time per checkout (a lock in its git folder).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use diesel::PgConnection;
use url::Url;

use super::{Branching, Meta, database_for, family, now, own, sessions_on, write_meta};
use crate::context::Context;
use crate::git::{self, Head};
use crate::migration::{self, Locked, Plan, phantom, settings, source};

/// What a switch did.
#[derive(Debug)]
pub enum Outcome {
    /// `.env` names the branch's database, which is at the checkout's migrations.
    Switched(Switched),
    /// HEAD is not a branch (a rebase, a bisect, a commit checked out): `.env` stays on the
    /// database it names, which belongs to `branch`.
    Detached { database: String, branch: Option<String> },
    /// Branch databases are off in this checkout.
    Off,
}

#[derive(Debug)]
pub struct Switched {
    pub branch: String,
    pub database: String,
    /// The database it was cloned from, when this switch made it, and how long that took.
    pub created_from: Option<(String, Duration)>,
    /// Phantoms reverted (another branch's migrations), and migrations applied.
    pub reverted: usize,
    pub applied: usize,
}

/// Switches the checkout to its branch's database (see the module's doc). A failure is
/// recorded in the checkout's git folder for the next command to name, and cleared by the next
/// switch that succeeds.
pub fn switch(cx: &Context) -> Result<Outcome> {
    if Branching::load(cx)?.is_none() {
        return Ok(Outcome::Off);
    }
    let Some(head) = git::head(&cx.root)? else {
        bail!(hint!("{} is not in a git repository: there is no branch to follow", cx.root.display();
            "`cargo xtask branch off` stops following git"));
    };
    let git_dir = git::git_dir(&cx.root)?;
    let _lock = lock(&git_dir)?;
    // Read again under the lock: a switch that ran while this one waited has moved `.env`.
    let Some(branching) = Branching::load(cx)? else { return Ok(Outcome::Off) };
    let branch = match head {
        Head::Branch(branch) => branch,
        Head::Detached => {
            return Ok(Outcome::Detached { database: branching.database(), branch: branching.current.clone() });
        }
    };
    let result = to_branch(cx, &branching, &branch);
    let failure = super::failure_file(&git_dir);
    match &result {
        Ok(_) => {
            let _ = std::fs::remove_file(&failure);
        }
        Err(error) => {
            let text = format!("switching to branch `{branch}`: {}", crate::error::render(error));
            let _ = std::fs::write(&failure, text);
        }
    }
    result.map(Outcome::Switched)
}

fn to_branch(cx: &Context, branching: &Branching, branch: &str) -> Result<Switched> {
    let mut server = crate::connect::establish(&branching.server_url())?;
    let source = branching.database();
    let (root, entries) = family(&mut server, &source, false)?;
    let (database, created_from) = match own(&entries, branch) {
        Some(entry) => (entry.database.clone(), None),
        None => {
            let name = database_for(&root, branch);
            if let Some(other) = entries.iter().find(|e| e.database == name) {
                bail!(
                    hint!("the database for branch `{branch}` would be {name}, which belongs to `{}`", other.meta.branch;
                    "rename one of the branches, or drop {name} (`cargo xtask branch prune` drops those of deleted branches)")
                );
            }
            let started = Instant::now();
            // A switch killed between its clone and its comment left the clone unregistered
            // (CREATE DATABASE is all or nothing): it is the branch's, taken as made.
            if super::exists(&mut server, &name)? {
                eprintln!("taking {name}, cloned for `{branch}` by a switch that was interrupted, as its database");
            } else {
                clone(&mut server, &source, &name)?;
            }
            let stamp = now();
            let meta = Meta {
                branch: branch.to_string(),
                root: root.clone(),
                parent: Some(source.clone()),
                snapshot: None,
                created: stamp.clone(),
                used: stamp,
            };
            write_meta(&mut server, &name, &meta)?;
            (name, Some((source, started.elapsed())))
        }
    };
    // `.env` names the branch's database before its migrations move: should they fail, the app
    // is on this branch's data, never on another's.
    branching.point_at(&database, branch)?;
    if created_from.is_none()
        && let Some(entry) = own(&entries, branch)
    {
        let meta = Meta { used: now(), ..entry.meta.clone() };
        write_meta(&mut server, &database, &meta)?;
    }
    drop(server);
    let (reverted, applied) = bring_to_checkout(cx, &Branching::url_for(branching.session_url(), &database))?;
    Ok(Switched { branch: branch.to_string(), database, created_from, reverted, applied })
}

/// `CREATE DATABASE target TEMPLATE source`; when other sessions are on `source` (an app, a
/// psql), they are named with what to do: Postgres copies a database only while nobody is on it.
pub fn clone(server: &mut PgConnection, source: &str, target: &str) -> Result<()> {
    if let Err(error) = super::execute_formatted(server, "CREATE DATABASE %I TEMPLATE %I", &[target, source]) {
        let sessions = sessions_on(server, source).unwrap_or_default();
        if !sessions.is_empty() {
            bail!(
                hint!("cannot clone {source} into {target}: {} other session(s) are connected to it, and Postgres copies a database only while nobody is on it: {}", sessions.len(), sessions.join("; ");
                "stop them (your app, a psql, a GUI client), then run `cargo xtask branch switch`; until then .env still names {source}")
            );
        }
        return Err(error.context(format!("clone {source} into {target}")));
    }
    Ok(())
}

/// Brings the database at `url` to this checkout's migrations: phantoms reverted from their
/// recorded down.sql (newest first), then the pending migrations applied, under the migration
/// lock. Returns how many of each.
pub fn bring_to_checkout(cx: &Context, url: &Url) -> Result<(usize, usize)> {
    let migrations = source::load(&cx.migration_dir()?)?;
    let options = settings::load(cx)?.options();
    let mut session = Locked::acquire(url)?;
    let plan = Plan::read(&mut session.conn, &migrations)?;
    let reverted = phantom::revert_all(&mut session, &plan.phantoms, &mut |p| {
        eprintln!("  reverting {} (not in this checkout: its recorded down.sql)", p.shown())
    })?;
    let applied = migration::apply_pending_with_options(&mut session, &migrations, &options, &mut |m| {
        eprintln!("  applying {}", m.name)
    })?;
    Ok((reverted, applied))
}

/// The checkout's switch lock, held until dropped: two checkouts at once (a script, two
/// terminals) switch one after the other.
fn lock(git_dir: &Path) -> Result<crate::lock::FileLock> {
    crate::lock::FileLock::take(&git_dir.join("railgun-branch.lock"), || {})
}

/// Refuses a command that would work on another branch's database: branch databases are on,
/// HEAD is a branch, and `.env` names another branch's database (the hook did not run, or
/// failed: its words are given). Nothing to check when the URL was given on the command line or
/// in the environment, or HEAD is detached.
pub fn check_follows(cx: &Context) -> Result<()> {
    if cx.global.database_url.is_some() || std::env::var_os("DATABASE_URL").is_some() {
        return Ok(());
    }
    let Some(branching) = Branching::load(cx)? else { return Ok(()) };
    let Some(Head::Branch(branch)) = git::head(&cx.root)? else { return Ok(()) };
    if branching.current.as_deref() == Some(branch.as_str()) {
        return Ok(());
    }
    let failed = git::git_dir(&cx.root).ok().and_then(|dir| std::fs::read_to_string(super::failure_file(&dir)).ok());
    let why = match failed {
        Some(text) => format!("the last switch failed: {}", text.trim()),
        None => "no switch ran since the checkout (git ran without the post-checkout hook, or it is not installed in this repository)".to_string(),
    };
    let on = match &branching.current {
        Some(current) => format!("branch `{current}`'s database, {}", branching.database()),
        None => format!("the database {}", branching.database()),
    };
    bail!(hint!("this checkout is on branch `{branch}`, but .env names {on}: {why}", ;
        "run `cargo xtask branch switch` (it switches to `{branch}`'s database, or makes it); `cargo xtask branch off` stops following git"))
}
