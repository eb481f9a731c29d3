//! Migrations in diesel_cli's layout and bookkeeping (`__diesel_schema_migrations`), applied by
//! one runner that holds a Postgres advisory lock: the app at start-up, `cargo xtask` and the
//! test harness all go through [`apply_pending`], so two of them at once never apply one twice.

#[cfg(feature = "tools")]
pub mod baseline;
pub mod checksum;
#[cfg(feature = "tools")]
pub mod conflict;
#[cfg(feature = "tools")]
pub mod create;
#[cfg(feature = "tools")]
pub mod dry_run;
#[cfg(feature = "tools")]
pub mod observe;
pub mod phantom;
#[cfg(feature = "tools")]
pub mod rehearse;
#[cfg(feature = "tools")]
pub mod reversible;
pub mod runner;
#[cfg(feature = "tools")]
pub mod settings;
#[cfg(feature = "tools")]
pub mod show;
pub mod source;
pub mod sql;
pub mod squash;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use anyhow::{Result, bail};
use diesel::PgConnection;
use url::Url;

pub use checksum::Verdict;
pub use phantom::Phantom;
pub use runner::{Applied, Locked};
pub use source::{Embedded, Limits, MigrationFiles};

/// How to look at the bookkeeping when the database and the folder disagree.
pub const MISSING_HINT: &str = "it was applied from another branch or checkout, or its folder was renamed or deleted. \
Restore the folder (git log -- db/migrations), or inspect the bookkeeping: \
psql \"$DATABASE_URL\" -c 'SELECT version, run_on FROM __diesel_schema_migrations ORDER BY version'; \
if the migration's changes are truly gone from the database, forget it with \
DELETE FROM __diesel_schema_migrations WHERE version = '<version>'";

/// How a run treats what is unusual. The default is strict: it refuses edited and out-of-order
/// migrations and leaves the server's timeouts alone.
#[derive(Debug, Clone)]
pub struct Options {
    /// Apply pending migrations older than the newest applied one (merged from another branch).
    pub allow_out_of_order: bool,
    /// Limits for every migration; a migration's `metadata.toml` overrides them one by one.
    pub limits: Limits,
    /// How many times a migration that hit its lock timeout is tried again.
    pub lock_retries: u32,
    /// The wait before the first retry; it doubles for each one after.
    pub retry_backoff: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            allow_out_of_order: false,
            limits: Limits::default(),
            lock_retries: 3,
            retry_backoff: Duration::from_secs(1),
        }
    }
}

/// Where the migrations on disk stand against the database's bookkeeping.
#[derive(Debug, Default)]
pub struct Plan {
    /// Applied versions, newest first (diesel's order).
    pub applied: Vec<Applied>,
    /// Not applied, oldest first.
    pub pending: Vec<MigrationFiles>,
    /// Pending ones older than `newest_applied`.
    pub out_of_order: Vec<MigrationFiles>,
    pub newest_applied: Option<String>,
    /// Applied ones whose up.sql changed since, with the checksums recorded and now.
    pub edited: Vec<(MigrationFiles, String, String)>,
    /// Applied ones whose up.sql changed only in comments, whitespace or keyword case since
    /// (the same tokens as the up.sql recorded when applied): the next run takes the file.
    pub cosmetic: Vec<MigrationFiles>,
    /// Applied ones with no checksum for their application yet.
    pub unrecorded: Vec<MigrationFiles>,
    /// Versions recorded as applied that no migration has.
    pub unknown: Vec<String>,
    /// The same, with what was recorded of each, newest first (see [`phantom`]).
    pub phantoms: Vec<Phantom>,
    /// The verdict on each applied version that is on disk.
    pub verdicts: HashMap<String, Verdict>,
}

impl Plan {
    /// Reads the bookkeeping (nothing is written: `show` calls it without the lock).
    pub fn read(conn: &mut PgConnection, migrations: &[MigrationFiles]) -> Result<Plan> {
        let applied = runner::applied(conn)?.unwrap_or_default();
        let recorded = checksum::recorded(conn)?;
        let newest_applied = applied.iter().map(|a| a.version.clone()).max();
        let mut plan = Plan { newest_applied: newest_applied.clone(), ..Plan::default() };
        plan.pending = pending_of(&applied, migrations);
        plan.out_of_order = plan
            .pending
            .iter()
            .filter(|m| newest_applied.as_ref().is_some_and(|newest| &m.version < newest))
            .cloned()
            .collect();
        for a in &applied {
            let Some(migration) = migrations.iter().find(|m| m.version == a.version) else {
                plan.unknown.push(a.version.clone());
                continue;
            };
            let verdict = checksum::verdict(a, recorded.get(&a.version), &checksum::current(migration)?);
            match &verdict {
                Verdict::Unchanged | Verdict::Cosmetic => {}
                Verdict::Edited { recorded, now } => {
                    plan.edited.push((migration.clone(), recorded.clone(), now.clone()))
                }
                Verdict::Unrecorded => plan.unrecorded.push(migration.clone()),
            }
            plan.verdicts.insert(a.version.clone(), verdict);
        }
        plan.set_aside_cosmetic_edits(conn)?;
        plan.unknown.sort();
        plan.phantoms = phantom::read(conn, &applied, &plan.unknown)?;
        plan.applied = applied;
        plan.edited.sort_by(|a, b| a.0.version.cmp(&b.0.version));
        plan.unrecorded.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(plan)
    }

