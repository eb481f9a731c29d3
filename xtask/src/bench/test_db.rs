//! `cargo xtask bench test-db`: a whole test suite's wall time with the test harness, side by
//! side in one run with the same suite creating and migrating a database per test (what
//! `#[sqlx::test]` does) and with no database, under `cargo test` and `cargo nextest run`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use diesel::RunQueryDsl;
use url::Url;
use xshell::{Shell, cmd};

use crate::context::Context;
use dbkit::diesel_config::DieselConfig;

/// Benchmark a test suite's wall time: the harness against create-and-migrate per test
///
/// Generates a crate of N tests outside the repository (each gets a database and commits one
/// row), builds it once, and runs it under `cargo test` (default threads, and 8 threads) and
/// `cargo nextest run` (with the setup script `cargo xtask test --prepare-db`), in these modes:
///   harness  `TestDb` and `db.conn()` (goal: <= 5 ms per test under cargo test, <= 15 ms under nextest)
///   url      `TestDb` and a connection of the test's own from `db.url()`, as an app's pool makes one (same goal)
///   temp     `TestDb`, `db.conn()` and a TEMP table the test creates (same goal)
///   migrate  a database created and every migration run per test: the anchor (what `#[sqlx::test]` does)
///   none     no database: the suite's own cost, subtracted from the others
///   connect  one new connection per test to a shared database: the floor of a harness that connects per test
/// Reports median wall times, the per-test overhead ((suite - no database) / tests x threads)
/// and the ratios; then how long the server takes to clone a database (`STRATEGY WAL_LOG` and
/// `FILE_COPY`), on the test server and on the dev server, which bounds any harness that clones.
///
/// Runs on any migrations folder (the project's, --migration-dir's, or --generate's): the
/// bench copies it to a temporary folder and adds one migration of its own, the table each
/// test inserts its row into, so the suite names no table of the project's.
///
/// Uses the test harness's server (TEST_DATABASE_URL, else the test container, else the
/// `cargo xtask up` Postgres), and that server for the anchor too.
///
/// Example: cargo xtask bench test-db --generate 250
#[derive(clap::Args)]
pub struct TestDb {
    /// Bench N generated migrations (in a temporary folder) instead of the project's
    #[arg(long, value_name = "N")]
    generate: Option<usize>,
    /// Tests in the suite
    #[arg(long, default_value_t = 200)]
    tests: usize,
    /// Runs of each suite and runner (the median is reported)
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Runs of the create-and-migrate suite (slow with many migrations)
    #[arg(long, value_name = "N")]
    anchor_runs: Option<usize>,
}

/// One suite's run: where it is, what it migrates, the servers' URLs.
struct Plan {
    suite: PathBuf,
    dir: PathBuf,
    server: Url,
    floor: Url,
    migrations: Vec<dbkit::migration::MigrationFiles>,
}

/// The suite's ways (see the command's help): the harness's three ways to connect, the anchor,
/// no database, and the floor of any harness that opens a server connection per test (one
/// connection to a shared migrated database, the insert rolled back).
const MODES: [&str; 6] = ["harness", "url", "temp", "migrate", "none", "connect"];

/// The table the bench's own migration adds, and each test's insert into it.
const BENCH_MIGRATION: &str = "99999999999999_railgun_bench_rows";
const INSERT: &str = "INSERT INTO railgun_bench_rows (name) VALUES ('a test row')";

struct Runner {
    label: String,
    threads: usize,
    command: Vec<String>,
    /// The nextest profile of the harness's runs (with the setup script).
    nextest: bool,
}

