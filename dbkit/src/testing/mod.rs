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
//! How: the migrations run once into a template database named after their hash (reused by
//! later runs until a migration changes), and each test gets `CREATE DATABASE ... TEMPLATE`.
//! Cloning still costs a server-side file copy, so a background thread keeps a few clones
//! ready (`RAILGUN_TEST_POOL`, default 3) and a test claims one by renaming it: one rename wins,
//! across threads and processes alike. The same thread also claims two for this process's next
//! tests and opens their first connection. Databases of crashed runs are dropped by the next
//! run (unused claimed ones go back to the pool).
//!
//! Cheaper still, for tests that commit nothing: [`TestDb::transaction`]. Redis: [`TestRedis`].
//!
//! The server: `TEST_DATABASE_URL`; else `DATABASE_URL` (environment, then `.env`) when it is
//! local and answers, as the `cargo xtask up` server does; else a throwaway container
//! (`railgun-testdb`, tmpfs, fsync off) started once and shared by every test process.
//!
//! Names on the server: `railgun_tpl_<hash>` templates, `railgun_prep_*` clones warming up,
//! `railgun_pool_<hash>_*` ready clones, `railgun_test_<process>_<n>` databases in use (or kept
//! after a failure).

mod cleanup;
mod redis;
mod server;
mod template;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use diesel::{Connection, PgConnection, RunQueryDsl};
use url::Url;

use crate::migration::MigrationFiles;

pub use crate::redis::Reply;
pub use cleanup::clean_stale;
pub use redis::TestRedis;
use server::{FILL_LOCKS, Server, databases, server};

const POOL_PREFIX: &str = "railgun_pool_";
/// A clone being warmed up before it joins the pool (owner in the name, like test databases).
const PREP_PREFIX: &str = "railgun_prep_";
pub(crate) const TEST_PREFIX: &str = "railgun_test_";
/// Clones a process claims from the pool and connects to ahead of its tests (at most the pool size).
const HELD_AHEAD: usize = 2;
/// The comment on a clone held ahead: never handed to a test, so a later run can put it back.
pub(crate) const UNUSED: &str = "railgun test unused ";
/// How long a failed test's database is kept before a later run drops it.
pub(crate) const KEEP_FOR: Duration = Duration::from_secs(24 * 3600);

/// A database of the test's own: dropped when the test passes, kept (URL printed) when it panics.
pub struct TestDb {
    url: Url,
    name: String,
    server: &'static Server,
    keep: bool,
    /// A connection opened ahead of the test, handed out by the first `conn()`.
    first_conn: Mutex<Option<PgConnection>>,
}

impl TestDb {
    /// A new database with the migrations of `dir` (a diesel migrations folder) applied.
    pub fn with_migrations_dir(dir: impl AsRef<Path>) -> Result<TestDb> {
        Harness::for_dir(dir.as_ref())?.test_db()
    }

    /// A new, empty database (no migrations; a copy of `template1` as `CREATE DATABASE` makes).
    pub fn empty() -> Result<TestDb> {
        static EMPTY: OnceLock<Result<&'static Harness, String>> = OnceLock::new();
        EMPTY
            .get_or_init(|| Harness::start(&[]).map_err(|e| crate::error::describe(&e)))
            .as_ref()
            .map_err(|e| anyhow!("{e}"))?
            .test_db()
    }

    fn claimed(server: &'static Server, name: String, first_conn: Option<PgConnection>) -> TestDb {
        TestDb { url: server.url_for(&name), name, server, keep: false, first_conn: Mutex::new(first_conn) }
    }

    /// The URL of this database (with the server's credentials).
    ///
    /// Closes the connection opened ahead if `conn()` has not taken it: a tool given the URL
    /// (`pg_restore --clean`, `DROP DATABASE`) may want the database to itself.
    pub fn url(&self) -> &Url {
        drop(self.first_conn.lock().unwrap_or_else(|e| e.into_inner()).take());
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new connection to this database (the first one was usually opened ahead of the test).
    pub fn conn(&self) -> Result<PgConnection> {
        if let Some(conn) = self.first_conn.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return Ok(conn);
        }
        crate::connect::establish(&self.url).with_context(|| format!("connect to the test database {}", self.name))
    }

