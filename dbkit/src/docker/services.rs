//! The Postgres and Redis containers, and PgBouncer in front of Postgres when asked: started
//! with testcontainers, kept for reuse, ready when a real query succeeds (directly and through
//! the pooler) and Redis answers PING.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use diesel::{Connection, PgConnection, RunQueryDsl};
use testcontainers_modules::postgres::Postgres;
use testcontainers_modules::redis::Redis;
use testcontainers_modules::testcontainers::bollard::models::{HostConfig, PortBinding};
use testcontainers_modules::testcontainers::core::{Mount, WaitFor};
use testcontainers_modules::testcontainers::runners::SyncRunner;
use testcontainers_modules::testcontainers::{GenericImage, Image, ImageExt, ReuseDirective};
use url::Url;
use xshell::{Shell, cmd};

use crate::project::Project;

pub use crate::project::PROJECT_LABEL;
/// How long a service may take to become usable.
pub const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// What to run. `persistent` services keep data on named volumes with fsync on (development);
/// the others keep it on tmpfs with durability off (a throwaway test server).
#[derive(Clone, Debug)]
pub struct Services {
    pub project: String,
    pub postgres_image: String,
    pub redis_image: String,
    /// Host ports on 127.0.0.1; 0 lets Docker pick a free one.
    pub postgres_port: u16,
    pub redis_port: u16,
    pub user: String,
    pub password: String,
    pub database: String,
    pub persistent: bool,
    /// A host folder Postgres puts its Unix socket in (bind-mounted on /var/run/postgresql):
    /// host clients skip TCP and Docker's port proxy (connections in a third of the time).
    pub socket_dir: Option<std::path::PathBuf>,
}

/// PgBouncer in transaction mode in front of the Postgres of [`Services`], the way managed
/// providers run it (Supabase's pooler on port 6543).
#[derive(Clone, Debug)]
pub struct Pooler {
    pub image: String,
    /// Host port on 127.0.0.1; 0 lets Docker pick a free one.
    pub port: u16,
}

/// The port PgBouncer listens on in its container (its own default, and the compose file's).
pub const POOLER_PORT: u16 = 6432;
/// Client connections PgBouncer accepts, and server connections it opens to Postgres per
/// database and user: many app instances share a few real connections (Supabase's free tier:
/// 200 clients, pools of 15-20).
pub const POOLER_MAX_CLIENT_CONN: u32 = 500;
pub const POOLER_DEFAULT_POOL_SIZE: u32 = 20;

/// Where the running services answer.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// Straight to Postgres.
    pub database_url: Url,
    /// Through PgBouncer (transaction mode), when it runs.
    pub pooled_url: Option<Url>,
    pub redis_url: String,
    /// Postgres's data is new: this call made its volume (or, not persistent, its container).
    pub new_database: bool,
}

impl Services {
    /// What the containers and volumes are called.
    pub fn project(&self) -> Project {
        Project::new(&self.project)
    }
    pub fn postgres_container(&self) -> String {
        self.project().postgres()
    }
    pub fn redis_container(&self) -> String {
        self.project().redis()
    }
    pub fn pooler_container(&self) -> String {
        self.project().pgbouncer()
    }
    pub fn volumes(&self) -> [String; 2] {
        self.project().volumes()
    }

    /// Starts both services, or finds them running from an earlier call, and waits until usable.
    ///
    /// Callers hold the project's [`ProjectLock`] around this and what they decide before it
    /// (the password): a second `up` started at once then waits, and finds and shares what the
    /// first made. A failed start removes only the containers this call created, the other
    /// service's included.
    pub fn up(&self) -> Result<Endpoints> {
        self.up_with(None)
    }

