//! The tool is never built from what it generates: `cargo xtask` does not depend on the app's
//! `db` crate (schema.rs, models, embedded migrations), so no state of those files stops it
//! from building or running, and the app's own migrations go through the same locking runner.

use std::process::{Command, Stdio};

use db::testing::TestDb;
use diesel::sql_types::Text;
use diesel::{QueryableByName, RunQueryDsl};
use tests::root;

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
fn project() -> tests::Folder {
    tests::Folder::new("architecture", Some(&root().join("db/migrations")))
}

fn schema(project: &tests::Folder) -> String {
    std::fs::read_to_string(project.dir.join("schema.rs")).unwrap_or_default()
}

#[test]
fn run_revert_all_and_run_again_all_work() {
    let project = project();
    project.xtask(&["migration", "run"]).assert_ok();
    assert!(schema(&project).contains("users (id)"), "{}", schema(&project));
    project.xtask(&["migration", "revert", "--all", "--yes"]).assert_ok();
    assert!(!schema(&project).contains("table!"), "an empty database has no tables: {}", schema(&project));
    // The schema file is now empty of the tables the app's models use; the tool does not care.
    let again = project.xtask(&["migration", "run"]);
    again.assert_ok();
    assert!(again.stderr.contains("Running migration"), "{}", again.stderr);
    assert!(schema(&project).contains("users (id)"));
}

#[test]
fn a_garbled_schema_file_stops_nothing_and_schema_generate_repairs_it() {
    let project = project();
    project.xtask(&["migration", "run"]).assert_ok();
    let good = schema(&project);
    for garbage in ["", "diesel::table! { users ( id -> ", "fn main() { this is not rust"] {
        std::fs::write(project.dir.join("schema.rs"), garbage).unwrap();
        project.xtask(&["migration", "show"]).assert_ok();
        project.xtask(&["schema", "generate", "--check"]).assert_fails_with("is stale");
        project.xtask(&["schema", "generate"]).assert_ok();
        assert_eq!(schema(&project), good, "schema generate writes the file anew");
    }
    std::fs::write(project.dir.join("schema.rs"), "garbage").unwrap();
    project.xtask(&["migration", "redo"]).assert_ok();
    assert_eq!(schema(&project), good, "the regeneration after redo repairs it too");
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
                .args([
                    tests::qualified(module_path!(), "app_migrates").as_str(),
                    "--exact",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("APP_MIGRATE_URL", db.direct_url().as_str())
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
