//! The tool is never built from what it generates: `cargo xtask` does not depend on the app's
//! `db` crate (schema.rs, models, embedded migrations), so no state of those files stops it
//! from building or running, and the app's own migrations go through the same locking runner.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use db::testing::TestDb;
use diesel::sql_types::Text;
use diesel::{QueryableByName, RunQueryDsl};
use tests::{Run, root, xtask_bin};

#[test]
fn the_xtask_depends_on_the_library_never_on_the_app() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["tree", "--offline", "--package", "xtask", "--edges", "normal,build", "--prefix", "none"])
        .current_dir(root())
        .output()
        .expect("run cargo tree");
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&out.stderr));
    assert!(tree.lines().any(|l| l.starts_with("dbkit v")), "{tree}");
    assert!(!tree.lines().any(|l| l.starts_with("db v")), "the xtask must not build the app's db crate:\n{tree}");
    assert!(!tree.lines().any(|l| l.starts_with("diesel_migrations v")), "one migration engine:\n{tree}");
}

/// A project folder of the test's own with the repository's migrations and a schema file that
/// `migration run` / `revert` rewrite.
struct Project {
    db: TestDb,
    dir: PathBuf,
}

impl Project {
    fn new() -> Project {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "railgun-architecture-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "[print_schema]\nfile = \"schema.rs\"\n\n[migrations_directory]\ndir = \"{}\"\n",
            root().join("db/migrations").display()
        );
        std::fs::write(dir.join("diesel.toml"), config).unwrap();
        Project { db: TestDb::empty().unwrap(), dir }
    }

    fn xtask(&self, args: &[&str]) -> Run {
        Command::new(xtask_bin())
            .arg("--database-url")
            .arg(self.db.url().as_str())
            .arg("--config-file")
            .arg(self.dir.join("diesel.toml"))
            .args(args)
            .current_dir(&self.dir)
            .env("RAILGUN_ENV_FILE", self.dir.join("no.env"))
            .env_remove("DATABASE_URL")
            .env_remove("APP_ENV")
            .env_remove("DIESEL_CONFIG_FILE")
            .stdin(Stdio::null())
            .output()
            .expect("run xtask")
            .into()
    }

    fn schema(&self) -> String {
        std::fs::read_to_string(self.dir.join("schema.rs")).unwrap_or_default()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn run_revert_all_and_run_again_all_work() {
    let project = Project::new();
    project.xtask(&["migration", "run"]).assert_ok();
    assert!(project.schema().contains("users (id)"), "{}", project.schema());
    project.xtask(&["migration", "revert", "--all", "--yes"]).assert_ok();
    assert!(!project.schema().contains("table!"), "an empty database has no tables: {}", project.schema());
    // The schema file is now empty of the tables the app's models use; the tool does not care.
    let again = project.xtask(&["migration", "run"]);
    again.assert_ok();
    assert!(again.stderr.contains("Running migration"), "{}", again.stderr);
    assert!(project.schema().contains("users (id)"));
}

#[test]
fn a_garbled_schema_file_stops_nothing_and_schema_generate_repairs_it() {
    let project = Project::new();
    project.xtask(&["migration", "run"]).assert_ok();
    let good = project.schema();
    for garbage in ["", "diesel::table! { users ( id -> ", "fn main() { this is not rust"] {
        std::fs::write(project.dir.join("schema.rs"), garbage).unwrap();
        project.xtask(&["migration", "show"]).assert_ok();
        project.xtask(&["schema", "generate", "--check"]).assert_fails_with("is stale");
        project.xtask(&["schema", "generate"]).assert_ok();
        assert_eq!(project.schema(), good, "schema generate writes the file anew");
    }
    std::fs::write(project.dir.join("schema.rs"), "garbage").unwrap();
    project.xtask(&["migration", "redo"]).assert_ok();
    assert_eq!(project.schema(), good, "the regeneration after redo repairs it too");
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = Text)]
    version: String,
}

#[test]
fn two_app_processes_migrating_at_once_apply_each_migration_once() {
    let db = TestDb::empty().unwrap();
    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["app_migrates", "--exact", "--ignored", "--nocapture", "--test-threads=1"])
                .env("APP_MIGRATE_URL", db.url().as_str())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut applied = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let ran: usize = stdout
            .lines()
            // The harness prints `test app_migrates ... ` on the same line, before the child's words.
            .find_map(|l| l.split("applied=").nth(1))
            .unwrap_or_else(|| panic!("the child ran no migration call: {stdout}"))
            .parse()
            .unwrap();
        applied += ran;
    }
    let versions: Vec<Version> =
        diesel::sql_query("SELECT version FROM __diesel_schema_migrations").load(&mut db.conn().unwrap()).unwrap();
    let distinct: std::collections::HashSet<&str> = versions.iter().map(|v| v.version.as_str()).collect();
    assert_eq!(
        (versions.len(), distinct.len()),
        (db::MIGRATIONS.len(), db::MIGRATIONS.len()),
        "each migration recorded once"
    );
    let summed: Vec<Version> =
        diesel::sql_query("SELECT version FROM __railgun_migration_checksums").load(&mut db.conn().unwrap()).unwrap();
    assert_eq!(summed.len(), db::MIGRATIONS.len(), "the app's start-up records each migration's checksum too");
    assert_eq!(applied, db::MIGRATIONS.len(), "between them, the two applied each migration exactly once");
}

/// Child of `two_app_processes_migrating_at_once_apply_each_migration_once`: the app's start-up.
#[test]
#[ignore = "run by two_app_processes_migrating_at_once_apply_each_migration_once"]
fn app_migrates() {
    let url = url::Url::parse(&std::env::var("APP_MIGRATE_URL").unwrap()).unwrap();
    println!("applied={}", db::migrate(&url).unwrap());
}