impl TestDb {
    pub fn run(self, cx: &Context) -> Result<()> {
        if self.tests == 0 || self.runs == 0 || self.anchor_runs == Some(0) {
            bail!("--tests, --runs and --anchor-runs must be at least 1");
        }
        if which::which("cargo-nextest").is_err() {
            bail!(hint!("cargo-nextest is not installed"; "cargo install cargo-nextest --locked"));
        }
        let dir = std::env::temp_dir().join(format!("railgun-bench-test-db-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let made = match self.generate {
            Some(_) if cx.global.migration_dir.is_some() => {
                bail!("--generate makes its own migrations folder: drop --migration-dir, or drop --generate")
            }
            Some(count) => generate(&dir, count),
            None => {
                let from = DieselConfig::load(cx)?.migration_dir(cx);
                eprintln!("migrations: {}", from.display());
                copy_folder(&from, &dir)
            }
        };
        let result = made.and_then(|()| add_bench_table(&dir)).and_then(|()| self.bench(cx, &dir));
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    fn bench(&self, cx: &Context, dir: &Path) -> Result<()> {
        let dir = dir.to_path_buf();
        let migrations = dbkit::migration::source::load(&dir)?;
        // The anchor connects as the harness does (the test container's socket): the same terms.
        let server = session(dbkit::testing::harness_server_url()?);
        let suite = write_suite(cx, self.tests, &dir)?;
        // The floor's database: a clone of the harness's template.
        let floor = format!("railgun_bench_floor_{}", std::process::id());
        let template = dbkit::testing::Harness::for_dir(&dir)?.template().to_string();
        let mut admin = dbkit::connect::establish(&server)?;
        diesel::sql_query(format!("CREATE DATABASE \"{floor}\" TEMPLATE \"{template}\"")).execute(&mut admin)?;
        let mut floor_url = server.clone();
        floor_url.set_path(&floor);
        let plan = Plan { suite, dir, server, floor: floor_url, migrations };
        let result = self.run_suites(cx, &plan);
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{floor}\" WITH (FORCE)")).execute(&mut admin);
        result
    }

    fn run_suites(&self, cx: &Context, plan: &Plan) -> Result<()> {
        let sh = &cx.sh;
        let _in_suite = sh.push_dir(&plan.suite);
        let target = cx.root.join("target");
        let _target = sh.push_env("CARGO_TARGET_DIR", &target);
        eprintln!("building the suite in {} (once)", plan.suite.display());
        cmd!(sh, "cargo test --quiet --no-run --test suite").quiet().run()?;
        cmd!(sh, "cargo nextest list --test suite").quiet().ignore_stdout().run()?;

        let runners = Runner::all();
        let load_before = load();
        eprintln!("load before: {load_before}");
        let times = self.time_suites(sh, plan, &runners)?;
        let load_after = load();
        self.report(plan, &runners, times, [load_before, load_after]);
        clone_times(cx, &plan.server, &plan.migrations)
    }

    /// Each runner's suite in each mode, `--runs` times (the anchor `--anchor-runs`): the wall
    /// times, by runner and mode. A suite's runs one right after the other, as a user re-runs
    /// tests: what one run leaves (the pooler's connections to its slot databases, say) meets the
    /// next.
    fn time_suites(&self, sh: &Shell, plan: &Plan, runners: &[Runner]) -> Result<Vec<Vec<Vec<Duration>>>> {
        let mut times = vec![vec![Vec::new(); MODES.len()]; runners.len()];
        let anchor_runs = self.anchor_runs.unwrap_or(self.runs);
        for (r, runner) in runners.iter().enumerate() {
            for (m, mode) in MODES.iter().enumerate() {
                let runs = if *mode == "migrate" { anchor_runs } else { self.runs };
                for run in 0..runs {
                    let took = runner.time(sh, plan, mode)?;
                    eprintln!("  run {}: {} / {mode}: {}", run + 1, runner.label, secs(took));
                    times[r][m].push(took);
                }
            }
        }
        Ok(times)
    }

    /// The table of medians: per runner, each mode's wall time and per-test overhead over the
    /// suite with no database, and the harness against create-and-migrate.
    fn report(
        &self,
        plan: &Plan,
        runners: &[Runner],
        mut times: Vec<Vec<Vec<Duration>>>,
        [before, after]: [String; 2],
    ) {
        let tests = self.tests as f64;
        println!(
            "suite: {} tests, {} migrations (with the bench's own table); server: {}",
            self.tests,
            plan.migrations.len(),
            dbkit::url::redact(&plan.server)
        );
        println!("load: {before} before, {after} after");
        println!(
            "| runner | no database | harness: conn() | url() + own connection | temp table | create + migrate per test | faster than create + migrate (per test / wall) | floor: a connection per test |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for (r, runner) in runners.iter().enumerate() {
            let [harness, url, temp, migrate, none, connect] = [0, 1, 2, 3, 4, 5].map(|m| median(&mut times[r][m]));
            let per_test =
                |suite: Duration| (suite.as_secs_f64() - none.as_secs_f64()).max(0.0) / tests * runner.threads as f64;
            let shown = |suite: Duration| format!("{} ({} per test)", secs(suite), ms(per_test(suite)));
            println!(
                "| {} | {} | {} | {} | {} | {} | {}x / {}x | {} |",
                runner.label,
                secs(none),
                shown(harness),
                shown(url),
                shown(temp),
                shown(migrate),
                ratio(per_test(migrate) / per_test(harness).max(1e-6)),
                ratio(migrate.as_secs_f64() / harness.as_secs_f64()),
                ms(per_test(connect))
            );
        }
    }
}

