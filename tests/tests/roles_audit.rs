//! `db roles` makes a least-privilege app role and a migrator role; `db audit` checks the
//! security checklist. Both against real databases, proven by what each role can and cannot do.

use db::testing::TestDb;
use diesel::{Connection, PgConnection, RunQueryDsl};
use tests::Run;

const APP_PASSWORD: &str = "app-canary-2718";
const MIGRATOR_PASSWORD: &str = "migrator-canary-1618";

/// Two roles of the test's own (roles are server-wide), dropped at the end.
struct Roles {
    app: String,
    migrator: String,
    database: String,
}

impl Roles {
    fn new(tag: &str, db: &TestDb) -> Roles {
        let pid = std::process::id();
        Roles {
            app: format!("{tag}_app_{pid}"),
            migrator: format!("{tag}_mig_{pid}"),
            database: db.direct_url().to_string(),
        }
    }

    fn url(&self, db: &TestDb, role: &str, password: &str) -> String {
        let mut url = db.direct_url().clone();
        url.set_username(role).unwrap();
        url.set_password(Some(password)).unwrap();
        url.to_string()
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        // What the roles own and were granted lives in the test database: give it back there
        // (the database itself may be kept after a failure), then the roles can go.
        let Ok(mut conn) = PgConnection::establish(&self.database) else { return };
        let _ = diesel::sql_query(format!(
            "DO $$ BEGIN
               IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{m}') THEN REASSIGN OWNED BY {m} TO CURRENT_USER; DROP OWNED BY {m}; END IF;
               IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{a}') THEN REASSIGN OWNED BY {a} TO CURRENT_USER; DROP OWNED BY {a}; END IF;
             END $$",
            a = self.app,
            m = self.migrator
        ))
        .execute(&mut conn);
        let dropped =
            diesel::sql_query(format!("DROP ROLE IF EXISTS {}, {}", self.app, self.migrator)).execute(&mut conn);
        if let Err(e) = dropped {
            eprintln!("roles {} and {} left behind: {e}", self.app, self.migrator);
        }
    }
}

fn xtask(url: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    tests::isolated(&["--database-url", url])
        .args(args)
        .env_remove("RAILGUN_APP_DB_PASSWORD")
        .env_remove("RAILGUN_MIGRATOR_DB_PASSWORD")
        .envs(env.iter().copied())
        .output()
        .expect("run xtask")
        .into()
}

fn make_roles(db: &TestDb, roles: &Roles) -> Run {
    xtask(
        db.direct_url().as_str(),
        &["db", "roles", "--app-role", &roles.app, "--migrator-role", &roles.migrator],
        &[("RAILGUN_APP_DB_PASSWORD", APP_PASSWORD), ("RAILGUN_MIGRATOR_DB_PASSWORD", MIGRATOR_PASSWORD)],
    )
}

fn execute(conn: &mut PgConnection, sql: &str) -> Result<usize, String> {
    diesel::sql_query(sql).execute(conn).map_err(|e| e.to_string())
}

#[track_caller]
fn denied(conn: &mut PgConnection, sql: &str) {
    let err = execute(conn, sql).expect_err(sql);
    assert!(err.contains("permission denied") || err.contains("must be owner"), "{sql}: {err}");
}

const NEW_USER: &str = "INSERT INTO users (email, display_name, password_hash) VALUES ('a@example.com', 'A', '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA')";

