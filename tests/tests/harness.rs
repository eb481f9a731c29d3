//! The test harness (`db::testing`): isolation, template reuse and rebuild, keep-on-failure,
//! stale cleanup, forced drops, transaction mode, Redis databases.
//!
//! Tests that must see a process end (a panic, a second run) run this binary again as a child
//! with `HARNESS_CHILD` set: the `child_*` tests do nothing otherwise.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Barrier, OnceLock};

use db::testing::{Harness, Reply, TestDb, TestRedis, clean_stale, server_url};
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};

/// A migrations folder with one table, the same content every run (so its template is reused).
fn fixture() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("railgun-harness-fixture-{}", std::process::id()));
        write_migration(
            &dir,
            "2024-01-01-000000_items",
            "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);",
        );
        dir
    })
}

fn write_migration(dir: &Path, name: &str, up: &str) {
    let folder = dir.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("up.sql"), up).unwrap();
    std::fs::write(folder.join("down.sql"), "SELECT 1;").unwrap();
}

fn admin() -> PgConnection {
    PgConnection::establish(server_url().unwrap().as_str()).unwrap()
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn names(conn: &mut PgConnection) -> Vec<String> {
    let rows: Vec<Name> = diesel::sql_query("SELECT name FROM items ORDER BY name").load(conn).unwrap();
    rows.into_iter().map(|r| r.name).collect()
}

/// The comment on database `name`, or `None` when the database does not exist.
fn database(name: &str) -> Option<Option<String>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Nullable<Text>)]
        comment: Option<String>,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE datname = $1",
    )
    .bind::<Text, _>(name)
    .load(&mut admin())
    .unwrap();
    rows.into_iter().next().map(|r| r.comment)
}

/// Drops database `name` if it exists, a template too.
fn drop_database(name: &str) {
    let mut admin = admin();
    let _ = diesel::sql_query(format!("ALTER DATABASE \"{name}\" WITH IS_TEMPLATE false")).execute(&mut admin);
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut admin).unwrap();
}

/// The oid of the database `conn` is connected to.
fn current_oid(conn: &mut PgConnection) -> i64 {
    diesel::sql_query("SELECT oid::int8 AS n FROM pg_database WHERE datname = current_database()")
        .get_result::<Count>(conn)
        .unwrap()
        .n
}

/// Runs the `child_*` test `name` of this binary in a process of its own, as `cargo test` runs
/// a test (nextest's NEXTEST_EXECUTION_MODE and slot of this process are not passed on: the
/// child would take this process's slot database; `envs` may set the mode).
fn child(name: &str, envs: &[(&str, &str)]) -> Output {
    child_without(name, envs, &[])
}