impl Runner {
    /// `cargo test` with its default threads and with 8, and `cargo nextest run`.
    fn all() -> [Runner; 3] {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        [
            Runner {
                label: format!("cargo test ({cores} threads)"),
                threads: cores,
                command: strings(&["cargo", "test", "--quiet", "--test", "suite"]),
                nextest: false,
            },
            Runner {
                label: "cargo test --test-threads 8".into(),
                threads: 8,
                command: strings(&["cargo", "test", "--quiet", "--test", "suite", "--", "--test-threads", "8"]),
                nextest: false,
            },
            Runner {
                label: format!("cargo nextest run ({cores} threads)"),
                threads: cores,
                command: strings(&["cargo", "nextest", "run", "--test", "suite", "--no-fail-fast"]),
                nextest: true,
            },
        ]
    }

    /// One run of the suite in `mode`: its wall time; an error with the end of its output when
    /// it failed.
    fn time(&self, sh: &Shell, plan: &Plan, mode: &str) -> Result<Duration> {
        let mut command = self.command.clone();
        if self.nextest && ["harness", "url", "temp"].contains(&mode) {
            command.extend(strings(&["--profile", "harness"]));
        }
        let (program, args) = command.split_first().expect("a command");
        let started = Instant::now();
        let out = cmd!(sh, "{program} {args...}")
            .env("RAILGUN_BENCH_MODE", mode)
            .env("RAILGUN_BENCH_MIGRATIONS", &plan.dir)
            .env("RAILGUN_BENCH_INSERT", INSERT)
            // A secret: through the environment, never the command line.
            .env("RAILGUN_BENCH_SERVER", plan.server.as_str())
            .env("RAILGUN_BENCH_FLOOR", plan.floor.as_str())
            .quiet()
            .ignore_status()
            .output()?;
        let took = started.elapsed();
        if !out.status.success() {
            // cargo test prints a failing test's panic on stdout, nextest on stderr: both ends.
            let tail = |bytes: &[u8]| {
                let text = String::from_utf8_lossy(bytes);
                let lines: Vec<&str> = text.lines().rev().take(30).collect();
                lines.into_iter().rev().collect::<Vec<_>>().join("\n")
            };
            bail!("the {mode} suite failed under {}:\n{}\n{}", self.label, tail(&out.stdout), tail(&out.stderr));
        }
        Ok(took)
    }
}

