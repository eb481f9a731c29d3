//! `cargo xtask bench test-db`: how long a test waits for its migrated database, with the
//! harness (`db::testing`) and the sqlx::test way (create a database, run every migration), on
//! the same migrations, server and session settings, in one run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use dbkit::testing::Harness;
use diesel::{PgConnection, RunQueryDsl};
use url::Url;

use crate::context::Context;
use dbkit::diesel_config::DieselConfig;

/// Benchmark test database acquisition against migrate-per-test
///
/// Both sides are timed from nothing to a first query on a database with every migration
/// applied. The harness: a clone from its pool, refilled between acquisitions as it is between
/// tests (the last line's figure); also back to back (the pool drains) and cloned on demand (no
/// pool). The anchor, as `#[sqlx::test]` does it: CREATE DATABASE, connect, run every migration.
///
/// Uses the test harness's server: TEST_DATABASE_URL, else the `cargo xtask up` Postgres,
/// else the shared test container.
///
/// Example: cargo xtask bench test-db --generate 250
#[derive(clap::Args)]
pub struct TestDb {
    /// Bench N generated migrations (in a temporary folder) instead of the project's
    #[arg(long, value_name = "N")]
    generate: Option<usize>,
    /// Acquisitions through the harness's pool
    #[arg(long, default_value_t = 50)]
    iterations: usize,
    /// Databases created and migrated the sqlx::test way (and clones made without the pool)
    #[arg(long, default_value_t = 10)]
    migrate_iterations: usize,
}

impl TestDb {
    pub fn run(self, cx: &Context) -> Result<()> {
        if self.iterations == 0 || self.migrate_iterations == 0 {
            bail!("--iterations and --migrate-iterations must be at least 1");
        }
        let generated = match self.generate {
            Some(_) if cx.global.migration_dir.is_some() => {
                bail!("--generate makes its own migrations folder: drop --migration-dir, or drop --generate")
            }
            Some(count) => Some(generate(count)?),
            None => None,
        };
        let result = self.bench(cx, generated.as_deref());
        if let Some(dir) = &generated {
            let _ = std::fs::remove_dir_all(dir);
        }
        result
    }

    fn bench(&self, cx: &Context, generated: Option<&Path>) -> Result<()> {
        let dir = match generated {
            Some(dir) => dir.to_path_buf(),
            None => DieselConfig::load(cx)?.migration_dir(cx),
        };
        let migrations = dbkit::migration::source::load(&dir)?;
        let count = migrations.len();
        eprintln!("migrations: {count} in {}", dir.display());

        let started = Instant::now();
        let harness = Harness::for_dir(&dir)?;
        let template = match harness.built_in() {
            Some(took) => format!("built in {}", ms(took)),
            None => format!("reused from an earlier run ({} to find)", ms(started.elapsed())),
        };
        eprintln!("server: {}; template {}: {template}", harness.origin(), harness.template());

        eprintln!("harness, from the pool: {} acquisitions", self.iterations);
        let (mut pooled, mut claimed) = (Vec::new(), Vec::new());
        for _ in 0..self.iterations {
            // Between two tests the pool refills; a suite that outruns it sees the on-demand figure below.
            harness.wait_for_pool(Duration::from_secs(120))?;
            let started = Instant::now();
            let db = harness.test_db()?;
            claimed.push(started.elapsed());
            ready(&mut db.conn()?)?;
            pooled.push(started.elapsed());
        }

        eprintln!("harness, back to back: {} acquisitions", self.iterations);
        let mut back_to_back = Vec::new();
        for _ in 0..self.iterations {
            let started = Instant::now();
            let db = harness.test_db()?;
            ready(&mut db.conn()?)?;
            back_to_back.push(started.elapsed());
        }

        eprintln!("harness, cloned on demand: {} acquisitions", self.migrate_iterations);
        let mut on_demand = Vec::new();
        for _ in 0..self.migrate_iterations {
            let started = Instant::now();
            let db = harness.test_db_unpooled()?;
            ready(&mut db.conn()?)?;
            on_demand.push(started.elapsed());
        }

        eprintln!("migrate-per-test: {} databases", self.migrate_iterations);
        let admin = session(dbkit::testing::server_url()?);
        let mut admin_conn = dbkit::connect::establish(&admin)?;
        let mut migrate = Vec::new();
        for i in 0..self.migrate_iterations {
            let name = format!("railgun_bench_migrate_{}_{i}", std::process::id());
            let mut url = admin.clone();
            url.set_path(&name);
            let started = Instant::now();
            diesel::sql_query(format!("CREATE DATABASE \"{name}\"")).execute(&mut admin_conn)?;
            let result = (|| -> Result<()> {
                let mut session = dbkit::migration::Locked::acquire(&url)?;
                dbkit::migration::apply_pending_with(&mut session, &migrations, &mut |_| ())
                    .with_context(|| format!("migrate {name}"))?;
                ready(&mut session.conn)
            })();
            migrate.push(started.elapsed());
            diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut admin_conn)?;
            result?;
        }

