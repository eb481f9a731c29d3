//! SSL for real: a Postgres container with a self-signed certificate whose pg_hba.conf accepts
//! TCP connections over SSL only. `sslmode=require` connects (diesel, psql, pg_dump, the
//! xtask); a plain connection fails with the guide's "SSL/TLS required" fix.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dbkit::connect::{ConnectError, Failure, Retries, establish_with};
use diesel::RunQueryDsl;
use tests::Run;

/// The official Postgres image if this machine has it, else the offline build `up` makes.
fn image() -> &'static str {
    use dbkit::docker::images::{POSTGRES_OFFICIAL, POSTGRES_OFFLINE};
    let present = |image: &str| {
        Command::new("docker")
            .args(["image", "inspect", "--format", "{{.Id}}", image])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if present(POSTGRES_OFFICIAL) { POSTGRES_OFFICIAL } else { POSTGRES_OFFLINE }
}
const PASSWORD: &str = "ssl-canary-3141";

/// The container and its files; removed on drop, after a panic too (SSL_TEST_KEEP=1 keeps them).
struct SslServer {
    name: String,
    dir: PathBuf,
    port: u16,
}

impl Drop for SslServer {
    fn drop(&mut self) {
        if std::env::var_os("SSL_TEST_KEEP").is_some() {
            eprintln!("kept container {} and {}", self.name, self.dir.display());
            return;
        }
        let _ = Command::new("docker").args(["rm", "-f", "-v", &self.name]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(out.status.success(), "{program} {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The init script: the certificate goes into PGDATA (owned by postgres, mode 600, as the server
/// demands), ssl = on, and pg_hba.conf rewritten so TCP clients must use SSL.
fn init_script(dir: &Path) -> String {
    let cert = std::fs::read_to_string(dir.join("server.crt")).unwrap();
    let key = std::fs::read_to_string(dir.join("server.key")).unwrap();
    format!(
        r#"cat > "$PGDATA/server.crt" <<'EOF'
{cert}EOF
cat > "$PGDATA/server.key" <<'EOF'
{key}EOF
chmod 600 "$PGDATA/server.key" "$PGDATA/server.crt"
echo "ssl = on" >> "$PGDATA/postgresql.conf"
printf 'local all all trust\nhostssl all all all scram-sha-256\n' > "$PGDATA/pg_hba.conf"
"#
    )
}

fn start() -> SslServer {
    assert!(Command::new("openssl").arg("version").output().is_ok_and(|o| o.status.success()), "openssl is needed");
    let name = format!("railgun-test-ssl-{}", std::process::id());
    let dir = std::env::temp_dir().join(&name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = SslServer { name, dir, port: 0 };
    let (crt, key) = (server.dir.join("server.crt"), server.dir.join("server.key"));
    run(
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            key.to_str().unwrap(),
            "-out",
            crt.to_str().unwrap(),
        ],
    );
    let script = server.dir.join("ssl.sh");
    std::fs::write(&script, init_script(&server.dir)).unwrap();
    let mount = format!("{}:/docker-entrypoint-initdb.d/ssl.sh:ro", script.display());
    let password = format!("POSTGRES_PASSWORD={PASSWORD}");
    let _ = Command::new("docker").args(["rm", "-f", "-v", &server.name]).output();
    run(
        "docker",
        &["run", "-d", "--name", &server.name, "-p", "127.0.0.1::5432", "-e", &password, "-v", &mount, image()],
    );
    let port = run("docker", &["port", &server.name, "5432/tcp"]);
    server.port = port.trim().lines().next().unwrap().rsplit(':').next().unwrap().parse().unwrap();
    server
}

impl SslServer {
    fn url(&self, sslmode: &str) -> String {
        format!("postgres://postgres:{PASSWORD}@127.0.0.1:{}/postgres?sslmode={sslmode}", self.port)
    }

    /// Waits (bounded) until an SSL connection gets through: the init server listens on a socket only.
    fn wait_ready(&self) {
        let url = dbkit::url::parse_database_url(&self.url("require")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(90);
        let once = Retries { attempts: 1, ..Retries::command_line() };
        loop {
            match establish_with(&url, &once) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => {
                    let logs = Command::new("docker").args(["logs", &self.name]).output().unwrap();
                    panic!("the SSL server never came up: {e:#}\n{}", String::from_utf8_lossy(&logs.stderr));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

fn xtask(args: &[&str]) -> Run {
    tests::isolated(args).output().expect("run xtask").into()
}

#[test]
fn sslmode_is_honoured_everywhere() {
    let server = start();
    server.wait_ready();

    // diesel: sslmode=require connects, encrypted.
    let require = dbkit::url::parse_database_url(&server.url("require")).unwrap();
    let mut conn = dbkit::connect::establish(&require).unwrap();
    let encrypted: bool = diesel::select(diesel::dsl::sql::<diesel::sql_types::Bool>(
        "(SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid())",
    ))
    .get_result(&mut conn)
    .unwrap();
    assert!(encrypted, "sslmode=require must give an encrypted connection");

    // A plain connection is turned away, with the guide's fix and the server's words.
    let disable = dbkit::url::parse_database_url(&server.url("disable")).unwrap();
    let err = dbkit::connect::establish(&disable).err().expect("a plain connection must be refused");
    assert_eq!(err.downcast_ref::<ConnectError>().unwrap().failure, Failure::SslRequired);
    let text = dbkit::error::describe(&err);
    assert!(text.contains("no encryption"), "{text}");
    assert!(text.contains("SSL/TLS") && text.contains("?sslmode=require"), "{text}");
    assert!(!text.contains(PASSWORD), "{text}");

    // The same through the xtask: printed once, the fix last.
    let run = xtask(&["--database-url", &server.url("disable"), "migration", "run"]);
    run.assert_fails_with("add ?sslmode=require to DATABASE_URL");
    assert_eq!(run.stderr.matches("error:").count(), 1, "{}", run.stderr);
    assert!(!run.all().contains(PASSWORD), "{}", run.all());
    let run = xtask(&["--database-url", &server.url("require"), "migration", "run"]);
    run.assert_ok();

    // psql and pg_dump read sslmode from the URL; the password travels in PGPASSWORD.
    let (conninfo, env) = dbkit::url::libpq_env(&require).unwrap();
    assert!(conninfo.contains("sslmode=require") && !conninfo.contains(PASSWORD));
    let psql = |conninfo: &str| {
        Command::new("psql")
            .args([conninfo, "-XAtc", "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"])
            .envs(env.iter().cloned())
            .output()
            .unwrap()
    };
    let out = psql(&conninfo);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "t", "{}", String::from_utf8_lossy(&out.stderr));
    let (plain, _) = dbkit::url::libpq_env(&disable).unwrap();
    let out = psql(&plain);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("no encryption"));
    let dump = Command::new("pg_dump").args([&conninfo, "--schema-only"]).envs(env.iter().cloned()).output().unwrap();
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));

    // The xtask's own backup (pg_dump inside) over SSL, and its plain attempt refused with the fix.
    let backups = server.dir.join("backups");
    let run = xtask(&["--database-url", &server.url("require"), "db", "backup", backups.to_str().unwrap()]);
    run.assert_ok();
    assert!(!run.all().contains(PASSWORD));
    let plain_backups = server.dir.join("plain-backups");
    let run = xtask(&["--database-url", &server.url("disable"), "db", "backup", plain_backups.to_str().unwrap()]);
    run.assert_fails_with("sslmode=require");
    assert!(!run.all().contains(PASSWORD));

    // The audit sees SSL enforced (ssl = on, hostssl lines only).
    let run = xtask(&["--database-url", &server.url("require"), "db", "audit"]);
    assert!(run.stdout.contains("pass  ssl"), "{}", run.all());
}
