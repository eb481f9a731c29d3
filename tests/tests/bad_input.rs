//! The bad-input table: every case exits non-zero without a panic, says what to do, prints no
//! password, and leaves the database exactly as it was (a checksum of its tables, columns,
//! migrations and a marker table's rows, taken before and after each case).

use std::path::PathBuf;
use std::process::Command;

use db::testing::TestDb;
use diesel::{QueryableByName, RunQueryDsl, sql_types::Text};
use tests::{Run, xtask_bin};

/// Stands in for a password everywhere a case writes one.
const CANARY: &str = "BadInputCanary42";

struct Case {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    /// On stderr: the message that says what went wrong or what to do.
    says: &'static str,
}

fn case(name: &'static str, args: &[&str], says: &'static str) -> Case {
    Case { name, args: args.iter().map(|a| a.to_string()).collect(), env: Vec::new(), says }
}

impl Case {
    fn env(mut self, key: &'static str, value: &str) -> Case {
        self.env.push((key, value.to_string()));
        self
    }
}

#[derive(QueryableByName)]
struct Checksum {
    #[diesel(sql_type = Text)]
    md5: String,
}

fn checksum(db: &TestDb) -> String {
    let mut conn = db.conn().unwrap();
    let row: Checksum = diesel::sql_query(
        "SELECT md5(
            coalesce((SELECT string_agg(format('%s.%s.%s:%s', table_schema, table_name, column_name, data_type), ','
                      ORDER BY table_schema, table_name, column_name)
                      FROM information_schema.columns WHERE table_schema NOT IN ('pg_catalog', 'information_schema')), '')
            || '|' || coalesce((SELECT string_agg(version, ',' ORDER BY version) FROM __diesel_schema_migrations), '')
            || '|' || coalesce((SELECT string_agg(format('%s:%s', id, note), ',' ORDER BY id) FROM bad_input_marker), '')
            || '|' || (SELECT count(*) FROM users)::text
        ) AS md5",
    )
    .get_result(&mut conn)
    .unwrap();
    row.md5
}

/// A folder of the test's own: the cases' working directory (no .env there).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run(scratch: &Scratch, url: &str, case: &Case) -> Run {
    Command::new(xtask_bin())
        .args(&case.args)
        .current_dir(&scratch.0)
        .env("RAILGUN_PROJECT", format!("railgun-test-bad-input-{}", std::process::id()))
        .env("RAILGUN_ENV_FILE", scratch.0.join(".env"))
        .env("DATABASE_URL", url)
        .env_remove("APP_ENV")
        .env_remove("RAILGUN_APP_DB_PASSWORD")
        .env_remove("RAILGUN_MIGRATOR_DB_PASSWORD")
        .envs(case.env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run xtask")
        .into()
}

/// The test database's URL, changed by `f`.
fn with<U: Clone + ToString>(url: &U, f: impl FnOnce(&mut U)) -> String {
    let mut url = url.clone();
    f(&mut url);
    url.to_string()
}

/// A gzipped file that looks like pg_dump's (header, completion marker) around `body`.
fn crafted(scratch: &Scratch, name: &str, body: &str) -> String {
    let path = scratch.0.join(format!("{name}.sql.gz"));
    let text = format!(
        "--\n-- PostgreSQL database dump\n--\n\nSET standard_conforming_strings = on;\n{body}\n--\n-- PostgreSQL database dump complete\n--\n"
    );
    let mut child = Command::new("gzip")
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::fs::File::create(&path).unwrap())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    path.to_str().unwrap().to_string()
}

/// Files a crafted backup would write if psql ran its meta-commands.
fn pwned(scratch: &Scratch) -> Vec<PathBuf> {
    ["pwned", "o.txt", "w.txt", "program", "pipe", "env.txt"].iter().map(|f| scratch.0.join(f)).collect()
}

