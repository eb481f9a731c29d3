//! Helpers for the end-to-end tests: run the real `cargo xtask` binary (the one cargo built for them), in a project of its
//! own (containers, volumes, `.env`), cleaned up on drop even when the test panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The xtask binary cargo built for this test: the files in tests/tests/ are xtask's integration
/// tests, so cargo builds its binary first and puts it beside their `deps/` folder (nextest
/// also names it in `CARGO_BIN_EXE_xtask`). No test builds it itself.
pub fn xtask_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| binary("xtask"))
}

/// The linter's binary (`lint/`), for its own end-to-end tests (they are dblint's).
pub fn dblint_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| binary("dblint"))
}

/// A binary cargo built for the running integration test: beside its `deps/` folder (nextest
/// also names it in `CARGO_BIN_EXE_<name>`).
fn binary(name: &str) -> PathBuf {
    let bin = std::env::var_os(format!("CARGO_BIN_EXE_{name}")).map(PathBuf::from).unwrap_or_else(|| {
        let exe = std::env::current_exe().expect("the test's own path");
        exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>").join(name)
    });
    assert!(bin.is_file(), "{} is missing: run the tests with cargo (it builds the binary first)", bin.display());
    bin
}

/// The diesel_cli the comparison tests hold us to, byte for byte: `cargo xtask test` installs
/// exactly this version.
pub const DIESEL_CLI_VERSION: &str = "2.3.14";

/// The real diesel_cli: on PATH, else where `cargo xtask test` and CI install it
/// ($RAILGUN_TOOLS, default ~/.cache/railgun-tools). It must be [`DIESEL_CLI_VERSION`]'s 2.3
/// series: another series may print schemas differently.
pub fn diesel_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let on_path = std::env::var_os("PATH")
            .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join("diesel")).find(|p| p.is_file()));
        let tools = std::env::var_os("RAILGUN_TOOLS")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap()).join(".cache/railgun-tools"));
        let bin = on_path.unwrap_or_else(|| tools.join("bin/diesel"));
        let install = format!(
            "cargo install diesel_cli@{DIESEL_CLI_VERSION} --no-default-features --features postgres --locked --root ~/.cache/railgun-tools"
        );
        assert!(bin.is_file(), "diesel_cli is missing: {install}");
        let out = Command::new(&bin).arg("--version").output().expect("run diesel --version");
        let version = String::from_utf8_lossy(&out.stdout);
        let series = DIESEL_CLI_VERSION.rsplit_once('.').unwrap().0;
        assert!(
            version.contains(&format!("Version: {series}.")),
            "{} is not diesel_cli {series}.x:\n{version}\n{install}",
            bin.display()
        );
        bin
    })
}

/// The xtask with `args`, outside any project: no terminal, no `.env`, no inherited database
/// settings. Add `--database-url` and the environment a test needs.
pub fn isolated(args: &[&str]) -> Command {
    isolated_bin(xtask_bin(), args)
}

/// [`isolated`] for another binary of the workspace.
pub fn isolated_bin(bin: &Path, args: &[&str]) -> Command {
    let dir = std::env::temp_dir();
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .current_dir(&dir)
        .env("RAILGUN_ENV_FILE", dir.join(format!("no-such-env-{}", std::process::id())))
        .env_remove("DATABASE_URL")
        .env_remove("APP_ENV")
        .env_remove("DIESEL_CONFIG_FILE")
        .stdin(std::process::Stdio::null());
    cmd
}

/// The `text` column of `query`'s rows on a connection of `db`, one row a line.
pub fn text(db: &db::testing::TestDb, query: &str) -> String {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct One {
        #[diesel(sql_type = diesel::sql_types::Text)]
        text: String,
    }
    let rows: Vec<One> = diesel::sql_query(query).load(&mut db.conn().unwrap()).unwrap();
    rows.into_iter().map(|r| r.text).collect::<Vec<_>>().join("\n")
}

