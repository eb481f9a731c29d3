//! The test harness: every test gets its own migrated Postgres database in milliseconds.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use dbkit::testing::TestDb;
//! let db = TestDb::with_migrations_dir("db/migrations")?; // a database of this test's own, migrated
//! let mut conn = db.conn()?; // or hand `db.url()` to the code under test
//! // ... dropped when the test passes; kept, its URL printed, when it panics
//! # Ok(()) }
//! ```
//!
//! How: the migrations, then the seeds beside them (see [`crate::seed`]), run once into a
//! template database named after their hash (reused by later runs until a migration or a seed
//! changes), and clones of it wait in a pool on the server (`RAILGUN_TEST_POOL`, default 3, made
//! ahead of demand), which outlives the run. A test claims
//! one by renaming it: one rename wins, across threads and processes alike. When the test passes
//! and changed only rows and sequences, its rows are deleted and its sequences set back, and the
//! database serves another test; a test that ran DDL (the catalogs changed) gets its database
//! dropped. A test database keeps its connections in a pool of its own ([`TestDb::conn`] hands
//! them out): a new server process costs milliseconds of CPU, a reused one nothing.
//! Under `cargo test` a passing test's end costs nothing: a background thread resets its
//! database and the sessions of its connections (settings, role, locks, listens) and keeps both
//! for this process's next test (no rename, no new clone, no new connection), claims clones
//! from the pool ahead of demand and keeps the pool filled; a test that finds none ready resets
//! a returned one itself. Under nextest (a process per test) a process does no background work:
//! each test slot of the run has a database of its own (see `slot`), which its tests reset in
//! turn, so a test process opens one connection and claims nothing: through PgBouncer (see
//! `pooler`), which hands it the server process the slot's last test left; other test
//! databases of the process go back to the pool, reset by their next claimer. The setup script
//! `cargo xtask test --prepare-db` builds the template, fills the pool, cleans up, puts the
//! run's slot databases ready and hands its findings (the template of a migrations folder and
//! its baseline) to the test processes once per run. Databases of crashed runs are dropped by the
//! next run (unused claimed ones go back to the pool).
//!
//! Cheaper still, for tests that commit nothing: [`TestDb::transaction`]. Redis: [`TestRedis`].
//!
//! The server: `TEST_DATABASE_URL`; else a throwaway container (`railgun-testdb`, tmpfs, fsync
//! off, reached through its Unix socket) started once and shared by every test process, even
//! when the dev server is up; else
//! (no Docker, or `RAILGUN_TEST_SERVER=dev` first) `DATABASE_URL` (environment, then `.env`)
//! when it is local and answers, as the `cargo xtask up` server does. Connections wait for a
//! free slot when the server has none, rather than fail.
//!
//! Names on the server: `railgun_tpl_<hash>` templates, `railgun_prep_*` clones warming up,
//! `railgun_pool_<hash>_*` ready clones (`..._used<n>`: a passing test's, reset when claimed),
//! `railgun_test_<process>_<n>` databases in use (or kept after a failure), and under nextest
//! `railgun_slot_<hash>_<run>_<slot>` slot databases.

mod cleanup;
mod conns;
mod handoff;
mod names;
mod pool;
mod pooler;
mod recycle;
mod redis;
mod runner;
mod server;
mod slot;
mod template;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use diesel::{Connection, PgConnection, RunQueryDsl};
use url::Url;

use crate::migration::MigrationFiles;
use crate::seed::Seeds;

pub use crate::redis::Reply;
pub use cleanup::clean_stale;
use conns::Lease;
pub use conns::{TestConn, TestManager};
use names::{DbName, Pooled};
use recycle::Baseline;
pub use redis::TestRedis;
use server::{Server, connect_waiting, databases, server};