/// Crafted backups: each would make psql do something else than run SQL, or end the restore's
/// transaction; verify and restore refuse each before the target is touched, naming the line.
fn crafted_cases(scratch: &Scratch, victim: &TestDb) -> Vec<Case> {
    let dir = scratch.0.display().to_string();
    let files: Vec<(&str, String, &str)> = vec![
        (
            "shell",
            format!("CREATE TABLE crafted (id int);\n\\! touch {dir}/pwned"),
            "line 7 of the backup's SQL: the psql meta-command `\\!`",
        ),
        ("output file", format!("\\o {dir}/o.txt\nSELECT 1;"), "meta-command `\\o`"),
        ("write buffer", format!("SELECT 1\n\\w {dir}/w.txt"), "meta-command `\\w`"),
        ("copy to program", format!("\\copy (SELECT 1) to program 'touch {dir}/program'"), "meta-command `\\copy`"),
        ("query to a pipe", format!("SELECT 1 \\g |touch {dir}/pipe"), "meta-command `\\g`"),
        ("gexec", "SELECT 'DROP TABLE users' \\gexec".to_string(), "meta-command `\\gexec`"),
        ("include a file", "\\i /etc/passwd".to_string(), "meta-command `\\i`"),
        ("environment to a file", format!("\\setenv X 1\n\\! env > {dir}/env.txt"), "meta-command `\\setenv`"),
        ("unrestrict", "\\restrict abc\n\\unrestrict xyz\nDROP TABLE users;".to_string(), "not pg_dump's own"),
        ("another database", format!("\\connect {}\nDROP TABLE victim_table;", victim.name()), "`\\connect`"),
        (
            "commit in the middle",
            "CREATE TABLE committed_early (id int);\nCOMMIT;\nSELECT 1/0;".to_string(),
            "transaction control `COMMIT`",
        ),
        ("savepoint", "SAVEPOINT s;\nDROP TABLE users;\nRELEASE s;".to_string(), "transaction control `SAVEPOINT`"),
        ("server-side program", format!("COPY users TO PROGRAM 'touch {dir}/program';"), "a COPY other than"),
        (
            "text after COPY's line",
            "COPY users (id) FROM stdin; \\! id\n\\.".to_string(),
            "text after `COPY ... FROM stdin;`",
        ),
        (
            "strings read another way",
            // pg_dump's own `SET standard_conforming_strings = off;` is followed; a quoted name is not pg_dump's.
            "SET \"standard_conforming_strings\" = off;".to_string(),
            "standard_conforming_strings",
        ),
    ];
    let mut cases = Vec::new();
    for (name, body, says) in files {
        let file = crafted(scratch, &name.replace(' ', "_"), &body);
        let leaked: &'static str = Box::leak(format!("crafted backup ({name}): verify").into_boxed_str());
        cases.push(Case {
            name: leaked,
            args: vec!["db".into(), "verify".into(), file.clone()],
            env: Vec::new(),
            says,
        });
        let leaked: &'static str = Box::leak(format!("crafted backup ({name}): restore").into_boxed_str());
        cases.push(Case {
            name: leaked,
            args: ["db", "restore", &file, "--yes"].map(String::from).to_vec(),
            env: Vec::new(),
            says,
        });
    }
    cases
}

