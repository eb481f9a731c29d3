//! Production topology locally: `cargo xtask up --pooler` runs PgBouncer in transaction mode in
//! front of Postgres. The app's model queries go through it (50 clients, pools of 10); the tools
//! refuse it and use DIRECT_URL; diesel's statement cache shows what breaks when left on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

use db::config::Settings;
use db::models::{NewUser, User};
use db::schema::users;
use diesel::prelude::*;
use tests::{Project, Run, root};

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA";
const CLIENTS: usize = 50;
const QUERIES_PER_CLIENT: usize = 40;

/// A project with `up --pooler` done: its `.env` has both URLs.
fn pooled_project(tag: &str) -> Project {
    let p = Project::new(tag);
    p.run(&["up", "--pooler"]).assert_ok();
    p
}

fn url(p: &Project, key: &str) -> url::Url {
    url::Url::parse(&p.setting(key).unwrap_or_else(|| panic!("{key} missing from .env"))).unwrap()
}

/// The app's settings, as it reads them from the environment, here from a map.
fn app_settings(pairs: &[(&str, String)]) -> Settings {
    let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    Settings::from_lookup(|k| map.get(k).cloned()).unwrap()
}

/// `CLIENTS` app instances at once, each with its own pool of `DATABASE_POOL_MAX=10`, each
/// running the app's model queries (insert a user, find them by email, list the latest);
/// returns every error they met, as text.
fn run_app(settings: &Settings, tag: &str) -> Vec<String> {
    run_app_queries(settings, tag, QUERIES_PER_CLIENT)
}

fn run_app_queries(settings: &Settings, tag: &str, queries: usize) -> Vec<String> {
    let start = Arc::new(Barrier::new(CLIENTS));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            let settings = settings.clone();
            let start = start.clone();
            let tag = tag.to_string();
            std::thread::spawn(move || -> Vec<String> {
                let pool = match settings.pool() {
                    Ok(pool) => pool,
                    Err(e) => return vec![format!("{e:#}")],
                };
                start.wait();
                let mut errors = Vec::new();
                for i in 0..queries {
                    let result = (|| -> anyhow::Result<()> {
                        let mut conn = pool.get()?;
                        let email = format!("{tag}-{client}-{i}@example.com");
                        diesel::insert_into(users::table)
                            .values(&NewUser { email: &email, display_name: "Pooled", password_hash: HASH })
                            .execute(&mut conn)?;
                        let found: User =
                            users::table.filter(users::email.eq(&email)).select(User::as_select()).first(&mut conn)?;
                        assert_eq!(found.email, email);
                        let latest: Vec<User> =
                            users::table.order(users::id.desc()).limit(5).select(User::as_select()).load(&mut conn)?;
                        assert!(!latest.is_empty());
                        Ok(())
                    })();
                    if let Err(e) = result {
                        errors.push(format!("{e:#}"));
                    }
                }
                errors
            })
        })
        .collect();
    clients.into_iter().flat_map(|c| c.join().expect("a client panicked")).collect()
}

