//! `cargo xtask migration ...` and `schema sync` / `schema drop`, driven through the real
//! binary against real Postgres: each test has its own database and its own migrations folder.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use db::testing::TestDb;
use diesel::connection::SimpleConnection;
use diesel::sql_types::Text;
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use tests::{Run, root};

/// A database and a project folder of the test's own (`tests::Folder`): `diesel.toml` points at
/// `migrations/` and writes schema.rs into the folder, never into the repository.
struct Fixture(tests::Folder);

impl std::ops::Deref for Fixture {
    type Target = tests::Folder;
    fn deref(&self) -> &tests::Folder {
        &self.0
    }
}

impl Fixture {
    fn new() -> Fixture {
        Fixture(tests::Folder::new("migrations", None))
    }

    fn migrations(&self) -> PathBuf {
        self.dir.join("migrations")
    }

    /// Writes `migrations/<name>/{up,down}.sql` (and metadata.toml when given).
    fn migration(&self, name: &str, up: &str, down: &str, metadata: Option<&str>) -> PathBuf {
        write_migration(&self.migrations(), name, up, down, metadata)
    }

    fn conn(&self) -> PgConnection {
        self.db.connect().unwrap()
    }

    /// Versions recorded in `__diesel_schema_migrations`, oldest first.
    fn recorded(&self) -> Vec<String> {
        strings(&mut self.conn(), "SELECT version AS s FROM __diesel_schema_migrations ORDER BY version")
    }

    /// Tables in `public`, sorted, without the checksums kept beside diesel's bookkeeping.
    fn tables(&self) -> Vec<String> {
        strings(
            &mut self.conn(),
            "SELECT tablename AS s FROM pg_tables WHERE schemaname = 'public' \
             AND tablename <> '__railgun_migration_checksums' ORDER BY 1",
        )
    }

    /// `railgun.toml` beside the fixture's diesel.toml.
    fn settings(&self, toml: &str) {
        std::fs::write(self.dir.join("railgun.toml"), toml).unwrap();
    }
}

fn write_migration(dir: &Path, name: &str, up: &str, down: &str, metadata: Option<&str>) -> PathBuf {
    let path = dir.join(name);
    std::fs::create_dir_all(&path).unwrap();
    std::fs::write(path.join("up.sql"), up).unwrap();
    std::fs::write(path.join("down.sql"), down).unwrap();
    if let Some(metadata) = metadata {
        std::fs::write(path.join("metadata.toml"), metadata).unwrap();
    }
    path
}

#[derive(QueryableByName)]
struct S {
    #[diesel(sql_type = Text)]
    s: String,
}

fn strings(conn: &mut PgConnection, query: &str) -> Vec<String> {
    diesel::sql_query(query).load::<S>(conn).unwrap().into_iter().map(|r| r.s).collect()
}

/// Three small migrations, the last outside a transaction (CREATE INDEX CONCURRENTLY).
fn three_migrations(fx: &Fixture) {
    fx.migration(
        "2024-01-01-000001_create_posts",
        "CREATE TABLE posts (id SERIAL PRIMARY KEY, title TEXT NOT NULL);\n",
        "DROP TABLE posts;\n",
        None,
    );
    fx.migration(
        "2024-01-01-000002_create_tags",
        "CREATE TABLE tags (id SERIAL PRIMARY KEY, post_id INT NOT NULL REFERENCES posts (id));\n",
        "DROP TABLE tags;\n",
        None,
    );
    fx.migration(
        "2024-01-01-000003_index_tags",
        "CREATE INDEX CONCURRENTLY tags_post_id_idx ON tags (post_id);\n",
        "DROP INDEX CONCURRENTLY tags_post_id_idx;\n",
        Some("run_in_transaction = false\n"),
    );
}

#[test]
fn create_validates_the_name_and_writes_commented_templates() {
    let fx = Fixture::new();
    for (bad, says) in [
        ("", "empty"),
        ("AddUserAvatar", "not snake_case"),
        ("add-user", "not snake_case"),
        ("../escape", "is a path"),
        ("a/b", "is a path"),
    ] {
        fx.xtask(&["migration", "create", bad]).assert_fails_with(says);
    }
    assert!(std::fs::read_dir(fx.migrations()).unwrap().next().is_none(), "a refused name left a folder");

    let run = fx.xtask(&["migration", "create", "add_user_avatar"]);
    run.assert_ok();
    let folder = fx.dir.join(run.stdout.trim());
    let name = folder.file_name().unwrap().to_string_lossy().into_owned();
    assert!(folder.starts_with(fx.migrations()), "stdout is the new folder: {}", run.stdout);
    let (stamp, rest) = name.split_once('_').unwrap();
    assert_eq!(rest, "add_user_avatar");
    assert!(stamp.len() == 17 && stamp.chars().filter(|c| *c == '-').count() == 3, "YYYY-MM-DD-HHMMSS: {stamp}");
    for file in ["up.sql", "down.sql"] {
        let text = std::fs::read_to_string(folder.join(file)).unwrap();
        assert!(!text.is_empty() && text.lines().all(|l| l.starts_with("--")), "{file} is a commented template");
    }

    fx.xtask(&["migration", "create", "add_user_avatar"]).assert_fails_with("already exists");
    // A second one in the same second still gets a version of its own.
    let second = fx.xtask(&["migration", "create", "add_user_bio"]);
    second.assert_ok();
    let versions: Vec<String> = std::fs::read_dir(fx.migrations())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().split('_').next().unwrap().to_string())
        .collect();
    assert_eq!(versions.len(), 2);
    assert_ne!(versions[0], versions[1]);

    // An unedited template is not a migration yet: running it is refused, nothing is recorded.
    fx.xtask(&["migration", "run"]).assert_fails_with("has no SQL in up.sql, only comments");
    assert!(fx.recorded().is_empty());
}

