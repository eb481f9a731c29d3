//! Seeds (`cargo xtask db seed`, `up` on a new database, the test template): in name order,
//! the APP_ENV folder after, judged as a backup is, all in one transaction.
//!
//! The template test runs this binary again as a child (`SEEDS_CHILD`), as the harness's own
//! tests do: a template is observed from a process that starts fresh.

use std::path::{Path, PathBuf};
use std::process::Command;

use db::testing::{Harness, TestDb, server_url};
use diesel::{Connection, PgConnection, RunQueryDsl};
use tests::{Folder, Project, text};

/// A folder with a `log` table in its database and the seed files `seeds` (path, SQL) beside
/// its migrations folder.
fn folder(tag: &str, seeds: &[(&str, &str)]) -> Folder {
    let folder = Folder::new(tag, None);
    diesel::sql_query("CREATE TABLE log (id serial PRIMARY KEY, what text NOT NULL UNIQUE)")
        .execute(&mut folder.db.conn().unwrap())
        .unwrap();
    write_seeds(&folder.dir.join("seeds"), seeds);
    folder
}

fn write_seeds(dir: &Path, seeds: &[(&str, &str)]) {
    for (path, sql) in seeds {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, sql).unwrap();
    }
}

fn logged(folder: &Folder) -> String {
    text(&folder.db, "SELECT coalesce(string_agg(what, ',' ORDER BY id), '') AS text FROM log")
}

#[test]
fn seeds_run_in_name_order_then_the_app_envs_folder() {
    let folder = folder(
        "seeds-order",
        &[
            ("10_c.sql", "INSERT INTO log (what) VALUES ('c');\n"),
            ("02_b.sql", "-- b first: 02 < 10\nINSERT INTO log (what) VALUES ('b1'), ('b2');\n"),
            ("notes.md", "not a seed"),
            ("development/01_dev.sql", "COPY public.log (what) FROM stdin;\ndev\n\\.\n"),
            ("test/01_test.sql", "INSERT INTO log (what) VALUES ('test');\n"),
        ],
    );
    let run = folder.xtask(&["db", "seed"]);
    run.assert_ok();
    assert!(run.stderr.contains("seeded 3 file(s) for APP_ENV=development"), "{}", run.stderr);
    assert_eq!(logged(&folder), "b1,b2,c,dev");

    // Another environment: its folder, not development's (into a database emptied first).
    diesel::sql_query("TRUNCATE log").execute(&mut folder.db.conn().unwrap()).unwrap();
    let run: tests::Run = folder.command(&["db", "seed"]).env("APP_ENV", "test").output().unwrap().into();
    run.assert_ok();
    assert_eq!(logged(&folder), "b1,b2,c,test");
}

#[test]
fn a_seed_with_a_meta_command_is_refused_with_its_file_and_line_and_nothing_runs() {
    let marker = std::env::temp_dir().join(format!("railgun-seed-pwned-{}", std::process::id()));
    let folder = folder(
        "seeds-meta",
        &[
            ("01_ok.sql", "INSERT INTO log (what) VALUES ('ok');\n"),
            ("02_bad.sql", &format!("INSERT INTO log (what) VALUES ('bad');\n\\! touch {}\n", marker.display())),
        ],
    );
    let run = folder.xtask(&["db", "seed"]);
    run.assert_fails_with("02_bad.sql:2: the psql meta-command `\\!`");
    assert!(run.stderr.contains("hint: a seed file is data"), "{}", run.stderr);
    assert!(!marker.exists(), "the meta-command ran");
    assert_eq!(logged(&folder), "", "a seed ran before the refusal");

    // Transaction control and role statements too.
    for (sql, needle) in [
        ("INSERT INTO log (what) VALUES ('x');\nCOMMIT;\n", "02_bad.sql:2:"),
        ("CREATE ROLE boss SUPERUSER;\n", "`CREATE ROLE`"),
    ] {
        write_seeds(&folder.dir.join("seeds"), &[("02_bad.sql", sql)]);
        folder.xtask(&["db", "seed"]).assert_fails_with(needle);
        assert_eq!(logged(&folder), "");
    }
}

#[test]
fn a_failing_seed_rolls_every_seed_back_and_names_its_file_and_line() {
    let folder = folder(
        "seeds-fail",
        &[
            ("01_a.sql", "INSERT INTO log (what) VALUES ('a');\n"),
            ("02_dup.sql", "INSERT INTO log (what) VALUES ('b');\n\nINSERT INTO log (what)\n  VALUES ('a');\n"),
        ],
    );
    let run = folder.xtask(&["db", "seed"]);
    run.assert_fails_with("02_dup.sql:3: ");
    assert!(run.stderr.contains("duplicate key"), "{}", run.stderr);
    assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
    assert_eq!(logged(&folder), "", "the seeds before the failing one stayed");
}

