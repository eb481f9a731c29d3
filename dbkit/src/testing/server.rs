//! Which Postgres (and Redis) the tests run on, picked once per process, and this process's
//! identity there: an advisory lock held for its whole life, so that a later run can tell the
//! databases of a crashed process (lock gone) from those of a running one.

use super::handoff::Handoff;
use super::recycle;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use diesel::sql_types::{BigInt, Bool, Text};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use url::Url;

use crate::connect::Failure;
use crate::docker::Project;
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

/// The project of the throwaway test container, shared by every test process on this machine:
/// `railgun-testdb`, or `<RAILGUN_PROJECT>-testdb` next to a renamed project
/// (`RAILGUN_TEST_CONTAINER` names another: the harness's own tests start one and remove it).
fn test_project() -> String {
    let set = |key: &str| std::env::var(key).ok().filter(|s| !s.is_empty());
    set("RAILGUN_TEST_CONTAINER")
        .or_else(|| set("RAILGUN_PROJECT").map(|p| format!("{p}-testdb")))
        .unwrap_or_else(|| "railgun-testdb".into())
}
/// Its password: the container listens on loopback only and its data lives on tmpfs.
const TEST_PASSWORD: &str = "railgun-test-only";

pub(crate) struct Server {
    /// The server as configured, database part to be replaced: what tests are given (TCP, with
    /// the password: the code under test connects as it would to any server).
    pub base: Url,
    /// What the harness's own connections use: `base`, or for the test container its Unix
    /// socket (no TCP, no Docker port proxy, no password exchange: a third of the connect time).
    fast: Url,
    /// The `postgres` database with durability off for our sessions: for CREATE/DROP DATABASE.
    admin: Url,
    /// Where the server came from, for messages.
    pub origin: String,
    /// Redis next to it, when one is known.
    pub redis: Option<String>,
    /// This process's id on the server (names of its databases carry it).
    pub owner: u32,
    /// Holds the owner lock, and is the first admin connection (one connection less per process);
    /// never dropped while the process runs. Opened on first use when the server was picked
    /// without connecting (a nextest test process whose slot database is ready needs none).
    owner_session: Mutex<Option<PgConnection>>,
    idle: Mutex<Vec<PgConnection>>,
    /// PgBouncer in front of the test container (see `pooler`): nextest slot databases' own
    /// connections and every `TestDb::url()` go through it. Handed by the setup script, else
    /// found or started on first need (see [`Server::pooler`]).
    pooled: OnceLock<Url>,
    /// Whether this process tried to find or start the pooler.
    pooler_tried: std::sync::Once,
    /// The test container's project, when the server is the test container.
    container: Option<String>,
    /// `CREATE DATABASE ... STRATEGY FILE_COPY` is faster when checkpoints skip fsync.
    pub file_copy: bool,
    /// A passing test's database can be reset for the next test: by a superuser (triggers off
    /// while its rows go, statistics reset) on a server that counts rows written (`track_counts`).
    /// Otherwise test databases are dropped.
    pub recycles: bool,
    /// The server's statistics epoch when this process (or its run's setup script) first asked
    /// (see [`recycle::STATS_EPOCH`]): a reset trusts the statistics of what a test of this
    /// process wrote only while it is still the same.
    pub stats_epoch: i64,
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

    /// The URL the harness itself connects to database `name` with: `fast` (see the field), or
    /// for a nextest slot database the pooler, when the setup script started one (or, in a run
    /// with no setup script, the one this process finds or starts).
    pub fn fast_url_for(&self, name: &str) -> Url {
        let slot = super::names::DbName::is_slot(name);
        let pooled = match slot && super::handoff::handed().is_none() {
            true => self.pooler(),
            false => self.pooled.get().filter(|_| slot),
        };
        let mut url = pooled.unwrap_or(&self.fast).clone();
        url.set_path(name);
        url
    }

    /// The pooler's URL for database `name`, with the server's credentials (the pooler trusts
    /// its socket, but code that expects a password finds one). `None` when the server is not
    /// the test container or the pooler cannot run.
    pub fn pooled_url_for(&self, name: &str) -> Option<Url> {
        let mut url = self.pooler()?.clone();
        url.set_path(name);
        url.set_password(self.base.password()).ok()?;
        Some(url)
    }