#[test]
fn the_app_runs_through_pgbouncer_with_50_clients_and_the_statement_cache_off() {
    let p = pooled_project("pooler-app");
    assert_eq!(p.setting("DATABASE_POOLER").as_deref(), Some("transaction"));
    let (pooled, direct) = (url(&p, "DATABASE_URL"), url(&p, "DIRECT_URL"));
    assert_ne!(pooled.port(), direct.port(), "DATABASE_URL should be the pooler's port");
    let settings = app_settings(&[
        ("DATABASE_URL", pooled.to_string()),
        ("DATABASE_POOLER", "transaction".into()),
        ("DIRECT_URL", direct.to_string()),
        ("DATABASE_POOL_MAX", "10".into()),
    ]);
    assert!(!settings.statement_cache, "a transaction pooler turns diesel's statement cache off");
    assert_eq!(settings.migration_url().unwrap(), direct);

    // While the app hammers the pooler, Postgres sees at most the pooler's pool of server
    // connections, not one per client: that is what keeps "too many connections" away.
    let sampler = {
        let direct = direct.clone();
        std::thread::spawn(move || -> i64 {
            let mut conn = diesel::PgConnection::establish(direct.as_str()).unwrap();
            #[derive(QueryableByName)]
            struct Count {
                #[diesel(sql_type = diesel::sql_types::BigInt)]
                n: i64,
            }
            let mut most = 0;
            for _ in 0..40 {
                let c: Count = diesel::sql_query(
                    "SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
                )
                .get_result(&mut conn)
                .unwrap();
                most = most.max(c.n);
                std::thread::sleep(std::time::Duration::from_millis(25));
            }
            most
        })
    };
    let errors = run_app(&settings, "off");
    let most_backends = sampler.join().unwrap();
    assert!(errors.is_empty(), "{} errors through the pooler, first: {:?}", errors.len(), errors.first());
    assert!(
        most_backends <= i64::from(dbkit::docker::services::POOLER_DEFAULT_POOL_SIZE),
        "{most_backends} server connections for {CLIENTS} clients: the pooler should hold at most its pool size"
    );

    // A backup, with .env's DIRECT_URL, while the app keeps using the pooler.
    let app = std::thread::spawn(move || run_app(&settings, "during-backup"));
    let dir = p.dir.join("backups");
    let backup = p.run(&["db", "backup", dir.to_str().unwrap()]);
    backup.assert_ok();
    assert!(Path::new(backup.stdout.lines().last().unwrap()).is_file(), "{}", backup.stdout);
    let errors = app.join().unwrap();
    assert!(
        errors.is_empty(),
        "{} errors through the pooler during the backup, first: {:?}",
        errors.len(),
        errors.first()
    );
    // doctor tells both URLs apart, and the pooler's mode from PgBouncer itself.
    let doctor = p.run(&["doctor"]);
    let line =
        doctor.stdout.lines().find(|l| l.split_whitespace().nth(1) == Some("pooler")).unwrap_or_default().to_string();
    assert!(line.starts_with("pass"), "{}", doctor.all());
    assert!(line.contains("pool_mode=transaction") && line.contains("DIRECT_URL (the tools') "), "{line}");
    assert!(line.contains("direct (the server confirms)"), "{line}");
}

