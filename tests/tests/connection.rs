//! Connection settings and troubleshooting against a real server: the pool from the
//! environment, and every connection failure printed once with Postgres's words and the fix.

use db::config::Settings;
use db::testing::TestDb;
use dbkit::connect::{ConnectError, Failure};
use diesel::{Connection, RunQueryDsl};
use tests::Run;

/// The xtask with `args`, no terminal, no .env of the repository, no inherited settings.
fn xtask(args: &[&str]) -> Run {
    tests::isolated(args).output().expect("run xtask").into()
}

/// Fails as the guide says: once, `error: ...`, Postgres's words kept, the hint last, no secret.
#[track_caller]
fn assert_reported(run: &Run, cause: &str, hint: &str, secret: &str) {
    run.assert_fails_with(cause);
    let err = &run.stderr;
    assert_eq!(err.matches("error:").count(), 1, "printed more than once:\n{err}");
    assert!(err.trim_start().starts_with("error: "), "{err}");
    let hint_at = err.find("hint:").unwrap_or_else(|| panic!("no hint:\n{err}"));
    assert!(err[hint_at..].contains(hint), "hint lacks `{hint}`:\n{err}");
    assert!(err[..hint_at].contains(cause), "the cause comes before the hint:\n{err}");
    assert!(!run.all().contains(secret), "the password leaked:\n{}", run.all());
}

fn with_password(db: &TestDb, password: &str) -> String {
    let mut url = db.direct_url().clone();
    url.set_password(Some(password)).unwrap();
    url.to_string()
}

#[test]
fn the_pool_comes_from_the_environment() {
    let db = TestDb::new().unwrap();
    let url = db.direct_url().to_string();
    let settings = Settings::from_lookup(|key| match key {
        "DATABASE_URL" => Some(url.clone()),
        "DATABASE_POOL_MAX" => Some("3".into()),
        _ => None,
    })
    .unwrap();
    let pool = settings.pool().unwrap();
    assert_eq!(pool.max_size(), 3);
    let held: Vec<_> = (0..3).map(|_| pool.get().unwrap()).collect();
    assert_eq!(pool.state().connections, 3);
    assert!(pool.get_timeout(std::time::Duration::from_millis(100)).is_err(), "the pool max is 3");
    drop(held);
    let mut conn = pool.get().unwrap();
    let one: i32 = diesel::select(diesel::dsl::sql::<diesel::sql_types::Integer>("1")).get_result(&mut *conn).unwrap();
    assert_eq!(one, 1);
}

#[test]
fn the_pool_fails_with_the_fix_after_its_retries() {
    let settings = Settings::from_lookup(|key| match key {
        "DATABASE_URL" => Some("postgres://app:pool-canary@127.0.0.1:1/rail".into()),
        _ => None,
    })
    .unwrap();
    let err = settings.pool().expect_err("nothing listens on port 1");
    let connect = err.downcast_ref::<ConnectError>().expect("a ConnectError");
    assert_eq!(connect.failure, Failure::Refused);
    assert_eq!(connect.attempts, 3, "development retries 3 times");
    let text = dbkit::error::describe(&err);
    assert!(text.contains("cargo xtask up") && !text.contains("pool-canary"), "{text}");
}

#[test]
fn refused() {
    let run = xtask(&["--database-url", "postgres://app:refused-canary@127.0.0.1:1/rail", "migration", "run"]);
    assert_reported(
        &run,
        "Connection refused",
        "start local Postgres: `cargo xtask up`, or set DATABASE_URL",
        "refused-canary",
    );
}

#[test]
fn authentication_failed() {
    let db = TestDb::empty().unwrap();
    let url = with_password(&db, "auth-canary");
    let run = xtask(&["--database-url", &url, "migration", "run"]);
    assert_reported(&run, "password authentication failed", "check the user and password", "auth-canary");
}

#[test]
fn database_does_not_exist() {
    let db = TestDb::empty().unwrap();
    let mut url = db.direct_url().clone();
    url.set_path("no_such_database_6");
    let run = xtask(&["--database-url", url.as_str(), "migration", "run"]);
    assert_reported(
        &run,
        "\"no_such_database_6\" does not exist",
        "fix the database name",
        db.direct_url().password().unwrap(),
    );
}

#[test]
fn ssl_asked_of_a_server_without_it() {
    let db = TestDb::empty().unwrap();
    let url = format!("{}?sslmode=require", db.direct_url());
    let run = xtask(&["--database-url", &url, "migration", "run"]);
    assert_reported(&run, "server does not support SSL", "the server has SSL off", db.direct_url().password().unwrap());
}

#[test]
fn malformed_url() {
    let run = xtask(&["--database-url", "postgres://app:malformed-canary@localhost:99999/rail", "migration", "run"]);
    assert_reported(&run, "malformed database URL", "percent-encode special characters", "malformed-canary");
    let run = xtask(&[
        "--database-url",
        "postgres://app:sslmode-canary@127.0.0.1/rail?sslmode=sometimes",
        "migration",
        "run",
    ]);
    assert_reported(&run, "invalid sslmode value", "the form is postgres://", "sslmode-canary");
}

#[test]
fn too_many_connections() {
    let db = TestDb::empty().unwrap();
    let role = format!("conn_limit_{}", std::process::id());
    let mut admin = db.conn().unwrap();
    diesel::sql_query(format!("CREATE ROLE {role} LOGIN PASSWORD 'limit-canary' CONNECTION LIMIT 0"))
        .execute(&mut admin)
        .unwrap();
    let mut url = db.direct_url().clone();
    url.set_username(&role).unwrap();
    url.set_password(Some("limit-canary")).unwrap();
    let run = xtask(&["--database-url", url.as_str(), "migration", "run"]);
    diesel::sql_query(format!("DROP ROLE {role}")).execute(&mut admin).unwrap();
    assert_reported(&run, "too many connections", "lower DATABASE_POOL_MAX in .env (try 5-10)", "limit-canary");
}

#[test]
fn migration_recorded_but_missing_on_disk() {
    let db = TestDb::new().unwrap();
    let mut conn = db.conn().unwrap();
    diesel::sql_query("INSERT INTO __diesel_schema_migrations (version) VALUES ('99990101000000')")
        .execute(&mut conn)
        .unwrap();
    let run = xtask(&["--database-url", db.direct_url().as_str(), "migration", "revert"]);
    assert!(!run.ok(), "revert of a migration missing on disk must fail:\n{}", run.all());
    assert!(run.stderr.contains("99990101000000"), "{}", run.stderr);
    assert!(run.stderr.contains("__diesel_schema_migrations"), "the fix names the table:\n{}", run.stderr);
    assert!(!run.all().contains(db.direct_url().password().unwrap()));
    drop(conn);
    let mut conn = diesel::PgConnection::establish(db.direct_url().as_str()).unwrap();
    let recorded: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "(SELECT count(*) FROM __diesel_schema_migrations)",
    ))
    .get_result(&mut conn)
    .unwrap();
    assert!(recorded > 1, "nothing was reverted");
}
