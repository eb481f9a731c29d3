//! Secrets: a password never shows in any output, error, status or file the commands write
//! (its one home is the private `.env`), `.env` is git-ignored and `.env.example` holds none.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use tests::{Project, Run, root};

/// Extra environment for one command.
type Env<'a> = &'a [(&'a str, &'a str)];

/// Runs the project's xtask with extra environment.
fn run(p: &Project, args: &[&str], env: &[(&str, &str)]) -> Run {
    p.command(args).envs(env.iter().copied()).output().expect("run xtask").into()
}

#[test]
fn a_canary_password_never_leaks() {
    let canary = format!("Canary{}Zq7", std::process::id());
    let app_canary = format!("AppCanary{}Zq7", std::process::id());
    let p = Project::new("secrets");
    let local_env = [("RAILGUN_POSTGRES_PASSWORD", canary.as_str())];

    let up = run(&p, &["up"], &local_env);
    up.assert_ok();
    let mut runs: Vec<(String, Run)> = vec![("up".into(), up)];
    let url = p.setting("DATABASE_URL").expect("up writes DATABASE_URL");
    assert!(url.contains(&canary), "the canary must be the database's password: {url}");
    let mode = std::fs::metadata(p.env_file()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, ".env holds the password: private to its owner");

    let wrong = url.replace(&canary, &format!("{canary}x"));
    let refused = format!("postgres://railgun:{canary}@127.0.0.1:1/railgun");
    let remote = format!("postgres://railgun:{canary}@db.example.com:5432/railgun?sslmode=require");
    let malformed = format!("postgres://railgun:{canary}@127.0.0.1:99999/railgun");
    let slash = format!("postgres://adv:2024/{canary}!@127.0.0.1/railgun");
    let percent = format!("postgres://adv:50%off{canary}@127.0.0.1/railgun");
    let query = url.replace(&format!(":{canary}@"), "@").replace("/railgun", &format!("/railgun?password={canary}"));
    let bad_env = p.dir.join("bad.env");
    std::fs::write(&bad_env, format!("BROKEN {canary}\nAPP_ENV=development\n")).unwrap();
    let bad_env = [("RAILGUN_ENV_FILE", bad_env.to_str().unwrap())];
    let backups = p.dir.join("backups");
    let backups = backups.to_str().unwrap();
    let roles_env =
        [("RAILGUN_APP_DB_PASSWORD", app_canary.as_str()), ("RAILGUN_MIGRATOR_DB_PASSWORD", app_canary.as_str())];
    let production = [("APP_ENV", "production")];
    let commands: Vec<(&str, Vec<&str>, Env)> = vec![
        ("up again", vec!["up"], &local_env),
        ("status", vec!["status"], &[]),
        ("status --json", vec!["status", "--json"], &[]),
        ("migration show", vec!["migration", "show"], &[]),
        ("migration run", vec!["migration", "run"], &[]),
        ("doctor", vec!["doctor"], &[]),
        ("db backup", vec!["db", "backup", backups], &[]),
        ("db roles", vec!["db", "roles"], &roles_env),
        ("db audit", vec!["db", "audit"], &[]),
        ("schema generate --check", vec!["schema", "generate", "--check"], &[]),
        ("wrong password", vec!["--database-url", &wrong, "migration", "run"], &[]),
        ("refused", vec!["--database-url", &refused, "migration", "show"], &[]),
        ("malformed", vec!["--database-url", &malformed, "migration", "show"], &[]),
        ("status with a malformed URL", vec!["--database-url", &malformed, "status"], &[]),
        ("malformed doctor", vec!["--database-url", &malformed, "doctor"], &[]),
        ("remote drop", vec!["--database-url", &remote, "schema", "drop", "--yes"], &[]),
        ("remote restore", vec!["--database-url", &remote, "db", "restore", "--yes"], &[]),
        ("production revert", vec!["migration", "revert", "--all"], &production),
        ("production sync", vec!["schema", "sync", "--force", "--confirm-db", "wrong"], &production),
        ("wrong-password backup", vec!["--database-url", &wrong, "db", "backup", backups], &[]),
        ("refused audit", vec!["--database-url", &refused, "db", "audit"], &[]),
        ("unencoded / in the password", vec!["--database-url", &slash, "migration", "show"], &[]),
        ("unencoded / in doctor", vec!["--database-url", &slash, "doctor"], &[]),
        ("stray % in the password", vec!["--database-url", &percent, "status"], &[]),
        ("?password= backup", vec!["--database-url", &query, "db", "backup", backups], &[]),
        ("?password= migration show", vec!["--database-url", &query, "migration", "show"], &[]),
        (".env line that does not parse", vec!["schema", "drop", "--yes"], &bad_env),
    ];
    for (what, args, env) in &commands {
        runs.push((what.to_string(), run(&p, args, env)));
    }

    for (what, run) in &runs {
        for secret in [&canary, &app_canary] {
            assert!(!run.all().contains(secret.as_str()), "`{what}` printed a password:\n{}", run.all());
        }
        assert!(!run.stderr.contains("panicked"), "`{what}` panicked:\n{}", run.stderr);
    }
    let failing = ["wrong password", "refused", "malformed", "remote drop", "production revert", "production sync"];
    for (what, run) in runs.iter().filter(|(what, _)| failing.contains(&what.as_str())) {
        assert!(!run.ok(), "`{what}` should fail:\n{}", run.all());
        assert!(run.stderr.contains("****") || !run.stderr.contains("railgun:"), "`{what}`:\n{}", run.stderr);
    }

    // The files the commands wrote hold no password either.
    for entry in std::fs::read_dir(backups).unwrap() {
        let path = entry.unwrap().path();
        let mut text = String::new();
        gunzip(&path, &mut text);
        assert!(!text.contains(&canary) && !text.contains(&app_canary), "{} holds a password", path.display());
    }
}