/// Clones a process claims from the pool and connects to ahead of its tests (at most the pool size).
const HELD_AHEAD: usize = 2;
/// The comment on a clone held ahead: never handed to a test, so a later run can put it back.
pub(crate) const UNUSED: &str = "railgun test unused ";
/// The comment on a pooled clone a passing test used, followed by the server's statistics epoch
/// before that test began: its claimer resets it from the statistics only in the same epoch.
pub(crate) const USED: &str = "railgun test used, statistics since ";
/// How many ready clones a pool keeps at most: passing tests' databases return to it up to this.
const POOL_KEPT: usize = 16;
/// How long a failed test's database is kept before a later run drops it.
pub(crate) const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);

/// A database of the test's own: dropped when the test passes, kept (URL printed) when it panics.
pub struct TestDb {
    /// Straight to the server (see [`TestDb::direct_url`]).
    url: Url,
    /// Through the pooler, when one runs (see [`TestDb::url`]); set on first use.
    pooled: OnceLock<Url>,
    server: &'static Server,
    harness: &'static Harness,
    keep: bool,
    /// The database and its connections (taken by the drop).
    lease: Option<Lease>,
    /// A nextest slot's database (see `slot`): it stays for the slot's next test.
    nextest_slot: bool,
}

impl TestDb {
    /// A new database with the migrations of `dir` (a diesel migrations folder) applied, and
    /// the seeds beside it (`seeds/*.sql`, then `seeds/test/*.sql`: see [`crate::seed`]).
    pub fn with_migrations_dir(dir: impl AsRef<Path>) -> Result<TestDb> {
        Harness::for_dir(dir.as_ref())?.test_db()
    }

    /// A new database with the migrations of `dir` applied and no seeds: a template of its own
    /// (built once, as the seeded one is), for tests that want empty tables.
    pub fn with_migrations_dir_without_seeds(dir: impl AsRef<Path>) -> Result<TestDb> {
        let dir = dir.as_ref();
        let migrations =
            crate::migration::source::load(dir).with_context(|| format!("no migrations in {}", dir.display()))?;
        Harness::for_migrations(&migrations)?.test_db()
    }

    /// A new, empty database (no migrations; a copy of `template1` as `CREATE DATABASE` makes).
    pub fn empty() -> Result<TestDb> {
        static EMPTY: OnceLock<Result<&'static Harness, String>> = OnceLock::new();
        EMPTY
            .get_or_init(|| Harness::for_migrations(&[]).map_err(|e| crate::error::describe(&e)))
            .as_ref()
            .map_err(|e| anyhow!("{e}"))?
            .test_db()
    }

    fn claimed(harness: &'static Harness, slot: Lease) -> TestDb {
        let server = harness.server;
        TestDb {
            url: server.url_for(&slot.name),
            pooled: OnceLock::new(),
            server,
            harness,
            keep: false,
            lease: Some(slot),
            nextest_slot: false,
        }
    }

    fn lease(&self) -> &Lease {
        self.lease.as_ref().expect("a test database has its lease until dropped")
    }

    /// The URL of this database, for the code under test to connect with as an app does (its
    /// own pool, a connection per request): through PgBouncer in session mode in front of the
    /// test container, so that a new connection reuses a server process (the one the last
    /// test's left, reset) instead of starting one (a fork and cold catalog caches, ~10 ms).
    /// A session behaves as straight to Postgres (locks, prepared statements, LISTEN, `SET
    /// ROLE`; any role the server has may log in, without a password).
    ///
    /// Use [`TestDb::direct_url`] for a tool that wants the database to itself (`DROP
    /// DATABASE`, `CREATE DATABASE ... TEMPLATE`, `pg_restore --clean`) or checks passwords.
    /// On another server (`TEST_DATABASE_URL`, the dev server) both are the same URL.
    pub fn url(&self) -> &Url {
        self.pooled.get_or_init(|| match self.server.pooled_url_for(&self.lease().name) {
            Some(url) => {
                self.lease().note_pooled();
                url
            }
            None => {
                self.lease().close_idle();
                self.url.clone()
            }
        })
    }

