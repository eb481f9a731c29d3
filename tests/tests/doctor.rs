//! `cargo xtask doctor`: one line a check, each failure with its fix, exit 1 on failure.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use db::testing::TestDb;
use tests::{Run, xtask_bin};

/// A `.env` of the test's own (outside the repository) holding `url`, with `mode`.
struct EnvFile(PathBuf);

impl EnvFile {
    fn new(tag: &str, url: &str, mode: u32) -> EnvFile {
        let dir = std::env::temp_dir().join(format!("doctor-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".env");
        std::fs::write(&path, format!("DATABASE_URL={url}\nAPP_ENV=development\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        EnvFile(path)
    }

    fn doctor(&self) -> Run {
        self.xtask(&["doctor"])
    }

    /// The xtask in this file's folder, reading this file.
    fn xtask(&self, args: &[&str]) -> Run {
        std::process::Command::new(xtask_bin())
            .args(args)
            .current_dir(self.0.parent().unwrap())
            .env("RAILGUN_ENV_FILE", &self.0)
            .env_remove("DATABASE_URL")
            .env_remove("APP_ENV")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run xtask")
            .into()
    }
}

impl Drop for EnvFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.0.parent().unwrap());
    }
}

fn line<'a>(run: &'a Run, check: &str) -> &'a str {
    let prefix = |status: &str| format!("{status}  {check:<11}");
    run.stdout
        .lines()
        .find(|l| l.starts_with(&prefix("pass")) || l.starts_with(&prefix("FAIL")) || l.starts_with(&prefix("skip")))
        .unwrap_or_else(|| panic!("no `{check}` line:\n{}", run.stdout))
}

/// The fix printed under a failing check.
fn fix<'a>(run: &'a Run, check: &str) -> &'a str {
    let lines: Vec<&str> = run.stdout.lines().collect();
    let at = lines.iter().position(|l| *l == line(run, check)).unwrap();
    lines
        .get(at + 1)
        .filter(|l| l.trim_start().starts_with("fix:"))
        .unwrap_or_else(|| panic!("no fix:\n{}", run.stdout))
}

#[test]
fn a_healthy_setup_passes_every_check() {
    let db = TestDb::new().unwrap();
    let env = EnvFile::new("ok", db.direct_url().as_str(), 0o600);
    let run = env.doctor();
    for check in ["docker", "images", ".env", "database", "tools", "ssl", "migrations", "schema.rs"] {
        assert!(line(&run, check).starts_with("pass"), "{check}:\n{}", run.all());
    }
    assert!(line(&run, "tools").contains("server is PostgreSQL"), "{}", run.stdout);
    assert_eq!(run.ok(), !run.stdout.contains("FAIL"), "exit status follows the table:\n{}", run.all());
    assert!(!run.all().contains(db.direct_url().password().unwrap()), "{}", run.all());
}

#[test]
fn each_failure_names_its_fix_and_fails_the_run() {
    // A readable .env, and a database without its migrations.
    let db = TestDb::empty().unwrap();
    let env = EnvFile::new("pending", db.direct_url().as_str(), 0o644);
    let run = env.doctor();
    run.assert_fails_with("checks failed");
    assert!(line(&run, ".env").contains("mode 644"), "{}", run.stdout);
    assert!(fix(&run, ".env").contains("chmod 600"), "{}", run.stdout);
    assert!(line(&run, "migrations").starts_with("FAIL") && line(&run, "migrations").contains("pending"));
    assert!(fix(&run, "migrations").contains("cargo xtask migration run"));
    assert!(line(&run, "schema.rs").starts_with("FAIL"), "schema.rs cannot match an empty database:\n{}", run.stdout);
    assert!(line(&run, "database").starts_with("pass"));
    assert!(!run.all().contains(db.direct_url().password().unwrap()));

    // Nothing listening: the connection fails with the guide's fix; the database checks are skipped.
    let env = EnvFile::new("refused", "postgres://app:doctor-canary@127.0.0.1:1/rail", 0o600);
    let run = env.doctor();
    run.assert_fails_with("database");
    assert!(line(&run, "database").contains("Connection refused"), "{}", run.stdout);
    assert!(fix(&run, "database").contains("cargo xtask up"), "{}", run.stdout);
    assert!(line(&run, "migrations").starts_with("skip"));
    assert!(line(&run, "docker").starts_with("pass"));
    assert!(!run.all().contains("doctor-canary"), "{}", run.all());
}

#[test]
fn schema_drift_covers_every_schema_file() {
    let db = TestDb::new().unwrap();
    let env = EnvFile::new("keys", db.direct_url().as_str(), 0o600);
    let dir = env.0.parent().unwrap();
    std::fs::write(
        dir.join("diesel.toml"),
        "[print_schema.users]\nfile = \"users.rs\"\nfilter = { only_tables = [\"^users$\"] }\n\n[print_schema.rest]\nfile = \"rest.rs\"\nfilter = { except_tables = [\"^users$\"] }\n",
    )
    .unwrap();
    env.xtask(&["--config-file", "diesel.toml", "schema", "generate"]).assert_ok();
    let run = env.xtask(&["--config-file", "diesel.toml", "doctor"]);
    assert!(line(&run, "schema.rs").contains("all 2 schema files match the database"), "{}", run.all());

    std::fs::write(dir.join("rest.rs"), "// @generated automatically by Diesel CLI.\n").unwrap();
    let run = env.xtask(&["--config-file", "diesel.toml", "doctor"]);
    assert!(
        line(&run, "schema.rs").starts_with("FAIL") && line(&run, "schema.rs").contains("rest.rs is stale"),
        "{}",
        run.stdout
    );
    assert!(fix(&run, "schema.rs").contains("cargo xtask schema generate"), "{}", run.stdout);
}