/// Decompresses with the host's gzip: the tests crate needs no compression library for this.
fn gunzip(path: &std::path::Path, text: &mut String) {
    let out = Command::new("gzip").args(["-dc"]).arg(path).output().expect("run gzip");
    assert!(out.status.success(), "gzip -dc {}", path.display());
    out.stdout.as_slice().read_to_string(text).unwrap();
}

#[test]
fn env_is_ignored_and_the_template_has_no_secret() {
    let out = Command::new("git").args(["check-ignore", "-q", ".env"]).current_dir(root()).status().unwrap();
    assert!(out.success(), ".env must be git-ignored");
    let tracked =
        Command::new("git").args(["ls-files", "--error-unmatch", ".env"]).current_dir(root()).output().unwrap();
    assert!(!tracked.status.success(), ".env must not be tracked");
    let example = std::fs::read_to_string(root().join(".env.example")).unwrap();
    for line in example.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        assert_eq!(dbkit::url::redact_str(value), value, ".env.example line `{key}` holds a password");
        if key.contains("PASSWORD") || key.contains("SECRET") || key.contains("TOKEN") {
            assert!(value.trim().is_empty(), ".env.example sets {key}");
        }
    }
}

/// The production guard on a real terminal (a pty from `script`): it asks, and only the
/// database name typed back lets a forced drop go on.
#[test]
fn the_guard_asks_on_a_terminal() {
    use diesel::RunQueryDsl;
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let db = db::testing::TestDb::empty().unwrap();
    let tables = || -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = db.conn().unwrap();
        let rows: Vec<N> = diesel::sql_query("SELECT count(*) AS n FROM pg_tables WHERE schemaname = 'public'")
            .load(&mut conn)
            .unwrap();
        rows[0].n
    };
    diesel::sql_query("CREATE TABLE guarded (id int)").execute(&mut db.conn().unwrap()).unwrap();
    let on_terminal = |args: &str, answer: &str, production: bool| -> Run {
        use std::io::Write;
        let line = format!("'{}' --database-url '{}' {args}", tests::xtask_bin().display(), db.direct_url());
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line, "/dev/null"])
            .env("RAILGUN_ENV_FILE", std::env::temp_dir().join("no-such-env"))
            .env_remove("DATABASE_URL")
            .env_remove("APP_ENV")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if production {
            cmd.env("APP_ENV", "production");
        }
        let mut child = cmd.spawn().expect("run script");
        child.stdin.take().unwrap().write_all(format!("{answer}\n").as_bytes()).unwrap();
        child.wait_with_output().unwrap().into()
    };
    let password = db.direct_url().password().unwrap().to_string();

    let run = on_terminal("schema drop", "n", false);
    assert!(!run.ok() && run.all().contains("[y/N]") && run.all().contains("not confirmed"), "{}", run.all());
    assert_eq!(tables(), 1);
    let run = on_terminal("schema drop --force", "railgun", true);
    assert!(run.all().contains("Type the database name"), "{}", run.all());
    assert!(!run.ok() && run.all().contains("is not `"), "{}", run.all());
    assert_eq!(tables(), 1, "a wrong name typed back must change nothing");
    let run = on_terminal("schema drop --force", db.name(), true);
    assert!(run.ok(), "{}", run.all());
    assert_eq!(tables(), 0, "the name typed back lets the drop go on");
    assert!(!run.all().contains(&password));
}