    /// The URL of this database straight to the server, with its credentials, and the database
    /// to itself for now: the idle connections of [`TestDb::conn`]'s pool closed (one is usually
    /// opened ahead of the test), and those the pooler keeps after [`TestDb::url`]'s ended.
    pub fn direct_url(&self) -> &Url {
        let lease = self.lease();
        lease.close_idle();
        if self.pooled.get().is_some_and(|url| *url != self.url) {
            let name = &lease.name;
            if let Err(e) = self.server.admin(|c| recycle::end_released(c, name)) {
                eprintln!("warning: the pooler's connections to {name} stay ({e:#})");
            }
        }
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.lease().name
    }

    /// A connection to this database, from a pool of its own: usually one opened before the
    /// test (or kept from an earlier test on this database, reset), and back to the pool when
    /// dropped. It derefs to a `PgConnection`, and diesel's queries take it as one.
    pub fn conn(&self) -> Result<TestConn> {
        let name = &self.lease().name;
        self.lease().get().with_context(|| format!("connect to the test database {name}"))
    }

    /// A connection of its own, outside the pool (a new server process, closed when dropped):
    /// for code that wants a `PgConnection` by value.
    pub fn connect(&self) -> Result<PgConnection> {
        let name = &self.lease().name;
        connect_waiting(&self.server.fast_url_for(name)).with_context(|| format!("connect to the test database {name}"))
    }

    /// Keeps the database after the test whatever its outcome (a test that returns `Err` does not
    /// panic, so its database is dropped unless kept this way).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

/// How a test's lease on its database ends. A test process that is killed ends none: the
/// next run's cleanup finds its database by its name (see `names`) and drops it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The test passed: its database is reset for another test, or dropped.
    Passed,
    /// The test panicked (or asked to keep its database): kept, its URL printed.
    Failed,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let failed = self.keep || std::thread::panicking();
        self.end(if failed { Outcome::Failed } else { Outcome::Passed });
    }
}

impl TestDb {
    /// Ends the lease: what becomes of the database, by the test's outcome and its runner.
    fn end(&mut self, outcome: Outcome) {
        let Some(lease) = self.lease.take() else { return };
        let name = lease.name.clone();
        match (outcome, self.nextest_slot) {
            (Outcome::Failed, true) => match self.harness.leave_slot(lease) {
                // Out of the slot, so that the slot's next test gets another database.
                Ok(renamed) => self.kept(&renamed),
                Err(e) => {
                    eprintln!(
                        "warning: the failed test's database stays in its nextest slot ({e:#}); the slot's next test resets it"
                    );
                    self.kept(&name);
                }
            },
            (Outcome::Failed, false) => self.kept(&name),
            (Outcome::Passed, true) => {
                // Marked for the slot's next test; else a clean clone in its place, so that
                // the slot's next test never finds it missing.
                if !self.harness.finish_slot(&lease).unwrap_or(false) && self.harness.renew_slot(lease).is_err() {
                    self.drop_database(&name);
                }
            }
            (Outcome::Passed, false) => {
                let Some(lease) = self.harness.give_back(lease) else { return };
                drop(lease);
                if !self.harness.recycle(&name).unwrap_or(false) {
                    self.drop_database(&name);
                }
            }
        }
    }

    fn drop_database(&self, name: &str) {
        // Forced: a connection the test leaked must not keep its database alive.
        let dropped = self.server.admin(|c| recycle::drop_database(c, name));
        if let Err(e) = dropped {
            eprintln!("warning: could not drop the test database {name}: {e:#} (the next run drops it)");
        }
    }
}

impl TestDb {
    /// A failed (or kept) test's database: stamped, its URL printed.
    fn kept(&self, name: &str) {
        let stamped = self.server.admin(|c| {
            let comment = format!("railgun test kept {}", server::now());
            Ok(diesel::sql_query(format!("COMMENT ON DATABASE \"{name}\" IS '{comment}'")).execute(c)?)
        });
        eprintln!(
            "test database kept for inspection: {}{}\n  it is dropped by the first test run {} hours from now; sooner with `DROP DATABASE \"{name}\"`",
            crate::url::redact(&self.server.url_for(name)),
            if stamped.is_err() { " (not stamped: a later run may drop it at once)" } else { "" },
            KEEP_FOR.as_secs() / 3600
        );
    }
}

