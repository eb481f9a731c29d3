//! Which Postgres (and Redis) the tests run on, picked once per process, and this process's
//! identity there: an advisory lock held for its whole life, so that a later run can tell the
//! databases of a crashed process (lock gone) from those of a running one.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use diesel::sql_types::{BigInt, Bool, Text};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use url::Url;

use crate::connect::establish;
use crate::docker::images::{self, Service};
use crate::docker::services::Services;
use crate::url::{is_local, parse_database_url, redact};

/// Advisory lock namespace (the first of the two int4 keys) of a live test process.
pub(crate) const OWNER_LOCKS: i32 = 0x5247_0001;
/// Advisory lock namespace of a template being built (second key: the template's hash).
pub(crate) const BUILD_LOCKS: i32 = 0x5247_0002;
/// Advisory lock namespace of the process refilling a template's pool.
pub(crate) const FILL_LOCKS: i32 = 0x5247_0003;
/// Advisory lock namespace of a stale-database cleanup.
pub(crate) const CLEAN_LOCKS: i32 = 0x5247_0004;

/// The project of the throwaway test container, shared by every test process on this machine
/// (`RAILGUN_TEST_CONTAINER` names another: the harness's own tests start one and remove it).
fn test_project() -> String {
    std::env::var("RAILGUN_TEST_CONTAINER").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "railgun-testdb".into())
}
/// Its password: the container listens on loopback only and its data lives on tmpfs.
const TEST_PASSWORD: &str = "railgun-test-only";

pub(crate) struct Server {
    /// The server as configured, database part to be replaced: what tests connect with.
    pub base: Url,
    /// The `postgres` database with durability off for our sessions: for CREATE/DROP DATABASE.
    admin: Url,
    /// Where the server came from, for messages.
    pub origin: String,
    /// Redis next to it, when one is known.
    pub redis: Option<String>,
    /// This process's id on the server (names of its databases carry it).
    pub owner: u32,
    /// Holds the owner lock; never used for anything else.
    _owner_session: Mutex<PgConnection>,
    idle: Mutex<Vec<PgConnection>>,
    /// `CREATE DATABASE ... STRATEGY FILE_COPY` is faster when checkpoints skip fsync.
    pub file_copy: bool,
}

/// The test server of this process, picked on first use.
pub(crate) fn server() -> Result<&'static Server> {
    static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
    SERVER.get_or_init(|| pick().map_err(|e| crate::error::describe(&e))).as_ref().map_err(|e| anyhow!("{e}"))
}

impl Server {
    /// A URL for database `name` on this server.
    pub fn url_for(&self, name: &str) -> Url {
        let mut url = self.base.clone();
        url.set_path(name);
        url
    }

    /// Runs `f` on an admin connection from a small idle list (connecting costs a few ms).
    pub fn admin<T>(&self, f: impl FnOnce(&mut PgConnection) -> Result<T>) -> Result<T> {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => self.connect_admin()?,
        };
        let result = f(&mut conn);
        if result.is_ok() {
            self.idle.lock().unwrap_or_else(|e| e.into_inner()).push(conn);
        }
        result
    }

    /// A fresh admin connection of its own (for a session-level lock, or a background thread).
    pub fn connect_admin(&self) -> Result<PgConnection> {
        establish(&self.admin)
    }

    /// Owner ids whose process is alive: their owner lock is held.
    pub fn live_owners(&self) -> Result<Vec<u32>> {
        #[derive(QueryableByName)]
        struct Owner {
            #[diesel(sql_type = BigInt)]
            id: i64,
        }
        let rows: Vec<Owner> = self.admin(|c| {
            Ok(diesel::sql_query(format!(
                "SELECT objid::int8 AS id FROM pg_locks WHERE locktype = 'advisory' AND classid = {OWNER_LOCKS} AND objsubid = 2 AND granted"
            ))
            .load(c)?)
        })?;
        Ok(rows.into_iter().map(|r| r.id as u32).collect())
    }
}

fn pick() -> Result<Server> {
    let from_file = |key: &str| -> Option<String> { crate::env_file::get(&env_file(), key).ok().flatten() };
    let from_env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    if let Some(raw) = from_env("TEST_DATABASE_URL") {
        let url = parse_database_url(&raw).context("TEST_DATABASE_URL")?;
        let redis = from_env("TEST_REDIS_URL").or_else(|| from_env("REDIS_URL")).or_else(|| from_file("REDIS_URL"));
        return Server::open(url, "TEST_DATABASE_URL".into(), redis);
    }
    // A local server CI provides, or the `cargo xtask up` services (their URLs are in .env).
    // Only a local one, never in production: tests create and drop databases there.
    let candidates = [
        (from_env("DATABASE_URL"), from_env("APP_ENV"), from_env("REDIS_URL"), "DATABASE_URL"),
        (
            from_file("DATABASE_URL"),
            from_file("APP_ENV"),
            from_file("REDIS_URL"),
            "DATABASE_URL in .env (the `cargo xtask up` server)",
        ),
    ];
    for (raw, app_env, redis, origin) in candidates {
        let Some(raw) = raw.filter(|_| app_env.as_deref() != Some("production")) else { continue };
        let url = parse_database_url(&raw).with_context(|| origin.to_string())?;
        if is_local(&url) && answers(&url) {
            return Server::open(url, origin.into(), redis);
        }
    }
    let (url, redis) = test_container()?;
    Server::open(url, format!("the test container {}-postgres", test_project()), Some(redis))
}