fn cases(db: &TestDb, scratch: &Scratch, backup: &str) -> Vec<Case> {
    let wrong_password = with(db.direct_url(), |u| u.set_password(Some(CANARY)).unwrap());
    let no_database = with(db.direct_url(), |u| u.set_path("bad_input_no_such_db"));
    let ssl_required = with(db.direct_url(), |u| u.set_query(Some("sslmode=require")));
    let bad_sslmode = with(db.direct_url(), |u| u.set_query(Some("sslmode=sometimes")));
    let refused = format!("postgres://railgun:{CANARY}@127.0.0.1:1/railgun");
    let unknown_host = format!("postgres://railgun:{CANARY}@no-such-host.invalid:5432/railgun");
    let remote = format!("postgres://railgun:{CANARY}@db.example.com:5432/{}?sslmode=require", db.name());
    let migrations = scratch.0.join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    let migrations = migrations.to_str().unwrap().to_string();
    let escape = format!("../../{}", escaped_name());
    let a_file = scratch.0.join("a-file");
    std::fs::write(&a_file, "not a folder").unwrap();
    let under_a_file = a_file.join("backups");
    let name = db.name();
    let bad_env = scratch.0.join("bad.env");
    std::fs::write(
        &bad_env,
        format!("\u{feff}DATABASE_POOL_MAX=5\nSECRET_LINE postgres://u:{CANARY}@h/d\nAPP_ENV=development\n"),
    )
    .unwrap();
    let not_a_dump = crafted(scratch, "not_a_dump", "").replace("not_a_dump", "plain_gzip");
    {
        let mut child = Command::new("gzip")
            .arg("-c")
            .stdin(std::process::Stdio::piped())
            .stdout(std::fs::File::create(&not_a_dump).unwrap())
            .spawn()
            .unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), b"hello, not a dump\n").unwrap();
        assert!(child.wait().unwrap().success());
    }
    let same_db_other_spelling = with(db.direct_url(), |u| {
        u.set_host(Some("localhost")).unwrap();
        u.set_query(Some("sslmode=disable&application_name=copy"));
    });
    // 64 bytes: Postgres would act on the database named by its first 63.
    let cut_name = with(db.direct_url(), |u| u.set_path(&format!("{name}_{}", "x".repeat(63 - name.len()))));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_port = taken.local_addr().unwrap().port().to_string();
    // Held open until the process ends: the `up` case finds it taken.
    std::mem::forget(taken);
    vec![
        // URLs that do not parse: which part is wrong, never the text.
        case(
            "password with an unencoded /",
            &["--database-url", &format!("postgres://adv:2024/{CANARY}!@localhost/db"), "migration", "run"],
            "unencoded `/`",
        ),
        case(
            "password with a stray %",
            &["--database-url", &format!("postgres://adv:50%off{CANARY}@localhost/db"), "migration", "run"],
            "a `%` that is not followed by two hex digits",
        ),
        case(
            "password with an unencoded @",
            &["--database-url", &format!("postgres://adv:p@{CANARY}@localhost/db"), "db", "backup"],
            "two `@`",
        ),
        case(".env line that does not parse", &["schema", "drop", "--yes"], "line 2 does not parse")
            .env("RAILGUN_ENV_FILE", bad_env.to_str().unwrap()),
        // Backups and copies that must not run.
        case("gzip that is not a dump", &["db", "restore", &not_a_dump, "--yes"], "not a pg_dump SQL dump"),
        case(
            "copy onto itself, spelled another way",
            &["db", "copy", "--from", db.direct_url().as_str(), "--to", &same_db_other_spelling, "--yes"],
            "are the same database",
        ),
        case(
            "copy onto a name Postgres would cut to another database's",
            &["db", "copy", "--from", db.direct_url().as_str(), "--to", &cut_name, "--yes"],
            "Postgres keeps 63",
        ),
        case("Postgres's port taken", &["up", "--no-migrate", "--postgres-port", &taken_port], "is in use"),
        // Malformed URLs.
        case(
            "URL with a bad port",
            &["--database-url", &format!("postgres://u:{CANARY}@localhost:99999/x"), "migration", "run"],
            "malformed database URL",
        ),
        case(
            "URL of another database kind",
            &["--database-url", &format!("mysql://u:{CANARY}@localhost/x"), "migration", "run"],
            "expected postgres://",
        ),
        case(
            "URL without a scheme",
            &["--database-url", &format!("railgun:{CANARY}@localhost/x"), "migration", "run"],
            "expected postgres://",
        ),
        case("empty URL", &["--database-url", "", "migration", "run"], "the database URL is empty"),
        case("invalid sslmode", &["--database-url", &bad_sslmode, "migration", "run"], "invalid sslmode value"),
        case("no DATABASE_URL at all", &["migration", "run"], "the database URL is empty").env("DATABASE_URL", ""),
        // Servers that say no.
        case(
            "wrong password",
            &["--database-url", &wrong_password, "migration", "run"],
            "password authentication failed",
        ),
        case("nothing listening", &["--database-url", &refused, "migration", "show"], "cargo xtask up"),
        case("unknown host", &["--database-url", &unknown_host, "migration", "run"], "does not resolve"),
        case("database does not exist", &["--database-url", &no_database, "migration", "run"], "fix the database name"),
        case(
            "SSL asked of a server without it",
            &["--database-url", &ssl_required, "migration", "run"],
            "server does not support SSL",
        ),
        case(
            "audit with a wrong password",
            &["--database-url", &wrong_password, "db", "audit"],
            "check the user and password",
        ),
        // Bad flags.
        case("unknown flag", &["migration", "run", "--frobnicate"], "unexpected argument"),
        case("unknown command", &["migraton", "run"], "unrecognized subcommand"),
        case("flag value of the wrong type", &["db", "backup", "--keep", "many"], "invalid value"),
        case(
            "role name that smuggles SQL",
            &["db", "roles", "--app-role", "x; DROP TABLE users"],
            "not a plain identifier",
        )
        .env("RAILGUN_APP_DB_PASSWORD", CANARY)
        .env("RAILGUN_MIGRATOR_DB_PASSWORD", CANARY),
        case("role passwords missing", &["db", "roles"], "RAILGUN_APP_DB_PASSWORD is not set"),
        // Paths.
        case(
            "migration name that climbs out",
            &["--migration-dir", &migrations, "migration", "create", &escape],
            "migration name",
        ),
        case(
            "migration name that is a path",
            &["--migration-dir", &migrations, "migration", "create", &format!("/tmp/{}", escaped_name())],
            "migration name",
        ),
        case(
            "missing diesel.toml",
            &["--config-file", "/nonexistent/diesel.toml", "migration", "run"],
            "/nonexistent/diesel.toml",
        ),
        case(
            "missing backup file",
            &["db", "restore", "/nonexistent/railgun_backup_20240101_000000.sql.gz", "--yes"],
            "/nonexistent/railgun_backup_20240101_000000.sql.gz",
        ),
        case("backup folder under a file", &["db", "backup", under_a_file.to_str().unwrap()], "a-file"),
        case("unwritable backup folder", &["db", "backup", "/proc/railgun-backups"], "/proc/railgun-backups"),
        // Refused confirmations (no terminal means no).
        case("drop without confirmation", &["schema", "drop"], "not confirmed"),
        case("restore without confirmation", &["db", "restore", backup], "not confirmed"),
        case("revert --all without confirmation", &["migration", "revert", "--all"], "refused"),
        // Production and remote targets.
        case("drop in production", &["schema", "drop", "--yes"], "APP_ENV=production").env("APP_ENV", "production"),
        case("drop with APP_ENV misspelt", &["schema", "drop", "--yes"], "treated as production")
            .env("APP_ENV", "prodution"),
        case("sync in production", &["schema", "sync", "--yes"], "APP_ENV=production").env("APP_ENV", "production"),
        case("revert --all in production", &["migration", "revert", "--all", "--yes"], "APP_ENV=production")
            .env("APP_ENV", "production"),
        case("restore in production", &["db", "restore", backup, "--yes"], "APP_ENV=production")
            .env("APP_ENV", "production"),
        case("--force without the name typed back", &["schema", "drop", "--force"], "--confirm-db")
            .env("APP_ENV", "production"),
        case(
            "--force with the wrong name",
            &["schema", "drop", "--force", "--confirm-db", "railgun_prod"],
            "does not match",
        )
        .env("APP_ENV", "production"),
        case("remote target", &["--database-url", &remote, "schema", "drop", "--yes"], "not a local database"),
        case(
            "remote target, right name, no --force",
            &["--database-url", &remote, "schema", "drop", "--confirm-db", name],
            "add --force",
        ),
    ]
}

