//! `cargo xtask migration ...` and the real diesel_cli (`tests::DIESEL_CLI_VERSION`, 2.3.14)
//! take turns on one database: what one applies the other sees applied, what one reverts the
//! other sees pending.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use db::testing::TestDb;
use diesel::sql_types::Text;
use diesel::{QueryableByName, RunQueryDsl};
use tests::{Run, diesel_bin, root, xtask_bin};

/// A database, a folder with a diesel.toml both tools read (schema.rs lands in the folder),
/// and the migrations folder both are pointed at.
struct Shared {
    db: TestDb,
    dir: PathBuf,
    migrations: PathBuf,
}

impl Shared {
    fn new(migrations: Option<PathBuf>) -> Shared {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "railgun-interop-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("diesel.toml"), "[print_schema]\nfile = \"schema.rs\"\n").unwrap();
        let migrations = migrations.unwrap_or_else(|| dir.join("migrations"));
        Shared { db: TestDb::empty().unwrap(), dir, migrations }
    }

    fn ours(&self, args: &[&str]) -> Run {
        Command::new(xtask_bin())
            .arg("--database-url")
            .arg(self.db.direct_url().as_str())
            .arg("--config-file")
            .arg(self.dir.join("diesel.toml"))
            .arg("--migration-dir")
            .arg(&self.migrations)
            .args(args)
            .current_dir(&self.dir)
            .env("RAILGUN_ENV_FILE", self.dir.join("no.env"))
            .env_remove("DATABASE_URL")
            .env_remove("APP_ENV")
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    }

    /// diesel_cli, the URL in its environment (as its docs say), not on the command line.
    fn diesel(&self, args: &[&str]) -> Run {
        Command::new(diesel_bin())
            .args(args)
            .arg("--config-file")
            .arg(self.dir.join("diesel.toml"))
            .arg("--migration-dir")
            .arg(&self.migrations)
            .current_dir(&self.dir)
            .env("DATABASE_URL", self.db.direct_url().as_str())
            .env_remove("DIESEL_CONFIG_FILE")
            .env_remove("MIGRATION_DIRECTORY")
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    }

    /// `[X]`/`[ ]` marks by migration name, as diesel lists them.
    fn diesel_list(&self) -> Vec<(bool, String)> {
        let list = self.diesel(&["migration", "list"]);
        list.assert_ok();
        marks(&list.stdout)
    }

    fn our_list(&self) -> Vec<(bool, String)> {
        let show = self.ours(&["migration", "show"]);
        show.assert_ok();
        marks(&show.stdout)
    }

    fn recorded(&self) -> Vec<String> {
        #[derive(QueryableByName)]
        struct V {
            #[diesel(sql_type = Text)]
            version: String,
        }
        let mut conn = self.db.conn().unwrap();
        diesel::sql_query("SELECT version FROM __diesel_schema_migrations ORDER BY version")
            .load::<V>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|v| v.version)
            .collect()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `(applied, name)` from lines like `  [X] name` or `[ ] name (applied at ...)`.
fn marks(text: &str) -> Vec<(bool, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let applied = match line.get(..4)? {
                "[X] " => true,
                "[ ] " => false,
                _ => return None,
            };
            Some((applied, line[4..].split(' ').next().unwrap().to_string()))
        })
        .collect()
}

fn applied(names: &[&str], count: usize) -> Vec<(bool, String)> {
    names.iter().enumerate().map(|(i, n)| (i < count, n.to_string())).collect()
}

#[test]
fn each_sees_what_the_other_applied_and_reverted() {
    let shared = Shared::new(None);
    let names = ["2024-01-01-000001_create_posts", "2024-01-01-000002_create_tags", "2024-02-01-120000_index_tags"];
    for (name, up, down) in [
        (names[0], "CREATE TABLE posts (id SERIAL PRIMARY KEY, title TEXT NOT NULL);", "DROP TABLE posts;"),
        (names[1], "CREATE TABLE tags (id SERIAL PRIMARY KEY, post_id INT REFERENCES posts (id));", "DROP TABLE tags;"),
        (
            names[2],
            "CREATE INDEX CONCURRENTLY tags_post_idx ON tags (post_id);",
            "DROP INDEX CONCURRENTLY tags_post_idx;",
        ),
    ] {
        let dir = shared.migrations.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("up.sql"), up).unwrap();
        std::fs::write(dir.join("down.sql"), down).unwrap();
    }
    std::fs::write(shared.migrations.join(names[2]).join("metadata.toml"), "run_in_transaction = false\n").unwrap();

    // Ours applies: diesel lists them applied and has nothing pending.
    shared.ours(&["migration", "run"]).assert_ok();
    assert_eq!(shared.diesel_list(), applied(&names, 3));
    assert_eq!(shared.diesel(&["migration", "pending"]).assert_ok().stdout.trim(), "false");
    let diesel_run = shared.diesel(&["migration", "run"]);
    diesel_run.assert_ok();
    assert!(!diesel_run.stdout.contains("Running migration"), "diesel re-ran one of ours:\n{}", diesel_run.stdout);

    // diesel reverts: ours sees it pending and applies it again; diesel sees that.
    shared.diesel(&["migration", "revert"]).assert_ok();
    assert_eq!(shared.our_list(), applied(&names, 2));
    shared.ours(&["migration", "show", "--check"]).assert_fails_with("1 pending migration");
    shared.ours(&["migration", "run"]).assert_ok();
    assert_eq!(shared.diesel_list(), applied(&names, 3));

    // Ours reverts two: diesel sees them pending, applies them; redo on both sides.
    shared.ours(&["migration", "revert", "--count", "2"]).assert_ok();
    assert_eq!(shared.diesel_list(), applied(&names, 1));
    shared.diesel(&["migration", "run"]).assert_ok();
    assert_eq!(shared.our_list(), applied(&names, 3));
    shared.diesel(&["migration", "redo", "-n", "2"]).assert_ok();
    shared.ours(&["migration", "redo", "-n", "2"]).assert_ok();
    assert_eq!(shared.recorded(), ["20240101000001", "20240101000002", "20240201120000"]);

    // All the way down with one, all the way up with the other, and back.
    shared.diesel(&["migration", "revert", "--all"]).assert_ok();
    assert_eq!(shared.our_list(), applied(&names, 0));
    shared.ours(&["migration", "run"]).assert_ok();
    shared.ours(&["migration", "revert", "--all", "--yes"]).assert_ok();
    assert_eq!(shared.diesel_list(), applied(&names, 0));
    shared.diesel(&["migration", "run"]).assert_ok();
    shared.ours(&["migration", "show", "--check"]).assert_ok();
}

