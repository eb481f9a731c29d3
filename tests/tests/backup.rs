//! `cargo xtask db backup / verify / restore / copy`, driven through the real binary against
//! real Postgres, pg_dump and psql: every test has its own databases and its own folder.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use db::testing::TestDb;
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use tests::{Run, xtask_bin};
use url::Url;

const DATA: &str = r#"
CREATE TABLE things (
    id bigserial PRIMARY KEY, name text NOT NULL, body bytea, meta jsonb, at timestamptz DEFAULT now(),
    price numeric(12, 2), tags text[], ratio double precision
);
CREATE INDEX things_name ON things (name);
CREATE VIEW thing_names AS SELECT name FROM things;
INSERT INTO things (name, body, meta, price, tags, ratio)
SELECT 'thing ' || g || E'\ttab\nnewline \\ ünïcode', decode(md5(g::text), 'hex'), jsonb_build_object('g', g),
       g * 1.25, ARRAY['a', g::text], g / 3.0
FROM generate_series(1, 3000) g;
INSERT INTO things (name) VALUES ('nulls');
"#;

/// A folder of the test's own, removed when the test passes.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("railgun-backup-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Dir(dir)
    }
    fn files(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.0.join(sub))
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn command(dir: &Path, url: &Url, args: &[&str]) -> Command {
    let mut cmd = Command::new(xtask_bin());
    cmd.args(args)
        .arg("--database-url")
        .arg(url.as_str())
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("APP_ENV")
        .env_remove("RAILGUN_PGTOOLS")
        .stdin(Stdio::null());
    cmd
}

fn xtask(dir: &Path, url: &Url, args: &[&str]) -> Run {
    command(dir, url, args).output().expect("run xtask").into()
}

/// Backs up `db` into `dir/backups`, returns the file (the last line on stdout).
fn backup(dir: &Path, db: &TestDb) -> PathBuf {
    let run = xtask(dir, db.direct_url(), &["db", "backup"]);
    run.assert_ok();
    PathBuf::from(run.stdout.lines().last().expect("a path on stdout"))
}

fn exec(db: &TestDb, sql: &str) {
    db.conn().unwrap().batch_execute(sql).unwrap();
}

#[derive(QueryableByName, Debug, PartialEq, Eq)]
struct Sum {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = BigInt)]
    rows: i64,
    #[diesel(sql_type = Text)]
    sum: String,
}

/// Row count and md5 of the ordered rows of every table in `public`.
fn checksums(db: &TestDb) -> BTreeMap<String, (i64, String)> {
    let mut conn = db.conn().unwrap();
    conn.batch_execute("SET TIME ZONE 'UTC'; SET extra_float_digits = 3").unwrap();
    #[derive(QueryableByName)]
    struct Name {
        #[diesel(sql_type = Text)]
        relname: String,
    }
    let tables: Vec<Name> = diesel::sql_query(
        "SELECT relname::text AS relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace",
    )
    .load(&mut conn)
    .unwrap();
    tables
        .iter()
        .map(|t| {
            let q = format!(
                "SELECT '{0}' AS table_name, count(*) AS rows, \
                 coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\")), '') AS sum FROM \"{0}\" t",
                t.relname
            );
            let s: Sum = diesel::sql_query(q).get_result(&mut conn).unwrap();
            (s.table_name, (s.rows, s.sum))
        })
        .collect()
}

/// The schema as pg_dump sees it, without the lines that differ between two dumps of one schema.
fn schema(db: &TestDb) -> String {
    let (conninfo, env) = dbkit::url::libpq_env(db.direct_url()).unwrap();
    let out = Command::new("pg_dump")
        .args(["--schema-only", "--no-owner", "--no-privileges", "--dbname", &conninfo])
        .envs(env)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict") && !l.starts_with("-- Dumped"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn gunzip(path: &Path) -> String {
    let out = Command::new("gzip").args(["-dc"]).arg(path).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn gzip_to(path: &Path, text: &str) {
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(path).unwrap())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
}

fn is_backup_name(name: &str) -> bool {
    let Some(stamp) = name.strip_prefix("railgun_backup_").and_then(|r| r.strip_suffix(".sql.gz")) else {
        return false;
    };
    stamp.len() == 15 && stamp.chars().enumerate().all(|(i, c)| if i == 8 { c == '_' } else { c.is_ascii_digit() })
}

