//! Turning branch databases on and off, and what is done with them by hand: list, reset from
//! the parent, snapshot and restore (git stash, for data), prune those of deleted branches.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use diesel::PgConnection;

use super::switch::{self, Outcome, bring_to_checkout, clone};
use super::{Branching, CURRENT, ENABLED, Entry, Meta, database_for, execute_formatted, family, hook, now, own};
use crate::context::Context;
use crate::git::{self, Head};
use crate::guard::Guard;

/// Turns branch databases on in this checkout: the database `.env` names now becomes the
/// checked-out branch's (unless it is already another branch's), the hook is installed (a hook
/// already there kept), and the switch runs.
pub fn on(cx: &Context, xtask: &Path) -> Result<(hook::Installed, Outcome)> {
    if std::env::var_os("DATABASE_URL").is_some() {
        bail!(
            hint!("DATABASE_URL is set in the environment, and it wins over .env: the database could not follow git";
            "`unset DATABASE_URL` (and DIRECT_URL) so the app and the tools read .env, then run this again")
        );
    }
    let branch = match git::head(&cx.root)? {
        Some(Head::Branch(branch)) => branch,
        Some(Head::Detached) => bail!(
            hint!("HEAD is detached: there is no branch to give the database to"; "check out a branch (`git switch main`), then run this again")
        ),
        None => bail!(
            hint!("{} is not in a git repository", cx.root.display(); "branch databases follow git: run this in a clone of the project")
        ),
    };
    crate::env_file::set(&cx.env_file(), None, &[(ENABLED, "on")])?;
    let branching = Branching::load(cx)?.context("read .env back")?;
    let mut server = crate::connect::establish(&branching.server_url())?;
    let database = branching.database();
    let (_, entries) = family(&mut server, &database, false)?;
    if !entries.iter().any(|e| e.database == database) && own(&entries, &branch).is_none() {
        let stamp = now();
        let meta = Meta {
            branch: branch.clone(),
            root: database.clone(),
            parent: None,
            snapshot: None,
            created: stamp.clone(),
            used: stamp,
        };
        super::write_meta(&mut server, &database, &meta)?;
        crate::env_file::set(&cx.env_file(), None, &[(CURRENT, &branch)])?;
    }
    drop(server);
    let installed = hook::install(&git::hooks_dir(&cx.root)?, xtask)?;
    Ok((installed, switch::switch(cx)?))
}

/// Turns branch databases off in this checkout: `.env` stays on the database it names, the
/// databases stay; the hook goes unless another worktree of the repository still follows git.
pub fn off(cx: &Context) -> Result<String> {
    crate::env_file::set(&cx.env_file(), None, &[(ENABLED, "off")])?;
    let others = other_worktrees_following(cx);
    if !others.is_empty() {
        return Ok(format!("the hook stays: {} still follow(s) git", others.join(", ")));
    }
    hook::remove(&git::hooks_dir(&cx.root)?)
}

/// The other worktrees of the repository whose `.env` has branch databases on.
fn other_worktrees_following(cx: &Context) -> Vec<String> {
    let sh = &cx.sh;
    let Ok(list) = xshell::cmd!(sh, "git worktree list --porcelain").quiet().read() else { return Vec::new() };
    let here = std::fs::canonicalize(&cx.root).unwrap_or_else(|_| cx.root.clone());
    list.lines()
        .filter_map(|l| l.strip_prefix("worktree "))
        .map(Path::new)
        .filter(|dir| std::fs::canonicalize(dir).is_ok_and(|d| d != here))
        .filter(|dir| crate::env_file::get(&dir.join(".env"), ENABLED).ok().flatten().as_deref() == Some("on"))
        .map(|dir| dir.display().to_string())
        .collect()
}

/// One line of `branch list`.
#[derive(Debug, serde::Serialize)]
pub struct Listed {
    pub branch: String,
    pub database: String,
    pub snapshot: Option<String>,
    pub parent: Option<String>,
    pub size_bytes: Option<i64>,
    /// Applied migrations; `None` when it could not be read.
    pub migrations: Option<i64>,
    pub created: String,
    pub last_used: String,
    /// `.env` names it.
    pub current: bool,
    /// Its branch is no longer in git (`branch prune` drops it).
    pub gone: bool,
}