fn strings(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// How long the server takes to clone a migrated database, by strategy, on the test server and
/// on the dev server: the floor of a clone made while a test waits.
fn clone_times(cx: &Context, test_server: &Url, migrations: &[dbkit::migration::MigrationFiles]) -> Result<()> {
    let mut servers = vec![("test server", test_server.clone())];
    if let Ok(dev) = cx.database_url()
        && (dev.host_str(), dev.port()) != (test_server.host_str(), test_server.port())
    {
        let mut admin = session(dev);
        admin.set_path("postgres");
        servers.push(("dev server", admin));
    }
    println!("| server | CREATE DATABASE ... STRATEGY WAL_LOG | STRATEGY FILE_COPY |");
    println!("|---|---|---|");
    for (label, admin) in servers {
        let mut conn = dbkit::connect::establish(&admin)?;
        let template = format!("railgun_bench_tpl_{}", std::process::id());
        let mut url = admin.clone();
        url.set_path(&template);
        diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{template}\"")).execute(&mut conn)?;
        diesel::sql_query(format!("CREATE DATABASE \"{template}\"")).execute(&mut conn)?;
        let result = (|| -> Result<[Duration; 2]> {
            {
                let mut session = dbkit::migration::Locked::acquire(&url)?;
                dbkit::migration::apply_pending_with(&mut session, migrations, &mut |_| ())?;
            }
            let mut medians = [Duration::ZERO; 2];
            for (i, strategy) in ["WAL_LOG", "FILE_COPY"].iter().enumerate() {
                let mut samples = Vec::new();
                for n in 0..7 {
                    let clone = format!("{template}_{n}");
                    let started = Instant::now();
                    diesel::sql_query(format!(
                        "CREATE DATABASE \"{clone}\" TEMPLATE \"{template}\" STRATEGY {strategy}"
                    ))
                    .execute(&mut conn)?;
                    samples.push(started.elapsed());
                    diesel::sql_query(format!("DROP DATABASE \"{clone}\"")).execute(&mut conn)?;
                }
                medians[i] = median(&mut samples);
            }
            Ok(medians)
        })();
        diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{template}\" WITH (FORCE)")).execute(&mut conn)?;
        let [wal_log, file_copy] = result.with_context(|| format!("clone on the {label}"))?;
        println!("| {label} | {} | {} |", ms_of(wal_log), ms_of(file_copy));
    }
    Ok(())
}

/// The suite crate, in a scratch folder outside the repository; its dependencies are the
/// workspace's (same lock file, same profile, same target folder: built once).
fn write_suite(cx: &Context, tests: usize, migrations: &Path) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join("railgun-bench-suite");
    std::fs::create_dir_all(dir.join("tests")).context("create the suite folder")?;
    std::fs::create_dir_all(dir.join(".config"))?;
    let dbkit = cx.root.join("dbkit");
    let manifest = format!(
        r#"# Generated by `cargo xtask bench test-db`, do not edit by hand.
[package]
name = "railgun-bench-suite"
version = "0.0.0"
edition = "2024"
publish = false

[workspace]

[dev-dependencies]
dbkit = {{ path = "{}", features = ["testing"] }}
diesel = {{ version = "2.3", default-features = false, features = ["postgres", "r2d2", "chrono", "32-column-tables"] }}
url = "2.5"

[profile.dev]
debug = 0

[profile.dev.package."*"]
opt-level = 1
"#,
        dbkit.display()
    );
    write_if_changed(&dir.join("Cargo.toml"), &manifest)?;
    std::fs::copy(cx.root.join("Cargo.lock"), dir.join("Cargo.lock")).context("copy Cargo.lock")?;
    std::fs::create_dir_all(dir.join("src"))?;
    write_if_changed(&dir.join("src/lib.rs"), "")?;
    let exe = std::env::current_exe()?;
    let nextest = format!(
        r#"# Generated by `cargo xtask bench test-db`, do not edit by hand.
experimental = ["setup-scripts"]

[scripts.setup.prepare-test-db]
command = {{ command-line = ["{}", "--migration-dir", "{}", "test", "--prepare-db"] }}

[profile.harness]

[[profile.harness.scripts]]
filter = "all()"
setup = "prepare-test-db"
"#,
        exe.display(),
        migrations.display()
    );
    write_if_changed(&dir.join(".config/nextest.toml"), &nextest)?;
    let mut source = String::from(SUITE);
    for i in 0..tests {
        source.push_str(&format!("\n#[test]\nfn test_{i:04}() {{\n    case();\n}}\n"));
    }
    write_if_changed(&dir.join("tests/suite.rs"), &source)?;
    Ok(dir)
}

/// The suite's shared code: what each test does in each mode.
const SUITE: &str = r#"// Generated by `cargo xtask bench test-db`, do not edit by hand.
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::{Connection, PgConnection, RunQueryDsl};

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key} is not set"))
}

fn harness_db() -> dbkit::testing::TestDb {
    let dir = env("RAILGUN_BENCH_MIGRATIONS");
    dbkit::testing::Harness::for_dir(dir.as_ref()).unwrap().test_db().unwrap()
}