#[test]
fn app_role_reads_and_writes_rows_but_never_changes_the_schema() {
    let db = TestDb::new().unwrap();
    let roles = Roles::new("r6", &db);
    let first = make_roles(&db, &roles);
    first.assert_ok();
    let again = make_roles(&db, &roles);
    again.assert_ok();
    for run in [&first, &again] {
        assert!(!run.all().contains(APP_PASSWORD) && !run.all().contains(MIGRATOR_PASSWORD), "{}", run.all());
    }

    let mut app = PgConnection::establish(&roles.url(&db, &roles.app, APP_PASSWORD)).expect("the app role logs in");
    assert_eq!(execute(&mut app, NEW_USER), Ok(1));
    assert_eq!(execute(&mut app, "UPDATE users SET display_name = 'B'"), Ok(1));
    assert_eq!(execute(&mut app, "SELECT * FROM users"), Ok(1));
    denied(&mut app, "CREATE TABLE intruder (id int)");
    denied(&mut app, "ALTER TABLE users ADD COLUMN intruder int");
    denied(&mut app, "DROP TABLE api_tokens");
    denied(&mut app, "TRUNCATE users");
    denied(&mut app, "CREATE INDEX intruder ON users (display_name)");
    denied(&mut app, "SELECT * FROM __diesel_schema_migrations");
    assert_eq!(execute(&mut app, "DELETE FROM users"), Ok(1));

    // The migrator runs DDL, and what it creates later is the app's to use (default privileges).
    let mut migrator = PgConnection::establish(&roles.url(&db, &roles.migrator, MIGRATOR_PASSWORD)).unwrap();
    execute(&mut migrator, "ALTER TABLE users ADD COLUMN nickname text").unwrap();
    execute(&mut migrator, "CREATE TABLE later (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text)")
        .unwrap();
    assert_eq!(execute(&mut app, "INSERT INTO later (note) VALUES ('x')"), Ok(1));
    denied(&mut app, "DROP TABLE later");

    // Wrong or missing password settings change nothing and say which variable to set.
    let run = xtask(db.direct_url().as_str(), &["db", "roles", "--app-role", "r6_never"], &[]);
    run.assert_fails_with("RAILGUN_APP_DB_PASSWORD is not set");
    let mut admin = db.conn().unwrap();
    assert_eq!(execute(&mut admin, "SELECT FROM pg_roles WHERE rolname = 'r6_never'"), Ok(0));
}