impl std::fmt::Debug for TestDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestDb").field("url", &crate::url::redact(&self.url)).finish()
    }
}

/// One migration set on the test server: its template, its pool of ready clones, the thread
/// that refills the pool, and the database transaction-mode tests share.
pub struct Harness {
    server: &'static Server,
    template: String,
    pool_prefix: String,
    hash: u64,
    /// The migrations, or the folder to read them from when first needed.
    source: Source,
    /// The setup script's word of the migrations folder it read (see [`Harness::nextest_env`]).
    prepared_dir: OnceLock<handoff::PreparedDir>,
    /// Under nextest, this process's slot database for the template (see `slot`).
    slot_name: Option<String>,
    /// The template made sure of (built when missing): what a clean clone holds (`None`: used
    /// databases are dropped) and how long building took. At start, or on first need in a
    /// nextest process whose slot database is ready (it reads the baseline itself).
    ready: OnceLock<(Option<Baseline>, Option<Duration>)>,
    pool_size: usize,
    wake: (Mutex<u64>, Condvar),
    shared: Mutex<Option<Url>>,
    /// This process's databases between tests.
    local: Mutex<Local>,
    /// A background thread keeps the pool filled and resets returned databases (not under nextest).
    background: bool,
}

/// Where a harness's migrations and seeds come from.
enum Source {
    Read(Vec<MigrationFiles>, Seeds),
    /// A migrations folder (its seeds beside it) the setup script read: read again only if the
    /// template must be built.
    Dir(std::path::PathBuf),
}

/// A process's databases between two tests.
#[derive(Default)]
struct Local {
    /// Clean, a connection open, marked unused (a later run pools them again if this process
    /// ends first): the next tests take them.
    held: Vec<Lease>,
    /// Passing tests' databases, their connections back in their pools: reset before they serve again.
    returned: Vec<Lease>,
}