/// Every branch database and snapshot of the server, the current one marked.
pub fn list(cx: &Context) -> Result<Vec<Listed>> {
    let branching = following(cx)?;
    let mut server = crate::connect::establish(&branching.server_url())?;
    let current = branching.database();
    let (_, entries) = family(&mut server, &current, true)?;
    let branches = git::branches(&cx.root).unwrap_or_default();
    Ok(entries
        .into_iter()
        .map(|e| Listed {
            migrations: applied_count(&Branching::url_for(branching.session_url(), &e.database)),
            current: e.database == current,
            gone: !branches.contains(&e.meta.branch),
            branch: e.meta.branch,
            database: e.database,
            snapshot: e.meta.snapshot,
            parent: e.meta.parent,
            size_bytes: e.size,
            created: e.meta.created,
            last_used: e.meta.used,
        })
        .collect())
}

fn applied_count(url: &url::Url) -> Option<i64> {
    let once = crate::connect::Retries { attempts: 1, ..crate::connect::Retries::command_line() };
    let mut conn = crate::connect::establish_with(url, &once).ok()?;
    crate::migration::runner::applied(&mut conn).ok().map(|a| a.map_or(0, |a| a.len() as i64))
}

/// Clones the branch's database again from its parent (its data and migrations as the parent
/// has them now), then brings it to the checkout's migrations. Asks first.
pub fn reset(cx: &Context, guard: &Guard) -> Result<String> {
    let (branching, branch, mut server, entries) = current(cx)?;
    let entry = own(&entries, &branch).context("the branch's database is not registered")?.clone();
    let Some(parent) = entry.meta.parent.clone() else {
        bail!(
            hint!("{} is where the branch databases began (branch `{branch}`): it has no parent to reset from", entry.database;
            "`cargo xtask db reset` empties it and applies the migrations again")
        );
    };
    guard.check(
        cx,
        branching.session_url(),
        &format!("replace branch `{branch}`'s database {} with a new clone of {parent}", entry.database),
    )?;
    replace(&mut server, &entry, &parent)?;
    drop(server);
    let (reverted, applied) = bring_to_checkout(cx, branching.session_url())?;
    Ok(format!(
        "branch `{branch}`: {} cloned again from {parent}; {reverted} phantom(s) reverted, {applied} migration(s) applied",
        entry.database
    ))
}

/// Saves the branch's database as snapshot `name` (a clone kept on the server).
pub fn snapshot(cx: &Context, name: &str, replace_old: bool) -> Result<String> {
    check_snapshot_name(name)?;
    let (branching, branch, mut server, entries) = current(cx)?;
    let database = branching.database();
    if let Some(old) = entries.iter().find(|e| e.meta.branch == branch && e.meta.snapshot.as_deref() == Some(name)) {
        if !replace_old {
            bail!(hint!("branch `{branch}` has a snapshot {name} already (made {})", old.meta.created;
                "pick another name, or pass --replace to take it again"));
        }
        drop_database(&mut server, &old.database)?;
    }
    let root = own(&entries, &branch).map_or_else(|| database.clone(), |e| e.meta.root.clone());
    let target = database_for(&root, &format!("{branch}\u{0}snapshot\u{0}{name}"));
    clone(&mut server, &database, &target)?;
    let stamp = now();
    let meta = Meta {
        branch: branch.clone(),
        root,
        parent: Some(database.clone()),
        snapshot: Some(name.to_string()),
        created: stamp.clone(),
        used: stamp,
    };
    super::write_meta(&mut server, &target, &meta)?;
    Ok(format!("branch `{branch}`: snapshot {name} saved as {target}"))
}