#[test]
fn audit_lists_what_fails_with_the_fix() {
    let db = TestDb::new().unwrap();
    let roles = Roles::new("a6", &db);
    let audit = |url: &str| xtask(url, &["db", "audit", "--app-role", &roles.app], &[]);

    // Before `db roles`: no app role, a superuser URL, tables without RLS.
    let run = audit(db.direct_url().as_str());
    run.assert_fails_with("checks failed");
    let out = &run.stdout;
    assert!(out.contains(&format!("FAIL  app role    there is no role `{}`", roles.app)), "{out}");
    assert!(out.contains("FAIL  superuser") && out.contains("service_role"), "{out}");
    assert!(out.contains("FAIL  rls") && out.contains("api_tokens, billing_accounts, users"), "{out}");
    assert!(out.contains("pass  secrets"), "{out}");
    assert!(out.contains("fix: cargo xtask db roles"), "{out}");
    assert!(!run.all().contains(db.direct_url().password().unwrap()));

    make_roles(&db, &roles).assert_ok();
    let mut admin = db.conn().unwrap();
    for table in ["users", "billing_accounts", "api_tokens"] {
        execute(&mut admin, &format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")).unwrap();
    }
    execute(&mut admin, "CREATE TABLE webhooks (id int, signing_secret text, secret_hash text, token_expires_at date)")
        .unwrap();
    execute(&mut admin, &format!("ALTER TABLE webhooks OWNER TO {}", roles.app)).unwrap();

    // As the app role: not a superuser; it owns a table, a secret is stored in plain text, and
    // the new table has no RLS.
    let run = audit(&roles.url(&db, &roles.app, APP_PASSWORD));
    run.assert_fails_with("checks failed");
    let out = &run.stdout;
    assert!(out.contains(&format!("pass  superuser   DATABASE_URL connects as `{}`", roles.app)), "{out}");
    assert!(out.contains("FAIL  app role") && out.contains("owns tables") && out.contains("webhooks"), "{out}");
    assert!(out.contains("FAIL  secrets") && out.contains("webhooks.signing_secret"), "{out}");
    assert!(!out.contains("secret_hash") && !out.contains("token_expires_at"), "{out}");
    assert!(out.contains("FAIL  rls") && out.contains(": webhooks"), "{out}");
    assert!(!run.all().contains(APP_PASSWORD));

    // Fixed: the rest passes (SSL is the server's, checked in tests/ssl.rs).
    execute(&mut admin, &format!("ALTER TABLE webhooks OWNER TO {}", roles.migrator)).unwrap();
    execute(&mut admin, "ALTER TABLE webhooks DROP COLUMN signing_secret, ENABLE ROW LEVEL SECURITY").unwrap();
    let run = audit(&roles.url(&db, &roles.app, APP_PASSWORD));
    for check in ["superuser", "app role ", "rls", "secrets"] {
        assert!(run.stdout.contains(&format!("pass  {check}")), "{check}:\n{}", run.stdout);
    }
}

/// A NOLOGIN role of the test's own between the app role and a powerful one; dropped at the end
/// (its memberships go with it).
struct Middle(String, String);

impl Drop for Middle {
    fn drop(&mut self) {
        if let Ok(mut conn) = PgConnection::establish(&self.1) {
            let _ = execute(&mut conn, &format!("DROP ROLE IF EXISTS {}", self.0));
        }
    }
}

#[test]
fn audit_follows_role_membership() {
    let db = TestDb::new().unwrap();
    let roles = Roles::new("a8", &db);
    make_roles(&db, &roles).assert_ok();
    let middle = Middle(format!("a8_mid_{}", std::process::id()), db.direct_url().to_string());
    let mut admin = db.conn().unwrap();
    let superuser = db.direct_url().username().to_string();
    execute(&mut admin, &format!("CREATE ROLE {} NOLOGIN", middle.0)).unwrap();
    execute(&mut admin, &format!("GRANT {} TO {}", middle.0, roles.app)).unwrap();
    let audit = || xtask(&roles.url(&db, &roles.app, APP_PASSWORD), &["db", "audit", "--app-role", &roles.app], &[]);
    let app_role_line = |run: &Run| run.stdout.lines().find(|l| l.contains("app role")).unwrap_or_default().to_string();
    assert!(app_role_line(&audit()).starts_with("pass"), "{}", audit().stdout);

    // Two grants away from the superuser the test connects as: SET ROLE takes it there.
    execute(&mut admin, &format!("GRANT {superuser} TO {}", middle.0)).unwrap();
    let run = audit();
    let line = app_role_line(&run);
    assert!(line.starts_with("FAIL"), "{}", run.stdout);
    assert!(line.contains(&format!("superuser {superuser} ({} > {} > {superuser})", roles.app, middle.0)), "{line}");
    assert!(run.stdout.contains(&format!("REVOKE {} FROM {}", middle.0, roles.app)), "{}", run.stdout);
    execute(&mut admin, &format!("REVOKE {superuser} FROM {}", middle.0)).unwrap();

    // The server's files, through the same chain.
    execute(&mut admin, &format!("GRANT pg_read_server_files TO {}", middle.0)).unwrap();
    let line = app_role_line(&audit());
    assert!(line.starts_with("FAIL") && line.contains("pg_read_server_files"), "{line}");
    execute(&mut admin, &format!("REVOKE pg_read_server_files FROM {}", middle.0)).unwrap();

    // The tables' owner: the migrator may alter and drop them, and so may its members.
    execute(&mut admin, &format!("GRANT {} TO {}", roles.migrator, middle.0)).unwrap();
    let line = app_role_line(&audit());
    assert!(line.starts_with("FAIL") && line.contains(&format!("{}, owner of the tables", roles.migrator)), "{line}");
    assert!(line.contains("users"), "{line}");
    execute(&mut admin, &format!("REVOKE {} FROM {}", roles.migrator, middle.0)).unwrap();
    assert!(app_role_line(&audit()).starts_with("pass"));
}