/// [`child`] without the variables `removed` of this process's environment.
fn child_without(name: &str, envs: &[(&str, &str)], removed: &[&str]) -> Output {
    let mut command = Command::new(std::env::current_exe().unwrap());
    for key in removed {
        command.env_remove(key);
    }
    command
        .args([
            tests::qualified(module_path!(), name).as_str(),
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_remove("NEXTEST_EXECUTION_MODE")
        .env_remove("NEXTEST_TEST_GLOBAL_SLOT")
        .env("HARNESS_CHILD", name)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

fn is_child(name: &str) -> bool {
    std::env::var("HARNESS_CHILD").as_deref() == Ok(name)
}

fn value_after<'a>(text: &'a str, key: &str) -> &'a str {
    let start = text.find(key).unwrap_or_else(|| panic!("no `{key}` in:\n{text}")) + key.len();
    text[start..].split_whitespace().next().unwrap()
}

#[test]
fn concurrent_tests_do_not_see_each_others_rows() {
    const TESTS: usize = 4;
    let barrier = Barrier::new(TESTS);
    let seen: Vec<(String, Vec<String>)> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..TESTS)
            .map(|i| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let db = TestDb::with_migrations_dir(fixture()).unwrap();
                    let mut conn = db.conn().unwrap();
                    diesel::sql_query(format!("INSERT INTO items (name) VALUES ('test-{i}')"))
                        .execute(&mut conn)
                        .unwrap();
                    // Every test has written before any reads.
                    barrier.wait();
                    (db.name().to_string(), names(&mut conn))
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for (i, (_, rows)) in seen.iter().enumerate() {
        assert_eq!(rows, &[format!("test-{i}")], "test {i} sees rows that are not its own");
    }
    let mut databases: Vec<_> = seen.iter().map(|(name, _)| name.clone()).collect();
    databases.sort();
    databases.dedup();
    assert_eq!(databases.len(), TESTS, "a database was handed out twice: {seen:?}");
    // Gone, or waiting (reset) for this process's next test: never kept as a failed test's is.
    for name in &databases {
        let comment = database(name).flatten().unwrap_or_default();
        assert!(!comment.starts_with("railgun test kept"), "{name} outlived its passing test: {comment}");
    }
}

#[test]
#[ignore = "a child process of another test: it checks nothing on its own"]
fn child_claims() {
    if !is_child("child_claims") {
        return;
    }
    let me = std::process::id().to_string();
    let held: Vec<TestDb> = (0..6).map(|_| TestDb::with_migrations_dir(fixture()).unwrap()).collect();
    for db in &held {
        let mut conn = db.conn().unwrap();
        diesel::sql_query(format!("INSERT INTO items (name) VALUES ('{me}')")).execute(&mut conn).unwrap();
    }
    // Both processes have written (give the other one time to); a shared database shows two rows.
    std::thread::sleep(std::time::Duration::from_millis(500));
    for db in &held {
        assert_eq!(names(&mut db.conn().unwrap()), [me.as_str()], "{} was handed to another process too", db.name());
    }
}

#[test]
fn two_processes_never_get_the_same_clone() {
    let spawn = || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                tests::qualified(module_path!(), "child_claims").as_str(),
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HARNESS_CHILD", "child_claims")
            .env("RAILGUN_TEST_POOL", "4")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    for child in [spawn(), spawn()] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_embedded_migrations_serve_test_databases() {
    let db = TestDb::new().unwrap();
    let mut conn = db.conn().unwrap();
    let count: Count = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = current_database()")
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(count.n, 1);
    let harness = db::testing::harness().unwrap();
    assert!(harness.template().starts_with("railgun_tpl_"), "{}", harness.template());

    let empty = TestDb::empty().unwrap();
    let tables: Count = diesel::sql_query("SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'")
        .get_result(&mut empty.conn().unwrap())
        .unwrap();
    assert_eq!(tables.n, 0, "an empty test database has tables (diesel's bookkeeping?)");
}

#[test]
#[ignore = "a child process of another test: it checks nothing on its own"]
fn child_template() {
    if !is_child("child_template") {
        return;
    }
    let harness = Harness::for_dir(Path::new(&std::env::var("HARNESS_DIR").unwrap())).unwrap();
    println!("template={} built={}", harness.template(), harness.built_in().is_some());
    drop(harness.test_db().unwrap());
}

#[test]
fn the_template_is_reused_by_later_runs_and_rebuilt_when_a_migration_changes() {
    let dir = tempdir("template");
    // Content no earlier run had: the first run must build.
    let unique = format!("-- run {:?}", std::time::SystemTime::now());
    write_migration(&dir, "2024-01-01-000000_a", &format!("CREATE TABLE a (id int);\n{unique}"));
    write_migration(&dir, "2024-01-02-000000_b", "CREATE TABLE b (id int);");
    // No ready clones: nothing outlives the templates this test drops.
    let envs = [("HARNESS_DIR", dir.to_str().unwrap()), ("RAILGUN_TEST_POOL", "0")];
    let run = || {
        let out = child("child_template", &envs);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        (value_after(&stdout, "template=").to_string(), value_after(&stdout, "built=").to_string())
    };
    let (first, built) = run();
    assert_eq!(built, "true", "new migrations must build a template");
    let (second, built) = run();
    assert_eq!((second.as_str(), built.as_str()), (first.as_str(), "false"), "unchanged migrations must reuse it");
    write_migration(&dir, "2024-01-02-000000_b", "CREATE TABLE b (id bigint);");
    let (third, built) = run();
    assert_eq!(built, "true");
    assert_ne!(third, first, "a changed migration must make a new template");
    for template in [&first, &third] {
        assert!(database(template).is_some(), "{template} is gone");
        assert_eq!(database(&template.replace("railgun_tpl_", "railgun_tplbuild_")), None, "a half-built one is left");
        drop_database(template);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_template_whose_migrations_fail_is_never_used() {
    let dir = tempdir("failing");
    let unique = format!("-- {:?}", std::time::SystemTime::now());
    write_migration(&dir, "2024-01-01-000000_a", &format!("CREATE TABLE a (id int); {unique}"));
    write_migration(&dir, "2024-01-02-000000_b", "INSERT INTO a VALUES (1 / 0);");
    for _ in 0..2 {
        let error = dbkit::error::describe(&Harness::for_dir(&dir).err().expect("a failing migration made a template"));
        assert!(error.contains("the migrations fail") && error.contains("division by zero"), "{error}");
        let building = value_after(&error, "the test template (").trim_end_matches(')').to_string();
        assert!(building.starts_with("railgun_tplbuild_"), "{error}");
        // The unfinished one stays under its build name, for its user to look at, though another
        // process's cleanup runs (a crashed build's is dropped); nothing has the template's name.
        clean_stale().unwrap();
        assert!(database(&building).is_some(), "{building} is gone");
        assert_eq!(database(&building.replace("railgun_tplbuild_", "railgun_tpl_")), None);
    }
    let error = dbkit::error::describe(&Harness::for_dir(&dir).err().unwrap());
    drop_database(value_after(&error, "the test template (").trim_end_matches(')'));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Under nextest the setup script reads the migrations folder once for the whole run: its test
/// processes test the migrations as they were when the run started (an edit inside one is seen
/// by the next run), and read the folder again once a migration is added or removed.
#[test]
fn a_nextest_run_reads_the_migrations_folder_once_until_a_migration_is_added() {
    let dir = tempdir("run-reads-once");
    let unique = format!("-- run {:?}", std::time::SystemTime::now());
    write_migration(&dir, "2024-01-01-000000_a", &format!("CREATE TABLE a (id int);\n{unique}"));
    let (harness, _) = Harness::prepare_run(&dir, None).unwrap();
    let prepared = harness.template().to_string();
    let env = harness.nextest_env();
    let run = |with_env: bool| {
        let mut envs: Vec<(&str, &str)> = vec![("HARNESS_DIR", dir.to_str().unwrap()), ("RAILGUN_TEST_POOL", "0")];
        if with_env {
            envs.extend(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        let out = child("child_template", &envs);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        value_after(&stdout, "template=").to_string()
    };
    write_migration(&dir, "2024-01-01-000000_a", &format!("CREATE TABLE a (id bigint);\n{unique}"));
    assert_eq!(run(true), prepared, "a test process of the run read the folder again");
    let edited = run(false);
    assert_ne!(edited, prepared, "outside the run, the edit makes a new template");
    write_migration(&dir, "2024-01-02-000000_b", "CREATE TABLE b (id int);");
    let added = run(true);
    assert!(added != prepared && added != edited, "a migration added during the run was not read: {added}");
    for template in [&prepared, &edited, &added] {
        drop_database(template);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "a child process of another test: it checks nothing on its own"]
fn child_panics() {
    if !is_child("child_panics") {
        return;
    }
    let db = TestDb::with_migrations_dir(fixture()).unwrap();
    println!("database={}", db.name());
    panic!("this test fails on purpose");
}

#[test]
fn a_failing_test_keeps_its_database_and_prints_its_url() {
    let out = child("child_panics", &[]);
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "the child should have failed");
    let name = value_after(&stdout, "database=").to_string();
    assert!(stderr.contains("test database kept for inspection: postgres://"), "{stderr}");
    assert!(stderr.contains(&name), "the printed URL does not name {name}:\n{stderr}");
    let comment = database(&name).expect("the failed test's database was dropped");
    assert!(comment.is_some_and(|c| c.starts_with("railgun test kept ")), "not stamped as kept");
    // Its process is gone, but it is kept: cleanup leaves it alone.
    clean_stale().unwrap();
    assert!(database(&name).is_some(), "cleanup dropped a kept database");
    drop_database(&name);
}

#[test]
fn stale_databases_of_crashed_runs_are_dropped() {
    let live = TestDb::empty().unwrap();
    // An owner id whose process is gone: nobody holds its lock.
    let dead = "railgun_test_00000000_";
    // Of this process alone: a second checkout's run of this test makes the same ones.
    let me = std::process::id();
    let (crashed, kept_recently, kept_long_ago) =
        (format!("{dead}crashed_{me}"), format!("{dead}kept_now_{me}"), format!("{dead}kept_old_{me}"));
    // Slot databases of another nextest run: finished, made ready just now (its first test
    // has not connected yet), made ready long ago (the run is gone).
    let slot = format!("railgun_slot_00000000000000aa_{:012x}_", std::process::id());
    let (finished, ready_now, ready_long_ago) = (format!("{slot}0"), format!("{slot}1"), format!("{slot}2"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let mut admin = admin();
    for (name, comment) in [
        (&crashed, None),
        (&kept_recently, Some(format!("railgun test kept {now}"))),
        (&kept_long_ago, Some(format!("railgun test kept {}", now - 3 * 24 * 3600))),
        (&finished, Some("railgun slot finished 123".to_string())),
        (&ready_now, Some(format!("railgun slot ready {now}"))),
        (&ready_long_ago, Some(format!("railgun slot ready {}", now - 3600))),
    ] {
        make_database(&mut admin, name, "template1", comment);
    }
    clean_stale().unwrap();
    assert_eq!(database(&crashed), None, "a crashed run's database survived");
    assert_eq!(database(&kept_long_ago), None, "an expired kept database survived");
    assert!(database(&kept_recently).is_some(), "a recently kept database was dropped");
    assert!(database(live.name()).is_some(), "a live process's database was dropped");
    assert_eq!(database(&finished), None, "a finished run's slot database survived");
    assert_eq!(database(&ready_long_ago), None, "a slot database made ready an hour ago survived");
    assert!(database(&ready_now).is_some(), "a slot database made ready just now was dropped before its first test");
    drop_database(&kept_recently);
    drop_database(&ready_now);
}

/// Makes database `name` under another name first: other processes' cleanups never see it half-made.
fn make_database(admin: &mut PgConnection, name: &str, template: &str, comment: Option<String>) {
    let making = format!("making_{name}");
    for sql in [
        format!("DROP DATABASE IF EXISTS \"{name}\""),
        format!("DROP DATABASE IF EXISTS \"{making}\""),
        format!("CREATE DATABASE \"{making}\" TEMPLATE \"{template}\""),
        format!("COMMENT ON DATABASE \"{making}\" IS {}", comment.map_or("NULL".into(), |c| format!("'{c}'"))),
        format!("ALTER DATABASE \"{making}\" RENAME TO \"{name}\""),
    ] {
        diesel::sql_query(&sql).execute(admin).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
}

#[test]
fn clones_a_crashed_process_held_unused_go_back_to_the_pool_while_it_has_room() {
    // A template of its own, built by another process with no pool: its pool starts empty.
    let dir = tempdir("held");
    write_migration(
        &dir,
        "2024-01-01-000000_a",
        &format!("CREATE TABLE a (id int); -- {:?}", std::time::SystemTime::now()),
    );
    let out = child("child_template", &[("HARNESS_DIR", dir.to_str().unwrap()), ("RAILGUN_TEST_POOL", "0")]);
    let template = value_after(&String::from_utf8_lossy(&out.stdout), "template=").to_string();
    let hash = template.trim_start_matches("railgun_tpl_").to_string();
    let mut admin = admin();
    // Held ahead by a process that is gone (its lock is free), never handed to a test.
    let held: Vec<String> = (0..4).map(|i| format!("railgun_test_00000000_held{i}_{}", std::process::id())).collect();
    for name in &held {
        make_database(&mut admin, name, &template, Some(format!("railgun test unused {hash}")));
    }
    clean_stale().unwrap();
    let pool: Vec<String> =
        held.iter().map(|name| format!("railgun_pool_{hash}_{}u", &name["railgun_test_".len()..])).collect();
    let returned = pool.iter().filter(|name| database(name) == Some(None)).count();
    assert_eq!(returned, 3, "the default pool of 3 should be refilled from them: {pool:?}");
    let left = held.iter().chain(&pool).filter(|name| database(name).is_some()).count();
    assert_eq!(left, 3, "the fourth should be dropped, being one too many");
    for name in held.iter().chain(&pool) {
        drop_database(name);
    }
    drop_database(&template);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "a child process of another test: it checks nothing on its own"]
fn child_recycle() {
    if !is_child("child_recycle") {
        return;
    }
    let db = TestDb::with_migrations_dir(std::env::var("HARNESS_DIR").unwrap()).unwrap();
    let mut conn = db.conn().unwrap();
    let sql = |conn: &mut PgConnection, sql: &str| diesel::sql_query(sql).execute(conn).unwrap();
    let count = |conn: &mut PgConnection, table: &str| -> i64 {
        diesel::sql_query(format!("SELECT count(*) AS n FROM {table}")).get_result::<Count>(conn).unwrap().n
    };
    println!("oid={}", current_oid(&mut conn));
    match std::env::var("HARNESS_ACTION").unwrap().as_str() {
        "write" => {
            sql(&mut conn, "INSERT INTO items (name) VALUES ('a'), ('b')");
            sql(&mut conn, "INSERT INTO notes (item) SELECT id FROM items");
            // A rolled-back insert moves the sequence too.
            conn.transaction::<(), diesel::result::Error, _>(|c| {
                sql(c, "INSERT INTO items (name) VALUES ('rolled back')");
                Err(diesel::result::Error::RollbackTransaction)
            })
            .unwrap_err();
        }
        "ddl" => {
            sql(&mut conn, "ALTER TABLE items ADD COLUMN made_in_a_test int");
        }
        "seed" => {
            sql(&mut conn, "DELETE FROM seeds");
        }
        // Objects of the session's own: gone with it, not a schema change.
        "temp" => {
            sql(&mut conn, "CREATE TEMP TABLE scratch (n int PRIMARY KEY, note text DEFAULT 'x')");
            sql(&mut conn, "INSERT INTO scratch (n) VALUES (1), (2)");
            sql(&mut conn, "CREATE TEMP VIEW scratch_view AS SELECT n FROM scratch");
        }
        // A temporary object beside a lasting change: the lasting one counts.
        "temp-and-comment" => {
            sql(&mut conn, "CREATE TEMP TABLE scratch (n int)");
            sql(&mut conn, "COMMENT ON TABLE items IS 'made in a test'");
        }
        _ => {}
    }
    let temporary: Count =
        diesel::sql_query("SELECT count(*) AS n FROM pg_class WHERE relpersistence = 't' AND pg_table_is_visible(oid)")
            .get_result(&mut conn)
            .unwrap();
    println!("temporary={}", temporary.n);
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        id: i32,
    }
    let next: Id =
        diesel::sql_query("INSERT INTO items (name) VALUES ('probe') RETURNING id").get_result(&mut conn).unwrap();
    let columns: Count = diesel::sql_query(
        "SELECT count(*) AS n FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'made_in_a_test'",
    )
    .get_result(&mut conn)
    .unwrap();
    println!(
        "items={} notes={} seeds={} next_id={} ddl_column={}",
        count(&mut conn, "items"),
        count(&mut conn, "notes"),
        count(&mut conn, "seeds"),
        next.id,
        columns.n
    );
}

#[test]
fn a_passing_tests_database_is_reset_and_reused_unless_it_ran_ddl_or_changed_seed_rows() {
    let dir = tempdir("recycle");
    write_migration(
        &dir,
        "2024-01-01-000000_tables",
        &format!(
            "CREATE TABLE items (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL);\n\
             CREATE TABLE notes (id serial PRIMARY KEY, item int NOT NULL REFERENCES items (id));\n\
             CREATE TABLE seeds (id serial PRIMARY KEY, name text);\n\
             INSERT INTO seeds (name) VALUES ('from the migration');\n-- {:?}",
            std::time::SystemTime::now()
        ),
    );
    // A process per test, as under nextest: no pool thread, so the pool holds exactly what the
    // tests gave back (it starts empty: the template is new).
    let run_child = |action: &str| -> (i64, String, String) {
        let out = child(
            "child_recycle",
            &[
                ("HARNESS_DIR", dir.to_str().unwrap()),
                ("HARNESS_ACTION", action),
                ("NEXTEST_EXECUTION_MODE", "process-per-test"),
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let oid = value_after(&stdout, "oid=").parse().unwrap();
        let temporary = value_after(&stdout, "temporary=").to_string();
        (oid, stdout[stdout.find("items=").unwrap()..].lines().next().unwrap().to_string(), temporary)
    };
    let run = |action: &str| -> (i64, String) {
        let (oid, state, temporary) = run_child(action);
        if action == "read" {
            assert_eq!(temporary, "0", "a temporary object of the last test survived");
        }
        (oid, state)
    };
    let (written, state) = run("write");
    assert_eq!(state, "items=3 notes=2 seeds=1 next_id=4 ddl_column=0");
    let (reused, state) = run("read");
    assert_eq!(reused, written, "the passing test's database was not reused");
    assert_eq!(state, "items=1 notes=0 seeds=1 next_id=1 ddl_column=0", "not reset to the template's state");

    let (altered, _) = run("ddl");
    assert_eq!(altered, reused, "the reset database was not reused again");
    let (after_ddl, state) = run("read");
    assert_ne!(after_ddl, altered, "a database that ran DDL was handed out again");
    assert_eq!(state, "items=1 notes=0 seeds=1 next_id=1 ddl_column=0");

    let (seed_changed, _) = run("seed");
    let (after_seed, state) = run("read");
    assert_ne!(after_seed, seed_changed, "a database whose seed rows changed was handed out again");
    assert_eq!(state, "items=1 notes=0 seeds=1 next_id=1 ddl_column=0");

    // Temporary objects are the session's, not the schema's: the database is reset, not dropped.
    let (with_temp, _) = run("temp");
    assert_eq!(with_temp, after_seed, "the reset database was not reused again");
    let (after_temp, state) = run("read");
    assert_eq!(after_temp, with_temp, "a database whose test made only temporary objects was dropped");
    assert_eq!(state, "items=1 notes=0 seeds=1 next_id=1 ddl_column=0");
    let (commented, _) = run("temp-and-comment");
    let (after_comment, state) = run("read");
    assert_ne!(after_comment, commented, "a database whose test also changed the schema was handed out again");
    assert_eq!(state, "items=1 notes=0 seeds=1 next_id=1 ddl_column=0");

    // This test's template and pool go with it.
    let hash = {
        let out = child("child_template", &[("HARNESS_DIR", dir.to_str().unwrap()), ("RAILGUN_TEST_POOL", "0")]);
        value_after(&String::from_utf8_lossy(&out.stdout), "template=").trim_start_matches("railgun_tpl_").to_string()
    };
    let mut admin = admin();
    let left: Vec<Name> = diesel::sql_query("SELECT datname AS name FROM pg_database WHERE datname LIKE $1")
        .bind::<Text, _>(format!("railgun_pool_{hash}_%"))
        .load(&mut admin)
        .unwrap();
    for Name { name } in left {
        drop_database(&name);
    }
    let template = format!("railgun_tpl_{hash}");
    drop_database(&template);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "a child process of another test: it checks nothing on its own"]
fn child_reuse_in_process() {
    if !is_child("child_reuse_in_process") {
        return;
    }
    let dir = std::env::var("HARNESS_DIR").unwrap();
    // The pool filled and clones held ahead first, so that the database each test gives back
    // is the last one held, and the next test's.
    Harness::for_dir(Path::new(&dir)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // One test after another in this process, as `cargo test` runs them, with time for the
    // pool thread to reset what the last one gave back.
    for step in ["write", "read", "ddl", "read", "open-transaction", "read", "leak", "read", "temp", "read"] {
        let db = TestDb::with_migrations_dir(&dir).unwrap();
        let mut conn = db.conn().unwrap();
        print_seen(step, &db, &mut conn);
        let sql = |conn: &mut PgConnection, sql: &str| diesel::sql_query(sql).execute(conn).unwrap();
        match step {
            "write" => {
                sql(&mut conn, "INSERT INTO items (name) VALUES ('a'), ('b')");
                sql(&mut conn, "SET statement_timeout = '1234ms'");
                sql(&mut conn, "SELECT pg_advisory_lock(42)");
                sql(&mut conn, "LISTEN railgun_reuse");
            }
            "ddl" => {
                sql(&mut conn, "ALTER TABLE items ADD COLUMN made_in_a_test int");
            }
            "temp" => {
                sql(&mut conn, "CREATE TEMP TABLE scratch (n int PRIMARY KEY)");
                sql(&mut conn, "INSERT INTO scratch VALUES (1)");
            }
            "open-transaction" => {
                conn.begin_test_transaction().unwrap();
                sql(&mut conn, "INSERT INTO items (name) VALUES ('never committed')");
            }
            "leak" => {
                // A connection that outlives its test database's owner.
                let name = db.name().to_string();
                drop(db);
                let alive = diesel::sql_query("SELECT 1").execute(&mut conn).is_ok();
                println!("leaked name={name} still_connected={alive}");
                std::thread::sleep(std::time::Duration::from_millis(1500));
                continue;
            }
            _ => {}
        }
        drop(conn);
        drop(db);
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
}

/// What a test finds of its database and session, printed as `step=... name=... oid=... pid=...
/// items=... timeout=... locks=... channels=... temporary=...`.
fn print_seen(step: &str, db: &TestDb, conn: &mut PgConnection) {
    #[derive(QueryableByName)]
    struct Seen {
        #[diesel(sql_type = BigInt)]
        oid: i64,
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
        #[diesel(sql_type = BigInt)]
        items: i64,
        #[diesel(sql_type = Text)]
        timeout: String,
        #[diesel(sql_type = BigInt)]
        locks: i64,
        #[diesel(sql_type = BigInt)]
        channels: i64,
        #[diesel(sql_type = BigInt)]
        temporary: i64,
    }
    let seen: Seen = diesel::sql_query(
        "SELECT (SELECT oid::int8 FROM pg_database WHERE datname = current_database()) AS oid, \
         pg_backend_pid() AS pid, (SELECT count(*) FROM items) AS items, \
         current_setting('statement_timeout') AS timeout, \
         (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()) AS locks, \
         (SELECT count(*) FROM pg_listening_channels()) AS channels, \
         (SELECT count(*) FROM pg_class WHERE relpersistence = 't' AND pg_table_is_visible(oid)) AS temporary",
    )
    .get_result(conn)
    .unwrap();
    println!(
        "step={step} name={} oid={} pid={} items={} timeout={} locks={} channels={} temporary={}",
        db.name(),
        seen.oid,
        seen.pid,
        seen.items,
        seen.timeout,
        seen.locks,
        seen.channels,
        seen.temporary
    );
}

#[test]
#[ignore = "a child process of another test: it checks nothing on its own"]
fn child_url_in_process() {
    if !is_child("child_url_in_process") {
        return;
    }
    let dir = std::env::var("HARNESS_DIR").unwrap();
    Harness::for_dir(Path::new(&dir)).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    for step in ["write", "read", "write", "read"] {
        let db = TestDb::with_migrations_dir(&dir).unwrap();
        // As an app's own pool connects: from the URL.
        let mut conn = PgConnection::establish(db.url().as_str()).unwrap();
        print_seen(step, &db, &mut conn);
        if step == "write" {
            for sql in [
                "INSERT INTO items (name) VALUES ('a'), ('b')",
                "SET statement_timeout = '1234ms'",
                "SELECT pg_advisory_lock(42)",
                "LISTEN railgun_reuse",
                "CREATE TEMP TABLE scratch (n int PRIMARY KEY)",
            ] {
                diesel::sql_query(sql).execute(&mut conn).unwrap();
            }
        }
        // The app's pool closes with its test; the pooler resets the connection at once (well
        // within this pause) and keeps it.
        drop(conn);
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(db);
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }
}

/// A new migrations folder (`tag`) whose one migration makes `items` (a new template: its
/// text carries the time).
fn items_dir(tag: &str) -> PathBuf {
    let dir = tempdir(tag);
    write_migration(
        &dir,
        "2024-01-01-000000_items",
        &format!(
            "CREATE TABLE items (id serial PRIMARY KEY, name text NOT NULL);\n-- {:?}",
            std::time::SystemTime::now()
        ),
    );
    dir
}

/// Runs the child test `name` (a `cargo test` process of its own) on a new migrations folder
/// (`tag`) whose one migration makes `items`; returns the folder and what the child printed.
fn child_on_items(tag: &str, name: &str) -> (PathBuf, String) {
    let dir = items_dir(tag);
    let out = child(name, &[("HARNESS_DIR", dir.to_str().unwrap())]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    (dir, stdout)
}

/// The `step=...` lines a child printed (libtest's "test child_... ... " may start the first).
fn steps_of(stdout: &str) -> Vec<&str> {
    stdout.lines().filter_map(|l| l.find("step=").map(|at| &l[at..])).collect()
}

#[test]
fn under_cargo_test_a_connection_from_the_url_reuses_a_server_process_reset() {
    let (dir, stdout) = child_on_items("url-reuse", "child_url_in_process");
    let steps = steps_of(&stdout);
    assert_eq!(steps.len(), 4, "{stdout}");
    let field = |line: &str, key: &str| value_after(line, &format!("{key}=")).to_string();
    for (write, read) in [(0, 1), (2, 3)] {
        // The same database and, through the pooler, the same server process: no new one.
        let same = |key: &str| field(steps[write], key) == field(steps[read], key);
        if Harness::for_dir(&dir).unwrap().origin().starts_with("the test container") {
            assert!(same("oid") && same("pid"), "the URL's connection did not reuse a server process:\n{stdout}");
        }
        assert_eq!(
            ["items", "timeout", "locks", "channels", "temporary"].map(|key| field(steps[read], key)),
            ["0", "0", "0", "0", "0"].map(String::from),
            "rows or session state of the last test survived:\n{stdout}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn under_cargo_test_a_passing_tests_database_and_connection_serve_the_next_test_reset() {
    let (dir, stdout) = child_on_items("reuse", "child_reuse_in_process");
    let steps = steps_of(&stdout);
    assert_eq!(steps.len(), 10, "{stdout}");
    let field = |line: &str, key: &str| value_after(line, &format!("{key}=")).to_string();
    let same = |a: usize, b: usize, key: &str| field(steps[a], key) == field(steps[b], key);
    // The written database comes back, on the same server connection, with nothing of the last test.
    assert!(same(0, 1, "oid") && same(0, 1, "pid"), "not reused:\n{stdout}");
    assert_eq!(
        (field(steps[1], "items"), field(steps[1], "timeout"), field(steps[1], "locks"), field(steps[1], "channels")),
        ("0".into(), "0".into(), "0".into(), "0".into()),
        "rows or session state of the last test survived:\n{stdout}"
    );
    // DDL: that database never serves again.
    assert!(!same(2, 3, "oid"), "a database that ran DDL was handed out again:\n{stdout}");
    assert!(database(&field(steps[2], "name")).is_none(), "the DDL test's database was kept:\n{stdout}");
    // A connection left inside a transaction (uncommitted rows) is never handed on: its
    // database is dropped.
    assert!(!same(4, 5, "oid") && !same(4, 5, "pid"), "{stdout}");
    assert_eq!(field(steps[5], "items"), "0", "{stdout}");
    // A connection still out when its test database goes: the database is dropped, the
    // connection ended with it.
    let leaked = stdout.lines().find(|l| l.starts_with("leaked")).unwrap();
    assert_eq!(value_after(leaked, "still_connected="), "false", "{stdout}");
    assert!(database(value_after(leaked, "name=")).is_none(), "{stdout}");
    assert!(!same(6, 7, "oid"), "{stdout}");
    // A temporary table is the session's: the database and the connection serve the next test,
    // without it.
    assert!(same(8, 9, "oid") && same(8, 9, "pid"), "a test's temporary table cost it its database:\n{stdout}");
    assert_eq!(field(steps[9], "temporary"), "0", "the last test's temporary table survived:\n{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "a child process of another test: it checks nothing on its own"]
fn child_slot() {
    if !is_child("child_slot") {
        return;
    }
    let mut db = TestDb::with_migrations_dir(std::env::var("HARNESS_DIR").unwrap()).unwrap();
    let mut conn = db.conn().unwrap();
    let rows: Count = diesel::sql_query("SELECT count(*) AS n FROM items").get_result(&mut conn).unwrap();
    let pid: Pid = diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result(&mut conn).unwrap();
    println!("name={} oid={} rows={} pid={}", db.name(), current_oid(&mut conn), rows.n, pid.pid);
    let action = std::env::var("HARNESS_ACTION").unwrap();
    if action != "stray" {
        diesel::sql_query("INSERT INTO items (name) VALUES ('a'), ('b')").execute(&mut conn).unwrap();
    }
    drop(conn);
    match action.as_str() {
        // As `kill -9` midway: no destructor runs, the slot is never marked finished.
        "killed" => std::process::abort(),
        "failed" => db.keep(),
        // Rows written on a connection of its own only, their statistics not flushed yet (a
        // server process flushes at most once a second; the pooler keeps it, idle, and it may
        // serve the slot's next test).
        "stray" => {
            let mut own = db.connect().unwrap();
            diesel::sql_query("SELECT count(*) AS n FROM items").execute(&mut own).unwrap();
            diesel::sql_query("INSERT INTO items (name) VALUES ('c'), ('d'), ('e')").execute(&mut own).unwrap();
        }
        _ => {}
    }
}

#[test]
fn under_nextest_each_slot_has_a_database_reset_between_tests_and_replaced_after_a_kill_or_a_failure() {
    slot_cycle(false);
}

/// The same through the setup script's PgBouncer (the test container's): the slot's tests also
/// get the server process its last test left.
#[test]
fn under_nextest_the_setup_scripts_pooler_hands_a_slots_next_test_its_last_server_process() {
    slot_cycle(true);
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

/// A nextest run id of our own (12 hex digits, as slot names carry it).
fn run_id() -> String {
    format!(
        "{:012x}",
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
            & 0xffff_ffff_ffff
    )
}

/// A crate whose nextest runs have no setup script still gets a database per test slot, made by
/// the slot's first test and reset for the next, instead of a claim from the pool per test.
#[test]
fn under_nextest_without_the_setup_script_a_slot_still_keeps_its_database_reset() {
    let dir = items_dir("slot-unprepared");
    let run = run_id();
    let parent = std::process::id().to_string();
    let envs = [
        ("NEXTEST_EXECUTION_MODE", "process-per-test"),
        ("NEXTEST_TEST_GLOBAL_SLOT", "1"),
        ("NEXTEST_RUN_ID", run.as_str()),
        ("RAILGUN_TEST_SLOT_PARENT", parent.as_str()),
        ("HARNESS_DIR", dir.to_str().unwrap()),
        ("HARNESS_ACTION", "pass"),
    ];
    let seen: Vec<String> = (0..2)
        .map(|_| {
            let out = child_without("child_slot", &envs, &["RAILGUN_TEST_HANDOFF"]);
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
            let line = stdout.lines().find_map(|l| l.find("name=").map(|at| l[at..].to_string())).unwrap();
            ["name", "oid", "rows"].map(|key| value_after(&line, &format!("{key}=")).to_string()).join(" ")
        })
        .collect();
    let name = seen[0].split(' ').next().unwrap().to_string();
    drop_database(&name);
    drop_database(Harness::for_dir(&dir).unwrap().template());
    let _ = std::fs::remove_dir_all(&dir);
    assert!(name.starts_with("railgun_slot_") && name.ends_with(&format!("_{run}_1")), "{seen:?}");
    assert!(
        seen[0].ends_with(" 0") && seen[0] == seen[1],
        "the slot's second test did not get its database, reset: {seen:?}"
    );
}

/// The environment of slot 1 of 2 in the nextest run `run` on the migrations of `dir`, as
/// [`slot_cycle`] plays it; with the oid of the database the setup script put ready in the slot
/// (when `prepared`), and whether the slot's connections go through the pooler.
fn slot_env(dir: &Path, run: &str, prepared: bool) -> (Vec<(String, String)>, Option<String>, bool) {
    // Play nextest: the setup script's variables, a run id, slot 1 of 2; this process as the parent.
    let mut env: Vec<(String, String)> = match prepared {
        true => Harness::prepare_run(dir, Some((run, 2))).unwrap().0.nextest_env(),
        false => Harness::for_dir(dir).unwrap().nextest_env(),
    };
    // The setup script put the run's slot databases ready, each marked as a finished test's.
    let hash = Harness::for_dir(dir).unwrap().template().trim_start_matches("railgun_tpl_").to_string();
    let ready_oid = {
        let ready = database(&format!("railgun_slot_{hash}_{run}_1"));
        let ready_mark =
            ready.as_ref().map(|comment| comment.as_deref().is_some_and(|c| c.starts_with("railgun slot ready ")));
        assert_eq!(ready_mark, prepared.then_some(true), "slot 1's database before its first test: {ready:?}");
        let oids: Vec<Name> = diesel::sql_query("SELECT oid::text AS name FROM pg_database WHERE datname = $1")
            .bind::<Text, _>(format!("railgun_slot_{hash}_{run}_1"))
            .load(&mut admin())
            .unwrap();
        oids.into_iter().next().map(|n| n.name)
    };
    // The setup script hands everything over as one value.
    assert_eq!(env.len(), 1, "{env:?}");
    let mut handoff: serde_json::Value = serde_json::from_str(&env[0].1).unwrap();
    if !prepared {
        // Straight to Postgres, even where this process got the pooler (under nextest).
        handoff["pooler"] = serde_json::Value::Null;
        env[0].1 = handoff.to_string();
    }
    let pooled = handoff["pooler"].is_string();
    let container = Harness::for_dir(dir).unwrap().origin().starts_with("the test container");
    assert_eq!(pooled, prepared && container, "the pooler runs for a prepared run on the test container only");
    env.extend([
        ("NEXTEST_EXECUTION_MODE".into(), "process-per-test".into()),
        ("NEXTEST_TEST_GLOBAL_SLOT".into(), "1".into()),
        ("NEXTEST_RUN_ID".into(), run.to_string()),
        ("RAILGUN_TEST_SLOT_PARENT".into(), std::process::id().to_string()),
        ("HARNESS_DIR".into(), dir.to_str().unwrap().into()),
    ]);
    (env, ready_oid, pooled)
}

/// A slot's tests in turn (pass, killed, failed, pass); `prepared`: the variables come from
/// the setup script's preparation (with the pooler), else from the harness of this process.
fn slot_cycle(prepared: bool) {
    let dir = items_dir(if prepared { "slot-pooled" } else { "slot" });
    let run = run_id();
    let (env, ready_oid, pooled) = slot_env(&dir, &run, prepared);
    let run_child = |action: &str| -> (String, String, String, bool, String) {
        let mut envs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        envs.push(("HARNESS_ACTION", action));
        let out = child("child_slot", &envs);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = stdout.lines().find_map(|l| l.find("name=").map(|at| l[at..].to_string()));
        let line = line
            .unwrap_or_else(|| panic!("the {action} test printed nothing:\n{}", String::from_utf8_lossy(&out.stderr)));
        let field = |key: &str| value_after(&line, &format!("{key}=")).to_string();
        (field("name"), field("oid"), field("rows"), out.status.success(), field("pid"))
    };
    let (slot_name, first, rows, ok, first_pid) = run_child("pass");
    assert!(ok && slot_name.starts_with("railgun_slot_") && slot_name.ends_with(&format!("_{run}_1")), "{slot_name}");
    assert_eq!(rows, "0");
    if prepared {
        assert_eq!(
            ready_oid.as_deref(),
            Some(first.as_str()),
            "the slot's first test did not get the prepared database"
        );
    }
    if pooled {
        // A passing test's server process serves the slot's next test, reset and fresh.
        let (name, again, rows, ok, pid) = run_child("pass");
        assert_eq!((name.as_str(), again.as_str(), rows.as_str(), ok), (slot_name.as_str(), first.as_str(), "0", true));
        assert_eq!(pid, first_pid, "the pooler did not keep the slot's server process");
    }
    // A test that wrote on a connection of its own: the slot's next test still finds it empty.
    let (name, again, rows, ok, _) = run_child("stray");
    assert_eq!((name.as_str(), again.as_str(), rows.as_str(), ok), (slot_name.as_str(), first.as_str(), "0", true));
    let (name, again, rows, _, _) = run_child("killed");
    assert_eq!(
        (name.as_str(), again.as_str(), rows.as_str()),
        (slot_name.as_str(), first.as_str(), "0"),
        "not reused, or not reset"
    );
    // The killed test never marked its end: its rows may not show in the statistics yet, so the
    // slot's database is replaced rather than reset.
    let (name, after_kill, rows, ok, _) = run_child("failed");
    assert!(ok && name == slot_name && after_kill != again && rows == "0", "{name} {after_kill} {rows}");
    // The failed test's database left the slot and is kept; the slot gets another one.
    let (_, after_failure, rows, ok, _) = run_child("pass");
    assert!(ok && after_failure != after_kill && rows == "0");
    let mut admin = admin();
    let kept: Vec<Name> = diesel::sql_query(
        "SELECT datname AS name FROM pg_database WHERE oid = $1::oid AND shobj_description(oid, 'pg_database') LIKE 'railgun test kept%'",
    )
    .bind::<Text, _>(&after_kill)
    .load(&mut admin)
    .unwrap();
    assert_eq!(kept.len(), 1, "the failed test's database was not kept");
    drop_database(&kept[0].name);
    drop_database(&slot_name);
    let template = Harness::for_dir(&dir).unwrap().template().to_string();
    drop_database(&template);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
#[ignore = "a child process of another test: it checks nothing on its own"]
fn child_waits_for_a_connection() {
    if !is_child("child_waits_for_a_connection") {
        return;
    }
    let db = TestDb::with_migrations_dir(std::env::var("HARNESS_DIR").unwrap()).unwrap();
    // The role may hold 3 connections: the harness's own session and these two.
    let (first, second) = (db.conn().unwrap(), db.conn().unwrap());
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(5));
        drop(first);
    });
    let mut third = db.conn().expect("a test out of connection slots must wait, not fail");
    diesel::sql_query("SELECT 1").execute(&mut third).unwrap();
    release.join().unwrap();
    drop(second);
    println!("connected");
}

#[test]
fn a_test_out_of_connection_slots_waits_for_one_and_says_so() {
    let role = format!("railgun_limited_{}", std::process::id());
    let mut admin = admin();
    diesel::sql_query(format!("DROP ROLE IF EXISTS {role}")).execute(&mut admin).unwrap();
    diesel::sql_query(format!("CREATE ROLE {role} LOGIN CREATEDB CONNECTION LIMIT 3 PASSWORD 'limited'"))
        .execute(&mut admin)
        .unwrap();
    let mut url = server_url().unwrap();
    url.set_username(&role).unwrap();
    url.set_password(Some("limited")).unwrap();
    // A template of the role's own (it must own what it stamps).
    let dir = tempdir("limited");
    write_migration(&dir, "2024-01-01-000000_a", &format!("CREATE TABLE a (id int); -- {role}"));
    let out = child(
        "child_waits_for_a_connection",
        &[
            ("HARNESS_DIR", dir.to_str().unwrap()),
            ("TEST_DATABASE_URL", url.as_str()),
            // No pool thread: its connections would count too.
            ("NEXTEST_EXECUTION_MODE", "process-per-test"),
        ],
    );
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let owned: Vec<Name> = diesel::sql_query(
        "SELECT datname AS name FROM pg_database WHERE datdba = (SELECT oid FROM pg_roles WHERE rolname = $1)",
    )
    .bind::<Text, _>(&role)
    .load(&mut admin)
    .unwrap();
    for Name { name } in owned {
        drop_database(&name);
    }
    diesel::sql_query(format!("DROP ROLE {role}")).execute(&mut admin).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success() && stdout.contains("connected"),
        "the child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(stderr.contains("waiting for a free connection slot on the test server"), "no word of the wait:\n{stderr}");
    assert!(!stderr.contains("password"), "the password was printed:\n{stderr}");
}

#[test]
fn a_leaked_connection_does_not_block_the_drop() {
    let db = TestDb::with_migrations_dir(fixture()).unwrap();
    let name = db.name().to_string();
    assert_eq!(database(&name), Some(None), "a database handed to a test is still marked as held ahead");
    let mut leaked = db.conn().unwrap();
    diesel::sql_query("SELECT 1").execute(&mut leaked).unwrap();
    drop(db);
    assert_eq!(database(&name), None, "the database survived its test");
    assert!(diesel::sql_query("SELECT 1").execute(&mut leaked).is_err(), "the leaked connection still works");
}

#[test]
fn transaction_mode_rolls_back_and_isolates() {
    let harness = Harness::for_dir(fixture()).unwrap();
    let mut first = harness.transaction().unwrap();
    diesel::sql_query("INSERT INTO items (name) VALUES ('uncommitted')").execute(&mut first).unwrap();
    assert_eq!(names(&mut first), ["uncommitted"]);
    let mut second = harness.transaction().unwrap();
    assert!(names(&mut second).is_empty(), "a concurrent test sees another's rows");
    drop(first);
    assert!(names(&mut harness.transaction().unwrap()).is_empty(), "the rows outlived their test");

    // The embedded migrations' variant, on whatever schema they make.
    let mut conn = TestDb::transaction().unwrap();
    diesel::sql_query("CREATE TABLE made_in_a_test (id int)").execute(&mut conn).unwrap();
    drop(conn);
    let count: Count = diesel::sql_query("SELECT count(*) AS n FROM pg_tables WHERE tablename = 'made_in_a_test'")
        .get_result(&mut TestDb::transaction().unwrap())
        .unwrap();
    assert_eq!(count.n, 0, "DDL of a test transaction was committed");
}

#[test]
fn redis_databases_are_isolated_and_flushed_after() {
    let (one, two) = (TestRedis::new().unwrap(), TestRedis::new().unwrap());
    assert_ne!(one.db(), two.db());
    assert!(one.url().ends_with(&format!("/{}", one.db())), "{}", one.url());
    one.command(&["SET", "greeting", "hello"]).unwrap();
    assert_eq!(one.command(&["GET", "greeting"]).unwrap(), Reply::Bulk(Some("hello".into())));
    assert_eq!(two.command(&["GET", "greeting"]).unwrap(), Reply::Bulk(None), "the other test sees the key");
    let (url, db) = (one.url().to_string(), one.db());
    drop(one);
    assert_eq!(raw_dbsize(&url, db), 0, "the test's keys outlived it");
}

/// DBSIZE of database `db`, asked without the harness.
fn raw_dbsize(url: &str, db: u8) -> i64 {
    let addr = url.trim_start_matches("redis://").split('/').next().unwrap();
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.write_all(format!("SELECT {db}\r\nDBSIZE\r\n").as_bytes()).unwrap();
    let mut lines = BufReader::new(stream).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "+OK");
    lines.next().unwrap().unwrap().trim_start_matches(':').parse().unwrap()
}

#[test]
#[ignore = "a child process of another test: it checks nothing on its own"]
fn child_container() {
    if !is_child("child_container") {
        return;
    }
    let db = TestDb::new().unwrap();
    diesel::sql_query("SELECT 1").execute(&mut db.conn().unwrap()).unwrap();
    let redis = TestRedis::new().unwrap();
    redis.command(&["SET", "k", "v"]).unwrap();
    println!("origin={}", db::testing::harness().unwrap().origin().replace(' ', "_"));
    // The server itself (url() may name the pooler in front of it).
    let server = db.direct_url();
    println!("server={}:{}", server.host_str().unwrap(), server.port().unwrap());
}

/// Removes a test container project's containers and files, after a panic too.
struct ContainerProject(String);

impl Drop for ContainerProject {
    fn drop(&mut self) {
        for service in ["postgres", "redis"] {
            let _ = Command::new("docker").args(["rm", "-f", "-v", &format!("{}-{service}", self.0)]).output();
        }
        // A pooler, had a test asked for one (its name carries a hash of its settings).
        let label = format!("label=org.railgun.project={}", self.0);
        if let Ok(out) = Command::new("docker").args(["ps", "-aq", "--filter", &label]).output() {
            for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("docker").args(["rm", "-f", "-v", id]).output();
            }
        }
        let _ = std::fs::remove_file(std::env::temp_dir().join(format!("{}.endpoints", self.0)));
    }
}

#[test]
fn without_a_configured_server_one_test_container_serves_every_process() {
    let project = ContainerProject(format!("railgun-testdb-test-{}", std::process::id()));
    let spawn = || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                tests::qualified(module_path!(), "child_container").as_str(),
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HARNESS_CHILD", "child_container")
            .env("RAILGUN_TEST_CONTAINER", &project.0)
            .env("RAILGUN_ENV_FILE", "/nonexistent/.env")
            .env_remove("DATABASE_URL")
            .env_remove("TEST_DATABASE_URL")
            .env_remove("REDIS_URL")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // Two test processes at once: one starts the container, the other waits for it and reuses it.
    let (first, second) = (spawn(), spawn());
    let servers: Vec<String> = [first, second]
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
            assert_eq!(value_after(&stdout, "origin="), format!("the_test_container_{}-postgres", project.0));
            value_after(&stdout, "server=").to_string()
        })
        .collect();
    assert_eq!(servers[0], servers[1], "the two processes used different containers");
    let running = Command::new("docker")
        .args(["ps", "--filter", &format!("label=org.railgun.project={}", project.0), "--format", "{{.Names}}"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&running.stdout).lines().count(), 2, "expected one Postgres and one Redis");
}

#[test]
#[ignore = "a child process of another test: it checks nothing on its own"]
fn child_short_run() {
    if !is_child("child_short_run") {
        return;
    }
    // A short suite, two tests at a time: the last ones' databases are still being reset, and
    // clones are held ahead, when the process ends.
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for i in 0..25 {
                    let db = TestDb::with_migrations_dir(fixture()).unwrap();
                    let mut conn = PgConnection::establish(db.url().as_str()).unwrap();
                    diesel::sql_query(format!("INSERT INTO items (name) VALUES ('{i}')")).execute(&mut conn).unwrap();
                    println!("database={}", db.name());
                }
            });
        }
    });
}

/// Each run of a short suite drops what the runs before it left (their test databases; clones
/// they held go back to the pool): nothing piles up on the test server however often a
/// contributor runs `cargo test`. Cut short by the process's end, each run's cleanup once left
/// more than it dropped (10 runs of a 100-test suite: 46 databases more) until the test
/// server's disk was full.
#[test]
fn short_runs_one_after_another_leave_nothing_behind_them() {
    let owners: Vec<String> = (0..4)
        .map(|_| {
            let out = child("child_short_run", &[]);
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
            // railgun_test_<owner>_<n>
            let name = value_after(&stdout, "database=");
            name.trim_start_matches("railgun_test_").split('_').next().unwrap().to_string()
        })
        .collect();
    let left: Vec<Name> =
        diesel::sql_query("SELECT datname::text AS name FROM pg_database WHERE datname LIKE 'railgun\\_test\\_%'")
            .load(&mut admin())
            .unwrap();
    // The last run's are dropped by the next run: any of this suite's processes.
    let left: Vec<String> = left
        .into_iter()
        .map(|n| n.name)
        .filter(|n| owners[..owners.len() - 1].iter().any(|o| n.starts_with(&format!("railgun_test_{o}_"))))
        .collect();
    assert!(left.is_empty(), "test databases of finished runs are still there: {left:?}");
}

/// A server that crashes (a server process killed, a full disk failing a WAL write) starts its
/// statistics again from zero: a used database then looks untouched. After such a crash, a
/// pooled clone a passing test used and a nextest slot's database are never handed to the next
/// test with the last one's rows (from the statistics, the reset would find nothing to delete).
#[test]
fn after_the_server_lost_its_statistics_a_used_database_is_never_handed_out_with_its_rows() {
    let project = ContainerProject(format!("railgun-testdb-crash-{}", std::process::id()));
    let dir = items_dir("crash");
    let run = run_id();
    let parent = std::process::id().to_string();
    let base = [
        ("RAILGUN_TEST_CONTAINER", project.0.as_str()),
        ("RAILGUN_ENV_FILE", "/nonexistent/.env"),
        ("NEXTEST_EXECUTION_MODE", "process-per-test"),
        ("HARNESS_DIR", dir.to_str().unwrap()),
        ("HARNESS_ACTION", "pass"),
    ];
    let slot = [
        ("NEXTEST_TEST_GLOBAL_SLOT", "1"),
        ("NEXTEST_RUN_ID", run.as_str()),
        ("RAILGUN_TEST_SLOT_PARENT", parent.as_str()),
    ];
    // A test in a nextest slot, or (`slot` empty) one of a process per test that recycles its
    // database through the pool: its database's name and the rows it found.
    let test = |slot: &[(&str, &str)]| -> (String, String) {
        let envs: Vec<(&str, &str)> = base.iter().chain(slot).copied().collect();
        let removed = ["DATABASE_URL", "TEST_DATABASE_URL", "REDIS_URL", "RAILGUN_TEST_HANDOFF", "NEXTEST_RUN_ID"];
        let out = child_without("child_slot", &envs, &removed);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "child failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        let line = stdout.lines().find_map(|l| l.find("name=").map(|at| l[at..].to_string())).unwrap();
        (value_after(&line, "name=").to_string(), value_after(&line, "rows=").to_string())
    };
    // Each writes two rows and passes: the slot's database is marked finished, the other
    // goes back to the pool, used.
    let (slot_name, rows) = test(&slot);
    assert_eq!(rows, "0");
    let (_, rows) = test(&[]);
    assert_eq!(rows, "0");
    let endpoints = std::fs::read_to_string(std::env::temp_dir().join(format!("{}.endpoints", project.0))).unwrap();
    let url = endpoints.lines().next().unwrap().to_string();
    let mut server = PgConnection::establish(&url).unwrap();
    // The harness commits without waiting for the WAL flush: a crash may undo its last changes.
    diesel::sql_query("CHECKPOINT").execute(&mut server).unwrap();
    let list = |server: &mut PgConnection| -> Vec<String> {
        let rows: Vec<Name> = diesel::sql_query(
            "SELECT datname || ' ' || coalesce(shobj_description(oid, 'pg_database'), '') AS name FROM pg_database \
             WHERE datname LIKE 'railgun_pool_%' OR datname LIKE 'railgun_slot_%' ORDER BY datname",
        )
        .load(server)
        .unwrap();
        rows.into_iter().map(|r| r.name).collect()
    };
    let before = list(&mut server);
    assert!(
        before.iter().any(|d| d.starts_with("railgun_pool_") && d.contains("_used"))
            && before.iter().any(|d| d.starts_with(&format!("{slot_name} railgun slot finished"))),
        "expected a used pooled clone and a finished slot database: {before:?}"
    );
    // The crash: a server process killed (by the server's own user, as superuser may).
    let epoch = |server: &mut PgConnection| -> String {
        diesel::sql_query("SELECT pg_stat_get_bgwriter_stat_reset_time()::text AS name")
            .get_result::<Name>(server)
            .unwrap()
            .name
    };
    let epoch_before = epoch(&mut server);
    let mut victim = PgConnection::establish(&url).unwrap();
    let pid: Pid = diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result(&mut victim).unwrap();
    let _ = diesel::sql_query(format!("COPY (SELECT 1) TO PROGRAM 'kill -9 {}'", pid.pid)).execute(&mut server);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut server = loop {
        // Until the server restarted: the connections of before are ended by the crash.
        std::thread::sleep(std::time::Duration::from_millis(200));
        if let Ok(mut conn) = PgConnection::establish(&url)
            && diesel::sql_query("SELECT 1").execute(&mut conn).is_ok()
        {
            break conn;
        }
        assert!(std::time::Instant::now() < deadline, "the test server did not come back after the crash");
    };
    assert_ne!(epoch(&mut server), epoch_before, "the server kept its statistics: the crash did not happen");
    assert_eq!(list(&mut server), before, "the crash lost databases");
    // The next tests find no row of the last ones.
    let (again, rows) = test(&slot);
    assert_eq!(
        (again.as_str(), rows.as_str()),
        (slot_name.as_str(), "0"),
        "the slot's database kept its last test's rows"
    );
    let (_, rows) = test(&[]);
    assert_eq!(rows, "0", "a pooled clone kept its last test's rows: {before:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempdir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("railgun-harness-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