impl Harness {
    /// The harness for `migrations` (no seeds), made once per process and set of migrations.
    pub fn for_migrations(migrations: &[MigrationFiles]) -> Result<&'static Harness> {
        Harness::for_migrations_and_seeds(migrations, &Seeds::default())
    }

    /// The harness for `migrations` and then `seeds`, made once per process and set of both.
    pub fn for_migrations_and_seeds(migrations: &[MigrationFiles], seeds: &Seeds) -> Result<&'static Harness> {
        Harness::known(template::fingerprint(migrations, seeds)?, Source::Read(migrations.to_vec(), seeds.clone()))
    }

    /// The harness of the template `hash`, made once per process.
    fn known(hash: u64, source: Source) -> Result<&'static Harness> {
        static KNOWN: Mutex<Vec<(u64, &'static Harness)>> = Mutex::new(Vec::new());
        let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, harness)) = known.iter().find(|(h, _)| *h == hash) {
            return Ok(harness);
        }
        let harness = Harness::start(source, hash)?;
        known.push((hash, harness));
        Ok(harness)
    }

    /// The harness for the migrations in `dir` (a diesel migrations folder).
    ///
    /// Read once per process while no migration is added or removed: a suite calling this in
    /// every test reads 250 migrations once, not per test. Not at all in a nextest run whose
    /// setup script read them (and no migration was added or removed since): the run tests
    /// the migrations as they were when it started.
    pub fn for_dir(dir: &Path) -> Result<&'static Harness> {
        static BY_DIR: Mutex<Vec<(std::path::PathBuf, u64, &'static Harness)>> = Mutex::new(Vec::new());
        let stamp = folder_stamp(dir);
        if let Some(stamp) = stamp {
            let known = BY_DIR.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((_, _, harness)) = known.iter().find(|(d, s, _)| d == dir && *s == stamp) {
                return Ok(harness);
            }
        }
        let harness = match stamp.and_then(|stamp| handoff::prepared_dir(dir, stamp)) {
            Some(hash) => Harness::known(hash, Source::Dir(dir.to_path_buf()))?,
            None => {
                let (migrations, seeds) = read_dir(dir)?;
                Harness::for_migrations_and_seeds(&migrations, &seeds)?
            }
        };
        if let Some(stamp) = stamp {
            BY_DIR.lock().unwrap_or_else(|e| e.into_inner()).push((dir.to_path_buf(), stamp, harness));
        }
        Ok(harness)
    }

    /// Prepares a test run (nextest's setup script): the template of the migrations in `dir`
    /// built, its pool filled, stale databases of crashed runs dropped, the run's slot
    /// databases put ready (the run and how many tests it runs at once, nextest tells the
    /// setup script). Returns the harness (no pool thread of its own) and how many clones
    /// wait in the pool.
    pub fn prepare(dir: &Path) -> Result<(&'static Harness, usize)> {
        let run = match runner::runner() {
            runner::Runner::SetupScript { run, threads: Some(threads) } => Some((run.as_str(), *threads)),
            _ => None,
        };
        Harness::prepare_run(dir, run)
    }

    /// [`Harness::prepare`] for the run `run` (its id as slot names carry it, and its threads).
    pub fn prepare_run(dir: &Path, run: Option<(&str, u32)>) -> Result<(&'static Harness, usize)> {
        let (migrations, seeds) = read_dir(dir)?;
        let hash = template::fingerprint(&migrations, &seeds)?;
        let harness = Harness::build(Source::Read(migrations, seeds), hash, false)?;
        if let Some(stamp) = folder_stamp(dir) {
            let _ = harness.prepared_dir.set(handoff::PreparedDir::new(dir, stamp));
        }
        harness.server.pooler();
        harness.fill_pool(&mut None, &mut 0)?;
        clean_stale()?;
        if let Some((id, threads)) = run {
            harness.prepare_slots(id, threads)?;
        }
        let ready = harness.server.admin(|c| Ok(databases(c, &harness.pool_prefix)?.len()))?;
        Ok((harness, ready))
    }

    /// The harness for `migrations`, whose fingerprint is `hash` (read once: it reads every up.sql).
    fn start(source: Source, hash: u64) -> Result<&'static Harness> {
        // A process per test (nextest) runs one test: background work would be wasted.
        let background = !runner::runner().one_test_per_process();
        Harness::build(source, hash, background)
    }

    fn build(source: Source, hash: u64, background: bool) -> Result<&'static Harness> {
        let server = server()?;
        let pool_size = pool_size_setting()?;
        let harness: &'static Harness = Box::leak(Box::new(Harness {
            server,
            template: template::name_of(hash),
            pool_prefix: names::ready_prefix(hash),
            hash,
            source,
            prepared_dir: OnceLock::new(),
            slot_name: slot::name(hash, server),
            ready: OnceLock::new(),
            pool_size,
            wake: (Mutex::new(0), Condvar::new()),
            shared: Mutex::new(None),
            local: Mutex::new(Local::default()),
            background,
        }));
        if harness.slot_name.is_none() {
            harness.ensure()?;
        }
        if !background {
            return Ok(harness);
        }
        std::thread::Builder::new()
            .name("test-db-pool".into())
            .spawn(move || harness.refill_forever())
            .context("start the test database pool thread")?;
        // What crashed and finished runs left, dropped once per process on a thread of its own:
        // a short suite ends before its pool thread has a quiet moment.
        static CLEANED: std::sync::Once = std::sync::Once::new();
        CLEANED.call_once(|| {
            let spawned = std::thread::Builder::new().name("test-db-clean".into()).spawn(|| {
                let _ = clean_stale();
                let (done, wake) = &CLEANING;
                *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
                wake.notify_all();
            });
            if spawned.is_ok() {
                // SAFETY: registers a plain function with no argument, as atexit requires.
                unsafe { libc::atexit(wait_for_cleanup) };
            }
        });
        Ok(harness)
    }

    /// A database of the test's own: a ready clone when the pool has one, else a clone made now.
    pub fn test_db(&'static self) -> Result<TestDb> {
        // Under nextest, the process's first test database is its slot's.
        static SLOT_TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if let Some(name) = self.slot_name.clone()
            && !SLOT_TAKEN.swap(true, Ordering::SeqCst)
        {
            let slot = match self.ready_slot(&name)? {
                Some(slot) => slot,
                // None yet (or it ran DDL): one from the pool, under the slot's name.
                None => {
                    self.ensure()?;
                    match self.claim_ready(&name)? {
                        Some(slot) => slot,
                        None => {
                            self.clone_template(&name)?;
                            Lease::new(name.clone(), self.server.fast_url_for(&name))
                        }
                    }
                }
            };
            let mut db = TestDb::claimed(self, slot);
            db.nextest_slot = true;
            return Ok(db);
        }
        let held = self.local().held.pop();
        self.wake_refill();
        if let Some(slot) = held {
            // In use from now on: a later run must not pool it again.
            let name = &slot.name;
            let in_use = slot.get().and_then(|mut conn| {
                Ok(diesel::sql_query(format!("COMMENT ON DATABASE \"{name}\" IS NULL")).execute(&mut conn)?)
            });
            if in_use.is_ok() {
                return Ok(TestDb::claimed(self, slot));
            }
        }
        // None ready: a passing test's database of this process, reset here, beats a claim.
        let returned = self.local().returned.pop();
        if let Some(slot) = returned
            && let Some(slot) = self.reset_returned(slot)?
        {
            return Ok(TestDb::claimed(self, slot));
        }
        let name = next_test_name(self.server);
        let slot = match self.claim_ready(&name)? {
            Some(slot) => slot,
            None => {
                self.clone_template(&name)?;
                Lease::new(name.clone(), self.server.fast_url_for(&name))
            }
        };
        Ok(TestDb::claimed(self, slot))
    }

    /// A connection inside a transaction that is never committed, on a migrated database this
    /// process shares between such tests: cheaper than a [`TestDb`] for tests that need no commits.
    ///
    /// Concurrent tests do not see each other's rows, but a row one inserts holds its unique keys
    /// until that test ends: use distinct keys, or a [`TestDb`].
    pub fn transaction(&'static self) -> Result<PgConnection> {
        let url = {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            match &*shared {
                Some(url) => url.clone(),
                None => {
                    let db = self.test_db()?;
                    let url = db.direct_url().clone();
                    // Never dropped by this process (tests share it to its end): the next run drops it.
                    std::mem::forget(db);
                    *shared = Some(url.clone());
                    url
                }
            }
        };
        let mut conn = connect_waiting(&url)?;
        conn.begin_test_transaction().context("begin the test transaction")?;
        Ok(conn)
    }

    /// The template database's name (`railgun_tpl_<hash of the migrations>`).
    pub fn template(&self) -> &str {
        &self.template
    }

    /// How long building the template took, when this process built it (`None`: it was reused).
    pub fn built_in(&self) -> Option<Duration> {
        self.ready.get().and_then(|(_, built_in)| *built_in)
    }

    /// The template made sure of, once (built when missing, by one process across all).
    fn ensure(&self) -> Result<&(Option<Baseline>, Option<Duration>)> {
        if let Some(ready) = self.ready.get() {
            return Ok(ready);
        }
        let template::Template { baseline, built_in, .. } =
            template::ensure(self.server, &|| self.contents(), self.hash)?;
        let baseline = baseline.filter(|_| self.server.recycles);
        Ok(self.ready.get_or_init(|| (baseline, built_in)))
    }

    /// The migrations and seeds: those given, or the folder's read now (only to build a
    /// missing template: its fingerprint must still be the one the setup script found).
    fn contents(&self) -> Result<template::Contents<'_>> {
        let dir = match &self.source {
            Source::Read(migrations, seeds) => {
                return Ok(template::Contents {
                    migrations: migrations.into(),
                    seeds: std::borrow::Cow::Borrowed(seeds),
                });
            }
            Source::Dir(dir) => dir,
        };
        let (migrations, seeds) = read_dir(dir)?;
        if template::fingerprint(&migrations, &seeds)? != self.hash {
            bail!(
                "the migrations or seeds of {} changed during this test run, whose setup script read them before, and its template is gone; run the tests again",
                dir.display()
            );
        }
        Ok(template::Contents { migrations: migrations.into(), seeds: std::borrow::Cow::Owned(seeds) })
    }

    /// What a clean clone holds; `None` when used databases cannot be reset.
    fn baseline(&self) -> Result<Option<&Baseline>> {
        Ok(self.ensure()?.0.as_ref())
    }

    /// The nextest variables of a prepared run (`NEXTEST_ENV`): its test processes then skip
    /// what the setup script already did, and a ready slot database is all they connect to.
    pub fn nextest_env(&self) -> Vec<(String, String)> {
        let handoff = handoff::Handoff {
            template: format!("{:016x}", self.hash),
            dir: self.prepared_dir.get().cloned(),
            // What a clean clone holds, so that a test process reads nothing but its slot database.
            baseline: self.ready.get().and_then(|(baseline, _)| baseline.clone()),
            ..self.server.handoff()
        };
        vec![handoff.to_env()]
    }

    /// Where the test server came from (`TEST_DATABASE_URL`, `DATABASE_URL`, the test container).
    pub fn origin(&self) -> &str {
        &self.server.origin
    }
}