#[test]
fn the_projects_migrations_take_turns_too() {
    let shared = Shared::new(Some(root().join("db/migrations")));
    shared.diesel(&["migration", "run"]).assert_ok();
    let all = shared.recorded();
    shared.ours(&["migration", "show", "--check"]).assert_ok();
    shared.ours(&["migration", "revert", "--count", "3"]).assert_ok();
    let list = shared.diesel_list();
    assert_eq!(list.iter().filter(|(applied, _)| !applied).count(), 3, "{list:?}");
    shared.diesel(&["migration", "run"]).assert_ok();
    assert_eq!(shared.recorded(), all);
    // The schema.rs both write after migrating is the same file.
    let ours = std::fs::read_to_string(shared.dir.join("schema.rs")).unwrap();
    shared.ours(&["migration", "redo"]).assert_ok();
    assert_eq!(std::fs::read_to_string(shared.dir.join("schema.rs")).unwrap(), ours);
}

#[test]
fn committed_schema_rs_is_what_diesel_print_schema_says() {
    // The migrated database, printed by the real diesel_cli with the repository's diesel.toml.
    let db = TestDb::new().unwrap();
    let out = Command::new(diesel_bin())
        .args(["print-schema", "--config-file"])
        .arg(root().join("diesel.toml"))
        .current_dir(root())
        .env("DATABASE_URL", db.direct_url().as_str())
        .output()
        .unwrap();
    let run = Run::from(out);
    run.assert_ok();
    let committed = std::fs::read_to_string(root().join("db/src/schema.rs")).unwrap();
    assert!(
        run.stdout == committed,
        "db/src/schema.rs is stale: run `cargo xtask schema generate` (or `diesel print-schema`)\n--- diesel print-schema:\n{}",
        run.stdout
    );
}

#[test]
fn what_diesel_applied_gets_its_checksum_on_our_next_run() {
    let shared = Shared::new(None);
    let names = ["2024-01-01-000001_create_posts", "2024-01-01-000002_create_tags"];
    for (name, up, down) in [
        (names[0], "CREATE TABLE posts (id SERIAL PRIMARY KEY);\n", "DROP TABLE posts;\n"),
        (names[1], "CREATE TABLE tags (id SERIAL PRIMARY KEY);\n", "DROP TABLE tags;\n"),
    ] {
        let dir = shared.migrations.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("up.sql"), up).unwrap();
        std::fs::write(dir.join("down.sql"), down).unwrap();
    }
    shared.diesel(&["migration", "run"]).assert_ok();
    assert_eq!(shared.our_list(), shared.diesel_list());
    shared.ours(&["migration", "show", "--check"]).assert_ok();

    // Our next run records what diesel applied; from then on an edit is noticed.
    let run = shared.ours(&["migration", "run"]);
    run.assert_ok();
    assert!(run.stderr.contains("recorded the checksum of 2 migration(s) applied without one"), "{}", run.stderr);
    let up = shared.migrations.join(names[0]).join("up.sql");
    std::fs::write(&up, "CREATE TABLE posts (id BIGSERIAL PRIMARY KEY);\n").unwrap();
    shared.ours(&["migration", "show", "--check"]).assert_fails_with("changed since they were applied");
    assert_eq!(shared.our_list(), shared.diesel_list(), "the marks still agree");

    // diesel applies the edited file again: a new application, whose checksum our next run records.
    shared.diesel(&["migration", "revert", "--all"]).assert_ok();
    shared.diesel(&["migration", "run"]).assert_ok();
    shared.ours(&["migration", "show", "--check"]).assert_ok();
    assert!(shared.ours(&["migration", "run"]).assert_ok().stderr.contains("recorded the checksum of 2 migration(s)"));
    // And diesel runs what we did not; its bookkeeping is untouched by ours.
    let dir = shared.migrations.join("2024-01-02-000000_create_notes");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("up.sql"), "CREATE TABLE notes (id INT PRIMARY KEY);\n").unwrap();
    std::fs::write(dir.join("down.sql"), "DROP TABLE notes;\n").unwrap();
    assert!(
        shared
            .diesel(&["migration", "run"])
            .assert_ok()
            .stdout
            .contains("Running migration 2024-01-02-000000_create_notes")
    );
    assert_eq!(shared.our_list(), shared.diesel_list());
    assert_eq!(shared.recorded(), ["20240101000001", "20240101000002", "20240102000000"]);
}
