//! The test harness for this app: each test its own database with `db/migrations` applied and
//! `db/seeds` (`*.sql`, then `test/*.sql`) loaded, cloned in milliseconds from a template
//! (dbkit's harness, with [`crate::MIGRATIONS`]; a changed seed makes a new template).
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! use db::testing::TestDb;
//! let db = TestDb::new()?; // a database of this test's own, every migration applied
//! let mut conn = db.conn()?; // or hand `db.url()` to the code under test
//! // ... dropped when the test passes; kept, its URL printed, when it panics
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Result, anyhow};
use diesel::PgConnection;

pub use dbkit::testing::{Harness, Reply, TestRedis, clean_stale, server_url};

/// A database of the test's own: dropped when the test passes, kept (URL printed) when it panics.
#[derive(Debug)]
pub struct TestDb(dbkit::testing::TestDb);

impl TestDb {
    /// A new database with every migration of [`crate::MIGRATIONS`] applied and the seeds loaded.
    pub fn new() -> Result<TestDb> {
        Ok(TestDb(harness()?.test_db()?))
    }

    /// A new database with every migration applied and no seeds (a template of its own).
    pub fn without_seeds() -> Result<TestDb> {
        static HARNESS: OnceLock<Result<&'static Harness, String>> = OnceLock::new();
        let harness = HARNESS
            .get_or_init(|| Harness::for_migrations(&crate::migrations()).map_err(|e| dbkit::error::describe(&e)))
            .as_ref()
            .copied()
            .map_err(|e| anyhow!("{e}"))?;
        Ok(TestDb(harness.test_db()?))
    }

    /// A new database with the migrations of `dir` (a diesel migrations folder) applied.
    pub fn with_migrations_dir(dir: impl AsRef<Path>) -> Result<TestDb> {
        Ok(TestDb(dbkit::testing::TestDb::with_migrations_dir(dir)?))
    }

    /// A new, empty database (no migrations; a copy of `template1` as `CREATE DATABASE` makes).
    pub fn empty() -> Result<TestDb> {
        Ok(TestDb(dbkit::testing::TestDb::empty()?))
    }

    /// A connection inside a transaction that is never committed, on a migrated database this
    /// process shares between such tests: cheaper than [`TestDb::new`] for tests that need no commits.
    ///
    /// Concurrent tests do not see each other's rows, but a row one inserts holds its unique keys
    /// until that test ends: use distinct keys, or [`TestDb::new`].
    pub fn transaction() -> Result<PgConnection> {
        harness()?.transaction()
    }
}

impl std::ops::Deref for TestDb {
    type Target = dbkit::testing::TestDb;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for TestDb {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// The harness for [`crate::MIGRATIONS`] and the test environment's seeds, made once per process.
pub fn harness() -> Result<&'static Harness> {
    static HARNESS: OnceLock<Result<&'static Harness, String>> = OnceLock::new();
    HARNESS
        .get_or_init(|| {
            let seeds_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
            dbkit::seed::Seeds::load(&seeds_dir, dbkit::seed::TEST_ENV)
                .and_then(|seeds| Harness::for_migrations_and_seeds(&crate::migrations(), &seeds))
                .map_err(|e| dbkit::error::describe(&e))
        })
        .as_ref()
        .copied()
        .map_err(|e| anyhow!("{e}"))
}