/// Replaces the branch's database with snapshot `name` (which stays), then brings it to the
/// checkout's migrations. Asks first.
pub fn restore(cx: &Context, name: &str, guard: &Guard) -> Result<String> {
    let (branching, branch, mut server, entries) = current(cx)?;
    let Some(snapshot) = entries.iter().find(|e| e.meta.branch == branch && e.meta.snapshot.as_deref() == Some(name))
    else {
        let names: Vec<&str> =
            entries.iter().filter(|e| e.meta.branch == branch).filter_map(|e| e.meta.snapshot.as_deref()).collect();
        bail!(
            hint!("branch `{branch}` has no snapshot {name} (it has: {})", if names.is_empty() { "none".to_string() } else { names.join(", ") };
            "`cargo xtask branch snapshot NAME` takes one; `cargo xtask branch list` shows them")
        );
    };
    let entry = own(&entries, &branch).context("the branch's database is not registered")?.clone();
    guard.check(
        cx,
        branching.session_url(),
        &format!("replace branch `{branch}`'s database {} with snapshot {name}", entry.database),
    )?;
    replace(&mut server, &entry, &snapshot.database)?;
    drop(server);
    let (reverted, applied) = bring_to_checkout(cx, branching.session_url())?;
    Ok(format!(
        "branch `{branch}`: {} restored from snapshot {name}; {reverted} phantom(s) reverted, {applied} migration(s) applied",
        entry.database
    ))
}

/// Drops the databases (and snapshots) of branches git no longer has, after asking. Never the
/// one `.env` names, nor the one the branches began from.
pub fn prune(cx: &Context, guard: &Guard, dry_run: bool) -> Result<Vec<String>> {
    let branching = following(cx)?;
    let mut server = crate::connect::establish(&branching.server_url())?;
    let current = branching.database();
    let (_, entries) = family(&mut server, &current, false)?;
    let branches = git::branches(&cx.root)?;
    let gone: Vec<&Entry> = entries
        .iter()
        .filter(|e| !branches.contains(&e.meta.branch) && e.database != current && e.meta.parent.is_some())
        .collect();
    let names: Vec<String> = gone.iter().map(|e| format!("{} (branch `{}`)", e.database, e.meta.branch)).collect();
    if gone.is_empty() || dry_run {
        return Ok(names);
    }
    guard.check(
        cx,
        branching.session_url(),
        &format!("drop {} database(s) of deleted branches: {}", gone.len(), names.join(", ")),
    )?;
    for entry in gone {
        drop_database(&mut server, &entry.database)?;
    }
    Ok(names)
}

/// The settings, refused when branch databases are off.
fn following(cx: &Context) -> Result<Branching> {
    Branching::load(cx)?.ok_or_else(|| {
        anyhow::Error::new(hint!("branch databases are off in this checkout"; "`cargo xtask branch on` turns them on"))
    })
}

/// The settings, the branch `.env` is on (which must be HEAD's), a connection to the server and
/// its registry.
fn current(cx: &Context) -> Result<(Branching, String, PgConnection, Vec<Entry>)> {
    let branching = following(cx)?;
    switch::check_follows(cx)?;
    let branch = branching.current.clone().context("no branch recorded in .env: run `cargo xtask branch switch`")?;
    let mut server = crate::connect::establish(&branching.server_url())?;
    let (_, entries) = family(&mut server, &branching.database(), false)?;
    Ok((branching, branch, server, entries))
}

/// Drops `entry`'s database and clones `source` under its name, keeping its branch and parent.
fn replace(server: &mut PgConnection, entry: &Entry, source: &str) -> Result<()> {
    drop_database(server, &entry.database)?;
    clone(server, source, &entry.database)?;
    let meta = Meta { created: now(), used: now(), ..entry.meta.clone() };
    super::write_meta(server, &entry.database, &meta)
}

/// `DROP DATABASE`, refused while other sessions are on it (they are named).
fn drop_database(server: &mut PgConnection, database: &str) -> Result<()> {
    let sessions = super::sessions_on(server, database)?;
    if !sessions.is_empty() {
        bail!(hint!("{database} has {} other session(s): {}", sessions.len(), sessions.join("; ");
            "stop them (your app, a psql, a GUI client), then run this again"));
    }
    execute_formatted(server, "DROP DATABASE IF EXISTS %I", &[database]).with_context(|| format!("drop {database}"))
}

fn check_snapshot_name(name: &str) -> Result<()> {
    let fine = !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c));
    if !fine {
        bail!(
            hint!("{:?} is not a snapshot name", crate::error::escaped(name); "use letters, digits, - _ and ., at most 64 bytes")
        );
    }
    Ok(())
}