/// Whether diesel's prepared statement cache survives transaction pooling depends on the
/// pooler: PgBouncer before 1.21 (Debian bookworm's 1.18, the offline image) does not track
/// protocol-level prepared statements, so a statement diesel prepared on one server connection
/// is executed on another ("does not exist") or prepared again where another client left one
/// of the same name ("already exists"). From 1.21, `max_prepared_statements` > 0 makes
/// PgBouncer re-prepare them per server connection, and the cache works.
#[test]
fn the_statement_cache_left_on_through_pgbouncer() {
    let p = pooled_project("pooler-cache");
    let (pooled, direct) = (url(&p, "DATABASE_URL"), url(&p, "DIRECT_URL"));
    let mut settings = app_settings(&[
        ("DATABASE_URL", pooled.to_string()),
        ("DATABASE_POOLER", "transaction".into()),
        ("DATABASE_POOL_MAX", "10".into()),
    ]);
    settings.statement_cache = true;
    // A broken connection fails r2d2's check-out test (diesel's `SELECT 1` is a cached
    // statement too) until the pool's timeout: a short one and a few queries keep this quick.
    settings.connection_timeout = std::time::Duration::from_secs(1);
    const QUERIES: usize = 5;
    let errors = run_app_queries(&settings, "on", QUERIES);
    let tracked = dbkit::pooler::pgbouncer_config(&pooled)
        .expect("the pooler's admin console answers its admin user")
        .into_iter()
        .find(|(k, _)| k == "max_prepared_statements")
        .is_some_and(|(_, v)| v.parse::<u32>().is_ok_and(|n| n > 0));
    // The same, made certain: two clients one after the other, each with its own cache, share
    // PgBouncer's one server connection, where the first client's statement already exists.
    // (Under load, r2d2's check-out test can turn every such error into a time-out.)
    let errors: Vec<String> = errors.into_iter().chain(two_clients_in_turn(&pooled)).collect();
    let statement_errors =
        errors.iter().filter(|e| e.contains("prepared statement") && e.contains("__diesel_stmt_")).count();
    let count = |needle: &str| errors.iter().filter(|e| e.contains(needle)).count();
    eprintln!(
        "statement cache on, through PgBouncer (max_prepared_statements > 0: {tracked}): {} of {} clients' operations failed, {statement_errors} with prepared statement errors ({} \"already exists\", {} \"does not exist\"); first: {:?}",
        errors.len(),
        CLIENTS * QUERIES + IN_TURN,
        count("already exists"),
        count("does not exist"),
        errors.first()
    );
    if tracked {
        assert!(errors.is_empty(), "PgBouncer tracks prepared statements, yet: {:?}", errors.first());
    } else {
        assert!(statement_errors > 0, "expected prepared statement errors with the cache on; got {:?}", errors.first());
        // The rest are the pool's check-outs timing out while its connections fail the same way.
        let other: Vec<&String> = errors
            .iter()
            .filter(|e| !e.contains("prepared statement") && !e.starts_with("timed out waiting for connection"))
            .collect();
        assert!(other.is_empty(), "other errors too: {other:?}");
    }
    // Straight to Postgres, the same load with the cache on has no such errors.
    let mut direct_settings = app_settings(&[("DATABASE_URL", direct.to_string()), ("DATABASE_POOL_MAX", "10".into())]);
    direct_settings.statement_cache = true;
    let errors = run_app(&direct_settings, "direct");
    assert!(errors.is_empty(), "direct: {:?}", errors.first());
}

/// Clients of [`two_clients_in_turn`].
const IN_TURN: usize = 2;

/// Two connections of their own (diesel's statement cache on, as a `PgConnection` has it) run
/// the same query in turn through the pooler; returns the errors they met, as text.
fn two_clients_in_turn(pooled: &url::Url) -> Vec<String> {
    (0..IN_TURN)
        .filter_map(|_| {
            let mut conn = match diesel::PgConnection::establish(pooled.as_str()) {
                Ok(conn) => conn,
                Err(e) => return Some(format!("{e:#}")),
            };
            users::table.select(User::as_select()).limit(1).load(&mut conn).err().map(|e| format!("{e:#}"))
        })
        .collect()
}

/// A folder with the app's migrations and one more, and a diesel.toml writing schema.rs there:
/// `migration run` never touches the repository's files.
fn migrations_fixture(p: &Project) -> (PathBuf, PathBuf) {
    let dir = p.dir.join("fixture");
    let migrations = dir.join("migrations");
    for entry in std::fs::read_dir(root().join("db/migrations")).unwrap() {
        let entry = entry.unwrap();
        if !entry.path().is_dir() {
            continue;
        }
        let to = migrations.join(entry.file_name());
        std::fs::create_dir_all(&to).unwrap();
        for file in std::fs::read_dir(entry.path()).unwrap() {
            let file = file.unwrap();
            std::fs::copy(file.path(), to.join(file.file_name())).unwrap();
        }
    }
    let extra = migrations.join("2099-01-01-000000_pooler_probe");
    std::fs::create_dir_all(&extra).unwrap();
    std::fs::write(extra.join("up.sql"), "CREATE TABLE pooler_probe (id int);\n").unwrap();
    std::fs::write(extra.join("down.sql"), "DROP TABLE pooler_probe;\n").unwrap();
    let config = dir.join("diesel.toml");
    std::fs::write(&config, "[print_schema]\nfile = \"schema.rs\"\n\n[migrations_directory]\ndir = \"migrations\"\n")
        .unwrap();
    (config, dir)
}