/// Waits (bounded) until a backend of `application` waits on a lock in `db`.
fn wait_for_lock_wait(db: &TestDb, application: &str) {
    wait_for_backends(db, application, "AND wait_event_type = 'Lock'", |n| n > 0, "never blocked on the lock");
}

/// Waits (bounded) until no backend of `application` is connected to `db`.
fn wait_until_gone(db: &TestDb, application: &str) {
    wait_for_backends(db, application, "", |n| n == 0, "is still connected");
}

/// Waits (bounded) until the number of `application`'s backends in `db` matching `filter` is `done`.
fn wait_for_backends(db: &TestDb, application: &str, filter: &str, done: fn(i64) -> bool, failure: &str) {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn = db.conn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let c: Count = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = '{}' AND application_name LIKE '{application}' {filter}",
            db.name()
        ))
        .get_result(&mut conn)
        .unwrap();
        if done(c.n) {
            return;
        }
        assert!(Instant::now() < deadline, "{application} {failure}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The pid of `parent`'s child process named `name` that connects to a database (`--dbname`):
/// not the `--version` probe the xtask runs first to pick its tools.
fn child_named(parent: &Child, name: &str) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for entry in std::fs::read_dir("/proc").unwrap().filter_map(|e| e.ok()) {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            let Some((head, tail)) = stat.rsplit_once(") ") else { continue };
            let comm = head.split_once(" (").map(|(_, c)| c).unwrap_or_default();
            let ppid: u32 = tail.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let connects = cmdline.split(|b| *b == 0).any(|arg| arg.starts_with(b"--dbname"));
            if comm == name && ppid == parent.id() && connects {
                return entry.file_name().to_string_lossy().parse().unwrap();
            }
        }
        assert!(Instant::now() < deadline, "no {name} under {}", parent.id());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(pid: u32) {
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
}

#[test]
fn round_trip_keeps_schema_and_data() {
    let dir = Dir::new("roundtrip");
    let source = TestDb::new().unwrap();
    exec(&source, DATA);
    let run = xtask(&dir.0, source.direct_url(), &["db", "backup"]);
    run.assert_ok();
    let file = PathBuf::from(run.stdout.lines().last().unwrap());
    let name = file.file_name().unwrap().to_str().unwrap();
    assert!(is_backup_name(name), "{name}");
    assert_eq!(file.parent().unwrap(), dir.0.join("backups"));
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(!run.stdout.contains("postgres://"), "{}", run.stdout);
    assert!(!run.all().contains(source.direct_url().password().unwrap()), "password shown:\n{}", run.all());
    assert_eq!(dir.files("backups"), vec![name.to_string()], "nothing else is left in the folder");
    xtask(&dir.0, source.direct_url(), &["db", "verify", file.to_str().unwrap()]).assert_ok();

    let target = TestDb::empty().unwrap();
    let run = xtask(&dir.0, target.direct_url(), &["db", "restore", file.to_str().unwrap(), "--yes"]);
    run.assert_ok();
    assert!(run.stderr.contains("migrations: up to date"), "{}", run.stderr);
    assert!(run.stderr.contains("is empty: no safety backup needed"), "{}", run.stderr);
    assert_eq!(dir.files("backups"), vec![name.to_string()], "no safety backup of an empty database");
    assert_eq!(schema(&target), schema(&source));
    let sums = checksums(&source);
    assert!(sums["things"].0 == 3001 && sums.contains_key("__diesel_schema_migrations"), "{sums:?}");
    assert_eq!(checksums(&target), sums);
}

#[test]
fn restore_replaces_existing_data_after_a_safety_backup() {
    let dir = Dir::new("over");
    let source = TestDb::new().unwrap();
    exec(&source, DATA);
    let file = backup(&dir.0, &source);
    let target = TestDb::empty().unwrap();
    exec(
        &target,
        "CREATE TABLE things (id int PRIMARY KEY, name text); CREATE VIEW thing_names AS SELECT name FROM things; INSERT INTO things VALUES (1, 'old'), (99999, 'extra');",
    );
    let before = checksums(&target);
    let run = xtask(&dir.0, target.direct_url(), &["db", "restore", file.to_str().unwrap(), "--yes"]);
    run.assert_ok();
    assert_eq!(checksums(&target), checksums(&source));
    assert!(run.stderr.contains("safety backup: "), "{}", run.stderr);
    let safety: Vec<String> =
        dir.files("backups").into_iter().filter(|n| n.starts_with("railgun_pre_restore_")).collect();
    assert_eq!(safety.len(), 1, "{:?}", dir.files("backups"));
    // The safety backup brings the old data back.
    let undo = dir.0.join("backups").join(&safety[0]);
    xtask(&dir.0, target.direct_url(), &["db", "restore", undo.to_str().unwrap(), "--yes", "--no-safety-backup"])
        .assert_ok();
    assert_eq!(checksums(&target)["things"], before["things"]);
}

#[test]
fn bad_files_are_refused_before_the_database_is_touched() {
    let dir = Dir::new("badfiles");
    let source = TestDb::empty().unwrap();
    exec(&source, DATA);
    let good = backup(&dir.0, &source);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.0.join("truncated.sql.gz");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let corrupt = dir.0.join("corrupt.sql.gz");
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x55;
    std::fs::write(&corrupt, &flipped).unwrap();
    let plain = dir.0.join("plain.sql");
    std::fs::write(&plain, gunzip(&good)).unwrap();
    let foreign = dir.0.join("foreign.sql.gz");
    gzip_to(&foreign, "hello, not a dump\n");
    let unfinished = dir.0.join("unfinished.sql.gz");
    let sql = gunzip(&good);
    gzip_to(&unfinished, &sql[..sql.find("-- PostgreSQL database dump complete").unwrap()]);
    let empty = dir.0.join("empty.sql.gz");
    std::fs::write(&empty, b"").unwrap();

    // Nothing listens there: any attempt to connect would fail with another message.
    let nowhere = Url::parse("postgres://nobody:pw@127.0.0.1:1/nothing").unwrap();
    let cases: [(&Path, &str); 8] = [
        (&dir.0.join("missing.sql.gz"), "does not exist"),
        (&dir.0, "is a directory, not a backup file"),
        (&plain, "is not gzip"),
        (&foreign, "not a pg_dump SQL dump"),
        (&truncated, "truncated"),
        (&corrupt, "corrupt"),
        (&unfinished, "completion marker"),
        (&empty, "is empty"),
    ];
    for (file, needle) in cases {
        let file = file.to_str().unwrap();
        let run = xtask(&dir.0, &nowhere, &["db", "verify", file]);
        run.assert_fails_with(needle);
        assert!(run.stderr.contains("hint:"), "{}", run.stderr);
        let run = xtask(&dir.0, &nowhere, &["db", "restore", file, "--yes"]);
        run.assert_fails_with(needle);
        assert!(!run.stderr.contains("connect"), "it tried the database:\n{}", run.stderr);
    }
    // Against a real database: refused, the database as it was, no safety backup left behind.
    let before = checksums(&source);
    xtask(&dir.0, source.direct_url(), &["db", "restore", truncated.to_str().unwrap(), "--yes"])
        .assert_fails_with("truncated");
    assert_eq!(checksums(&source), before);
    assert_eq!(dir.files("backups"), vec![good.file_name().unwrap().to_string_lossy().into_owned()]);
}

#[test]
fn restore_refuses_without_a_terminal_or_yes() {
    let dir = Dir::new("notty");
    let source = TestDb::empty().unwrap();
    exec(&source, DATA);
    let file = backup(&dir.0, &source);
    let target = TestDb::empty().unwrap();
    exec(&target, "CREATE TABLE keep (id int); INSERT INTO keep VALUES (7);");
    let before = checksums(&target);
    xtask(&dir.0, target.direct_url(), &["db", "restore", file.to_str().unwrap()]).assert_fails_with("--yes");
    assert_eq!(checksums(&target), before);
    assert!(dir.files("backups").iter().all(|n| !n.starts_with("railgun_pre_restore_")));
}

#[test]
fn an_error_at_the_end_of_the_dump_leaves_the_target_as_it_was() {
    let dir = Dir::new("sqlerror");
    let source = TestDb::empty().unwrap();
    exec(&source, DATA);
    let sql = gunzip(&backup(&dir.0, &source));
    let marker = sql.find("--\n-- PostgreSQL database dump complete").unwrap();
    let broken = format!(
        "{}CREATE MATERIALIZED VIEW public.last_statement AS SELECT 1 / 0 AS last_statement;\n\n{}",
        &sql[..marker],
        &sql[marker..]
    );
    let file = dir.0.join("broken.sql.gz");
    gzip_to(&file, &broken);
    xtask(&dir.0, source.direct_url(), &["db", "verify", file.to_str().unwrap()]).assert_ok();

    let target = TestDb::empty().unwrap();
    exec(&target, "CREATE TABLE things (id int); INSERT INTO things VALUES (1), (2);");
    let before = (checksums(&target), schema(&target));
    let run =
        xtask(&dir.0, target.direct_url(), &["db", "restore", file.to_str().unwrap(), "--yes", "--no-safety-backup"]);
    run.assert_fails_with("division by zero");
    assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
    assert!(run.stderr.contains("SELECT 1 / 0 AS last_statement"), "the failing statement is shown:\n{}", run.stderr);
    assert_eq!((checksums(&target), schema(&target)), before);
}

#[test]
fn killed_restores_leave_the_target_as_it_was() {
    let dir = Dir::new("killrestore");
    let source = TestDb::empty().unwrap();
    exec(&source, DATA);
    // Several MiB of SQL: more than the pipe to psql holds, so the restore is caught midway.
    exec(&source, "INSERT INTO things (name) SELECT repeat(md5(g::text), 8) FROM generate_series(1, 20000) g;");
    let file = backup(&dir.0, &source);
    let target = TestDb::empty().unwrap();
    exec(&target, "CREATE TABLE things (id int); INSERT INTO things VALUES (1), (2);");
    let before = (checksums(&target), schema(&target));

    for (victim, signal) in [("SIGTERM", libc::SIGTERM), ("SIGKILL", libc::SIGKILL), ("SIGHUP", libc::SIGHUP)] {
        // The restore drops `things` first: a reader holding it makes psql wait, mid-restore.
        let mut holder = target.conn().unwrap();
        holder.batch_execute("BEGIN; LOCK TABLE things IN ACCESS SHARE MODE;").unwrap();
        let child = command(
            &dir.0,
            target.direct_url(),
            &["db", "restore", file.to_str().unwrap(), "--yes", "--no-safety-backup"],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        wait_for_lock_wait(&target, "railgun-restore-%");
        // The xtask alone, as a supervisor or the OOM killer would: its session goes with it,
        // though the server is busy waiting for the lock.
        // SAFETY: a signal to the child we started.
        unsafe { libc::kill(child.id() as i32, signal) };
        let out: Run = child.wait_with_output().unwrap().into();
        wait_until_gone(&target, "railgun-restore-%");
        holder.batch_execute("COMMIT").unwrap();
        assert!(!out.ok(), "{victim} killed, yet the restore succeeded");
        assert_eq!((checksums(&target), schema(&target)), before, "after killing {victim}");
    }
}

#[test]
fn killed_backups_leave_no_file() {
    let dir = Dir::new("killbackup");
    let source = TestDb::empty().unwrap();
    exec(&source, DATA);
    for victim in ["xtask", "pg_dump"] {
        // pg_dump locks every table before it writes: a writer's lock stops it mid-run.
        let mut holder = source.conn().unwrap();
        holder.batch_execute("BEGIN; LOCK TABLE things IN ACCESS EXCLUSIVE MODE;").unwrap();
        let child = command(&dir.0, source.direct_url(), &["db", "backup", "out"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_lock_wait(&source, "railgun-backup-%");
        match victim {
            "xtask" => kill(child.id()),
            _ => kill(child_named(&child, "pg_dump")),
        }
        let out: Run = child.wait_with_output().unwrap().into();
        // Its sessions go with it, though the lock they wait for is still held: a killed xtask
        // leaves nothing waiting on the database (nor holding the locks it took).
        wait_until_gone(&source, "railgun-backup-%");
        holder.batch_execute("ROLLBACK").unwrap();
        assert!(!out.ok(), "{victim} killed, yet the backup succeeded");
        if victim == "pg_dump" {
            out.assert_fails_with("pg_dump failed");
        }
        let left = dir.files("out");
        // Killed outright, at most a hidden partial file can remain (where there is no O_TMPFILE).
        assert!(left.iter().all(|name| !is_backup_name(name)), "after killing {victim}: {left:?}");
        if victim == "pg_dump" {
            assert_eq!(left, Vec::<String>::new());
        }
    }
}

#[test]
fn keep_prunes_only_older_backups_by_their_exact_name() {
    let dir = Dir::new("keep");
    let backups = dir.0.join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let others = [
        "railgun_backup_20200101_000000.sql.gz.bak",
        "railgun_pre_restore_20200101_000000.sql.gz",
        "notes.txt",
        "railgun_backup_2020.sql.gz",
    ];
    let old = [
        "railgun_backup_20200101_000000.sql.gz",
        "railgun_backup_20200102_000000.sql.gz",
        "railgun_backup_20200103_000000.sql.gz",
    ];
    for name in others {
        std::fs::write(backups.join(name), b"x").unwrap();
    }
    for name in old {
        gzip_to(
            &backups.join(name),
            "--\n-- PostgreSQL database dump\n--\n\n--\n-- PostgreSQL database dump complete\n--\n\n",
        );
    }
    let source = TestDb::empty().unwrap();
    let run = xtask(&dir.0, source.direct_url(), &["db", "backup", "--keep", "2"]);
    run.assert_ok();
    let new = PathBuf::from(run.stdout.lines().last().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
    let mut expected: Vec<String> = others.iter().map(|s| s.to_string()).collect();
    expected.push(old[2].to_string());
    expected.push(new);
    expected.sort();
    assert_eq!(dir.files("backups"), expected);
    xtask(&dir.0, source.direct_url(), &["db", "backup", "--keep", "0"]).assert_fails_with("--keep");
}

#[test]
fn keep_counts_only_complete_backups_named_with_a_real_time() {
    let dir = Dir::new("keepfake");
    let source = TestDb::empty().unwrap();
    exec(&source, "CREATE TABLE t (id int); INSERT INTO t VALUES (1);");
    let real = backup(&dir.0, &source);
    let bytes = std::fs::read(&real).unwrap();
    std::fs::remove_file(&real).unwrap();
    let backups = dir.0.join("backups");
    let older = "railgun_backup_20200101_000000.sql.gz";
    let newer = "railgun_backup_20200102_000000.sql.gz";
    let second_of_newer = "railgun_backup_20200102_000000_2.sql.gz";
    for name in [older, newer, second_of_newer] {
        std::fs::write(backups.join(name), &bytes).unwrap();
    }
    // An empty file from the far future, a real backup whose name is no date, a cut one.
    let future = "railgun_backup_29991231_235959.sql.gz";
    std::fs::write(backups.join(future), b"").unwrap();
    let no_date = "railgun_backup_20201399_000000.sql.gz";
    std::fs::write(backups.join(no_date), &bytes).unwrap();
    let cut = "railgun_backup_20210101_000000.sql.gz";
    std::fs::write(backups.join(cut), &bytes[..bytes.len() - 20]).unwrap();

    let run = xtask(&dir.0, source.direct_url(), &["db", "backup", "--keep", "3"]);
    run.assert_ok();
    let new = PathBuf::from(run.stdout.lines().last().unwrap()).file_name().unwrap().to_string_lossy().into_owned();
    let mut expected: Vec<String> =
        [newer, second_of_newer, future, no_date, cut].iter().map(|s| s.to_string()).collect();
    expected.push(new);
    expected.sort();
    assert_eq!(dir.files("backups"), expected, "{}", run.stderr);
    for (name, why) in [(future, "is in the future"), (no_date, "is not a date"), (cut, "truncated")] {
        assert!(
            run.stderr.lines().any(|l| l.contains("left alone") && l.contains(name) && l.contains(why)),
            "{name} ({why}) not reported:\n{}",
            run.stderr
        );
    }
    assert!(run.stderr.contains(&format!("removed old backup {}", backups.join(older).display())), "{}", run.stderr);
}

#[test]
fn backups_started_in_one_second_get_distinct_names() {
    let dir = Dir::new("samesecond");
    let source = TestDb::empty().unwrap();
    exec(&source, DATA);
    // Started just after a second begins, so that all three names are taken within that second.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    std::thread::sleep(Duration::from_nanos(1_000_000_000 - u64::from(now.subsec_nanos())));
    let children: Vec<Child> = (0..3)
        .map(|_| {
            command(&dir.0, source.direct_url(), &["db", "backup", "out"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut paths: Vec<String> = children
        .into_iter()
        .map(|child| {
            let run: Run = child.wait_with_output().unwrap().into();
            run.assert_ok();
            run.stdout.lines().last().unwrap().to_string()
        })
        .collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 3, "{paths:?}");
    let names = dir.files("out");
    assert_eq!(names.len(), 3, "{names:?}");
    for name in &names {
        assert!(dbkit::backup::dump::is_backup_name(name), "{name}");
        let file = dir.0.join("out").join(name);
        xtask(&dir.0, source.direct_url(), &["db", "verify", file.to_str().unwrap()]).assert_ok();
    }
}

#[test]
fn a_backup_waiting_for_a_lock_says_who_holds_it() {
    #[derive(QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    let dir = Dir::new("lockwait");
    let source = TestDb::empty().unwrap();
    exec(&source, DATA);
    // A migration's lock, held by a session of its own.
    let mut holder = source.conn().unwrap();
    holder
        .batch_execute(
            "BEGIN; SET LOCAL application_name = 'the-migration'; LOCK TABLE things IN ACCESS EXCLUSIVE MODE;",
        )
        .unwrap();
    let pid = diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result::<Pid>(&mut *holder).unwrap().pid;
    let mut child = command(&dir.0, source.direct_url(), &["db", "backup", "out"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line.clone());
        }
    });
    let expected = format!("waiting for a lock on public.things held by pid {pid} (application_name 'the-migration'");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.contains(&expected)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => {
                let _ = child.kill();
                panic!("no `{expected}` on stderr:\n{}", seen.join("\n"));
            }
        }
    }
    holder.batch_execute("COMMIT").unwrap();
    let out = child.wait_with_output().unwrap();
    reader.join().unwrap();
    seen.extend(lines_rx.try_iter());
    assert!(out.status.success(), "{}", seen.join("\n"));
    assert_eq!(seen.iter().filter(|l| l.contains("waiting for a lock")).count(), 1, "said once:\n{}", seen.join("\n"));
    let file = PathBuf::from(String::from_utf8(out.stdout).unwrap().lines().last().unwrap());
    assert!(gunzip(&file).contains("COPY public.things"), "the backup finished with the table's data");
}

/// The peak resident memory (VmHWM, in KiB) of a child, read until it exits.
fn peak_rss_kib(child: &mut Child) -> u64 {
    let status = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    while child.try_wait().unwrap().is_none() {
        if let Some(kib) = std::fs::read_to_string(&status).ok().and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        }) {
            peak = peak.max(kib);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    peak
}

#[test]
fn verify_memory_stays_bounded_on_a_huge_identifier() {
    use flate2::{Compression, write::GzEncoder};
    let dir = Dir::new("bomb");
    // About 1 MiB of gzip: pg_dump's header, `CREATE TABLE ` and an identifier of 1 GiB.
    let file = dir.0.join("railgun_backup_20200101_000000.sql.gz");
    let mut gz = GzEncoder::new(std::io::BufWriter::new(std::fs::File::create(&file).unwrap()), Compression::default());
    gz.write_all(b"--\n-- PostgreSQL database dump\n--\n\nCREATE TABLE ").unwrap();
    let run = vec![b'a'; 1 << 20];
    for _ in 0..1024 {
        gz.write_all(&run).unwrap();
    }
    gz.write_all(b" ();\n\n--\n-- PostgreSQL database dump complete\n--\n\n").unwrap();
    gz.finish().unwrap().flush().unwrap();
    assert!(std::fs::metadata(&file).unwrap().len() < 4 << 20);

    let nowhere = Url::parse("postgres://nobody:pw@127.0.0.1:1/nothing").unwrap();
    let mut child = command(&dir.0, &nowhere, &["db", "verify", file.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let peak = peak_rss_kib(&mut child);
    assert!(peak > 0, "no reading of the child's memory");
    assert!(peak < 200 << 10, "db verify peaked at {} MiB", peak >> 10);
}

#[test]
fn unwritable_or_full_directories_fail_with_the_fix_and_leave_nothing() {
    let dir = Dir::new("full");
    let source = TestDb::empty().unwrap();
    // Incompressible rows: a few hundred KiB of backup.
    exec(
        &source,
        "CREATE TABLE noise AS SELECT g, md5(g::text) || md5((g * 7)::text) AS a FROM generate_series(1, 20000) g;",
    );
    std::fs::write(dir.0.join("a-file"), b"x").unwrap();
    xtask(&dir.0, source.direct_url(), &["db", "backup", "a-file/backups"])
        .assert_fails_with("choose a writable directory");

    // A file-size limit (the shell's ulimit -f, in 512- or 1024-byte blocks) stands in for a full disk.
    let out: Run = Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 64 && exec \"$0\" \"$@\"")
        .arg(xtask_bin())
        .args(["db", "backup", "limited", "--database-url", source.direct_url().as_str()])
        .current_dir(&dir.0)
        .stdin(Stdio::null())
        .output()
        .unwrap()
        .into();
    out.assert_fails_with("no space left for the backup");
    assert_eq!(dir.files("limited"), Vec::<String>::new());

    // A really full filesystem, where this machine lets us mount one.
    let small = dir.0.join("small");
    std::fs::create_dir_all(&small).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&small)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        let run = xtask(&dir.0, source.direct_url(), &["db", "backup", "small"]);
        let listed = dir.files("small");
        let _ = Command::new("umount").arg(&small).status();
        run.assert_fails_with("no space left for the backup");
        assert_eq!(listed, Vec::<String>::new());
    }

    if !Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0\n")) {
        let locked = dir.0.join("locked");
        std::fs::create_dir_all(&locked).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
        xtask(&dir.0, source.direct_url(), &["db", "backup", "locked"]).assert_fails_with("cannot write to");
    }
}

#[test]
fn tools_in_a_container_round_trip() {
    let dir = Dir::new("container");
    let source = TestDb::empty().unwrap();
    exec(&source, DATA);
    for (tools, says) in [("container", "in container"), ("image", "throwaway")] {
        let run: Run = command(&dir.0, source.direct_url(), &["db", "backup", tools])
            .env("RAILGUN_PGTOOLS", tools)
            .output()
            .unwrap()
            .into();
        run.assert_ok();
        assert!(run.stderr.contains(says), "{}", run.stderr);
        let file = run.stdout.lines().last().unwrap().to_string();
        let target = TestDb::empty().unwrap();
        let run: Run = command(&dir.0, target.direct_url(), &["db", "restore", &file, "--yes", "--no-safety-backup"])
            .env("RAILGUN_PGTOOLS", tools)
            .output()
            .unwrap()
            .into();
        run.assert_ok();
        assert_eq!(checksums(&target), checksums(&source), "with tools from {tools}");
    }
}

/// A Supabase-like source: the provider's schemas, roles, event trigger and publication.
const MANAGED: &str = r#"
DO $$ BEGIN CREATE ROLE supabase_admin; EXCEPTION WHEN duplicate_object THEN NULL; END $$;
CREATE SCHEMA extensions;
CREATE EXTENSION "uuid-ossp" WITH SCHEMA extensions;
CREATE SCHEMA auth AUTHORIZATION supabase_admin;
CREATE TABLE auth.users (id uuid PRIMARY KEY DEFAULT extensions.uuid_generate_v4());
ALTER TABLE auth.users OWNER TO supabase_admin;
CREATE SCHEMA storage;
CREATE TABLE storage.objects (id int);
CREATE TABLE public.profiles (id uuid PRIMARY KEY DEFAULT extensions.uuid_generate_v4(), name text);
ALTER TABLE public.profiles OWNER TO supabase_admin;
INSERT INTO public.profiles (name) SELECT 'p' || g FROM generate_series(1, 50) g;
CREATE FUNCTION extensions.grant_access() RETURNS event_trigger LANGUAGE plpgsql AS $f$ BEGIN END $f$;
CREATE PUBLICATION supabase_realtime;
"#;

#[test]
fn copy_moves_a_managed_database_to_a_plain_server_and_verifies_it() {
    let role = format!("owner_copy_{}", std::process::id());
    // Declared first, dropped last: after the databases that use the roles are gone.
    let _roles =
        tests::RoleCleanup { server: TestDb::empty().unwrap(), roles: vec![role.clone(), "supabase_admin".into()] };
    let dir = Dir::new("copy");
    let source = TestDb::new().unwrap();
    exec(&source, MANAGED);
    let trigger = format!("issue_access_{}", source.name());
    exec(
        &source,
        &format!("CREATE EVENT TRIGGER {trigger} ON ddl_command_end EXECUTE FUNCTION extensions.grant_access();"),
    );
    exec(&source, DATA);

    // The new server's database belongs to an ordinary role, as on any provider.
    let target = TestDb::empty().unwrap();
    let to = tests::owned_by_new_role(&target, &role);

    let copy = |extra: &[&str]| -> Run {
        let mut args = vec!["db", "copy", "--from", source.direct_url().as_str(), "--to", to.as_str(), "--yes"];
        args.extend_from_slice(extra);
        Command::new(xtask_bin())
            .args(&args)
            .current_dir(&dir.0)
            .env_remove("APP_ENV")
            .stdin(Stdio::null())
            .output()
            .unwrap()
            .into()
    };
    // The default leaves the provider's parts out, and the copy verifies.
    let run = copy(&[]);
    run.assert_ok();
    assert!(run.stderr.contains("counts and checksums match"), "{}", run.stderr);
    assert!(run.stderr.contains("auth, storage"), "{}", run.stderr);
    let sums = checksums(&target);
    assert_eq!(sums["things"], checksums(&source)["things"]);
    assert_eq!(sums["profiles"].0, 50);
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let mut conn: PgConnection = target.connect().unwrap();
    let managed: Count =
        diesel::sql_query("SELECT count(*) AS n FROM pg_namespace WHERE nspname IN ('auth', 'storage')")
            .get_result(&mut conn)
            .unwrap();
    assert_eq!(managed.n, 0);
    // Everything, provider's parts included, goes too, as the ordinary role: the event trigger
    // (it would fire with the rights of whoever runs DDL later) is left out, and said.
    let run = copy(&["--keep-managed-schemas"]);
    exec(&source, &format!("DROP EVENT TRIGGER {trigger}"));
    run.assert_ok();
    assert!(run.stderr.contains("left out 2 statement(s) of event triggers"), "{}", run.stderr);
    let triggers: Count =
        diesel::sql_query("SELECT count(*) AS n FROM pg_event_trigger").get_result(&mut conn).unwrap();
    assert_eq!(triggers.n, 0);
}

#[test]
fn copy_fails_when_the_copy_differs() {
    let dir = Dir::new("copydiff");
    let source = TestDb::empty().unwrap();
    exec(&source, DATA);
    let target = TestDb::empty().unwrap();
    // A target that alters rows as they arrive: every table created gets a tampering trigger
    // (from a provider's schema, which the restore does not empty).
    let trigger = format!("tamper_{}", target.name());
    exec(
        &target,
        &format!(
            r#"
CREATE SCHEMA IF NOT EXISTS storage;
GRANT USAGE ON SCHEMA storage TO PUBLIC;
CREATE FUNCTION storage.tamper_row() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN IF NEW.id = 7 THEN NEW.name := 'tampered'; END IF; RETURN NEW; END $f$;
CREATE FUNCTION storage.add_tamper() RETURNS event_trigger LANGUAGE plpgsql AS $f$
DECLARE obj record;
BEGIN
  FOR obj IN SELECT * FROM pg_event_trigger_ddl_commands() WHERE command_tag = 'CREATE TABLE' LOOP
    EXECUTE format('CREATE TRIGGER tamper BEFORE INSERT ON %s FOR EACH ROW EXECUTE FUNCTION storage.tamper_row()', obj.object_identity);
  END LOOP;
END $f$;
CREATE EVENT TRIGGER {trigger} ON ddl_command_end WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION storage.add_tamper();
"#
        ),
    );
    let run = Command::new(xtask_bin())
        .args([
            "db",
            "copy",
            "--from",
            source.direct_url().as_str(),
            "--to",
            target.direct_url().as_str(),
            "--yes",
            "--no-safety-backup",
        ])
        .current_dir(&dir.0)
        .env_remove("APP_ENV")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let run: Run = run.into();
    exec(&target, &format!("DROP EVENT TRIGGER IF EXISTS {trigger}"));
    run.assert_fails_with("things: same 3001 rows, different content");
}