    /// PgBouncer in front of the test container (see `pooler`): the setup script's, else the
    /// one this process finds running or starts, once, under any runner. `None` on another
    /// server, or when it cannot run.
    pub fn pooler(&self) -> Option<&Url> {
        if self.pooled.get().is_none() {
            self.pooler_tried.call_once(|| {
                let Some(project) = &self.container else { return };
                let dir = std::env::temp_dir();
                let Ok(_lock) = start_lock(&dir, project) else { return };
                if let Some(url) = super::pooler::ensure(project, &dir.join(format!("{project}.pg")), &self.base) {
                    let _ = self.pooled.set(url);
                }
            });
        }
        self.pooled.get()
    }

    /// Runs `f` on an admin connection: the owner session when free, else one from a small idle
    /// list (connecting costs a few ms).
    pub fn admin<T>(&self, f: impl FnOnce(&mut PgConnection) -> Result<T>) -> Result<T> {
        if let Ok(mut session) = self.owner_session.try_lock() {
            let session = match &mut *session {
                Some(session) => session,
                None => session.insert(self.open_owner_session()?),
            };
            return f(session);
        }
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

    /// The owner session of a server picked without connecting: this process's owner lock taken.
    fn open_owner_session(&self) -> Result<PgConnection> {
        #[derive(QueryableByName)]
        struct Taken {
            #[diesel(sql_type = Bool)]
            taken: bool,
        }
        let mut session =
            self.connect_admin().with_context(|| format!("connect to the test server ({})", self.origin))?;
        let taken: Taken =
            diesel::sql_query(format!("SELECT pg_try_advisory_lock({OWNER_LOCKS}, {}) AS taken", self.owner as i32))
                .get_result(&mut session)
                .context("take the test process's advisory lock")?;
        if !taken.taken {
            bail!("another test process took this one's random owner id (a 2^-32 chance): run the test again");
        }
        Ok(session)
    }

    /// A fresh admin connection of its own (for a session-level lock, or a background thread).
    pub fn connect_admin(&self) -> Result<PgConnection> {
        connect_waiting(&self.admin)
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

impl Server {
    /// What a nextest setup script hands its test processes of this server (see `handoff`):
    /// who it is, what it allows, the pooler in front of it; the template's part left empty.
    pub(crate) fn handoff(&self) -> Handoff {
        Handoff {
            server: identity(&self.base),
            file_copy: self.file_copy,
            recycles: self.recycles,
            stats_epoch: self.stats_epoch,
            pooler: self.pooled.get().map(|url| url.to_string()),
            template: String::new(),
            dir: None,
            baseline: None,
        }
    }
}

/// The server as the setup script found it, without connecting: TEST_DATABASE_URL, else the
/// running test container. `None` outside such a run.
fn pick_prepared() -> Option<Server> {
    let handoff = super::handoff::handed()?;
    let (base, origin, redis, container) = match std::env::var("TEST_DATABASE_URL").ok().filter(|v| !v.is_empty()) {
        Some(raw) => (
            parse_database_url(&raw).ok()?,
            "TEST_DATABASE_URL".to_string(),
            std::env::var("TEST_REDIS_URL").ok(),
            None,
        ),
        None if std::env::var("RAILGUN_TEST_SERVER").as_deref() != Ok("dev") => {
            let (url, redis) = cached_endpoints()?;
            (
                url,
                format!("the test container {}", Project::new(test_project()).postgres()),
                Some(redis),
                Some(test_project()),
            )
        }
        None => return None,
    };
    let fast = base;
    let base = without_socket(&fast);
    // Facts of another server (or user) say nothing of this one.
    if handoff.server != identity(&base) {
        return None;
    }
    let admin = admin_url(&fast);
    let pooled = OnceLock::new();
    if let Some(url) = handoff.pooler.as_deref().and_then(|u| Url::parse(u).ok()) {
        let _ = pooled.set(url);
    }
    Some(Server {
        base,
        fast,
        admin,
        origin,
        redis,
        owner: owner_candidate(),
        owner_session: Mutex::new(None),
        idle: Mutex::new(Vec::new()),
        pooled,
        pooler_tried: std::sync::Once::new(),
        container,
        file_copy: handoff.file_copy,
        recycles: handoff.recycles,
        stats_epoch: handoff.stats_epoch,
    })
}

/// The `postgres` database with durability off for our sessions: for CREATE/DROP DATABASE.
fn admin_url(server: &Url) -> Url {
    let mut admin = server.clone();
    admin.set_path("postgres");
    admin.query_pairs_mut().append_pair("options", "-csynchronous_commit=off");
    admin
}

/// A server URL's user, host, port and query (the socket folder), without its password.
fn identity(url: &Url) -> String {
    format!("{}@{}:{}", url.username(), url.host_str().unwrap_or_default(), url.port().unwrap_or(5432))
}

/// The test container's TCP URL from its socket one (`host=<temp>/<project>.socket` removed).
fn without_socket(url: &Url) -> Url {
    let ours = |value: &str| value.ends_with(".socket") && Path::new(value).starts_with(std::env::temp_dir());
    if !url.query_pairs().any(|(k, v)| k == "host" && ours(&v)) {
        return url.clone();
    }
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, v)| !(k == "host" && ours(v)))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let mut tcp = url.clone();
    tcp.set_query(None);
    if !kept.is_empty() {
        tcp.query_pairs_mut().extend_pairs(kept);
    }
    tcp
}

fn pick() -> Result<Server> {
    if super::runner::runner().one_test_per_process()
        && let Some(server) = pick_prepared()
    {
        return Ok(server);
    }
    let from_file = |key: &str| -> Option<String> { crate::env_file::get(&env_file(), key).ok().flatten() };
    let from_env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    if let Some(raw) = from_env("TEST_DATABASE_URL") {
        let url = parse_database_url(&raw).context("TEST_DATABASE_URL")?;
        let redis = from_env("TEST_REDIS_URL").or_else(|| from_env("REDIS_URL")).or_else(|| from_file("REDIS_URL"));
        return Server::open(url, "TEST_DATABASE_URL".into(), redis, None);
    }
    // The test container first, even when the dev server is up: tmpfs and no fsync make clones
    // and commits cheap, and the tests neither fill the dev server's WAL nor litter it.
    // `RAILGUN_TEST_SERVER=dev` prefers the dev server; without Docker it is the fallback.
    let prefer_dev = from_env("RAILGUN_TEST_SERVER").as_deref() == Some("dev");
    if !prefer_dev && let Some(server) = test_container_server()? {
        return Ok(server);
    }
    // A local server CI provides, or the `cargo xtask up` services (their URLs are in .env).
    // Only a local one, never a deployed one (APP_ENV): tests create and drop databases there.
    // DIRECT_URL first: behind `up --pooler`, DATABASE_URL goes through PgBouncer, and the harness
    // needs sessions (its locks, CREATE DATABASE ... TEMPLATE).
    let candidates = [
        (
            from_env("DIRECT_URL").or_else(|| from_env("DATABASE_URL")),
            from_env("APP_ENV"),
            from_env("REDIS_URL"),
            "DATABASE_URL",
        ),
        (
            from_file("DIRECT_URL").filter(|v| !v.is_empty()).or_else(|| from_file("DATABASE_URL")),
            from_file("APP_ENV"),
            from_file("REDIS_URL"),
            "DATABASE_URL in .env (the `cargo xtask up` server)",
        ),
    ];
    for (raw, app_env, redis, origin) in candidates {
        // One reading of APP_ENV, the guard's: staging, prod, Production... are all deployed;
        // a value it does not know is not a guess either.
        let deployed = !matches!(
            crate::connect::Environment::parse(app_env.as_deref()),
            Ok(crate::connect::Environment::Development)
        );
        let Some(raw) = raw.filter(|_| !deployed) else { continue };
        let url = parse_database_url(&raw).with_context(|| origin.to_string())?;
        if is_local(&url) && answers(&url) {
            return Server::open(url, origin.into(), redis, None);
        }
    }
    match prefer_dev {
        true => test_container_server()?,
        false => None,
    }
    .ok_or_else(|| anyhow!(hint!("no test database server: none configured, and Docker cannot start one"; "run `cargo xtask up`, or set TEST_DATABASE_URL")))
}

/// The shared test container as this process's server; `None` when Docker cannot run it.
fn test_container_server() -> Result<Option<Server>> {
    let origin = format!("the test container {}", Project::new(test_project()).postgres());
    // The usual case, with no probe: this first connection is the probe (one connection less per process).
    if let Some((url, redis)) = cached_endpoints()
        && let Ok(server) = Server::open(url, origin.clone(), Some(redis), Some(test_project()))
    {
        return Ok(Some(server));
    }
    let Some((url, redis)) = test_container()? else { return Ok(None) };
    Server::open(url, origin, Some(redis), Some(test_project())).map(Some)
}

fn endpoints_file() -> PathBuf {
    std::env::temp_dir().join(format!("{}.endpoints", test_project()))
}

/// The running test container's URLs, as its starter wrote them.
fn cached_endpoints() -> Option<(Url, String)> {
    let text = std::fs::read_to_string(endpoints_file()).ok()?;
    let (pg, redis) = text.trim().split_once('\n')?;
    Some((Url::parse(pg).ok()?, redis.to_string()))
}

impl Server {
    /// Connects to `fast` (see the field); tests are given it without the test container's socket.
    fn open(fast: Url, origin: String, redis: Option<String>, container: Option<String>) -> Result<Server> {
        let base = without_socket(&fast);
        let admin = admin_url(&fast);
        let mut session = connect_waiting(&admin).with_context(|| format!("connect to the test server ({origin})"))?;
        #[derive(QueryableByName)]
        struct Facts {
            #[diesel(sql_type = Bool)]
            createdb: bool,
            #[diesel(sql_type = Bool)]
            file_copy: bool,
            #[diesel(sql_type = Bool)]
            recycles: bool,
            #[diesel(sql_type = Bool)]
            taken: bool,
            #[diesel(sql_type = BigInt)]
            stats_epoch: i64,
        }
        // One round trip: what the server allows, its statistics epoch, and this process's owner
        // lock (a random id, free but for a 2^-32 chance; then the next ones are tried).
        let candidate = owner_candidate();
        let facts: Facts = diesel::sql_query(format!(
            "SELECT (SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user) AS createdb, \
             current_setting('server_version_num')::int >= 150000 AND current_setting('fsync') = 'off' AS file_copy, \
             current_setting('is_superuser') = 'on' AND current_setting('track_counts') = 'on' \
             AND current_setting('server_version_num')::int >= 150000 AS recycles, \
             pg_try_advisory_lock({OWNER_LOCKS}, {}) AS taken, {} AS stats_epoch",
            candidate as i32,
            recycle::STATS_EPOCH
        ))
        .get_result(&mut session)
        .context("ask the test server about itself")?;
        if !facts.createdb {
            bail!(
                hint!("the test server's user `{}` cannot create databases ({})", base.username(), redact(&base); "`ALTER ROLE {} CREATEDB`, or point TEST_DATABASE_URL at a server where it can", base.username())
            );
        }
        let owner = match facts.taken {
            true => candidate,
            false => take_owner_lock(&mut session, candidate)?,
        };
        Ok(Server {
            base,
            fast,
            admin,
            origin,
            redis,
            owner,
            owner_session: Mutex::new(Some(session)),
            idle: Mutex::new(Vec::new()),
            pooled: OnceLock::new(),
            pooler_tried: std::sync::Once::new(),
            container,
            file_copy: facts.file_copy,
            recycles: facts.recycles,
            stats_epoch: facts.stats_epoch,
        })
    }
}

/// A random owner id for this process.
fn owner_candidate() -> u32 {
    let seed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    super::template::fnv(&[&seed.to_le_bytes(), &std::process::id().to_le_bytes()]) as u32
}

/// An id after `taken`, locked on `session` until the process ends.
fn take_owner_lock(session: &mut PgConnection, taken: u32) -> Result<u32> {
    #[derive(QueryableByName)]
    struct Taken {
        #[diesel(sql_type = Bool)]
        taken: bool,
    }
    let mut candidate = taken;
    for _ in 0..16 {
        candidate = candidate.wrapping_mul(2_654_435_761).wrapping_add(1);
        let taken: Taken =
            diesel::sql_query(format!("SELECT pg_try_advisory_lock({OWNER_LOCKS}, {}) AS taken", candidate as i32))
                .get_result(session)
                .context("take the test process's advisory lock")?;
        if taken.taken {
            return Ok(candidate);
        }
    }
    bail!("could not pick a free test owner id")
}

fn env_file() -> PathBuf {
    let root = crate::checkout::root(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")));
    match std::env::var_os("RAILGUN_ENV_FILE") {
        Some(path) => root.join(path),
        None => root.join(".env"),
    }
}

/// True when a connection succeeds within a couple of seconds.
pub(crate) fn answers(url: &Url) -> bool {
    let mut probe = url.clone();
    probe.query_pairs_mut().append_pair("connect_timeout", "2");
    let once = crate::connect::Retries { attempts: 1, ..crate::connect::Retries::command_line() };
    crate::connect::establish_with(&probe, &once).is_ok()
}

/// The shared test container: found through a cache file when it runs, else started once, under
/// a lock so that parallel test processes neither race nor remove each other's start.
/// `None` when it does not run and Docker cannot start it.
fn test_container() -> Result<Option<(Url, String)>> {
    let dir = std::env::temp_dir();
    let project = test_project();
    let cache = endpoints_file();
    let _lock = start_lock(&dir, &project)?;
    if let Some(found) = cached_endpoints().filter(|(url, _)| answers(url)) {
        return Ok(Some(found));
    }
    if crate::docker::check_engine().is_err() {
        return Ok(None);
    }
    let sockets = dir.join(format!("{project}.pg"));
    let sockets = std::fs::create_dir_all(&sockets).is_ok().then_some(sockets);
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
        socket_dir: sockets.clone(),
    };
    eprintln!("starting the test container {} (tmpfs, fsync off; kept for later runs)", services.postgres_container());
    let endpoints = services.up().context("start the test database container")?;
    // Its pg_hba says md5; a password stored as md5 makes it md5 indeed (else SCRAM).
    let mut admin = crate::connect::establish(&endpoints.database_url)?;
    diesel::connection::SimpleConnection::batch_execute(
        &mut admin,
        &format!("SET password_encryption = 'md5'; ALTER ROLE CURRENT_USER PASSWORD '{TEST_PASSWORD}'"),
    )
    .context("set the test container's password")?;
    let url = sockets.and_then(|s| via_socket(&s, &project, &endpoints.database_url));
    let url = url.unwrap_or(endpoints.database_url);
    std::fs::write(&cache, format!("{url}\n{}\n", endpoints.redis_url))
        .with_context(|| format!("write {}", cache.display()))?;
    Ok(Some((url, endpoints.redis_url)))
}

/// The test container's URL through its Unix socket, when the host can reach it: the same
/// host, port and credentials plus `host=<folder>`, so a client that ignores `host=` reaches
/// the same server over TCP. libpq looks for `.s.PGSQL.<port>` in that folder: a link of that
/// name points at the container's socket (`.s.PGSQL.5432` in the bind-mounted `sockets`).
fn via_socket(sockets: &Path, project: &str, tcp: &Url) -> Option<Url> {
    let port = tcp.port()?;
    let links = std::env::temp_dir().join(format!("{project}.socket"));
    let _ = std::fs::remove_dir_all(&links);
    std::fs::create_dir_all(&links).ok()?;
    #[cfg(unix)]
    std::os::unix::fs::symlink(sockets.join(".s.PGSQL.5432"), links.join(format!(".s.PGSQL.{port}"))).ok()?;
    let mut url = tcp.clone();
    url.query_pairs_mut().append_pair("host", links.to_str()?);
    answers(&url).then_some(url)
}

/// Connects to `url`, waiting while the server has no free connection slot (many parallel tests)
/// rather than failing; says so after a few seconds.
pub(crate) fn connect_waiting(url: &Url) -> Result<PgConnection> {
    connect_waiting_unless(url, &|| false)
}

/// [`connect_waiting`] that stops waiting (an error) once `stop` says so: a test database's
/// pool ended while one of its connections waited for a slot.
pub(crate) fn connect_waiting_unless(url: &Url, stop: &dyn Fn() -> bool) -> Result<PgConnection> {
    let once = crate::connect::Retries { attempts: 1, ..crate::connect::Retries::command_line() };
    // No GSSAPI on a test server: probing for Kerberos credentials costs each connection time.
    let mut url = url.clone();
    if !url.query_pairs().any(|(k, _)| k == "gssencmode") {
        url.query_pairs_mut().append_pair("gssencmode", "disable");
    }
    let url = &url;
    let started = Instant::now();
    let mut told = false;
    loop {
        let error = match crate::connect::establish_with(url, &once) {
            Ok(conn) => return Ok(conn),
            Err(error) => error,
        };
        let failure = crate::connect::failure_of(&error);
        let full = failure == Some(Failure::TooManyConnections);
        // PgBouncer refuses clients of a database for a moment after a login to it failed (a
        // slot database made just now did not exist a moment ago).
        if started.elapsed() < Duration::from_secs(2) && failure == Some(Failure::PoolerLoginRetry) {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        if !full || started.elapsed() > Duration::from_secs(600) || stop() {
            return Err(error);
        }
        if !told && started.elapsed() > Duration::from_secs(3) {
            eprintln!(
                "waiting for a free connection slot on the test server {} (its max_connections are all in use)",
                redact(url)
            );
            told = true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The lock under which the test container is started (and its pooler): a file beside the
/// container's sockets (see [`crate::lock`]; a `.lock` directory of older versions is ignored).
fn start_lock(dir: &Path, project: &str) -> Result<crate::lock::FileLock> {
    crate::lock::FileLock::take(&dir.join(format!("{project}.flock")), || {})
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