fn probe_table_exists(direct: &url::Url) -> bool {
    #[derive(QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        e: bool,
    }
    let mut conn = diesel::PgConnection::establish(direct.as_str()).unwrap();
    let row: Exists =
        diesel::sql_query("SELECT to_regclass('pooler_probe') IS NOT NULL AS e").get_result(&mut conn).unwrap();
    row.e
}

#[test]
fn tools_refuse_the_pooled_url_and_use_direct_url() {
    let p = pooled_project("pooler-tools");
    let (pooled, direct) = (url(&p, "DATABASE_URL"), url(&p, "DIRECT_URL"));
    let (config, fixture) = migrations_fixture(&p);
    let run = |envs: &[(&str, &str)], args: &[&str]| -> Run {
        let mut cmd = p.command(&[&["--config-file", config.to_str().unwrap()], args].concat());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().unwrap().into()
    };
    let backups = p.dir.join("refused-backups");
    let backups = backups.to_str().unwrap();
    // Only the pooled URL: declared by DATABASE_POOLER (from .env), or by the URL's convention,
    // or not declared at all (the server shows the pooler). Each refuses with the fix, and
    // nothing is done: no migration applied, no backup file.
    let flagged = format!("{pooled}?pgbouncer=true");
    for (envs, how) in [
        (vec![("DATABASE_URL", pooled.as_str())], "declared in .env"),
        (vec![("DATABASE_URL", flagged.as_str()), ("DATABASE_POOLER", "")], "the URL's convention"),
        (vec![("DATABASE_URL", pooled.as_str()), ("DATABASE_POOLER", "")], "the server's answer"),
    ] {
        for args in [&["migration", "run"][..], &["db", "backup", backups]] {
            let out = run(&envs, args);
            out.assert_fails_with("refused to work on the database");
            out.assert_fails_with("set DIRECT_URL");
            assert!(!out.stderr.contains(p.setting("RAILGUN_POSTGRES_PASSWORD").unwrap().as_str()), "{}", out.stderr);
            assert!(!out.stderr.contains("pooler_probe"), "{how}: {args:?} did something: {}", out.stderr);
        }
        assert!(!probe_table_exists(&direct), "{how}: a migration ran through the pooler");
        assert!(!Path::new(backups).exists(), "{how}: a backup was started through the pooler");
    }
    // --database-url pointed at the pooler: the server's answer refuses it too.
    run(&[], &["--database-url", pooled.as_str(), "migration", "run"]).assert_fails_with("set DIRECT_URL");

    // With DIRECT_URL (.env, as `up --pooler` wrote it) migrations work while the app uses the pooler.
    let settings = app_settings(&[
        ("DATABASE_URL", pooled.to_string()),
        ("DATABASE_POOLER", "transaction".into()),
        ("DATABASE_POOL_MAX", "10".into()),
    ]);
    let app = std::thread::spawn(move || run_app(&settings, "during-migrations"));
    run(&[], &["migration", "run"]).assert_ok();
    assert!(probe_table_exists(&direct));
    run(&[], &["migration", "revert"]).assert_ok();
    assert!(!probe_table_exists(&direct));
    run(&[], &["migration", "run"]).assert_ok();
    run(&[], &["migration", "redo"]).assert_ok();
    assert!(probe_table_exists(&direct));
    assert!(fixture.join("schema.rs").is_file());
    let errors = app.join().unwrap();
    assert!(errors.is_empty(), "{} app errors during the migrations, first: {:?}", errors.len(), errors.first());
}