    /// Keeps the database after the test whatever its outcome (a test that returns `Err` does not
    /// panic, so its database is dropped unless kept this way).
    pub fn keep(&mut self) {
        self.keep = true;
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = &self.name;
        if self.keep || std::thread::panicking() {
            let stamped = self.server.admin(|c| {
                let comment = format!("railgun test kept {}", server::now());
                Ok(diesel::sql_query(format!("COMMENT ON DATABASE \"{name}\" IS '{comment}'")).execute(c)?)
            });
            eprintln!(
                "test database kept for inspection: {}{}\n  it is dropped by the first test run {} hours from now; sooner with `DROP DATABASE \"{name}\"`",
                crate::url::redact(&self.url),
                if stamped.is_err() { " (not stamped: a later run may drop it at once)" } else { "" },
                KEEP_FOR.as_secs() / 3600
            );
            return;
        }
        // FORCE: a connection the test leaked must not keep its database alive.
        let dropped = self
            .server
            .admin(|c| Ok(diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(c)?));
        if let Err(e) = dropped {
            eprintln!("warning: could not drop the test database {name}: {e:#} (the next run drops it)");
        }
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
    built_in: Option<Duration>,
    pool_size: AtomicUsize,
    wake: (Mutex<u64>, Condvar),
    shared: Mutex<Option<Url>>,
    /// Clones this process claimed ahead of demand, each with a connection open.
    held: Mutex<Vec<(String, PgConnection)>>,
}

impl Harness {
    /// The harness for `migrations`, made once per process and set of migrations.
    pub fn for_migrations(migrations: &[MigrationFiles]) -> Result<&'static Harness> {
        static KNOWN: Mutex<Vec<(u64, &'static Harness)>> = Mutex::new(Vec::new());
        let hash = template::fingerprint(migrations)?;
        let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, harness)) = known.iter().find(|(h, _)| *h == hash) {
            return Ok(harness);
        }
        let harness = Harness::start(migrations)?;
        known.push((hash, harness));
        Ok(harness)
    }

    /// The harness for the migrations in `dir` (a diesel migrations folder).
    pub fn for_dir(dir: &Path) -> Result<&'static Harness> {
        let migrations =
            crate::migration::source::load(dir).with_context(|| format!("no migrations in {}", dir.display()))?;
        Harness::for_migrations(&migrations)
    }

    fn start(migrations: &[MigrationFiles]) -> Result<&'static Harness> {
        let server = server()?;
        let hash = template::fingerprint(migrations)?;
        let (template, built_in) = template::ensure(server, migrations, hash)?;
        let pool_size = pool_size_setting()?;
        let harness: &'static Harness = Box::leak(Box::new(Harness {
            server,
            template,
            pool_prefix: format!("{POOL_PREFIX}{hash:016x}_"),
            hash,
            built_in,
            pool_size: AtomicUsize::new(pool_size),
            wake: (Mutex::new(0), Condvar::new()),
            shared: Mutex::new(None),
            held: Mutex::new(Vec::new()),
        }));
        std::thread::Builder::new()
            .name("test-db-pool".into())
            .spawn(move || harness.refill_forever())
            .context("start the test database pool thread")?;
        Ok(harness)
    }

    /// A database of the test's own: a ready clone when the pool has one, else a clone made now.
    pub fn test_db(&self) -> Result<TestDb> {
        let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).pop();
        self.wake_refill();
        if let Some((name, conn)) = held {
            let in_use = self
                .server
                .admin(|c| Ok(diesel::sql_query(format!("COMMENT ON DATABASE \"{name}\" IS NULL")).execute(c)?));
            if in_use.is_ok() {
                return Ok(TestDb::claimed(self.server, name, Some(conn)));
            }
        }
        let name = next_test_name(self.server);
        if self.claim(&name)? {
            return Ok(TestDb::claimed(self.server, name, None));
        }
        self.clone_template(&name)?;
        Ok(TestDb::claimed(self.server, name, None))
    }

    /// A database cloned from the template now, past the pool (what an empty pool costs).
    pub fn test_db_unpooled(&self) -> Result<TestDb> {
        let name = next_test_name(self.server);
        self.clone_template(&name)?;
        Ok(TestDb::claimed(self.server, name, None))
    }

    /// A connection inside a transaction that is never committed, on a migrated database this
    /// process shares between such tests: cheaper than a [`TestDb`] for tests that need no commits.
    ///
    /// Concurrent tests do not see each other's rows, but a row one inserts holds its unique keys
    /// until that test ends: use distinct keys, or a [`TestDb`].
    pub fn transaction(&self) -> Result<PgConnection> {
        let url = {
            let mut shared = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            match &*shared {
                Some(url) => url.clone(),
                None => {
                    let db = self.test_db()?;
                    drop(db.first_conn.lock().unwrap_or_else(|e| e.into_inner()).take());
                    let url = db.url.clone();
                    // Never dropped by this process (tests share it to its end): the next run drops it.
                    std::mem::forget(db);
                    *shared = Some(url.clone());
                    url
                }
            }
        };
        let mut conn = crate::connect::establish(&url)?;
        conn.begin_test_transaction().context("begin the test transaction")?;
        Ok(conn)
    }

    /// The template database's name (`railgun_tpl_<hash of the migrations>`).
    pub fn template(&self) -> &str {
        &self.template
    }

    /// How long building the template took, when this process built it (`None`: it was reused).
    pub fn built_in(&self) -> Option<Duration> {
        self.built_in
    }

    /// Where the test server came from (`TEST_DATABASE_URL`, `DATABASE_URL`, the test container).
    pub fn origin(&self) -> &str {
        &self.server.origin
    }

    /// How many ready clones the pool keeps (0: none, every test clones on demand).
    pub fn set_pool_size(&self, size: usize) {
        self.pool_size.store(size, Ordering::Relaxed);
        self.wake_refill();
    }

    /// Waits until the pool holds its full number of ready clones, and this process its clones held ahead.
    pub fn wait_for_pool(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let ready = self.server.admin(|c| Ok(databases(c, &self.pool_prefix)?.len()))?;
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).len();
            if ready >= self.pool_size.load(Ordering::Relaxed) && held >= self.held_ahead() {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the test database pool did not fill within {}s ({ready} ready)", timeout.as_secs());
            }
            self.wake_refill();
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Takes a ready clone by renaming it to `name`; false when the pool is empty.
    fn claim(&self, name: &str) -> Result<bool> {
        self.server.admin(|c| {
            let mut ready = databases(c, &self.pool_prefix)?;
            // Our own clones first: other processes are likelier to go for theirs.
            let ours = format!("{}{:08x}_", self.pool_prefix, self.server.owner);
            ready.sort_by_key(|(n, _)| !n.starts_with(&ours));
            for (candidate, _) in ready {
                // Two claimers of one clone: one rename wins, the other finds it gone and moves on.
                if diesel::sql_query(format!("ALTER DATABASE \"{candidate}\" RENAME TO \"{name}\"")).execute(c).is_ok()
                {
                    return Ok(true);
                }
            }
            Ok(false)
        })
    }

    fn clone_template(&self, name: &str) -> Result<()> {
        let strategy = if self.server.file_copy { " STRATEGY FILE_COPY" } else { "" };
        self.server.admin(|c| {
            diesel::sql_query(format!("CREATE DATABASE \"{name}\" TEMPLATE \"{}\"{strategy}", self.template))
                .execute(c)
                .with_context(|| format!("clone the test template into {name}"))?;
            Ok(())
        })
    }

    fn wake_refill(&self) {
        let (generation, wake) = &self.wake;
        *generation.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        wake.notify_one();
    }

    /// The pool thread: keeps `pool_size` clones ready; one process at a time fills a pool.
    fn refill_forever(&self) {
        static CLEANED: std::sync::Once = std::sync::Once::new();
        let mut conn = None;
        let mut next = 0u64;
        let mut complained = false;
        loop {
            let (generation, wake) = &self.wake;
            let seen = *generation.lock().unwrap_or_else(|e| e.into_inner());
            if let Err(e) = self.refill(&mut conn, &mut next) {
                conn = None;
                if !complained {
                    eprintln!("warning: the test database pool cannot refill ({e:#}); tests clone on demand");
                    complained = true;
                }
                std::thread::sleep(Duration::from_secs(2));
            }
            // Once the pool is full, clean up after crashed runs: never in a test's way.
            CLEANED.call_once(|| {
                let _ = clean_stale();
            });
            let guard = generation.lock().unwrap_or_else(|e| e.into_inner());
            if *guard == seen {
                let _ = wake.wait_timeout(guard, Duration::from_millis(500));
            }
        }
    }

    fn held_ahead(&self) -> usize {
        HELD_AHEAD.min(self.pool_size.load(Ordering::Relaxed))
    }

    /// Claims clones for this process's next tests and opens their connections: the test then
    /// waits for neither. Marked unused, so that if this process ends first a later run pools them again.
    fn hold_ahead(&self) -> Result<()> {
        while self.held.lock().unwrap_or_else(|e| e.into_inner()).len() < self.held_ahead() {
            let name = next_test_name(self.server);
            if !self.claim(&name)? {
                return Ok(());
            }
            let conn = self.server.admin(|c| {
                let comment = format!("{UNUSED}{:016x}", self.hash);
                diesel::sql_query(format!("COMMENT ON DATABASE \"{name}\" IS '{comment}'")).execute(c)?;
                crate::connect::establish(&self.server.url_for(&name))
            })?;
            self.held.lock().unwrap_or_else(|e| e.into_inner()).push((name, conn));
        }
        Ok(())
    }

    fn refill(&self, conn: &mut Option<PgConnection>, next: &mut u64) -> Result<()> {
        let size = self.pool_size.load(Ordering::Relaxed);
        if size == 0 {
            return Ok(());
        }
        // Held clones come from the pool: take them, fill the pool, take again, fill again.
        self.hold_ahead()?;
        self.fill_pool(conn, next)?;
        self.hold_ahead()?;
        self.fill_pool(conn, next)
    }

    fn fill_pool(&self, conn: &mut Option<PgConnection>, next: &mut u64) -> Result<()> {
        let conn = match conn {
            Some(conn) => conn,
            None => conn.insert(self.server.connect_admin()?),
        };
        #[derive(diesel::QueryableByName)]
        struct Locked {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            locked: bool,
        }
        let key = self.hash as i32;
        let locked: Locked = diesel::sql_query(format!("SELECT pg_try_advisory_lock({FILL_LOCKS}, {key}) AS locked"))
            .get_result(conn)?;
        if !locked.locked {
            return Ok(());
        }
        let strategy = if self.server.file_copy { " STRATEGY FILE_COPY" } else { "" };
        let filled = (|| {
            while databases(conn, &self.pool_prefix)?.len() < self.pool_size.load(Ordering::Relaxed) {
                let suffix = format!("{:016x}_{:08x}_{next}", self.hash, self.server.owner);
                let (preparing, ready) = (format!("{PREP_PREFIX}{suffix}"), format!("{POOL_PREFIX}{suffix}"));
                *next += 1;
                diesel::sql_query(format!("CREATE DATABASE \"{preparing}\" TEMPLATE \"{}\"{strategy}", self.template))
                    .execute(conn)
                    .with_context(|| format!("clone the test template into {preparing}"))?;
                // A first connection builds the database's relation cache file: the test's
                // connection then starts in a few ms instead of a dozen or more.
                if let Ok(mut warm) = crate::connect::establish(&self.server.url_for(&preparing)) {
                    let _ = diesel::sql_query("SELECT count(*) FROM pg_attribute").execute(&mut warm);
                }
                // Renaming waits for that connection to end; then a claimer may take it.
                diesel::sql_query(format!("ALTER DATABASE \"{preparing}\" RENAME TO \"{ready}\""))
                    .execute(conn)
                    .with_context(|| format!("add {ready} to the pool"))?;
            }
            Ok(())
        })();
        diesel::sql_query(format!("SELECT pg_advisory_unlock({FILL_LOCKS}, {key})")).execute(conn)?;
        filled
    }
}

/// The test server's `postgres` database: where the harness creates and drops databases.
pub fn server_url() -> Result<Url> {
    Ok(server()?.url_for("postgres"))
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
    format!("{TEST_PREFIX}{:08x}_{}", server.owner, N.fetch_add(1, Ordering::Relaxed))
}