/// What a command printed, and how it ended.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// Panics with both streams unless the command succeeded.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.ok(), "command failed ({:?})\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr);
        self
    }
    /// Panics unless the command failed without a panic, saying `needle` on stderr.
    #[track_caller]
    pub fn assert_fails_with(&self, needle: &str) -> &Self {
        assert!(!self.ok(), "command should have failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        assert!(!self.stderr.contains("panicked"), "command panicked:\n{}", self.stderr);
        assert!(self.stderr.contains(needle), "stderr lacks `{needle}`:\n{}", self.stderr);
        self
    }
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// A project of the test's own: its containers and volumes are named after it, its `.env` is
/// a file of its own, and all of it goes when this is dropped (after a panic too).
pub struct Project {
    pub name: String,
    pub dir: PathBuf,
}

impl Project {
    pub fn new(tag: &str) -> Project {
        static N: AtomicUsize = AtomicUsize::new(0);
        Project::named(&format!("railgun-test-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
    }

    /// A project with a given name (a child test process cleans up a name its parent chose).
    pub fn named(name: &str) -> Project {
        let name = name.to_string();
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).unwrap();
        Project { name, dir }
    }

    pub fn env_file(&self) -> PathBuf {
        self.dir.join(".env")
    }

    /// A `cargo xtask` command in this project (any free ports, its own `.env`).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(xtask_bin());
        cmd.args(args)
            .current_dir(&self.dir)
            .env("RAILGUN_PROJECT", &self.name)
            .env("RAILGUN_ENV_FILE", self.env_file())
            .env("RAILGUN_POSTGRES_PORT", "0")
            .env("RAILGUN_REDIS_PORT", "0")
            .env("RAILGUN_POOLER_PORT", "0")
            .env_remove("DATABASE_URL")
            .env_remove("DIRECT_URL")
            .env_remove("DATABASE_POOLER")
            .env_remove("RAILGUN_POOLER")
            .env_remove("REDIS_URL")
            .env_remove("RAILGUN_POSTGRES_PASSWORD")
            .env_remove("APP_ENV")
            .stdin(std::process::Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("run xtask").into()
    }

    /// A setting from this project's `.env`.
    pub fn setting(&self, key: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.env_file()).ok()?;
        text.lines().find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
    }

    /// The id of one of this project's containers (`postgres` or `redis`).
    pub fn container_id(&self, service: &str) -> String {
        let out = Command::new("docker")
            .args(["inspect", "--format", "{{.Id}}", &format!("{}-{service}", self.name)])
            .output()
            .expect("run docker inspect");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Names of this project's data volumes that exist.
    pub fn volumes(&self) -> Vec<String> {
        let out = Command::new("docker")
            .args(["volume", "ls", "--quiet", "--filter", &format!("name={}-", self.name)])
            .output()
            .expect("run docker volume ls");
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }

    /// Names of this project's containers, running or not.
    pub fn containers(&self) -> Vec<String> {
        containers_labelled(&format!("org.railgun.project={}", self.name))
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        for c in self.containers() {
            let _ = Command::new("docker").args(["rm", "-f", "-v", &c]).output();
        }
        for v in ["postgres-data", "redis-data"] {
            let _ = Command::new("docker").args(["volume", "rm", "-f", &format!("{}-{v}", self.name)]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Names of containers (running or not) with this label filter.
pub fn containers_labelled(filter: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-a", "--filter", &format!("label={filter}"), "--format", "{{.Names}}"])
        .output()
        .expect("run docker ps");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
}

/// A database and a project folder of the test's own: its diesel.toml writes schema.rs into
/// the folder (never into the repository) and reads the migrations from `migrations`, else from
/// the folder's own `migrations/` (created empty).
pub struct Folder {
    pub db: db::testing::TestDb,
    pub dir: PathBuf,
}

impl Folder {
    pub fn new(tag: &str, migrations: Option<&Path>) -> Folder {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "railgun-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("migrations")).unwrap();
        let migrations = migrations.map_or_else(|| "migrations".to_string(), |m| m.display().to_string());
        let config =
            format!("[print_schema]\nfile = \"schema.rs\"\n\n[migrations_directory]\ndir = \"{migrations}\"\n");
        std::fs::write(dir.join("diesel.toml"), config).unwrap();
        Folder { db: db::testing::TestDb::empty().unwrap(), dir }
    }

    /// `cargo xtask ARGS` in the folder, on the test's database, with no `.env` and no terminal.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(xtask_bin());
        cmd.arg("--database-url")
            .arg(self.db.direct_url().as_str())
            .arg("--config-file")
            .arg(self.dir.join("diesel.toml"))
            .args(args)
            .current_dir(&self.dir)
            .env("RAILGUN_ENV_FILE", self.dir.join("no.env"))
            .env_remove("DATABASE_URL")
            .env_remove("APP_ENV")
            .env_remove("DIESEL_CONFIG_FILE")
            .stdin(std::process::Stdio::null());
        cmd
    }

    pub fn xtask(&self, args: &[&str]) -> Run {
        self.command(args).output().unwrap().into()
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The name libtest knows the test `name` of the module `module` (its `module_path!()`) by, for
/// `--exact`: the module path without the test binary's own name (`e2e::harness` and
/// `child_recycle` make `harness::child_recycle`).
pub fn qualified(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_, path)) => format!("{path}::{name}"),
        None => name.to_string(),
    }
}

/// A moto S3 server of the test's own on a free port, killed when dropped.
pub struct S3 {
    child: std::process::Child,
    pub endpoint: String,
}

impl S3 {
    pub fn start() -> S3 {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto_server (pip install 'moto[server]')");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        S3 { child, endpoint }
    }

    /// `curl` against the server (moto accepts unsigned requests): the body.
    pub fn curl(&self, args: &[&str], path: &str) -> Vec<u8> {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--fail"])
            .args(args)
            .arg(format!("{}{path}", self.endpoint))
            .output()
            .unwrap();
        assert!(out.status.success(), "curl {path}: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    pub fn create_bucket(&self, name: &str) {
        self.curl(&["-X", "PUT"], &format!("/{name}"));
    }

    /// The keys in the bucket.
    pub fn keys(&self, bucket: &str) -> Vec<String> {
        let xml = String::from_utf8(self.curl(&[], &format!("/{bucket}?list-type=2"))).unwrap();
        xml.split("<Key>").skip(1).map(|k| k.split("</Key>").next().unwrap().to_string()).collect()
    }

    /// The multipart uploads in progress in the bucket.
    pub fn uploads(&self, bucket: &str) -> usize {
        let xml = String::from_utf8(self.curl(&[], &format!("/{bucket}?uploads"))).unwrap();
        xml.matches("<UploadId>").count()
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The secret key the tests give the S3 server: never to be printed.
pub const S3_SECRET: &str = "moto-secret-access-key-never-shown";

/// The S3 settings for `s3` on `cmd`: endpoint and credentials, no identity.
pub fn with_s3(cmd: &mut std::process::Command, s3: &S3) {
    cmd.env("AWS_ENDPOINT_URL", &s3.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", S3_SECRET)
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("RAILGUN_BACKUP_IDENTITY");
}

/// Roles are the server's, not a database's: dropped when this goes, which is after the test's
/// databases when it is declared before them (not after a panic: those are kept to look at).
pub struct RoleCleanup {
    pub server: db::testing::TestDb,
    pub roles: Vec<String>,
}

impl Drop for RoleCleanup {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        if let Ok(mut conn) = self.server.conn() {
            use diesel::connection::SimpleConnection;
            for role in &self.roles {
                let _ = conn.batch_execute(&format!("DROP ROLE IF EXISTS {role}"));
            }
        }
    }
}

/// Makes `target` a provider's database: it and its `public` schema owned by a new ordinary
/// role `role` (password `pw`), and returns the URL that connects as that role.
pub fn owned_by_new_role(target: &db::testing::TestDb, role: &str) -> url::Url {
    use diesel::connection::SimpleConnection;
    target
        .conn()
        .unwrap()
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'pw'; ALTER DATABASE {} OWNER TO {role}; ALTER SCHEMA public OWNER TO {role};",
            target.name()
        ))
        .unwrap();
    let mut url = target.direct_url().clone();
    url.set_username(role).unwrap();
    url.set_password(Some("pw")).unwrap();
    url
}