impl Server {
    fn open(base: Url, origin: String, redis: Option<String>) -> Result<Server> {
        let mut admin = base.clone();
        admin.set_path("postgres");
        admin.query_pairs_mut().append_pair("options", "-csynchronous_commit=off");
        let mut session = establish(&admin).with_context(|| format!("connect to the test server ({origin})"))?;
        #[derive(QueryableByName)]
        struct Facts {
            #[diesel(sql_type = Bool)]
            createdb: bool,
            #[diesel(sql_type = Bool)]
            file_copy: bool,
        }
        let facts: Facts = diesel::sql_query(
            "SELECT (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user) AS createdb, \
             current_setting('server_version_num')::int >= 150000 AND current_setting('fsync') = 'off' AS file_copy",
        )
        .get_result(&mut session)
        .context("ask the test server about itself")?;
        if !facts.createdb {
            bail!(
                hint!("the test server's user `{}` cannot create databases ({})", base.username(), redact(&base); "`ALTER ROLE {} CREATEDB`, or point TEST_DATABASE_URL at a server where it can", base.username())
            );
        }
        let owner = take_owner_lock(&mut session)?;
        Ok(Server {
            base,
            admin,
            origin,
            redis,
            owner,
            _owner_session: Mutex::new(session),
            idle: Mutex::new(Vec::new()),
            file_copy: facts.file_copy,
        })
    }
}

/// A random id, locked on `session` until the process ends.
fn take_owner_lock(session: &mut PgConnection) -> Result<u32> {
    #[derive(QueryableByName)]
    struct Taken {
        #[diesel(sql_type = Bool)]
        taken: bool,
    }
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let mut candidate = super::template::fnv(&[&seed.to_le_bytes(), &std::process::id().to_le_bytes()]) as u32;
    for _ in 0..16 {
        let taken: Taken =
            diesel::sql_query(format!("SELECT pg_try_advisory_lock({OWNER_LOCKS}, {}) AS taken", candidate as i32))
                .get_result(session)
                .context("take the test process's advisory lock")?;
        if taken.taken {
            return Ok(candidate);
        }
        candidate = candidate.wrapping_mul(2_654_435_761).wrapping_add(1);
    }
    bail!("could not pick a free test owner id")
}

fn env_file() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).to_path_buf();
    match std::env::var_os("RAILGUN_ENV_FILE") {
        Some(path) => root.join(path),
        None => root.join(".env"),
    }
}

/// True when a connection succeeds within a couple of seconds.
fn answers(url: &Url) -> bool {
    let mut probe = url.clone();
    probe.query_pairs_mut().append_pair("connect_timeout", "2");
    let once = crate::connect::Retries { attempts: 1, ..crate::connect::Retries::command_line() };
    crate::connect::establish_with(&probe, &once).is_ok()
}

/// The shared test container: found through a cache file when it runs, else started once, under
/// a lock directory so that parallel test processes neither race nor remove each other's start.
fn test_container() -> Result<(Url, String)> {
    let dir = std::env::temp_dir();
    let project = test_project();
    let cache = dir.join(format!("{project}.endpoints"));
    let cached = || -> Option<(Url, String)> {
        let text = std::fs::read_to_string(&cache).ok()?;
        let (pg, redis) = text.trim().split_once('\n')?;
        let url = Url::parse(pg).ok()?;
        answers(&url).then(|| (url, redis.to_string()))
    };
    if let Some(found) = cached() {
        return Ok(found);
    }
    let _lock = DirLock::take(&dir.join(format!("{project}.lock")))?;
    if let Some(found) = cached() {
        return Ok(found);
    }
    crate::docker::check_engine()
        .context(hint!("no test database server: none configured, and Docker cannot start one"; "run `cargo xtask up`, or set TEST_DATABASE_URL"))?;
    let sh = xshell::Shell::new()?;
    let services = Services {
        project: project.clone(),
        postgres_image: images::resolve(&sh, Service::Postgres, None)?,
        redis_image: images::resolve(&sh, Service::Redis, None)?,
        postgres_port: 0,
        redis_port: 0,
        user: "railgun".into(),
        password: TEST_PASSWORD.into(),
        database: "postgres".into(),
        persistent: false,
    };
    eprintln!("starting the test container {project}-postgres (tmpfs, fsync off; kept for later runs)");
    let endpoints = services.up().context("start the test database container")?;
    std::fs::write(&cache, format!("{}\n{}\n", endpoints.database_url, endpoints.redis_url))
        .with_context(|| format!("write {}", cache.display()))?;
    Ok((endpoints.database_url, endpoints.redis_url))
}

/// A cross-process lock: a directory only one process can create. One left by a crash expires.
struct DirLock(PathBuf);

impl DirLock {
    fn take(path: &Path) -> Result<DirLock> {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            match std::fs::create_dir(path) {
                Ok(()) => return Ok(DirLock(path.to_path_buf())),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let age = std::fs::metadata(path).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
                    if age.is_some_and(|age| age > Duration::from_secs(180)) {
                        let _ = std::fs::remove_dir(path);
                        continue;
                    }
                    if Instant::now() > deadline {
                        bail!(
                            hint!("waited too long for {}", path.display(); "remove it if no test run is starting the test container")
                        );
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(e).with_context(|| format!("create {}", path.display())),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Seconds since the epoch, as stamped in database comments.
pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// Name and comment of every database whose name starts with `prefix`.
pub(crate) fn databases(conn: &mut PgConnection, prefix: &str) -> Result<Vec<(String, Option<String>)>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        datname: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<Text>)]
        comment: Option<String>,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT datname, shobj_description(oid, 'pg_database') AS comment FROM pg_database WHERE starts_with(datname, $1) ORDER BY datname",
    )
    .bind::<Text, _>(prefix)
    .load(conn)
    .context("list the test databases")?;
    Ok(rows.into_iter().map(|r| (r.datname, r.comment)).collect())
}