    /// Moves the edits that leave the tokens as they were (comments, whitespace, keyword case:
    /// [`sql::normalized`]) from `edited` to `cosmetic`, comparing with the up.sql recorded when
    /// the migration was applied (none recorded: an edit stays an edit).
    fn set_aside_cosmetic_edits(&mut self, conn: &mut PgConnection) -> Result<()> {
        if self.edited.is_empty() {
            return Ok(());
        }
        let versions: Vec<String> = self.edited.iter().map(|(m, _, _)| m.version.clone()).collect();
        let kept = checksum::kept_files(conn, &versions)?;
        let mut edited = Vec::new();
        for (migration, recorded, now) in std::mem::take(&mut self.edited) {
            let was = kept.get(&migration.version).and_then(|k| k.up_sql.as_deref());
            match was {
                Some(was) if sql::normalized(was) == sql::normalized(&migration.sql("up.sql")?) => {
                    self.verdicts.insert(migration.version.clone(), Verdict::Cosmetic);
                    self.cosmetic.push(migration);
                }
                _ => edited.push((migration, recorded, now)),
            }
        }
        self.edited = edited;
        Ok(())
    }

    /// Refuses what `options` does not allow: edited applied migrations, and out-of-order
    /// pending ones unless allowed.
    pub fn check(&self, options: &Options) -> Result<()> {
        if !self.edited.is_empty() {
            let names: Vec<&str> = self.edited.iter().map(|(m, _, _)| m.name.as_str()).collect();
            let first = &self.edited[0].0;
            bail!(
                hint!("{} applied migration(s) changed since they were applied: {} (its up.sql is not what the database ran)", names.len(), names.join(", ");
                "in development, `cargo xtask migration revert` until it is reverted (its down.sql undoes what the database has), then `cargo xtask migration run`; or, once you have checked that the database already matches the file, `cargo xtask migration accept {}`; in production, restore the file (git checkout -- {}) and put the change in a new migration", first.version, source::shown(&first.dir.join("up.sql")))
            );
        }
        if !self.out_of_order.is_empty() && !options.allow_out_of_order {
            let names: Vec<&str> = self.out_of_order.iter().map(|m| m.name.as_str()).collect();
            let newest = self.newest_applied.as_deref().unwrap_or_default();
            bail!(
                hint!("{} pending migration(s) out of order: {} (older than the newest applied version, {newest}): applied now, they would run after migrations that were written after them", names.len(), names.join(", ");
                "if it came from another branch, give it a newer version (`cargo xtask migration create NAME` and move the SQL there) so every database applies it in the same order; or, if it does not depend on what came after it, run with --allow-out-of-order (or set allow_out_of_order = true under [migrations] in railgun.toml)")
            );
        }
        Ok(())
    }
}

/// Those of `migrations` (oldest first) that `applied` lacks: the one computation of what is
/// pending, for the runner, `show`, doctor, `schema generate`'s hint and `migration generate`.
pub fn pending_of(applied: &[Applied], migrations: &[MigrationFiles]) -> Vec<MigrationFiles> {
    let applied: HashSet<&str> = applied.iter().map(|a| a.version.as_str()).collect();
    migrations.iter().filter(|m| !applied.contains(m.version.as_str())).cloned().collect()
}

/// The pending migrations of the database `conn` is on, of those in `dir`.
pub fn pending_in(conn: &mut PgConnection, dir: &std::path::Path) -> Result<Vec<MigrationFiles>> {
    Ok(pending_of(&runner::applied(conn)?.unwrap_or_default(), &source::load(dir)?))
}

/// Connects to `url`, takes the migration lock and applies what is pending of `migrations`,
/// oldest first; returns how many ran. What an app calls at start-up.
pub fn run(url: &Url, migrations: &[MigrationFiles]) -> Result<usize> {
    run_with(url, migrations, &Options::default())
}

/// [`run`] with `options`.
pub fn run_with(url: &Url, migrations: &[MigrationFiles], options: &Options) -> Result<usize> {
    apply_pending_with_options(&mut Locked::acquire(url)?, migrations, options, &mut |migration| {
        eprintln!("Running migration {}", migration.name)
    })
}

/// Applies those of `migrations` the locked database has not applied, oldest first, saying
/// `Running migration NAME` on stderr before each.
pub fn apply_pending(session: &mut Locked, migrations: &[MigrationFiles]) -> Result<usize> {
    apply_pending_with(session, migrations, &mut |migration| eprintln!("Running migration {}", migration.name))
}

/// [`apply_pending`], calling `before` instead of printing (the test harness says nothing).
pub fn apply_pending_with(
    session: &mut Locked,
    migrations: &[MigrationFiles],
    before: &mut dyn FnMut(&MigrationFiles),
) -> Result<usize> {
    apply_pending_with_options(session, migrations, &Options::default(), before)
}

