//! `cargo xtask migration revert`: undo the latest applied migrations, newest first.

use anyhow::Result;
use url::Url;

use crate::context::Context;
use crate::guard::GuardArgs;
use dbkit::migration::Locked;
use dbkit::migration::source::{self, MigrationFiles};

/// Revert the latest applied migration (or the latest N, or all), then regenerate schema.rs
///
/// The latest is the most recently applied (by `run_on`), which differs from the highest version
/// after an out-of-order run; it says so when it does (diesel_cli reverts the highest version).
/// Each one runs its down.sql in its own transaction (unless its metadata says otherwise), under
/// the same lock as `migration run`. `--all` empties the database of the app's tables: it asks
/// first and refuses production.
#[derive(clap::Args)]
pub struct Revert {
    #[command(flatten)]
    latest: Latest,
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
        let (url, mut session, targets) = self.latest.select(cx, "revert")?;
        for migration in &targets {
            eprintln!("Rolling back migration {}", migration.name);
            session.revert(migration)?;
        }
        drop(session);
        dbkit::schema::regenerate(cx, &url)
    }
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
                anyhow::anyhow!(hint!("cannot revert version {}: it is recorded as applied, but no migration folder has that version", applied.version; "{}", dbkit::migration::MISSING_HINT))
            })
        })
        .collect()
}