#[test]
fn run_show_revert_redo() {
    let fx = Fixture::new();
    three_migrations(&fx);

    let show = fx.xtask(&["migration", "show"]);
    show.assert_ok();
    assert!(show.stdout.contains("[ ] 2024-01-01-000001_create_posts"), "{}", show.stdout);
    assert!(show.stdout.contains("0 applied, 3 pending"), "{}", show.stdout);
    fx.xtask(&["migration", "show", "--check"]).assert_fails_with("3 pending migration");

    let run = fx.xtask(&["migration", "run"]);
    run.assert_ok();
    assert!(run.stderr.contains("Running migration 2024-01-01-000003_index_tags"), "{}", run.stderr);
    assert_eq!(fx.recorded(), ["20240101000001", "20240101000002", "20240101000003"]);
    let schema = std::fs::read_to_string(fx.dir.join("schema.rs")).expect("schema.rs regenerated after the run");
    assert!(schema.contains("posts (id)") && schema.contains("tags (id)"), "{schema}");
    let again = fx.xtask(&["migration", "run"]);
    again.assert_ok();
    assert!(again.stderr.contains("no pending migrations"), "{}", again.stderr);

    let show = fx.xtask(&["migration", "show", "--check"]);
    show.assert_ok();
    assert!(show.stdout.contains("[X] 2024-01-01-000002_create_tags (applied at 20"), "{}", show.stdout);
    assert!(show.stdout.contains("3 applied, 0 pending"), "{}", show.stdout);
    let json: serde_json::Value =
        serde_json::from_str(&fx.xtask(&["migration", "show", "--json"]).assert_ok().stdout).unwrap();
    assert_eq!(json["applied"], 3);
    assert_eq!(json["pending"], 0);
    assert_eq!(json["migrations"][2]["name"], "2024-01-01-000003_index_tags");
    assert_eq!(json["migrations"][2]["applied"], true);
    assert!(json["migrations"][2]["applied_at"].as_str().unwrap().starts_with("20"));

    // revert: the newest first, one by default.
    fx.xtask(&["migration", "revert"]).assert_ok();
    assert_eq!(fx.recorded(), ["20240101000001", "20240101000002"]);
    let show = fx.xtask(&["migration", "show"]).assert_ok().stdout.clone();
    assert!(show.contains("[ ] 2024-01-01-000003_index_tags") && show.contains("2 applied, 1 pending"), "{show}");
    fx.xtask(&["migration", "run"]).assert_ok();
    fx.xtask(&["migration", "revert", "--count", "2"]).assert_ok();
    assert_eq!(fx.recorded(), ["20240101000001"]);
    assert_eq!(fx.tables(), ["__diesel_schema_migrations", "posts"]);

    // redo: down then up again; the data of the redone migration goes, the table comes back.
    fx.xtask(&["migration", "run"]).assert_ok();
    fx.conn().batch_execute("INSERT INTO posts (title) VALUES ('x'); INSERT INTO tags (post_id) VALUES (1)").unwrap();
    let redo = fx.xtask(&["migration", "redo", "-n", "2"]);
    redo.assert_ok();
    assert!(redo.stderr.contains("Rolling back migration 2024-01-01-000002_create_tags"), "{}", redo.stderr);
    assert_eq!(fx.recorded().len(), 3);
    assert_eq!(strings(&mut fx.conn(), "SELECT count(*)::text AS s FROM tags"), ["0"]);
    assert_eq!(strings(&mut fx.conn(), "SELECT count(*)::text AS s FROM posts"), ["1"]);

    // --all is destructive: refused without a terminal unless --yes, and refused for production.
    fx.xtask(&["migration", "revert", "--all"]).assert_fails_with("not confirmed");
    fx.command(&["migration", "revert", "--all", "--yes"])
        .env("APP_ENV", "production")
        .output()
        .map(Run::from)
        .unwrap()
        .assert_fails_with("APP_ENV=production");
    fx.xtask(&["migration", "redo", "--all"]).assert_fails_with("not confirmed");
    assert_eq!(fx.recorded().len(), 3, "a refused command changed nothing");
    fx.xtask(&["migration", "redo", "--all", "--yes"]).assert_ok();
    assert_eq!(fx.recorded().len(), 3);
    fx.xtask(&["migration", "revert", "--all", "--yes"]).assert_ok();
    assert!(fx.recorded().is_empty());
    assert_eq!(fx.tables(), ["__diesel_schema_migrations"]);
    let nothing = fx.xtask(&["migration", "revert"]);
    nothing.assert_ok();
    assert!(nothing.stderr.contains("no applied migration to revert"), "{}", nothing.stderr);
}

#[test]
fn a_failing_migration_rolls_back_and_names_its_file_and_line() {
    let fx = Fixture::new();
    fx.migration(
        "2024-01-01-000001_create_posts",
        "CREATE TABLE posts (id INT PRIMARY KEY);\n",
        "DROP TABLE posts;\n",
        None,
    );
    // Postgres gives no position for this error: the line comes from replaying statement by statement.
    let broken = fx.migration(
        "2024-01-01-000002_broken",
        "-- adds comments\nCREATE TABLE comments (id INT PRIMARY KEY);\n\nINSERT INTO comments VALUES (1);\nALTER TABLE missing ADD COLUMN y INT;\n",
        "DROP TABLE comments;\n",
        None,
    );
    let run = fx.xtask(&["migration", "run"]);
    run.assert_fails_with("migration 2024-01-01-000002_broken failed at migrations/2024-01-01-000002_broken/up.sql:5: relation \"missing\" does not exist");
    assert!(run.stderr.contains("rolled back"), "{}", run.stderr);
    assert!(run.stderr.contains("  5 | ALTER TABLE missing ADD COLUMN y INT;"), "quotes the line:\n{}", run.stderr);
    assert_eq!(
        fx.recorded(),
        ["20240101000001"],
        "the migration before it stays applied, the broken one is not recorded"
    );
    assert_eq!(fx.tables(), ["__diesel_schema_migrations", "posts"], "nothing of the broken migration stays");

    // Postgres gives a position for this one: its line, counted in characters.
    std::fs::write(
        broken.join("up.sql"),
        "CREATE TABLE comments (note TEXT DEFAULT 'é');\nSELECT nope\n  FROM comments;\n",
    )
    .unwrap();
    fx.xtask(&["migration", "run"]).assert_fails_with("up.sql:2: column \"nope\" does not exist");

    // A constraint failure: Postgres's detail is kept.
    std::fs::write(broken.join("up.sql"), "CREATE TABLE comments (x INT);\nINSERT INTO comments VALUES (1), (1);\nALTER TABLE comments ADD PRIMARY KEY (x);\n").unwrap();
    let run = fx.xtask(&["migration", "run"]);
    run.assert_fails_with("up.sql:3: could not create unique index");
    assert!(run.stderr.contains("Key (x)=(1) is duplicated"), "{}", run.stderr);
    assert_eq!(fx.tables(), ["__diesel_schema_migrations", "posts"]);

    // A failing down.sql: the revert rolls back too, the migration stays applied.
    std::fs::write(broken.join("up.sql"), "CREATE TABLE comments (x INT);\n").unwrap();
    std::fs::write(broken.join("down.sql"), "DROP TABLE comments;\nDROP TABLE nothing_here;\n").unwrap();
    fx.xtask(&["migration", "run"]).assert_ok();
    fx.xtask(&["migration", "revert"]).assert_fails_with("down.sql:2: table \"nothing_here\" does not exist");
    // redo runs in one transaction: its failing step (a savepoint) is located the same way.
    fx.xtask(&["migration", "redo"]).assert_fails_with("down.sql:2: table \"nothing_here\" does not exist");
    assert_eq!(fx.recorded().len(), 2);
    assert!(fx.tables().contains(&"comments".to_string()));

    // Outside a transaction nothing can be rolled back, and the error says so.
    fx.migration(
        "2024-01-01-000003_no_transaction",
        "CREATE INDEX CONCURRENTLY comments_x_idx ON no_such_table (x);\n",
        "SELECT 1;\n",
        Some("run_in_transaction = false\n"),
    );
    let run = fx.xtask(&["migration", "run"]);
    run.assert_fails_with("up.sql:1: relation \"no_such_table\" does not exist");
    assert!(run.stderr.contains("outside a transaction"), "{}", run.stderr);

    // Empty files and folders without up.sql are refused before anything runs.
    std::fs::write(fx.migrations().join("2024-01-01-000003_no_transaction/up.sql"), "").unwrap();
    fx.xtask(&["migration", "run"]).assert_fails_with("has an empty up.sql");
    std::fs::create_dir(fx.migrations().join("2024-01-01-000004_half_made")).unwrap();
    fx.xtask(&["migration", "show"]).assert_fails_with("has no up.sql");
}