        let (p50, p95) = (percentile(&mut pooled, 50), percentile(&mut pooled, 95));
        let migrate_p50 = percentile(&mut migrate, 50);
        println!("migrations: {count}; server: {}", harness.origin());
        println!("template: {template}");
        println!("harness from the pool: p50 {}, p95 {} ({} runs)", ms(p50), ms(p95), pooled.len());
        println!(
            "  of which getting the database (TestDb): p50 {}, p95 {}; the rest is the first connection (usually opened ahead) and query",
            ms(percentile(&mut claimed, 50)),
            ms(percentile(&mut claimed, 95))
        );
        println!(
            "harness back to back (tests faster than the pool refills): p50 {}, p95 {} ({} runs)",
            ms(percentile(&mut back_to_back, 50)),
            ms(percentile(&mut back_to_back, 95)),
            back_to_back.len()
        );
        println!(
            "harness cloned on demand (empty pool): p50 {}, p95 {} ({} runs)",
            ms(percentile(&mut on_demand, 50)),
            ms(percentile(&mut on_demand, 95)),
            on_demand.len()
        );
        println!(
            "migrate-per-test: p50 {}, p95 {} ({} runs)",
            ms(migrate_p50),
            ms(percentile(&mut migrate, 95)),
            migrate.len()
        );
        let ratio = migrate_p50.as_secs_f64() / p50.as_secs_f64();
        println!(
            "test-db: p50 {}, p95 {}; migrate-per-test p50 {}; {}x faster",
            ms(p50),
            ms(p95),
            ms(migrate_p50),
            if ratio >= 10.0 { format!("{ratio:.0}") } else { format!("{ratio:.1}") }
        );
        Ok(())
    }
}

/// The harness's admin sessions skip waiting for WAL flushes; the anchor gets the same.
fn session(mut url: Url) -> Url {
    url.query_pairs_mut().append_pair("options", "-csynchronous_commit=off");
    url
}

/// A first query: the database is usable, not just connected.
fn ready(conn: &mut PgConnection) -> Result<()> {
    diesel::sql_query("SELECT 1").execute(conn).context("query the test database")?;
    Ok(())
}

fn percentile(samples: &mut [Duration], p: usize) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) * p).div_ceil(100)]
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 { format!("{ms:.1} ms") } else { format!("{ms:.0} ms") }
}

/// `count` migrations shaped like an app's history: tables, then columns, indexes, foreign keys
/// and views added to them. The same content every time, so its template is reused.
fn generate(count: usize) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("railgun-bench-test-db-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for i in 0..count {
        let table = i / 5 * 5;
        let (up, down) = match i % 5 {
            0 => (
                format!(
                    "CREATE TABLE t{i} (\n  id bigserial PRIMARY KEY,\n  name text NOT NULL,\n  created_at timestamptz NOT NULL DEFAULT now()\n);\n"
                ),
                format!("DROP TABLE t{i};\n"),
            ),
            1 => (
                format!("ALTER TABLE t{table} ADD COLUMN amount_{i} numeric(12, 2) NOT NULL DEFAULT 0;\n"),
                format!("ALTER TABLE t{table} DROP COLUMN amount_{i};\n"),
            ),
            2 => (
                format!("CREATE INDEX t{table}_name_{i} ON t{table} (name, created_at);\n"),
                format!("DROP INDEX t{table}_name_{i};\n"),
            ),
            3 if table > 0 => (
                format!(
                    "ALTER TABLE t{table} ADD COLUMN parent_{i} bigint REFERENCES t{} (id);\nCREATE INDEX ON t{table} (parent_{i});\n",
                    table - 5
                ),
                format!("ALTER TABLE t{table} DROP COLUMN parent_{i};\n"),
            ),
            3 => (
                format!("ALTER TABLE t{table} ADD COLUMN note_{i} text;\n"),
                format!("ALTER TABLE t{table} DROP COLUMN note_{i};\n"),
            ),
            _ => (
                format!(
                    "CREATE VIEW v{i} AS SELECT id, name, created_at FROM t{table} WHERE created_at > now() - interval '30 days';\n"
                ),
                format!("DROP VIEW v{i};\n"),
            ),
        };
        let folder = dir.join(format!("2024-01-01-{i:06}_step_{i}"));
        std::fs::create_dir_all(&folder).with_context(|| format!("create {}", folder.display()))?;
        std::fs::write(folder.join("up.sql"), up)?;
        std::fs::write(folder.join("down.sql"), down)?;
    }
    Ok(dir)
}