/// A pooler that cannot start takes down only what that `up` created: Postgres and Redis too
/// on a first start, nothing of an earlier `up`'s.
#[test]
fn a_failed_pooler_start_removes_only_what_it_created() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port().to_string();
    let p = Project::new("pooler-fail");
    let fresh = p.run(&["up", "--no-migrate", "--pooler", "--pooler-port", &port]);
    fresh.assert_fails_with(&format!("host port {port} is in use"));
    fresh.assert_fails_with("--pooler-port 0");
    assert!(p.containers().is_empty(), "left behind: {:?}", p.containers());
    // Its data volume too: initialised with a password that never reached .env.
    assert!(p.volumes().is_empty(), "left behind: {:?}", p.volumes());

    p.run(&["up", "--no-migrate"]).assert_ok();
    let before = (p.container_id("postgres"), p.container_id("redis"));
    p.run(&["up", "--no-migrate", "--pooler", "--pooler-port", &port]).assert_fails_with("is in use");
    assert_eq!(
        (p.container_id("postgres"), p.container_id("redis")),
        before,
        "an earlier up's containers were touched"
    );
    let mut left = p.containers();
    left.sort();
    assert_eq!(left, [format!("{}-postgres", p.name), format!("{}-redis", p.name)]);
}

/// `status` shows PgBouncer beside Postgres and Redis: where it listens (DATABASE_URL's port)
/// and whether a query passes through it, with no password; Postgres at DIRECT_URL's port,
/// with no note that .env is stale (it is not). A stopped pooler is down, the others not.
#[test]
fn status_shows_the_pooler_and_no_password() {
    let p = Project::new("pooler-status");
    p.run(&["up", "--no-migrate", "--pooler"]).assert_ok();
    let password = p.setting("RAILGUN_POSTGRES_PASSWORD").unwrap();
    let (pooled, direct) = (url(&p, "DATABASE_URL"), url(&p, "DIRECT_URL"));
    let shown = |url: &url::Url| format!("postgres://railgun:****@127.0.0.1:{}/railgun", url.port().unwrap());
    let status = || {
        let out = p.run(&["status", "--json"]);
        out.assert_ok();
        assert!(!out.all().contains(&password), "status printed the password:\n{}", out.all());
        let rows: serde_json::Value = serde_json::from_str(&out.stdout).expect("status --json prints JSON");
        (rows, out)
    };
    let row = |rows: &serde_json::Value, service: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["service"] == service)
            .cloned()
            .unwrap_or_else(|| panic!("no {service}: {rows}"))
    };

    let (rows, out) = status();
    assert_eq!(rows.as_array().unwrap().len(), 3, "{rows}");
    let pooler = row(&rows, "pgbouncer");
    assert_eq!(pooler["healthy"], true, "{}", out.all());
    assert_eq!(pooler["container"], format!("{}-pgbouncer", p.name));
    assert_eq!(pooler["url"], shown(&pooled));
    let postgres = row(&rows, "postgres");
    assert_eq!(postgres["healthy"], true, "{}", out.all());
    assert_eq!(postgres["url"], shown(&direct));
    assert!(!out.stderr.contains("note:"), "{}", out.stderr);

    let table = p.run(&["status"]);
    table.assert_ok();
    assert!(!table.all().contains(&password), "status printed the password:\n{}", table.all());
    let line = table.stdout.lines().find(|l| l.starts_with("pgbouncer ")).unwrap_or_else(|| panic!("{}", table.stdout));
    assert_eq!(line.split_whitespace().nth(1), Some("healthy"), "{}", table.stdout);
    assert!(line.ends_with(&shown(&pooled)), "{}", table.stdout);

    let stopped = std::process::Command::new("docker")
        .args(["stop", "--time", "1", &format!("{}-pgbouncer", p.name)])
        .output()
        .unwrap();
    assert!(stopped.status.success(), "{}", String::from_utf8_lossy(&stopped.stderr));
    let (rows, out) = status();
    assert_eq!(row(&rows, "pgbouncer")["healthy"], false, "{}", out.all());
    assert_eq!(row(&rows, "postgres")["healthy"], true, "{}", out.all());
    assert_eq!(row(&rows, "redis")["healthy"], true, "{}", out.all());
}