#[test]
fn concurrent_runners_apply_each_migration_exactly_once() {
    let fx = Fixture::new();
    fx.migration(
        "2024-01-01-000000_runs",
        "CREATE TABLE runs (name TEXT NOT NULL, at TIMESTAMPTZ DEFAULT clock_timestamp());\n",
        "DROP TABLE runs;\n",
        None,
    );
    for n in 1..=5 {
        let (up, metadata) = if n == 3 {
            // Outside a transaction only the lock stands between it and a second run.
            ("INSERT INTO runs (name) VALUES ('m3');\n".to_string(), Some("run_in_transaction = false\n"))
        } else {
            (format!("INSERT INTO runs (name) VALUES ('m{n}');\nSELECT pg_sleep(0.05);\n"), None)
        };
        fx.migration(&format!("2024-01-01-00000{n}_step"), &up, "SELECT 1;\n", metadata);
    }
    let runners: Vec<_> = (0..3)
        .map(|_| fx.command(&["migration", "run"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    for runner in runners {
        Run::from(runner.wait_with_output().unwrap()).assert_ok();
    }
    assert_eq!(strings(&mut fx.conn(), "SELECT name AS s FROM runs ORDER BY at"), ["m1", "m2", "m3", "m4", "m5"]);
    assert_eq!(fx.recorded().len(), 6);
}

#[test]
fn a_runner_waits_for_the_lock_and_says_so() {
    let fx = Fixture::new();
    three_migrations(&fx);
    // Someone else holds the migration lock (the key is "railgun" in ASCII).
    let mut holder = fx.conn();
    holder.batch_execute("SELECT pg_advisory_lock(x'007261696c67756e'::bigint)").unwrap();
    let runner = fx.command(&["migration", "run"]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let waiting = "SELECT count(*)::text AS s FROM pg_locks WHERE locktype = 'advisory' AND NOT granted \
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    let mut polls = 0;
    while strings(&mut fx.conn(), waiting) != ["1"] {
        polls += 1;
        assert!(polls < 600, "the runner never queued for the lock");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(fx.tables().is_empty(), "nothing happens while the lock is held");
    holder.batch_execute("SELECT pg_advisory_unlock_all()").unwrap();
    let run = Run::from(runner.wait_with_output().unwrap());
    run.assert_ok();
    assert!(run.stderr.contains("waiting for another migration run on this database (server pid"), "{}", run.stderr);
    assert_eq!(fx.recorded().len(), 3);
}

#[test]
fn show_explains_a_version_applied_but_missing_on_disk() {
    let fx = Fixture::new();
    three_migrations(&fx);
    fx.xtask(&["migration", "run"]).assert_ok();
    std::fs::remove_dir_all(fx.migrations().join("2024-01-01-000003_index_tags")).unwrap();

    let show = fx.xtask(&["migration", "show"]);
    show.assert_ok();
    assert!(show.stdout.contains("[X] 20240101000003 (applied at"), "{}", show.stdout);
    assert!(show.stdout.contains("NOT ON DISK"), "{}", show.stdout);
    assert!(show.stdout.contains("3 applied, 0 pending, 1 applied but not on disk"), "{}", show.stdout);
    assert!(show.stderr.contains("SELECT version, run_on FROM __diesel_schema_migrations"), "{}", show.stderr);
    assert!(show.stderr.contains("DELETE FROM __diesel_schema_migrations WHERE version"), "{}", show.stderr);
    let json: serde_json::Value = serde_json::from_str(&fx.xtask(&["migration", "show", "--json"]).stdout).unwrap();
    assert_eq!(json["missing_on_disk"], 1);
    assert_eq!(json["migrations"][2]["on_disk"], false);

    fx.xtask(&["migration", "show", "--check"]).assert_fails_with("not on disk");
    let run = fx.xtask(&["migration", "run"]);
    run.assert_ok();
    assert!(run.stderr.contains("no migration folder has: 20240101000003"), "{}", run.stderr);
    fx.xtask(&["migration", "revert"]).assert_fails_with("cannot revert version 20240101000003");
    assert_eq!(fx.recorded().len(), 3, "nothing was reverted");
}

#[test]
fn schema_sync_rebuilds_exactly_what_the_migrations_make() {
    let fx = Fixture::new();
    three_migrations(&fx);
    fx.xtask(&["migration", "run"]).assert_ok();
    fx.conn()
        .batch_execute(
            "CREATE TYPE mood AS ENUM ('ok'); CREATE TABLE junk (id SERIAL PRIMARY KEY, m mood);
             CREATE VIEW junk_view AS SELECT * FROM junk; CREATE SEQUENCE lone_seq;
             CREATE FUNCTION junk_fn(a INT) RETURNS INT LANGUAGE sql AS 'SELECT a';
             DROP TABLE tags CASCADE; INSERT INTO posts (title) VALUES ('gone after sync');
             CREATE SCHEMA extra; CREATE TABLE extra.kept_unless_named (a INT);",
        )
        .unwrap();

    let refused = fx.xtask(&["schema", "sync"]);
    refused.assert_fails_with("not confirmed");
    for listed in [
        "drop table public.junk",
        "drop view public.junk_view",
        "drop type public.mood",
        "drop sequence public.lone_seq",
        "drop function public.junk_fn(a integer)",
        "drop table public.__diesel_schema_migrations",
    ] {
        assert!(refused.stderr.contains(listed), "lists `{listed}`:\n{}", refused.stderr);
    }
    assert!(!refused.stderr.contains("junk_id_seq"), "a table's own sequence is not listed:\n{}", refused.stderr);
    assert!(!refused.stderr.contains("extra"), "another schema is the app's only when named:\n{}", refused.stderr);
    fx.command(&["schema", "sync", "--yes"])
        .env("APP_ENV", "production")
        .output()
        .map(Run::from)
        .unwrap()
        .assert_fails_with("APP_ENV=production");
    assert!(fx.tables().contains(&"junk".to_string()), "a refused sync dropped nothing");

    let sync = fx.xtask(&["schema", "sync", "--yes", "--schema", "extra"]);
    sync.assert_ok();
    assert!(sync.stderr.contains("drop schema extra"), "{}", sync.stderr);
    assert_eq!(fx.tables(), ["__diesel_schema_migrations", "posts", "tags"]);
    assert!(strings(&mut fx.conn(), "SELECT nspname::text AS s FROM pg_namespace WHERE nspname = 'extra'").is_empty());
    assert_eq!(fx.recorded().len(), 3);
    let leftovers = strings(
        &mut fx.conn(),
        "SELECT typname::text AS s FROM pg_type WHERE typname = 'mood' UNION ALL SELECT proname::text FROM pg_proc WHERE proname = 'junk_fn' UNION ALL SELECT relname::text FROM pg_class WHERE relname IN ('lone_seq', 'junk_view')",
    );
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert_eq!(strings(&mut fx.conn(), "SELECT count(*)::text AS s FROM posts"), ["0"]);
    fx.xtask(&["migration", "show", "--check"]).assert_ok();
}

#[test]
fn schema_drop_drops_every_table_after_listing_them() {
    let fx = Fixture::new();
    three_migrations(&fx);
    fx.xtask(&["migration", "run"]).assert_ok();
    let refused = fx.xtask(&["schema", "drop"]);
    refused.assert_fails_with("refused to drop every table");
    assert!(refused.stderr.contains("drop table public.posts") && refused.stderr.contains("drop table public.tags"));
    assert_eq!(fx.tables().len(), 3);
    // Production is refused before anything connects: nothing is even listed.
    let production: Run =
        fx.command(&["schema", "drop", "--yes"]).env("APP_ENV", "production").output().unwrap().into();
    production.assert_fails_with("APP_ENV=production");
    assert!(!production.stderr.contains("drop table"), "{}", production.stderr);
    assert_eq!(fx.tables().len(), 3);

    fx.xtask(&["schema", "drop", "--yes"]).assert_ok();
    assert!(fx.tables().is_empty());
    let empty = fx.xtask(&["schema", "drop", "--yes"]);
    empty.assert_ok();
    assert!(empty.stderr.contains("nothing to drop"), "{}", empty.stderr);
    // From nothing, the migrations build it all again.
    fx.xtask(&["migration", "run"]).assert_ok();
    assert_eq!(fx.tables().len(), 3);
}

#[test]
fn the_projects_migrations_go_up_down_and_up_again() {
    let fx = Fixture::new();
    let dir = root().join("db/migrations");
    let dir = dir.to_str().unwrap();
    fx.xtask(&["--migration-dir", dir, "migration", "run"]).assert_ok();
    let applied = fx.recorded();
    assert!(applied.len() >= 5, "{applied:?}");
    assert_eq!(fx.tables(), ["__diesel_schema_migrations", "api_tokens", "billing_accounts", "users"]);
    fx.xtask(&["--migration-dir", dir, "migration", "revert", "--all", "--yes"]).assert_ok();
    assert_eq!(fx.tables(), ["__diesel_schema_migrations"], "every down.sql undoes its up.sql");
    assert!(
        strings(&mut fx.conn(), "SELECT proname::text AS s FROM pg_proc WHERE pronamespace = 'public'::regnamespace")
            .is_empty()
    );
    fx.xtask(&["--migration-dir", dir, "migration", "run"]).assert_ok();
    assert_eq!(fx.recorded(), applied);
    fx.xtask(&["--migration-dir", dir, "migration", "show", "--check"]).assert_ok();
}

#[test]
fn the_schema_keeps_secrets_hashed_and_billing_apart_from_user_ids() {
    use db::models::{BillingAccount, NewApiToken, NewBillingAccount, NewUser, User};
    use db::schema::{billing_accounts, users};
    use diesel::prelude::*;

    let test_db = TestDb::new().unwrap();
    let mut conn = test_db.conn().unwrap();
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
    let user: User = diesel::insert_into(users::table)
        .values(NewUser { email: "ada@example.com", display_name: "Ada", password_hash: hash })
        .returning(User::as_returning())
        .get_result(&mut conn)
        .unwrap();
    assert_eq!(user.status.as_deref(), Some("active"), "the guide's AddUserStatus default");
    assert!(!format!("{user:?}").contains("argon2"), "Debug hides the hash");

    let plaintext = diesel::insert_into(users::table)
        .values(NewUser { email: "bob@example.com", display_name: "Bob", password_hash: "hunter2" })
        .execute(&mut conn)
        .unwrap_err();
    assert!(plaintext.to_string().contains("users_password_hash_argon2"), "{plaintext}");
    let duplicate = diesel::insert_into(users::table)
        .values(NewUser { email: "ada@example.com", display_name: "Ada 2", password_hash: hash })
        .execute(&mut conn)
        .unwrap_err();
    assert!(duplicate.to_string().contains("users_email_key"), "{duplicate}");

    let account: BillingAccount = diesel::insert_into(billing_accounts::table)
        .values(NewBillingAccount { plan: "pro", provider_customer_id: None })
        .returning(BillingAccount::as_returning())
        .get_result(&mut conn)
        .unwrap();
    assert!(account.billing_ref.starts_with("bill_") && account.billing_ref.len() == 37, "{}", account.billing_ref);
    diesel::update(users::table.find(user.id))
        .set(users::billing_ref.eq(&account.billing_ref))
        .execute(&mut conn)
        .unwrap();
    let (linked, billing): (User, BillingAccount) = users::table
        .inner_join(billing_accounts::table)
        .select((User::as_select(), BillingAccount::as_select()))
        .first(&mut conn)
        .unwrap();
    assert_eq!((linked.id, billing.plan.as_str()), (user.id, "pro"));
    assert!(linked.updated_at >= linked.created_at);

    let token =
        NewApiToken { user_id: user.id, name: "ci", prefix: "rg_abcdef12", token_hash: "sha1:nope", expires_at: None };
    let err = diesel::insert_into(db::schema::api_tokens::table).values(token).execute(&mut conn).unwrap_err();
    assert!(err.to_string().contains("api_tokens_token_hash_argon2"), "{err}");
    let token = NewApiToken { user_id: user.id, name: "ci", prefix: "rg_abcdef12", token_hash: hash, expires_at: None };
    diesel::insert_into(db::schema::api_tokens::table).values(token).execute(&mut conn).unwrap();
    let tokens: i64 = db::schema::api_tokens::table.count().get_result(&mut conn).unwrap();
    assert_eq!(tokens, 1);
}

#[test]
fn an_edited_applied_migration_is_refused_until_reverted_or_accepted_and_crlf_is_no_edit() {
    let fx = Fixture::new();
    let posts = fx.migration(
        "2024-01-01-000001_create_posts",
        "-- posts\nCREATE TABLE posts (id INT PRIMARY KEY);\nCREATE INDEX posts_id_idx ON posts (id);\n",
        "DROP TABLE posts;\n",
        None,
    );
    fx.migration(
        "2024-01-01-000002_create_tags",
        "CREATE TABLE tags (id INT PRIMARY KEY);\n",
        "DROP TABLE tags;\n",
        None,
    );
    fx.xtask(&["migration", "run"]).assert_ok();
    let up = posts.join("up.sql");

    // A checkout with CRLF line endings is the same migration.
    std::fs::write(&up, std::fs::read_to_string(&up).unwrap().replace('\n', "\r\n")).unwrap();
    let show = fx.xtask(&["migration", "show", "--check"]);
    show.assert_ok();
    assert!(!show.stdout.contains("EDITED"), "{}", show.stdout);
    assert!(fx.xtask(&["migration", "run"]).assert_ok().stderr.contains("no pending migrations"));

    // A real edit: show marks it, --check fails, run refuses (naming it and the fixes) and applies nothing.
    std::fs::write(
        &up,
        "-- posts\nCREATE TABLE posts (id BIGINT PRIMARY KEY);\nCREATE INDEX posts_id_idx ON posts (id);\n",
    )
    .unwrap();
    let show = fx.xtask(&["migration", "show"]);
    show.assert_ok();
    assert!(
        show.stdout.contains("[X] 2024-01-01-000001_create_posts (applied at ")
            && show.stdout.contains("EDITED since it was applied"),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("2 applied, 0 pending, 1 edited since applied"), "{}", show.stdout);
    let json: serde_json::Value =
        serde_json::from_str(&fx.xtask(&["migration", "show", "--json"]).assert_ok().stdout).unwrap();
    assert_eq!((json["edited"].clone(), json["migrations"][0]["edited"].clone()), (1.into(), true.into()));
    assert_eq!(json["migrations"][1]["checksum"], "unchanged");
    fx.xtask(&["migration", "show", "--check"])
        .assert_fails_with("changed since they were applied: 2024-01-01-000001_create_posts");
    fx.migration("2024-01-01-000003_create_notes", "CREATE TABLE notes (id INT);\n", "DROP TABLE notes;\n", None);
    let refused = fx.xtask(&["migration", "run"]);
    refused.assert_fails_with("1 applied migration(s) changed since they were applied: 2024-01-01-000001_create_posts");
    assert!(refused.stderr.contains("cargo xtask migration accept 20240101000001"), "{}", refused.stderr);
    assert!(refused.stderr.contains("cargo xtask migration revert"), "{}", refused.stderr);
    assert_eq!(fx.recorded(), ["20240101000001", "20240101000002"], "nothing ran");

    // Accepted after review: run goes on, show is clean.
    fx.xtask(&["migration", "accept", "nope"]).assert_fails_with("no migration has the version or name nope");
    let accept = fx.xtask(&["migration", "accept", "20240101000001"]);
    accept.assert_ok();
    assert!(
        accept.stderr.contains("accepted 2024-01-01-000001_create_posts: its checksum is now fnv1a64:"),
        "{}",
        accept.stderr
    );
    fx.xtask(&["migration", "run"]).assert_ok();
    fx.xtask(&["migration", "show", "--check"]).assert_ok();
    fx.xtask(&["migration", "accept", "20240101000003"]).assert_ok();

    // The development fix: revert the edited one and run it again; the new file is what ran.
    let notes = fx.migrations().join("2024-01-01-000003_create_notes/up.sql");
    std::fs::write(&notes, "CREATE TABLE notes (id INT, body TEXT);\n").unwrap();
    fx.xtask(&["migration", "run"]).assert_fails_with("create_notes");
    fx.xtask(&["migration", "revert"]).assert_ok();
    fx.xtask(&["migration", "run"]).assert_ok();
    fx.xtask(&["migration", "show", "--check"]).assert_ok();
    assert_eq!(
        strings(
            &mut fx.conn(),
            "SELECT count(*)::text AS s FROM information_schema.columns WHERE table_name = 'notes'"
        ),
        ["2"]
    );
    // A reverted migration leaves no checksum behind.
    fx.xtask(&["migration", "revert", "--all", "--yes"]).assert_ok();
    assert_eq!(strings(&mut fx.conn(), "SELECT count(*)::text AS s FROM __railgun_migration_checksums"), ["0"]);
}

#[test]
fn an_out_of_order_migration_is_refused_unless_allowed_and_revert_undoes_the_latest_applied() {
    let fx = Fixture::new();
    fx.migration("2024-01-01-000001_create_posts", "CREATE TABLE posts (id INT);\n", "DROP TABLE posts;\n", None);
    fx.migration("2024-01-03-000000_create_tags", "CREATE TABLE tags (id INT);\n", "DROP TABLE tags;\n", None);
    fx.xtask(&["migration", "run"]).assert_ok();
    // Merged from another branch: older than the newest applied migration.
    fx.migration("2024-01-02-000000_create_notes", "CREATE TABLE notes (id INT);\n", "DROP TABLE notes;\n", None);

    let show = fx.xtask(&["migration", "show"]);
    show.assert_ok();
    assert!(
        show.stdout.contains(
            "[ ] 2024-01-02-000000_create_notes (OUT OF ORDER: older than the newest applied version, 20240103000000)"
        ),
        "{}",
        show.stdout
    );
    assert!(show.stdout.contains("2 applied, 1 pending, 1 out of order"), "{}", show.stdout);
    let refused = fx.xtask(&["migration", "run"]);
    refused.assert_fails_with("1 pending migration(s) out of order: 2024-01-02-000000_create_notes");
    assert!(refused.stderr.contains("--allow-out-of-order"), "{}", refused.stderr);
    assert_eq!(fx.recorded(), ["20240101000001", "20240103000000"]);

    let run = fx.xtask(&["migration", "run", "--allow-out-of-order"]);
    run.assert_ok();
    assert!(run.stderr.contains("applying out of order (allowed): 2024-01-02-000000_create_notes"), "{}", run.stderr);
    assert_eq!(fx.recorded().len(), 3);

    // revert undoes the most recently applied, not the highest version, and says so.
    let revert = fx.xtask(&["migration", "revert"]);
    revert.assert_ok();
    assert!(revert.stderr.contains("Rolling back migration 2024-01-02-000000_create_notes"), "{}", revert.stderr);
    assert!(revert.stderr.contains("not the highest version 20240103000000"), "{}", revert.stderr);
    assert_eq!(fx.recorded(), ["20240101000001", "20240103000000"]);

    // The setting in railgun.toml allows it too; then revert -n 2 goes back in the order applied.
    fx.settings("[migrations]\nallow_out_of_order = true\n");
    fx.xtask(&["migration", "run"]).assert_ok();
    let revert = fx.xtask(&["migration", "revert", "-n", "2"]);
    revert.assert_ok();
    let notes = revert.stderr.find("Rolling back migration 2024-01-02-000000_create_notes").unwrap();
    let tags = revert.stderr.find("Rolling back migration 2024-01-03-000000_create_tags").unwrap();
    assert!(notes < tags, "{}", revert.stderr);
    assert_eq!(fx.recorded(), ["20240101000001"]);
    // In order, nothing is out of order and the highest version is also the latest.
    let run = fx.xtask(&["migration", "run"]);
    assert!(!run.assert_ok().stderr.contains("out of order"), "{}", run.stderr);
    fx.settings("[migrations]\nallow_out_of_order = yes\n");
    fx.xtask(&["migration", "run"]).assert_fails_with("parse");
}

#[test]
fn a_lock_timeout_is_retried_with_backoff_and_reported() {
    use std::io::BufRead;
    let fx = Fixture::new();
    fx.migration("2024-01-01-000001_create_posts", "CREATE TABLE posts (id INT);\n", "DROP TABLE posts;\n", None);
    fx.xtask(&["migration", "run"]).assert_ok();
    fx.migration(
        "2024-01-01-000002_add_title",
        "ALTER TABLE posts ADD COLUMN title TEXT;\n",
        "ALTER TABLE posts DROP COLUMN title;\n",
        None,
    );
    // A reader of posts holds ACCESS SHARE: the ALTER TABLE's ACCESS EXCLUSIVE waits behind it.
    let mut reader = fx.conn();
    reader.batch_execute("BEGIN; SELECT * FROM posts;").unwrap();

    // Held throughout: every attempt times out, each retry is reported, nothing is applied.
    fx.settings("[migrations]\nlock_timeout = \"100ms\"\nlock_retries = 2\nretry_backoff = \"10ms\"\n");
    let run = fx.xtask(&["migration", "run"]);
    run.assert_fails_with("gave up on 2024-01-01-000002_add_title after 3 attempts");
    assert!(run.stderr.contains("canceling statement due to lock timeout"), "{}", run.stderr);
    assert!(run.stderr.contains("retrying in 10 ms (attempt 2 of 3)"), "{}", run.stderr);
    assert!(run.stderr.contains("retrying in 20 ms (attempt 3 of 3)"), "the backoff doubles:\n{}", run.stderr);
    assert!(run.stderr.contains("pg_stat_activity"), "the fix says how to find the holder:\n{}", run.stderr);
    assert_eq!(fx.recorded(), ["20240101000001"]);

    // Released during the backoff: the next attempt succeeds.
    fx.settings("[migrations]\nlock_timeout = \"100ms\"\nretry_backoff = \"3s\"\n");
    let mut child = fx.command(&["migration", "run"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stderr = String::new();
    for line in std::io::BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains("retrying in") {
            reader.batch_execute("COMMIT").unwrap();
        }
        stderr.push_str(&line);
        stderr.push('\n');
    }
    assert!(child.wait().unwrap().success(), "{stderr}");
    assert!(stderr.contains("applied 2024-01-01-000002_add_title on attempt 2"), "{stderr}");
    assert_eq!(fx.recorded().len(), 2);

    // A migration's metadata.toml sets its own statement_timeout; a statement timeout is not retried.
    fx.migration(
        "2024-01-01-000003_slow",
        "SELECT pg_sleep(3);\n",
        "SELECT 1;\n",
        Some("run_in_transaction = true\nstatement_timeout = \"100ms\"\n"),
    );
    let run = fx.xtask(&["migration", "run"]);
    run.assert_fails_with("canceling statement due to statement timeout");
    assert!(run.stderr.contains("it ran longer than statement_timeout (100ms)"), "{}", run.stderr);
    assert!(!run.stderr.contains("retrying"), "{}", run.stderr);
    // A timeout without run_in_transaction would make diesel run it outside a transaction: refused.
    std::fs::write(fx.migrations().join("2024-01-01-000003_slow/metadata.toml"), "lock_timeout = \"1s\"\n").unwrap();
    fx.xtask(&["migration", "run"]).assert_fails_with("sets a timeout but not run_in_transaction");
    std::fs::write(
        fx.migrations().join("2024-01-01-000003_slow/metadata.toml"),
        "run_in_transaction = true\nlock_timeout = \"1 parsec\"\n",
    )
    .unwrap();
    fx.xtask(&["migration", "run"]).assert_fails_with("is not a setting Postgres takes");
    assert_eq!(fx.recorded().len(), 2);
}

/// Everything a dry run must leave as it found it: the bookkeeping, the checksums, the tables
/// and their columns, the indexes, schema.rs, and the databases on the server.
fn footprint(fx: &Fixture) -> Vec<String> {
    let mut conn = fx.conn();
    let mut all = fx.recorded();
    for query in [
        "SELECT version || ' ' || checksum AS s FROM __railgun_migration_checksums ORDER BY 1",
        "SELECT table_name || '.' || column_name AS s FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1",
        "SELECT indexname::text AS s FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
        "SELECT datname::text AS s FROM pg_database WHERE datname LIKE 'railgun\\_dryrun%' ORDER BY 1",
    ] {
        all.extend(strings(&mut conn, query));
    }
    all.push(std::fs::read_to_string(fx.dir.join("schema.rs")).unwrap());
    all
}

#[test]
fn a_dry_run_shows_the_schema_diff_and_timings_and_leaves_nothing_behind() {
    let fx = Fixture::new();
    fx.migration(
        "2024-01-01-000001_create_posts",
        "CREATE TABLE posts (id INT PRIMARY KEY);\n",
        "DROP TABLE posts;\n",
        None,
    );
    fx.xtask(&["migration", "run"]).assert_ok();
    fx.conn().batch_execute("INSERT INTO posts SELECT generate_series(1, 1000)").unwrap();
    fx.migration(
        "2024-01-01-000002_add_title",
        "ALTER TABLE posts ADD COLUMN title TEXT;\n\nUPDATE posts SET title = 'p' || id;\n",
        "ALTER TABLE posts DROP COLUMN title;\n",
        None,
    );
    fx.migration(
        "2024-01-01-000003_create_notes",
        "CREATE TABLE notes (id INT PRIMARY KEY, body TEXT NOT NULL);\n",
        "DROP TABLE notes;\n",
        None,
    );
    let before = footprint(&fx);

    // All transactional: applied and rolled back in the database itself.
    let dry = fx.xtask(&["migration", "run", "--dry-run"]);
    dry.assert_ok();
    assert!(dry.stderr.contains("Would run migration 2024-01-01-000002_add_title"), "{}", dry.stderr);
    assert!(
        dry.stderr
            .contains(" ms  migrations/2024-01-01-000002_add_title/up.sql:3  UPDATE posts SET title = 'p' || id;"),
        "a timing per statement, with its line:\n{}",
        dry.stderr
    );
    assert!(dry.stderr.contains("nothing was written (rolled back)"), "{}", dry.stderr);
    assert!(
        dry.stdout.starts_with("--- schema.rs (now)\n+++ schema.rs (after the pending migrations)\n"),
        "{}",
        dry.stdout
    );
    assert!(dry.stdout.contains("+        title -> Nullable<Text>,"), "{}", dry.stdout);
    assert!(dry.stdout.contains("+    notes (id) {"), "{}", dry.stdout);
    assert_eq!(footprint(&fx), before, "the dry run wrote something");

    // A migration outside a transaction: everything runs on a scratch copy, dropped afterwards.
    fx.migration(
        "2024-01-01-000004_index_titles",
        "CREATE INDEX CONCURRENTLY posts_title_idx ON posts (title);\n",
        "DROP INDEX CONCURRENTLY posts_title_idx;\n",
        Some("run_in_transaction = false\n"),
    );
    let before = footprint(&fx);
    let dry = fx.xtask(&["migration", "run", "--dry-run"]);
    dry.assert_ok();
    assert!(dry.stderr.contains("on a scratch copy of"), "{}", dry.stderr);
    assert!(
        dry.stderr.contains("up.sql:1  CREATE INDEX CONCURRENTLY posts_title_idx ON posts (title);"),
        "{}",
        dry.stderr
    );
    assert!(dry.stderr.contains("now dropped"), "{}", dry.stderr);
    assert!(dry.stdout.contains("+    notes (id) {"), "{}", dry.stdout);
    assert_eq!(footprint(&fx), before, "the dry run wrote something");

    // A failing migration is reported as the real run would, and nothing stays either.
    std::fs::write(
        fx.migrations().join("2024-01-01-000003_create_notes/up.sql"),
        "CREATE TABLE notes (id INT);\nALTER TABLE nope ADD COLUMN x INT;\n",
    )
    .unwrap();
    let before = footprint(&fx);
    fx.xtask(&["migration", "run", "--dry-run"]).assert_fails_with(
        "dry run: migration 2024-01-01-000003_create_notes fails at migrations/2024-01-01-000003_create_notes/up.sql:2",
    );
    assert_eq!(footprint(&fx), before);
    // Then the real run applies them all.
    std::fs::write(
        fx.migrations().join("2024-01-01-000003_create_notes/up.sql"),
        "CREATE TABLE notes (id INT PRIMARY KEY);\n",
    )
    .unwrap();
    fx.xtask(&["migration", "run"]).assert_ok();
    assert!(fx.xtask(&["migration", "run", "--dry-run"]).assert_ok().stderr.contains("dry run: no pending migrations"));
}

#[test]
fn names_with_control_characters_are_printed_escaped() {
    let fx = Fixture::new();
    fx.migration("2024-01-01-000001_red\x1b[31mname", "CREATE TABLE red (id INT);\n", "DROP TABLE red;\n", None);
    let show = fx.xtask(&["migration", "show"]);
    show.assert_ok();
    assert!(show.stdout.contains("[ ] 2024-01-01-000001_red\\x1b[31mname"), "{}", show.stdout);
    assert!(!show.all().contains('\x1b'), "an escape code reached the terminal:\n{:?}", show.all());
    let run = fx.xtask(&["migration", "run"]);
    run.assert_ok();
    assert!(run.stderr.contains("Running migration 2024-01-01-000001_red\\x1b[31mname"), "{}", run.stderr);
    assert!(!run.all().contains('\x1b'), "{:?}", run.all());
    // A failing one, its folder's name with a newline: the error shows it on one line.
    fx.migration("2024-01-01-000002_forged\nerror: nothing\x07", "SELECT nope;\n", "SELECT 1;\n", None);
    let run = fx.xtask(&["migration", "run"]);
    run.assert_fails_with("migration 2024-01-01-000002_forged\\x0aerror: nothing\\x07 failed at ");
    assert!(!run.all().contains('\x07') && !run.stderr.contains("\nerror: nothing"), "{:?}", run.all());
}

#[test]
fn a_symlinked_migration_folder_is_followed_and_a_dangling_one_refused() {
    let fx = Fixture::new();
    let elsewhere = fx.dir.join("shared");
    write_migration(
        &elsewhere,
        "2024-01-01-000001_shared",
        "CREATE TABLE shared (id INT);\n",
        "DROP TABLE shared;\n",
        None,
    );
    std::os::unix::fs::symlink(
        elsewhere.join("2024-01-01-000001_shared"),
        fx.migrations().join("2024-01-01-000001_shared"),
    )
    .unwrap();
    let show = fx.xtask(&["migration", "show"]);
    assert!(show.assert_ok().stdout.contains("[ ] 2024-01-01-000001_shared"), "{}", show.stdout);
    fx.xtask(&["migration", "run"]).assert_ok();
    assert_eq!(fx.recorded(), ["20240101000001"]);
    assert!(fx.tables().contains(&"shared".to_string()));
    std::os::unix::fs::symlink(fx.dir.join("gone"), fx.migrations().join("2024-01-01-000002_gone")).unwrap();
    fx.xtask(&["migration", "show"])
        .assert_fails_with("2024-01-01-000002_gone is a symbolic link that cannot be followed");
}

#[test]
fn a_migration_with_its_own_transaction_control_is_refused_before_anything_runs() {
    let fx = Fixture::new();
    fx.migration("2024-01-01-000001_first", "CREATE TABLE first (id INT);\n", "DROP TABLE first;\n", None);
    let own = fx.migration(
        "2024-01-01-000002_own_transaction",
        "-- as rust-lang/rfcbot's migrations do\nBEGIN;\nCREATE TABLE a ();\nCOMMIT;\n",
        "DROP TABLE a;\n",
        None,
    );
    let run = fx.xtask(&["migration", "run"]);
    run.assert_fails_with("migration 2024-01-01-000002_own_transaction controls its own transaction: `BEGIN` at migrations/2024-01-01-000002_own_transaction/up.sql:2");
    assert!(run.stderr.contains("run_in_transaction = false"), "{}", run.stderr);
    assert!(fx.recorded().is_empty(), "nothing recorded, not even the migration before it");
    assert_eq!(fx.tables(), ["__diesel_schema_migrations"], "nothing ran");
    fx.xtask(&["migration", "run", "--dry-run"]).assert_fails_with("controls its own transaction");

    // Function bodies are not transaction control: BEGIN ATOMIC and PL/pgSQL.
    std::fs::write(
        own.join("up.sql"),
        "CREATE TABLE a (id INT);\n\
         CREATE FUNCTION one() RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n  SELECT 1;\n  SELECT CASE WHEN true THEN 1 END;\nEND;\n\
         CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  RETURN NEW;\nEND\n$$;\n",
    )
    .unwrap();
    fx.xtask(&["migration", "run"]).assert_ok();
    assert_eq!(fx.recorded(), ["20240101000001", "20240101000002"]);

    // A down.sql with a COMMIT in it is refused the same way, and the migration stays applied.
    std::fs::write(own.join("down.sql"), "DROP FUNCTION touch();\nDROP FUNCTION one();\nDROP TABLE a;\nCOMMIT;\n")
        .unwrap();
    fx.xtask(&["migration", "revert"])
        .assert_fails_with("`COMMIT` at migrations/2024-01-01-000002_own_transaction/down.sql:4");
    assert_eq!(fx.recorded().len(), 2);
    assert!(fx.tables().contains(&"a".to_string()));

    // Outside a transaction, by its metadata, it manages its own.
    std::fs::write(
        own.join("down.sql"),
        "BEGIN;\nDROP FUNCTION touch();\nDROP FUNCTION one();\nDROP TABLE a;\nCOMMIT;\n",
    )
    .unwrap();
    std::fs::write(own.join("metadata.toml"), "run_in_transaction = false\n").unwrap();
    fx.xtask(&["migration", "revert"]).assert_ok();
    assert_eq!(fx.recorded(), ["20240101000001"]);
}

/// A dry run that needs a scratch copy while another session is connected to the database says
/// why and what to do (told by the server's SQLSTATE, not by its words).
#[test]
fn a_dry_run_that_needs_a_copy_while_others_are_connected_says_what_to_do() {
    let fx = Fixture::new();
    fx.migration(
        "2024-01-01-000001_create_posts",
        "CREATE TABLE posts (id INT PRIMARY KEY, title TEXT);\n",
        "DROP TABLE posts;\n",
        None,
    );
    fx.xtask(&["migration", "run"]).assert_ok();
    fx.migration(
        "2024-01-01-000002_index_titles",
        "CREATE INDEX CONCURRENTLY posts_title_idx ON posts (title);\n",
        "DROP INDEX CONCURRENTLY posts_title_idx;\n",
        Some("run_in_transaction = false\n"),
    );
    let connected = fx.conn();
    let dry = fx.xtask(&["migration", "run", "--dry-run"]);
    dry.assert_fails_with("Postgres copies a database only while nobody else is connected to it");
    dry.assert_fails_with("hint: stop what is connected");
    drop(connected);
    fx.xtask(&["migration", "run", "--dry-run"]).assert_ok();
}