/// The runner itself: refuses what [`Plan::check`] refuses and any pending migration
/// [`runner::check_before_running`] refuses, before anything runs; records the checksums that are
/// missing (migrations diesel_cli applied), then applies each pending migration, retrying one
/// that hit its lock timeout with backoff.
pub fn apply_pending_with_options(
    session: &mut Locked,
    migrations: &[MigrationFiles],
    options: &Options,
    before: &mut dyn FnMut(&MigrationFiles),
) -> Result<usize> {
    squash::reconcile(session, migrations)?;
    let plan = Plan::read(&mut session.conn, migrations)?;
    if !plan.unknown.is_empty() {
        eprintln!(
            "note: the database records {} that no migration folder has: {} ({}) ({})",
            if plan.unknown.len() == 1 { "a version" } else { "versions" },
            plan.unknown.join(", "),
            phantom::names(&plan.phantoms),
            phantom::fix(&plan.phantoms)
        );
    }
    plan.check(options)?;
    runner::check_before_running(&plan.pending)?;
    if !plan.out_of_order.is_empty() {
        let names: Vec<&str> = plan.out_of_order.iter().map(|m| m.name.as_str()).collect();
        eprintln!("note: applying out of order (allowed): {}", names.join(", "));
    }
    adopt(session, &plan)?;
    take_cosmetic_edits(session, &plan)?;
    for migration in &plan.pending {
        before(migration);
        apply_retrying(session, migration, options)?;
    }
    Ok(plan.pending.len())
}

/// Records the checksum of each applied migration that has none for its application (diesel_cli
/// applied it, or it predates checksums): from now on an edit of it is noticed.
fn adopt(session: &mut Locked, plan: &Plan) -> Result<()> {
    if plan.unrecorded.is_empty() {
        return Ok(());
    }
    for migration in &plan.unrecorded {
        let applied = plan.applied_entry(&migration.version);
        if let Some(applied) = applied {
            checksum::record(&mut session.conn, migration, &migration.sql("up.sql")?, applied.run_on)?;
        }
    }
    let names: Vec<&str> = plan.unrecorded.iter().map(|m| m.name.as_str()).collect();
    eprintln!(
        "recorded the checksum of {} migration(s) applied without one (by diesel_cli, or before checksums were kept): {}",
        names.len(),
        names.join(", ")
    );
    Ok(())
}

/// Records the file as applied for each edit that changed only comments, whitespace or keyword
/// case: the database already is what it says.
fn take_cosmetic_edits(session: &mut Locked, plan: &Plan) -> Result<()> {
    for migration in &plan.cosmetic {
        if let Some(applied) = plan.applied_entry(&migration.version) {
            checksum::record(&mut session.conn, migration, &migration.sql("up.sql")?, applied.run_on)?;
            eprintln!(
                "note: {}'s up.sql changed only in comments, whitespace or keyword case since it was applied (the same tokens): its checksum is now the file's",
                migration.name
            );
        }
    }
    Ok(())
}

impl Plan {
    fn applied_entry(&self, version: &str) -> Option<&Applied> {
        self.applied.iter().find(|a| a.version == version)
    }
}

/// Applies `migration` under the options' limits, trying again after a lock timeout while that
/// is safe: the whole migration rolled back (a transaction, or a single statement).
fn apply_retrying(session: &mut Locked, migration: &MigrationFiles, options: &Options) -> Result<()> {
    let limits = migration.limits.or(&options.limits);
    let retryable =
        migration.run_in_transaction || migration.sql("up.sql").is_ok_and(|s| sql::statements(&s).len() == 1);
    let mut wait = options.retry_backoff;
    let mut attempt = 1;
    loop {
        match session.apply_limited(migration, &limits) {
            Ok(()) => {
                if attempt > 1 {
                    eprintln!("applied {} on attempt {attempt}", migration.name);
                }
                return Ok(());
            }
            Err(error) if runner::is_lock_timeout(&error) && retryable && attempt <= options.lock_retries => {
                eprintln!(
                    "lock timeout: {} waited longer than lock_timeout ({}) for a lock; nothing of it stays; retrying in {} ms (attempt {} of {})",
                    migration.name,
                    limits.lock_timeout.as_deref().unwrap_or("the server's"),
                    wait.as_millis(),
                    attempt + 1,
                    options.lock_retries + 1
                );
                std::thread::sleep(wait);
                wait = wait.saturating_mul(2);
                attempt += 1;
            }
            Err(error) if runner::is_lock_timeout(&error) && attempt > 1 => {
                return Err(error.context(format!("gave up on {} after {attempt} attempts", migration.name)));
            }
            Err(error) => return Err(error),
        }
    }
}

/// Applies pending migrations from this invocation's migrations folder under the lock, with
/// the project's settings (railgun.toml) and `overrides` on top.
#[cfg(feature = "tools")]
pub fn run_pending(cx: &crate::context::Context, url: &Url) -> Result<usize> {
    run_with(url, &source::load(&cx.migration_dir()?)?, &settings::load(cx)?.options())
}