    /// [`Services::up`], with PgBouncer in front of Postgres when `pooler` is given: a third
    /// reusable container, started once Postgres runs, removed with the others on a failed start.
    pub fn up_with(&self, pooler: Option<&Pooler>) -> Result<Endpoints> {
        let sh = Shell::new()?;
        let existed = |name: &str| {
            cmd!(sh, "docker inspect --type container {name}").quiet().ignore_stdout().ignore_stderr().run().is_ok()
        };
        let (postgres_existed, redis_existed) = (existed(&self.postgres_container()), existed(&self.redis_container()));
        let pooler_existed = pooler.is_some() && existed(&self.pooler_container());
        // A volume this call creates holds data initialised with a password that only reaches
        // .env on success: a failed start removes it with its container.
        let volumes_existed = self
            .volumes()
            .map(|v| cmd!(sh, "docker volume inspect {v}").quiet().ignore_stdout().ignore_stderr().run().is_ok());
        // Side by side: a cold start is as slow as the slower of the two, not their sum.
        let (postgres_port, redis_port) = std::thread::scope(|scope| {
            let redis = scope.spawn(|| self.start_redis(redis_existed));
            let postgres = self.start_postgres(postgres_existed);
            (postgres, redis.join().unwrap_or_else(|_| bail!("the Redis start panicked")))
        });
        // The pooler links to the Postgres container: it starts once that one exists.
        let pooler_port = match (&postgres_port, pooler) {
            (Ok(_), Some(pooler)) => Some(self.start_pooler(pooler, pooler_existed)),
            _ => None,
        };
        let failed = postgres_port.is_err() || redis_port.is_err() || pooler_port.as_ref().is_some_and(|p| p.is_err());
        if failed {
            // No service stays half up: remove those that started, if this call made them.
            if postgres_port.is_ok() && !postgres_existed {
                remove(&self.postgres_container());
            }
            if redis_port.is_ok() && !redis_existed {
                remove(&self.redis_container());
            }
            if pooler_port.as_ref().is_some_and(|p| p.is_ok()) && !pooler_existed {
                remove(&self.pooler_container());
            }
            for (volume, existed) in self.volumes().iter().zip(volumes_existed) {
                if self.persistent && !existed {
                    let _ = cmd!(sh, "docker volume rm -f {volume}")
                        .quiet()
                        .ignore_status()
                        .ignore_stdout()
                        .ignore_stderr()
                        .run();
                }
            }
            let pooler_error = pooler_port.and_then(|p| p.err());
            return Err(postgres_port.err().or(redis_port.err()).or(pooler_error).expect("one of them failed"));
        }
        let (postgres_port, redis_port) = (postgres_port?, redis_port?);
        let url_at = |port: u16| {
            Url::parse(&format!(
                "postgres://{}:{}@127.0.0.1:{port}/{}",
                self.user,
                url::form_urlencoded::byte_serialize(self.password.as_bytes()).collect::<String>(),
                self.database
            ))
        };
        let database_url = url_at(postgres_port)?;
        let pooled_url = pooler_port.transpose()?.map(url_at).transpose()?;
        let redis_url = format!("redis://127.0.0.1:{redis_port}/0");
        wait_until_ready(&database_url, &redis_url)?;
        if let Some(pooled) = &pooled_url {
            wait_for_query(pooled, "PgBouncer").context(
                hint!("{} does not pass queries on to Postgres", self.pooler_container(); "see `docker logs {}`; `cargo xtask down` and `up --pooler` again recreate it", self.pooler_container()),
            )?;
        }
        let new_database = if self.persistent { !volumes_existed[0] } else { !postgres_existed };
        Ok(Endpoints { database_url, pooled_url, redis_url, new_database })
    }

    fn start_pooler(&self, pooler: &Pooler, existed: bool) -> Result<u16> {
        let (name, tag) = split_image(&pooler.image);
        let postgres = self.postgres_container();
        // The same environment as infra/docker-compose.yml's (a test keeps the two in step):
        // edoburu/pgbouncer's names, which the offline image reads too.
        let request = GenericImage::new(name, tag)
            .with_exposed_port(testcontainers_modules::testcontainers::core::IntoContainerPort::tcp(POOLER_PORT))
            .with_env_var("DB_HOST", "postgres")
            .with_env_var("DB_PORT", "5432")
            .with_env_var("DB_USER", &self.user)
            .with_env_var("DB_PASSWORD", &self.password)
            .with_env_var("POOL_MODE", "transaction")
            .with_env_var("LISTEN_PORT", POOLER_PORT.to_string())
            .with_env_var("AUTH_TYPE", "scram-sha-256")
            .with_env_var("MAX_CLIENT_CONN", POOLER_MAX_CLIENT_CONN.to_string())
            .with_env_var("DEFAULT_POOL_SIZE", POOLER_DEFAULT_POOL_SIZE.to_string())
            .with_env_var("ADMIN_USERS", &self.user);
        let port = pooler.port;
        let request = request
            .with_container_name(self.pooler_container())
            .with_label(PROJECT_LABEL, &self.project)
            .with_reuse(ReuseDirective::Always)
            .with_startup_timeout(READY_TIMEOUT)
            .with_host_config_modifier(move |host: &mut HostConfig| {
                host.publish_all_ports = Some(false);
                host.port_bindings = Some(HashMap::from([(
                    format!("{POOLER_PORT}/tcp"),
                    Some(vec![PortBinding {
                        host_ip: Some("127.0.0.1".into()),
                        host_port: Some(if port == 0 { String::new() } else { port.to_string() }),
                    }]),
                )]));
                // `postgres` in the pooler's /etc/hosts, kept current by Docker when Postgres
                // restarts (compose's service name does the same on its network).
                host.links = Some(vec![format!("{postgres}:postgres")]);
            });
        self.start(request, &self.pooler_container(), POOLER_PORT, existed, pooler.port)
    }

