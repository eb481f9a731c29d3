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