fn escaped_name() -> String {
    format!("bad_input_escaped_{}", std::process::id())
}

#[test]
fn every_bad_input_fails_safely_and_says_what_to_do() {
    let db = TestDb::new().unwrap();
    {
        let mut conn = db.conn().unwrap();
        diesel::sql_query("CREATE TABLE bad_input_marker (id int PRIMARY KEY, note text)").execute(&mut conn).unwrap();
        diesel::sql_query("INSERT INTO bad_input_marker VALUES (1, 'keep'), (2, 'me')").execute(&mut conn).unwrap();
    }
    let scratch = Scratch(std::env::temp_dir().join(format!("bad-input-{}", std::process::id())));
    std::fs::create_dir_all(&scratch.0).unwrap();
    // A real backup of this database, for the restores that must be refused.
    let backup = run(&scratch, db.direct_url().as_str(), &case("backup", &["db", "backup", "backups"], ""));
    backup.assert_ok();
    let backup = backup.stdout.lines().last().expect("backup prints its path").trim().to_string();
    let victim = TestDb::empty().unwrap();
    diesel::sql_query("CREATE TABLE victim_table (id int)").execute(&mut victim.conn().unwrap()).unwrap();
    let mut table = cases(&db, &scratch, &backup);
    table.extend(crafted_cases(&scratch, &victim));
    assert!(table.len() >= 20, "the table has {} cases", table.len());
    eprintln!("bad-input table: {} cases", table.len());

    let password = db.direct_url().password().unwrap().to_string();
    let before = checksum(&db);
    let mut failures = Vec::new();
    for case in &table {
        let run = run(&scratch, db.direct_url().as_str(), case);
        let problems = problems(case, &run, &password, checksum(&db) != before, &scratch);
        if !problems.is_empty() {
            failures.push(format!("{}: {}\n{}", case.name, problems.join("; "), run.stderr.trim()));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n\n{}", failures.len(), table.len(), failures.join("\n\n"));
    nothing_a_crafted_backup_asked_for_happened(&scratch, &victim);
    doctor_reports_a_bad_url_with_the_same_words(&scratch, &db);
    no_failed_up_left_anything_behind();
}

/// What is wrong with how `case` ran: it succeeded, panicked, did not say what it should, gave
/// no hint, printed a password, changed the database (`changed_database`), or wrote outside the
/// migrations directory.
fn problems(case: &Case, run: &Run, password: &str, changed_database: bool, scratch: &Scratch) -> Vec<String> {
    let mut problems = Vec::new();
    if run.ok() {
        problems.push("exited 0".to_string());
    }
    if run.code.is_none() || run.stderr.contains("panicked") {
        problems.push(format!("panicked or was killed ({:?})", run.code));
    }
    if !run.stderr.contains(case.says) {
        problems.push(format!("stderr lacks `{}`", case.says));
    }
    if !(run.stderr.contains("hint:") || run.stderr.contains("--help")) {
        problems.push("no hint".to_string());
    }
    if run.all().contains(CANARY) || run.all().contains(password) {
        problems.push("printed a password".to_string());
    }
    if changed_database {
        problems.push("changed the database".to_string());
    }
    let escaped = [std::env::temp_dir(), PathBuf::from("/tmp"), scratch.0.clone()].map(|d| d.join(escaped_name()));
    let created = std::fs::read_dir(scratch.0.join("migrations")).map_or(0, |d| d.count());
    if escaped.iter().any(|p| p.exists()) || created > 0 {
        problems.push("wrote outside the migrations directory".to_string());
    }
    problems
}

/// Nothing a crafted backup asked for happened: no file written, no other database touched,
/// no safety backup taken of a file refused.
fn nothing_a_crafted_backup_asked_for_happened(scratch: &Scratch, victim: &TestDb) {
    let written: Vec<_> = pwned(scratch).into_iter().filter(|p| p.exists()).collect();
    assert!(written.is_empty(), "a crafted backup wrote {written:?}");
    let tables: Vec<Checksum> =
        diesel::sql_query("SELECT string_agg(tablename, ',') AS md5 FROM pg_tables WHERE schemaname = 'public'")
            .load(&mut victim.conn().unwrap())
            .unwrap();
    assert_eq!(tables[0].md5, "victim_table", "the other database is untouched");
    let safety = std::fs::read_dir(scratch.0.join("backups"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("railgun_pre_restore_"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(safety, 0, "no safety backup before a refused restore");
}

/// doctor reports a bad URL as its database check (stdout), with the same words.
fn doctor_reports_a_bad_url_with_the_same_words(scratch: &Scratch, db: &TestDb) {
    let doctor = run(
        scratch,
        db.direct_url().as_str(),
        &case("doctor", &["--database-url", &format!("postgres://adv:2024/{CANARY}!@localhost/db"), "doctor"], ""),
    );
    assert!(
        !doctor.ok() && doctor.stdout.contains("unencoded `/`") && !doctor.all().contains(CANARY),
        "{}",
        doctor.all()
    );
}

/// No service left half up by the failed `up`: no container, no volume.
fn no_failed_up_left_anything_behind() {
    let left =
        tests::containers_labelled(&format!("org.railgun.project=railgun-test-bad-input-{}", std::process::id()));
    assert!(left.is_empty(), "a failed up left {left:?}");
    let volumes = Command::new("docker")
        .args(["volume", "ls", "--quiet", "--filter", &format!("name=railgun-test-bad-input-{}-", std::process::id())])
        .output()
        .unwrap();
    let volumes = String::from_utf8_lossy(&volumes.stdout);
    assert!(volumes.trim().is_empty(), "a failed up left its volumes: {volumes}");
}