    fn start_postgres(&self, existed: bool) -> Result<u16> {
        let (name, tag) = split_image(&self.postgres_image);
        // The same command as infra/docker-compose.yml's (a test keeps the two in step).
        let mut args = vec!["postgres".to_string(), "-c".to_string(), "max_connections=200".to_string()];
        if !self.persistent {
            // No autovacuum either: its worker in a test database makes `ALTER DATABASE ...
            // RENAME` (a claim) sleep 100 ms, and test databases live seconds (the template is
            // vacuumed and analyzed when built).
            for setting in ["fsync=off", "synchronous_commit=off", "full_page_writes=off", "autovacuum=off"] {
                args.extend(["-c".to_string(), setting.to_string()]);
            }
        }
        let request = Postgres::default()
            .with_user(&self.user)
            .with_password(&self.password)
            .with_db_name(&self.database)
            .with_name(name)
            .with_tag(tag)
            .with_cmd(args)
            // The official image says this on stderr once the final server runs, on first start
            // and on every later one; the stdout line only comes with a first-time init.
            .with_ready_conditions(vec![WaitFor::message_on_stderr("database system is ready to accept connections")]);
        let request = self.common(request, &self.postgres_container(), 5432, "/var/lib/postgresql/data", 0);
        if self.persistent {
            return self.start(request, &self.postgres_container(), 5432, existed, self.postgres_port);
        }
        // A throwaway server: md5 passwords (set by the test harness once it runs) spare every
        // test connection a SCRAM exchange, milliseconds of CPU each; a wrong password still fails.
        let request = request.with_env_var("POSTGRES_HOST_AUTH_METHOD", "md5");
        let request = match &self.socket_dir {
            Some(dir) => request.with_mount(Mount::bind_mount(dir.display().to_string(), "/var/run/postgresql")),
            None => request,
        };
        self.start(request, &self.postgres_container(), 5432, existed, self.postgres_port)
    }

    fn start_redis(&self, existed: bool) -> Result<u16> {
        let (name, tag) = split_image(&self.redis_image);
        let mut args = vec!["redis-server", "--protected-mode", "no"];
        if self.persistent {
            args.extend(["--appendonly", "yes"]);
        } else {
            args.extend(["--save", "", "--appendonly", "no"]);
        }
        let request = Redis::default()
            .with_name(name)
            .with_tag(tag)
            .with_cmd(args)
            .with_ready_conditions(vec![WaitFor::message_on_stdout("Ready to accept connections")]);
        let request = self.common(request, &self.redis_container(), 6379, "/data", 1);
        self.start(request, &self.redis_container(), 6379, existed, self.redis_port)
    }

    fn common<I: Image>(
        &self,
        request: impl ImageExt<I>,
        container: &str,
        container_port: u16,
        data_dir: &str,
        volume: usize,
    ) -> testcontainers_modules::testcontainers::ContainerRequest<I> {
        let host_port = match self.port_for(container_port) {
            0 => String::new(),
            port => port.to_string(),
        };
        let request = request
            .with_container_name(container)
            .with_label(PROJECT_LABEL, &self.project)
            .with_reuse(ReuseDirective::Always)
            .with_startup_timeout(READY_TIMEOUT)
            .with_host_config_modifier(move |host: &mut HostConfig| {
                // Loopback only: a development database is nobody else's business.
                host.publish_all_ports = Some(false);
                host.port_bindings = Some(HashMap::from([(
                    format!("{container_port}/tcp"),
                    Some(vec![PortBinding { host_ip: Some("127.0.0.1".into()), host_port: Some(host_port.clone()) }]),
                )]));
            });
        if self.persistent {
            request.with_mount(Mount::volume_mount(&self.volumes()[volume], data_dir))
        } else {
            request.with_mount(Mount::tmpfs_mount(data_dir))
        }
    }

