//! The migration lifecycle beyond run and revert: `migration test` proves each down.sql undoes
//! its up.sql, in a throwaway database on the real server, comparing the whole catalog.

use tests::Folder;

fn folder() -> Folder {
    Folder::new("lifecycle", None)
}

fn migration(f: &Folder, name: &str, up: &str, down: &str) {
    let dir = f.dir.join("migrations").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("up.sql"), up).unwrap();
    std::fs::write(dir.join("down.sql"), down).unwrap();
}

const USERS: &str = "2024-01-01-000001_users";

fn users(f: &Folder) {
    migration(
        f,
        USERS,
        "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, status text);",
        "DROP TABLE users;",
    );
}

/// The databases `migration test` made and should have dropped.
fn leftovers() -> Vec<String> {
    use diesel::{Connection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Name {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let mut admin = diesel::PgConnection::establish(db::testing::server_url().unwrap().as_str()).unwrap();
    let pattern = format!("railgun_mtest_{}_%", std::process::id());
    let rows: Vec<Name> = diesel::sql_query("SELECT datname::text AS datname FROM pg_database WHERE datname LIKE $1")
        .bind::<diesel::sql_types::Text, _>(pattern)
        .load(&mut admin)
        .unwrap();
    rows.into_iter().map(|r| r.datname).collect()
}

#[test]
fn a_down_sql_that_forgets_an_index_is_named() {
    let f = folder();
    users(&f);
    migration(
        &f,
        "2024-01-02-000001_index_status",
        "CREATE INDEX users_status_idx ON users (status);\nALTER TABLE users ALTER COLUMN status SET DEFAULT 'new';",
        "ALTER TABLE users ALTER COLUMN status DROP DEFAULT;",
    );
    let run = f.xtask(&["migration", "test", "--all"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stdout.contains(&format!("ok    {USERS}")), "{}", run.stdout);
    assert!(
        run.stdout.contains("down.sql of 2024-01-02-000001_index_status leaves index public.users_status_idx"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("2 tested, 1 reversible, 1 with findings"), "{}", run.stdout);

    // Fixed: the same test passes.
    migration(
        &f,
        "2024-01-02-000001_index_status",
        "CREATE INDEX users_status_idx ON users (status);\nALTER TABLE users ALTER COLUMN status SET DEFAULT 'new';",
        "ALTER TABLE users ALTER COLUMN status DROP DEFAULT;\nDROP INDEX users_status_idx;",
    );
    f.xtask(&["migration", "test", "--all"]).assert_ok();
    assert!(leftovers().is_empty(), "{:?}", leftovers());
}

/// Every kind of object the catalog holds goes and comes back with a faithful down.sql; a down
/// that forgets one of each kind (or leaves a changed default) is named, object by object.
#[test]
fn the_whole_catalog_is_compared() {
    let f = folder();
    users(&f);
    let up = "CREATE TYPE mood AS ENUM ('ok', 'sad');
CREATE DOMAIN positive AS integer CHECK (VALUE > 0);
ALTER TABLE users ADD COLUMN mood mood, ADD COLUMN score positive DEFAULT 1;
CREATE VIEW happy AS SELECT id FROM users WHERE mood = 'ok';
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();
ALTER TABLE users ENABLE ROW LEVEL SECURITY;
CREATE POLICY own ON users USING (id > 0);
COMMENT ON COLUMN users.email IS 'where we write';
GRANT SELECT ON users TO PUBLIC;
ALTER TABLE users ALTER COLUMN status SET DEFAULT 'new';";
    let faithful = "ALTER TABLE users ALTER COLUMN status DROP DEFAULT;
REVOKE SELECT ON users FROM PUBLIC;
COMMENT ON COLUMN users.email IS NULL;
DROP POLICY own ON users;
ALTER TABLE users DISABLE ROW LEVEL SECURITY;
DROP TRIGGER users_touch ON users;
DROP FUNCTION touch();
DROP VIEW happy;
ALTER TABLE users DROP COLUMN mood, DROP COLUMN score;
DROP DOMAIN positive;
DROP TYPE mood;";
    migration(&f, "2024-01-02-000001_everything", up, faithful);
    f.xtask(&["migration", "test", "--all"]).assert_ok();

    let forgetful = "ALTER TABLE users ALTER COLUMN status SET DEFAULT 'old';
DROP VIEW happy;
ALTER TABLE users DROP COLUMN mood, DROP COLUMN score;
DROP TYPE mood;";
    migration(&f, "2024-01-02-000001_everything", up, forgetful);
    let run = f.xtask(&["migration", "test", "2024-01-02-000001_everything", "--json"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let messages: Vec<String> =
        json[0]["findings"].as_array().unwrap().iter().map(|f| f["message"].as_str().unwrap().to_string()).collect();
    let all = messages.join("\n");
    for object in [
        "leaves domain public.positive",
        "leaves function public.touch()",
        "leaves trigger public.users.users_touch",
        "leaves policy public.users.own",
        "leaves comment on table column public.users.email",
        "leaves grants on public.users",
        "leaves table public.users changed",
        "leaves column public.users.status changed",
    ] {
        assert!(all.contains(object), "`{object}` not found in:\n{all}");
    }
    assert_eq!(json[0]["findings"][0]["step"], "down");
}

#[test]
fn an_empty_down_sql_is_irreversible() {
    let f = folder();
    users(&f);
    migration(
        &f,
        "2024-01-02-000001_data",
        "INSERT INTO users (email) VALUES ('a@example.com');",
        "-- nothing to undo\n",
    );
    let run = f.xtask(&["migration", "test", "--all"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(
        run.stdout.contains("2024-01-02-000001_data is irreversible: its down.sql is empty or only comments"),
        "{}",
        run.stdout
    );
}

/// test.sql runs after each up.sql, rolled back; one that raises fails the test.
#[test]
fn test_sql_checks_what_up_did() {
    let f = folder();
    users(&f);
    migration(
        &f,
        "2024-01-02-000001_lower",
        "CREATE UNIQUE INDEX users_email_lower ON users (lower(email));",
        "DROP INDEX users_email_lower;",
    );
    let test_sql = f.dir.join("migrations/2024-01-02-000001_lower/test.sql");
    std::fs::write(
        &test_sql,
        "INSERT INTO users (email) VALUES ('A@example.com');
DO $$ BEGIN
  INSERT INTO users (email) VALUES ('a@example.com');
  RAISE EXCEPTION 'two emails differing in case were both accepted';
EXCEPTION WHEN unique_violation THEN NULL;
END $$;",
    )
    .unwrap();
    f.xtask(&["migration", "test", "--all"]).assert_ok();
    std::fs::write(&test_sql, "DO $$ BEGIN RAISE EXCEPTION 'the check says no'; END $$;").unwrap();
    let run = f.xtask(&["migration", "test", "--all"]);
    assert_eq!(run.code, Some(1), "{}", run.all());
    assert!(run.stdout.contains("test.sql failed: the check says no"), "{}", run.stdout);
}

/// By default only the pending migrations are tested, on top of the applied ones.
#[test]
fn pending_by_default() {
    let f = folder();
    users(&f);
    f.xtask(&["migration", "run"]).assert_ok();
    f.xtask(&["migration", "test"]).assert_ok();
    migration(
        &f,
        "2024-01-02-000001_more",
        "ALTER TABLE users ADD COLUMN bio text;",
        "ALTER TABLE users DROP COLUMN bio;",
    );
    let run = f.xtask(&["migration", "test"]);
    run.assert_ok();
    assert!(run.stdout.contains("ok    2024-01-02-000001_more") && !run.stdout.contains(USERS), "{}", run.stdout);
    f.xtask(&["migration", "test", "nope"]).assert_fails_with("no migration has the version or name nope");
}

fn execute(f: &Folder, sql: &str) {
    use diesel::connection::SimpleConnection;
    f.db.connect().unwrap().batch_execute(sql).unwrap();
}

/// A database made by hand as the migrations would make it is adopted: every migration recorded
/// as applied, then `run` has nothing to do and `revert` works. One with an extra column is
/// refused, the column named, nothing recorded.
#[test]
fn baseline_adopts_a_database_made_by_hand() {
    let f = folder();
    users(&f);
    migration(&f, "2024-01-02-000001_index", "CREATE INDEX users_email ON users (email);", "DROP INDEX users_email;");
    // Made by hand, in another order, with a row of data: the same schema.
    execute(
        &f,
        "CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, status text);
                 INSERT INTO users (email) VALUES ('kept@example.com');
                 CREATE INDEX users_email ON users (email);",
    );
    execute(&f, "ALTER TABLE users ADD COLUMN nickname text");
    let refused = f.xtask(&["migration", "baseline"]);
    assert_eq!(refused.code, Some(1), "{}", refused.all());
    assert!(
        refused.stdout.contains("only in the database: column public.users.nickname text position 4"),
        "{}",
        refused.stdout
    );
    assert!(refused.stderr.contains("nothing recorded"), "{}", refused.stderr);
    let recorded = tests::text(
        &f.db,
        "SELECT count(*)::text AS text FROM pg_tables WHERE tablename = '__diesel_schema_migrations'",
    );
    let none =
        recorded == "0" || tests::text(&f.db, "SELECT count(*)::text AS text FROM __diesel_schema_migrations") == "0";
    assert!(none, "nothing recorded");

    execute(&f, "ALTER TABLE users DROP COLUMN nickname");
    // Dropped columns leave no trace in what is compared (positions count live columns).
    let adopted = f.xtask(&["migration", "baseline"]);
    adopted.assert_ok();
    assert!(
        adopted.stderr.contains("the database is what the 2 migration(s) make: recorded as applied"),
        "{}",
        adopted.stderr
    );
    let run = f.xtask(&["migration", "run"]);
    run.assert_ok();
    assert!(run.stderr.contains("no pending migrations"), "{}", run.stderr);
    assert_eq!(tests::text(&f.db, "SELECT email AS text FROM users"), "kept@example.com");
    f.xtask(&["migration", "revert"]).assert_ok();
    f.xtask(&["migration", "baseline"]).assert_fails_with("records 1 applied migration(s) already");
}

/// `cargo xtask ARGS` on the folder's migrations, against another database.
fn xtask_on(f: &Folder, url: &url::Url, args: &[&str]) -> tests::Run {
    std::process::Command::new(tests::xtask_bin())
        .arg("--database-url")
        .arg(url.as_str())
        .arg("--config-file")
        .arg(f.dir.join("diesel.toml"))
        .args(args)
        .current_dir(&f.dir)
        .env("RAILGUN_ENV_FILE", f.dir.join("no.env"))
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
        .into()
}

/// Three migrations with rows and a trigger that rewrites inserted rows (the squash must insert
/// its rows before the trigger exists, as pg_dump orders them).
fn history(f: &Folder) {
    users(f);
    migration(
        f,
        "2024-01-02-000001_roles",
        "CREATE TABLE roles (id int PRIMARY KEY, name text NOT NULL);
INSERT INTO roles VALUES (1, 'admin'), (2, 'user');
ALTER TABLE users ADD COLUMN role_id int REFERENCES roles (id);
INSERT INTO users (email, role_id) VALUES ('Ann@Example.com', 1);
CREATE FUNCTION lower_email() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.email := lower(NEW.email); RETURN NEW; END $$;
CREATE TRIGGER users_lower BEFORE INSERT ON users FOR EACH ROW EXECUTE FUNCTION lower_email();",
        "DROP TRIGGER users_lower ON users; DROP FUNCTION lower_email(); DELETE FROM users; ALTER TABLE users DROP COLUMN role_id; DROP TABLE roles;",
    );
    migration(
        f,
        "2024-01-03-000001_bio",
        "ALTER TABLE users ADD COLUMN bio text;",
        "ALTER TABLE users DROP COLUMN bio;",
    );
}

fn folders(f: &Folder) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(f.dir.join("migrations"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A squash is proven, then written; the database that applied the history takes it as applied,
/// a new database makes the same schema and rows from it, and one part way through is refused.
#[test]
fn squash_is_proven_then_taken_as_applied() {
    let f = folder();
    history(&f);
    let part_way = db::testing::TestDb::empty().unwrap();
    let mut first = vec![];
    std::fs::rename(f.dir.join("migrations/2024-01-02-000001_roles"), f.dir.join("roles.aside")).unwrap();
    std::fs::rename(f.dir.join("migrations/2024-01-03-000001_bio"), f.dir.join("bio.aside")).unwrap();
    xtask_on(&f, part_way.direct_url(), &["migration", "run"]).assert_ok();
    std::fs::rename(f.dir.join("roles.aside"), f.dir.join("migrations/2024-01-02-000001_roles")).unwrap();
    std::fs::rename(f.dir.join("bio.aside"), f.dir.join("migrations/2024-01-03-000001_bio")).unwrap();
    first.push(part_way);
    f.xtask(&["migration", "run"]).assert_ok();

    let dry = f.xtask(&["migration", "squash", "--through", "2024-01-02-000001_roles", "--dry-run"]);
    dry.assert_ok();
    assert!(dry.stderr.contains("proven"), "{}", dry.stderr);
    assert_eq!(folders(&f).len(), 3, "a dry run writes nothing");

    let squash = f.xtask(&["migration", "squash", "--through", "20240102000001", "base"]);
    squash.assert_ok();
    assert_eq!(folders(&f), ["2024-01-02-000001_base", "2024-01-03-000001_bio"]);
    assert!(squash.stderr.contains("took 2024-01-02-000001_base as applied"), "{}", squash.stderr);
    f.xtask(&["migration", "show", "--check"]).assert_ok();
    f.xtask(&["migration", "test", "--all"]).assert_ok();

    // A new database from the squashed folder: the same schema.rs and the same rows.
    let fresh = db::testing::TestDb::empty().unwrap();
    xtask_on(&f, fresh.direct_url(), &["migration", "run"]).assert_ok();
    let schema = |url: &url::Url| xtask_on(&f, url, &["schema", "generate", "--stdout"]).stdout;
    assert_eq!(schema(fresh.direct_url()), schema(f.db.direct_url()));
    let rows = "SELECT string_agg(email || ' ' || role_id, ',' ORDER BY id) AS text FROM users";
    assert_eq!(tests::text(&fresh, rows), "Ann@Example.com 1", "rows inserted before the trigger, as the history did");
    assert_eq!(tests::text(&fresh, rows), tests::text(&f.db, rows));

    // The database that applied only the first of the two squashed: refused, with the way out.
    let refused = xtask_on(&f, first[0].direct_url(), &["migration", "run"]);
    refused.assert_fails_with("applied 1 of the 2 migrations that 2024-01-02-000001_base replaces");
    assert!(refused.stderr.contains("--migration-dir"), "{}", refused.stderr);
}

/// A history whose rows differ from run to run cannot be squashed: the row is named, nothing
/// written.
#[test]
fn a_squash_whose_rows_differ_is_refused() {
    let f = folder();
    users(&f);
    migration(
        &f,
        "2024-01-02-000001_stamp",
        "CREATE TABLE stamps (id int PRIMARY KEY, at timestamptz NOT NULL); INSERT INTO stamps VALUES (1, clock_timestamp());",
        "DROP TABLE stamps;",
    );
    let refused = f.xtask(&["migration", "squash", "--through", "2024-01-02-000001_stamp"]);
    assert_eq!(refused.code, Some(1), "{}", refused.all());
    assert!(refused.stdout.contains("rows of public.stamps differ"), "{}", refused.stdout);
    assert!(refused.stdout.contains("nothing written"), "{}", refused.stdout);
    assert_eq!(folders(&f), [USERS, "2024-01-02-000001_stamp"]);
}

/// An edit of an applied migration in comments, whitespace or keyword case only is taken by
/// `run` with a note; a changed statement is refused as before, and `accept` says which it saw.
#[test]
fn a_comment_only_edit_is_accepted_and_a_changed_statement_refused() {
    let f = folder();
    users(&f);
    f.xtask(&["migration", "run"]).assert_ok();
    let up = f.dir.join("migrations").join(USERS).join("up.sql");
    std::fs::write(&up, "-- Who signs in.\ncreate table USERS (\n  id serial primary key,\n  email text not null, -- unique per person\n  status text\n);\n").unwrap();
    let show = f.xtask(&["migration", "show", "--check"]);
    show.assert_ok();
    assert!(show.stdout.contains("comments, whitespace or keyword case only"), "{}", show.stdout);
    let run = f.xtask(&["migration", "run"]);
    run.assert_ok();
    assert!(run.stderr.contains("changed only in comments, whitespace or keyword case"), "{}", run.stderr);
    assert!(!f.xtask(&["migration", "show"]).stdout.contains("edited"), "taken: nothing edited now");

    std::fs::write(&up, "CREATE TABLE users (id serial PRIMARY KEY, email text, status text);").unwrap();
    f.xtask(&["migration", "run"]).assert_fails_with("changed since they were applied");
    let accept = f.xtask(&["migration", "accept", USERS]);
    accept.assert_ok();
    assert!(accept.stderr.contains("its statements changed since it was applied"), "{}", accept.stderr);
}

/// `migration lint --help` is the xtask's own: answered without running (or building) the
/// linter's binary, which compiles Postgres's parser.
#[test]
fn lint_help_needs_no_linter_build() {
    let run: tests::Run =
        tests::isolated(&["migration", "lint", "--help"]).env("CARGO", "/nonexistent/cargo").output().unwrap().into();
    run.assert_ok();
    assert!(run.stdout.contains("Check migrations for statements that lock or rewrite tables"), "{}", run.stdout);
    assert!(run.stdout.contains("--measure"), "{}", run.stdout);
    assert!(!run.stderr.contains("building the linter"), "{}", run.stderr);
}