/// The test server's `postgres` database: where the harness creates and drops databases.
pub fn server_url() -> Result<Url> {
    Ok(server()?.url_for("postgres"))
}

/// The same, as the harness itself connects (the test container through its Unix socket): for
/// benchmarks that compare against the harness on equal terms.
pub fn harness_server_url() -> Result<Url> {
    Ok(server()?.fast_url_for("postgres"))
}

/// The migrations in `dir` and the test environment's seeds beside it.
fn read_dir(dir: &Path) -> Result<(Vec<MigrationFiles>, Seeds)> {
    let migrations =
        crate::migration::source::load(dir).with_context(|| format!("no migrations in {}", dir.display()))?;
    let seeds = Seeds::load(&Seeds::dir_beside(dir), crate::seed::TEST_ENV)?;
    Ok((migrations, seeds))
}

/// A migrations folder's modification time: changes when a migration is added or removed (an
/// edit inside one is seen by the next test process, as with migrations built in).
fn folder_stamp(dir: &Path) -> Option<u64> {
    let modified = std::fs::metadata(dir).ok()?.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(modified.as_nanos() as u64)
}

/// `RAILGUN_TEST_POOL`: how many ready clones a migration set keeps on the server.
fn pool_size_setting() -> Result<usize> {
    match std::env::var("RAILGUN_TEST_POOL") {
        Ok(n) => n.parse().context("RAILGUN_TEST_POOL must be a number of databases"),
        Err(_) => Ok(3),
    }
}

fn next_test_name(server: &Server) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    DbName::Test { owner: server.owner, n: N.fetch_add(1, Ordering::Relaxed).to_string() }.render()
}

/// Whether this process's cleanup (see [`cleanup`]) is done, and its wake-up.
static CLEANING: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

/// At the process's exit: its cleanup finishes first, up to a few seconds (it takes a few ms a
/// database; nothing to wait for, usually). Cut short, a run of a short suite once left more
/// than it dropped (while a drop slept 100 ms: 10 runs of a 100-test suite through `url()`,
/// 0.2 s each, left 47 test databases more), until the test server's disk was full.
extern "C" fn wait_for_cleanup() {
    let (done, wake) = &CLEANING;
    let guard = done.lock().unwrap_or_else(|e| e.into_inner());
    let _ = wake.wait_timeout_while(guard, Duration::from_secs(3), |done| !*done);
}

/// A pooled clone that a passing test used: its claimer resets it first.
fn is_used(name: &str) -> bool {
    matches!(DbName::parse(name), Some(DbName::Ready { state: Pooled::Used, .. }))
}