    fn port_for(&self, container_port: u16) -> u16 {
        if container_port == 5432 { self.postgres_port } else { self.redis_port }
    }

    fn start<I: Image>(
        &self,
        request: testcontainers_modules::testcontainers::ContainerRequest<I>,
        container: &str,
        container_port: u16,
        existed: bool,
        port: u16,
    ) -> Result<u16> {
        match request.start() {
            Ok(running) => {
                running.get_host_port_ipv4(container_port).with_context(|| format!("find the host port of {container}"))
            }
            Err(e) => {
                let sh = Shell::new()?;
                // Nothing half-made stays behind: a container this call created but could not start
                // goes (one that was there before is not ours to remove).
                let logs = cmd!(sh, "docker logs --tail 20 {container}")
                    .quiet()
                    .ignore_status()
                    .read_stderr()
                    .unwrap_or_default();
                if !existed {
                    remove(container);
                }
                let text = crate::url::redact_str(&format!("{e}"));
                if text.contains("port is already allocated") || text.contains("address already in use") {
                    let service = match container_port {
                        5432 => "postgres",
                        POOLER_PORT => "pooler",
                        _ => "redis",
                    };
                    bail!(
                        hint!("cannot start {container}: host port {port} is in use"; "stop what listens there (`ss -ltnp 'sport = :{port}'`), or pick another port: --{service}-port 0 (any free port) or RAILGUN_{}_PORT=NNNN", service.to_ascii_uppercase())
                    );
                }
                let logs = crate::url::redact_str(logs.trim());
                bail!(
                    hint!("cannot start {container}: {text}{}", if logs.is_empty() { String::new() } else { format!("\n  container log:\n{logs}") }; "the half-made container was removed; see `docker logs` output above, or `cargo xtask down --volumes` to start from fresh data")
                )
            }
        }
    }
}

/// Removes a container this process created, with its anonymous volumes.
fn remove(container: &str) {
    if let Ok(sh) = Shell::new() {
        let _ = cmd!(sh, "docker rm -f --volumes {container}")
            .quiet()
            .ignore_status()
            .ignore_stdout()
            .ignore_stderr()
            .run();
    }
}

/// An exclusive lock on the project's services on this machine, held until dropped (a file in
/// the temporary folder: see [`crate::lock`]).
pub struct ProjectLock {
    _locked: crate::lock::FileLock,
}

impl ProjectLock {
    pub fn take(project: &str) -> Result<ProjectLock> {
        let path = std::env::temp_dir().join(format!("{project}.up.lock"));
        let locked = crate::lock::FileLock::take(&path, || {
            eprintln!("waiting for another `up` of project {project} to finish...")
        })?;
        Ok(ProjectLock { _locked: locked })
    }
}

/// Waits, within [`READY_TIMEOUT`], until a real query runs at `url` (a pooler's, here).
pub fn wait_for_query(url: &Url, what: &str) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let error = match PgConnection::establish(url.as_str()) {
            Ok(mut c) => match diesel::sql_query("SELECT 1").execute(&mut c) {
                Ok(_) => return Ok(()),
                Err(e) => e.to_string(),
            },
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            bail!("{what} did not run a query within {}s: {}", READY_TIMEOUT.as_secs(), crate::url::redact_str(&error));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits, within [`READY_TIMEOUT`], until Postgres runs a real query and Redis answers PING.
pub fn wait_until_ready(database_url: &Url, redis_url: &str) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last_error;
    loop {
        match PgConnection::establish(database_url.as_str()).and_then(|mut c| {
            diesel::sql_query("SELECT 1")
                .execute(&mut c)
                .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))
        }) {
            Ok(_) => break,
            Err(e) => last_error = e.to_string(),
        }
        if last_error.contains("password authentication failed") {
            bail!(
                hint!("Postgres rejects the password in .env: {}", crate::url::redact_str(&last_error); "the data volume was initialised with another password; put it back as RAILGUN_POSTGRES_PASSWORD in .env, or start from empty data with `cargo xtask down --volumes`")
            );
        }
        if Instant::now() > deadline {
            bail!(
                "Postgres did not accept a query within {}s: {}",
                READY_TIMEOUT.as_secs(),
                crate::url::redact_str(&last_error)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    loop {
        match crate::redis::ping(redis_url) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("Redis did not answer PING within {}s", READY_TIMEOUT.as_secs())));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn split_image(image: &str) -> (&str, &str) {
    match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (image, "latest"),
    }
}