/// A migrations folder and the seeds beside it, in a folder of the test's own.
fn seeded_project(tag: &str, seed: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("railgun-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let migration = dir.join("migrations/2024-01-01-000000_items");
    std::fs::create_dir_all(&migration).unwrap();
    std::fs::write(migration.join("up.sql"), "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);")
        .unwrap();
    std::fs::write(migration.join("down.sql"), "DROP TABLE items;").unwrap();
    write_seeds(&dir.join("seeds"), &[("01_items.sql", seed)]);
    dir
}

#[test]
#[ignore = "a child process of another test: it checks nothing on its own"]
fn child_template() {
    if std::env::var("SEEDS_CHILD").is_err() {
        return;
    }
    let dir = PathBuf::from(std::env::var("SEEDS_DIR").unwrap()).join("migrations");
    let harness = Harness::for_dir(&dir).unwrap();
    let db = harness.test_db().unwrap();
    let rows = |db: &dbkit::testing::TestDb| {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Text)]
            names: String,
        }
        let row: Row = diesel::sql_query("SELECT coalesce(string_agg(name, ',' ORDER BY id), '-') AS names FROM items")
            .get_result(&mut db.conn().unwrap())
            .unwrap();
        row.names
    };
    let unseeded = dbkit::testing::TestDb::with_migrations_dir_without_seeds(&dir).unwrap();
    println!(
        "template={} built={} rows={} unseeded={}",
        harness.template(),
        harness.built_in().is_some(),
        rows(&db),
        rows(&unseeded)
    );
}

fn value_after<'a>(text: &'a str, key: &str) -> &'a str {
    let start = text.find(key).unwrap_or_else(|| panic!("no `{key}` in:\n{text}")) + key.len();
    text[start..].split_whitespace().next().unwrap()
}

fn drop_template(name: &str) {
    let mut admin = PgConnection::establish(server_url().unwrap().as_str()).unwrap();
    let _ = diesel::sql_query(format!("ALTER DATABASE \"{name}\" WITH IS_TEMPLATE false")).execute(&mut admin);
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut admin).unwrap();
}

#[test]
fn the_test_template_holds_the_seeds_and_a_changed_seed_rebuilds_it() {
    // Content no earlier run had: the first run must build.
    let unique = format!("-- run {:?}\n", std::time::SystemTime::now());
    let dir = seeded_project("seeds-template", &format!("{unique}INSERT INTO items (name) VALUES ('one'), ('two');\n"));
    write_seeds(&dir.join("seeds"), &[("test/02_test.sql", "INSERT INTO items (name) VALUES ('test');\n")]);
    write_seeds(&dir.join("seeds"), &[("development/02_dev.sql", "INSERT INTO items (name) VALUES ('dev');\n")]);
    let run = || {
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                tests::qualified(module_path!(), "child_template").as_str(),
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env_remove("NEXTEST_EXECUTION_MODE")
            .env_remove("NEXTEST_TEST_GLOBAL_SLOT")
            .env("SEEDS_CHILD", "1")
            .env("SEEDS_DIR", &dir)
            .env("RAILGUN_TEST_POOL", "0")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        ["template=", "built=", "rows=", "unseeded="].map(|key| value_after(&stdout, key).to_string())
    };
    let [first, built, rows, unseeded] = run();
    assert_eq!((built.as_str(), rows.as_str(), unseeded.as_str()), ("true", "one,two,test", "-"));
    let [second, built, ..] = run();
    assert_eq!((second.as_str(), built.as_str()), (first.as_str(), "false"), "unchanged seeds must reuse it");
    write_seeds(
        &dir.join("seeds"),
        &[("01_items.sql", &format!("{unique}INSERT INTO items (name) VALUES ('uno');\n"))],
    );
    let [third, built, rows, _] = run();
    assert_eq!((built.as_str(), rows.as_str()), ("true", "uno,test"), "a changed seed must build a new template");
    assert_ne!(third, first);
    for template in [&first, &third] {
        drop_template(template);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_apps_test_databases_have_the_seeds_unless_they_opt_out() {
    // db/seeds has no files yet: both hold every migration and the same rows.
    let applied = "SELECT count(*)::text AS text FROM __diesel_schema_migrations";
    let (seeded, unseeded) = (TestDb::new().unwrap(), TestDb::without_seeds().unwrap());
    assert_eq!(text(&seeded, applied), text(&unseeded, applied));
    assert_ne!(seeded.name(), unseeded.name());
}

#[test]
fn up_seeds_the_database_it_creates_and_only_that_one() {
    let p = Project::new("seeds-up");
    let dir = seeded_project("seeds-up", "INSERT INTO items (name) VALUES ('seeded');\n");
    let config = dir.join("diesel.toml");
    std::fs::write(&config, format!("[migrations_directory]\ndir = \"{}\"\n", dir.join("migrations").display()))
        .unwrap();
    let up = || p.run(&["--config-file", config.to_str().unwrap(), "up"]);
    let first = up();
    first.assert_ok();
    assert!(first.stderr.contains("seeded 1 file(s) for APP_ENV=development"), "{}", first.stderr);
    let count = || {
        let url = p.setting("DATABASE_URL").unwrap();
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let count: Count = diesel::sql_query("SELECT count(*) AS n FROM items")
            .get_result(&mut PgConnection::establish(&url).unwrap())
            .unwrap();
        count.n
    };
    assert_eq!(count(), 1);
    // The database exists now: a second `up` does not seed it again.
    let second = up();
    second.assert_ok();
    assert!(!second.stderr.contains("seeded"), "{}", second.stderr);
    assert_eq!(count(), 1);
    p.run(&["down", "--volumes", "--yes"]).assert_ok();
    let _ = std::fs::remove_dir_all(&dir);
}
