//! `cargo xtask migration revert`: undo the latest applied migrations, newest first, or the
//! phantoms (applied from another branch or checkout) from their recorded down.sql.

use anyhow::Result;
use url::Url;

use crate::context::Context;
use crate::guard::GuardArgs;
use dbkit::migration::source::{self, MigrationFiles};
use dbkit::migration::{Locked, Plan, phantom};

/// Revert the latest applied migration (or the latest N, or all), then regenerate schema.rs
///
/// The latest is the most recently applied (by `run_on`), which differs from the highest version
/// after an out-of-order run; it says so when it does (diesel_cli reverts the highest version).
/// Each one runs its down.sql in its own transaction (unless its metadata says otherwise), under
/// the same lock as `migration run`. `--all` empties the database of the app's tables: it asks
/// first and refuses production.
///
/// schema.rs is left as git has it when it and every reverted migration are committed (it
/// describes this checkout's migrations; a rewritten one would block the next `git checkout`):
/// pass --write-schema to rewrite it anyway.
///
/// --phantom reverts the phantoms instead: migrations the database records as applied that
/// this checkout has no folder for (applied on another branch or checkout), newest first, each
/// from the down.sql recorded when it was applied. It asks first.
#[derive(clap::Args)]
pub struct Revert {
    #[command(flatten)]
    latest: Latest,
    /// Revert the phantom migrations (applied from another branch or checkout) from their
    /// recorded down.sql, newest first
    #[arg(long, conflicts_with_all = ["count", "all"])]
    phantom: bool,
    /// Rewrite the schema files even when the reverted migrations are committed
    #[arg(long)]
    write_schema: bool,
}

/// Which applied migrations `revert` and `redo` work on.
#[derive(clap::Args)]
pub struct Latest {
    /// How many migrations, most recently applied first
    #[arg(long, short = 'n', default_value_t = 1, conflicts_with = "all")]
    count: usize,
    /// Every applied migration (destructive: the app's data goes; asks first, refuses production)
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    guard: GuardArgs,
}

impl Latest {
    /// Asks the guard first when `--all`, then takes the migration lock and finds the targets,
    /// newest first.
    pub fn select(&self, cx: &Context, what: &str) -> Result<(Url, Locked, Vec<MigrationFiles>)> {
        let url = cx.database_url()?;
        if self.all {
            self.guard.guard().check(cx, &url, &format!("{what} every migration"))?;
        }
        let migrations = source::load(&cx.migration_dir()?)?;
        let mut session = Locked::acquire(&url)?;
        let count = if self.all { usize::MAX } else { self.count };
        let targets = latest_applied(&mut session, &migrations, count)?;
        if targets.is_empty() {
            eprintln!("no applied migration to {what}");
        }
        Ok((url, session, targets))
    }
}

impl Revert {
    pub fn run(self, cx: &Context) -> Result<()> {
        if self.phantom {
            return revert_phantoms(cx, &self.latest.guard);
        }
        let (url, mut session, targets) = self.latest.select(cx, "revert")?;
        for migration in &targets {
            eprintln!("Rolling back migration {}", migration.name);
            session.revert(migration)?;
        }
        drop(session);
        if !targets.is_empty() && !self.write_schema && committed(cx, &targets) {
            eprintln!(
                "note: the schema files are left as git has them: the reverted migration(s) are committed, so they describe this checkout; `cargo xtask migration run` applies them again, --write-schema rewrites the files from the database"
            );
            return Ok(());
        }
        phantom::regenerate_schema(cx, &url)
    }
}

/// Whether git has the reverted migrations and the schema files that describe them: then the
/// files stay as committed.
fn committed(cx: &Context, reverted: &[MigrationFiles]) -> bool {
    let schema_files = dbkit::diesel_config::DieselConfig::load(cx)
        .and_then(|config| dbkit::schema::configured_files(cx, &config))
        .unwrap_or_default();
    !schema_files.is_empty()
        && dbkit::git::all_tracked(cx, reverted.iter().map(|m| m.dir.join("up.sql")))
        && dbkit::git::all_tracked(cx, schema_files.into_iter().map(|f| f.path))
}

/// Reverts the phantoms from their recorded down.sql, after asking; then the schema files are
/// the checkout's again.
fn revert_phantoms(cx: &Context, guard: &GuardArgs) -> Result<()> {
    let url = cx.database_url()?;
    let migrations = source::load(&cx.migration_dir()?)?;
    let mut session = Locked::acquire(&url)?;
    let plan = Plan::read(&mut session.conn, &migrations)?;
    if plan.phantoms.is_empty() {
        eprintln!("no phantom migration: every applied migration has its folder in this checkout");
        return Ok(());
    }
    let names = phantom::names(&plan.phantoms);
    eprintln!(
        "{} phantom migration(s), applied from another branch or checkout, newest first: {names}",
        plan.phantoms.len()
    );
    guard.guard().check(cx, &url, &format!("revert {names} from the down.sql recorded when applied"))?;
    let reverted = phantom::revert_all(&mut session, &plan.phantoms, &mut |p| {
        eprintln!("Rolling back migration {} (its recorded down.sql)", p.shown())
    })?;
    eprintln!("reverted {reverted} phantom migration(s)");
    drop(session);
    phantom::regenerate_schema(cx, &url)
}

/// The `count` most recently applied migrations (by `run_on`; the higher version first among
/// those applied at once), most recent first; each must still be on disk.
fn latest_applied(session: &mut Locked, migrations: &[MigrationFiles], count: usize) -> Result<Vec<MigrationFiles>> {
    let mut applied = session.applied()?;
    let highest = applied.iter().map(|a| a.version.clone()).max();
    applied.sort_by(|a, b| b.run_on.cmp(&a.run_on).then_with(|| b.version.cmp(&a.version)));
    if let (Some(latest), Some(highest)) = (applied.first(), highest)
        && latest.version != highest
        && count > 0
    {
        eprintln!(
            "note: the most recently applied migration is {} (applied at {} UTC), not the highest version {}: it was applied out of order, so it goes first",
            latest.version,
            latest.run_on.format("%Y-%m-%d %H:%M:%S"),
            highest
        );
    }
    applied
        .into_iter()
        .take(count)
        .map(|applied| {
            migrations.iter().find(|m| m.version == applied.version).cloned().ok_or_else(|| {
                anyhow::anyhow!(hint!("cannot revert version {}: it is recorded as applied, but no migration folder has that version", applied.version; "it is a phantom (applied from another branch or checkout): `cargo xtask migration revert --phantom` reverts it from the down.sql recorded when it was applied; or {}", dbkit::migration::MISSING_HINT))
            })
        })
        .collect()
}
