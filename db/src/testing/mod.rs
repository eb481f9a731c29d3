//! The test harness: every test gets its own migrated Postgres database.
//!
//! First version: a fresh database per test, migrated from scratch. The template-database
//! fast path replaces the inside; the API stays.

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, anyhow};
use diesel::{Connection, PgConnection, RunQueryDsl};
use diesel_migrations::MigrationHarness;
use url::Url;

/// A database of the test's own, dropped when the test passes.
pub struct TestDb {
    url: Url,
    admin: Url,
    name: String,
}

impl TestDb {
    /// A new database with every migration applied.
    pub fn new() -> Result<TestDb> {
        let db = TestDb::empty()?;
        let mut conn = db.conn()?;
        conn.run_pending_migrations(crate::MIGRATIONS).map_err(|e| anyhow!("migrate {}: {e}", db.name))?;
        Ok(db)
    }

    /// A new, empty database (no migrations).
    pub fn empty() -> Result<TestDb> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let admin = server_url()?;
        let name = format!("test_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut conn = PgConnection::establish(admin.as_str()).context("connect to the test server")?;
        diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut conn)?;
        let mut url = admin.clone();
        url.set_path(&name);
        Ok(TestDb { url, admin, name })
    }

    pub fn url(&self) -> &Url {
        &self.url
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn conn(&self) -> Result<PgConnection> {
        PgConnection::establish(self.url.as_str()).with_context(|| format!("connect to {}", self.name))
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test database kept: {}", crate::url::redact(&self.url));
            return;
        }
        if let Ok(mut conn) = PgConnection::establish(self.admin.as_str()) {
            let _ =
                diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).execute(&mut conn);
        }
    }
}

/// The server tests run on: TEST_DATABASE_URL, else DATABASE_URL (environment, then the repo's .env).
fn server_url() -> Result<Url> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let raw = std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .ok()
        .or_else(|| {
            dotenvy::from_path_iter(root.join(".env"))
                .ok()?
                .flatten()
                .find(|(k, _)| k == "DATABASE_URL")
                .map(|(_, v)| v)
        })
        .context("no test server: run `cargo xtask up`, or set TEST_DATABASE_URL")?;
    let mut url = crate::url::parse_database_url(&raw)?;
    url.set_path("postgres");
    Ok(url)
}