fn case() {
    match env("RAILGUN_BENCH_MODE").as_str() {
        "harness" => {
            let db = harness_db();
            diesel::sql_query(env("RAILGUN_BENCH_INSERT")).execute(&mut db.conn().unwrap()).unwrap();
        }
        // As an app's own pool would: a connection made from the URL.
        "url" => {
            let db = harness_db();
            let mut conn = PgConnection::establish(db.url().as_str()).unwrap();
            diesel::sql_query(env("RAILGUN_BENCH_INSERT")).execute(&mut conn).unwrap();
        }
        "temp" => {
            use diesel::connection::SimpleConnection;
            let db = harness_db();
            let mut conn = db.conn().unwrap();
            conn.batch_execute("CREATE TEMP TABLE scratch (n int); INSERT INTO scratch VALUES (1)").unwrap();
            diesel::sql_query(env("RAILGUN_BENCH_INSERT")).execute(&mut *conn).unwrap();
        }
        // As #[sqlx::test] does: a server connection per process, a database per test, every migration.
        "migrate" => {
            static ADMIN: Mutex<Option<PgConnection>> = Mutex::new(None);
            static N: AtomicUsize = AtomicUsize::new(0);
            let server: url::Url = env("RAILGUN_BENCH_SERVER").parse().unwrap();
            let name = format!("railgun_bench_migrate_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
            let admin = |sql: String| {
                let mut admin = ADMIN.lock().unwrap();
                let conn = admin.get_or_insert_with(|| PgConnection::establish(server.as_str()).unwrap());
                diesel::sql_query(sql).execute(conn).unwrap();
            };
            admin(format!("CREATE DATABASE \"{name}\""));
            let mut url = server.clone();
            url.set_path(&name);
            let migrations = dbkit::migration::source::load(env("RAILGUN_BENCH_MIGRATIONS").as_ref()).unwrap();
            {
                let mut session = dbkit::migration::Locked::acquire(&url).unwrap();
                dbkit::migration::apply_pending_with(&mut session, &migrations, &mut |_| ()).unwrap();
                diesel::sql_query(env("RAILGUN_BENCH_INSERT")).execute(&mut session.conn).unwrap();
            }
            admin(format!("DROP DATABASE \"{name}\" WITH (FORCE)"));
        }
        "connect" => {
            let mut conn = PgConnection::establish(&env("RAILGUN_BENCH_FLOOR")).unwrap();
            conn.begin_test_transaction().unwrap();
            diesel::sql_query(env("RAILGUN_BENCH_INSERT")).execute(&mut conn).unwrap();
        }
        _ => {}
    }
}
"#;

fn write_if_changed(path: &Path, text: &str) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

/// The harness's admin sessions skip waiting for WAL flushes; the anchor gets the same.
fn session(mut url: Url) -> Url {
    url.query_pairs_mut().append_pair("options", "-csynchronous_commit=off");
    url
}

/// The load averages, as `uptime` says them: the figures are noisy while others build.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn ms(seconds: f64) -> String {
    let ms = seconds * 1000.0;
    if ms < 10.0 { format!("{ms:.1} ms") } else { format!("{ms:.0} ms") }
}

fn ms_of(d: Duration) -> String {
    ms(d.as_secs_f64())
}

fn ratio(r: f64) -> String {
    if r >= 10.0 { format!("{r:.0}") } else { format!("{r:.1}") }
}

/// A copy of the migrations folder `from` (every file, folders within folders) in `to`.
fn copy_folder(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("create {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("read {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_folder(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target).with_context(|| format!("copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// The bench's own migration, after every other: the table each test inserts its row into.
fn add_bench_table(dir: &Path) -> Result<()> {
    let folder = dir.join(BENCH_MIGRATION);
    std::fs::create_dir_all(&folder).with_context(|| format!("create {}", folder.display()))?;
    std::fs::write(
        folder.join("up.sql"),
        "CREATE TABLE railgun_bench_rows (id bigserial PRIMARY KEY, name text NOT NULL);\n",
    )?;
    std::fs::write(folder.join("down.sql"), "DROP TABLE railgun_bench_rows;\n")?;
    Ok(())
}

/// `count` migrations shaped like an app's history: tables, then columns, indexes, foreign keys
/// and views added to them. The same content every time, so its template is reused.
fn generate(dir: &Path, count: usize) -> Result<()> {
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
    Ok(())
}
