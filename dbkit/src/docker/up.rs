//! `up`: local Postgres and Redis (and PgBouncer) in Docker for a checkout, `.env` pointing at
//! them, then its migrations and, for a new database, its seeds.

use std::fmt;
use std::time::Instant;

use anyhow::{Context as _, Result};
use url::Url;
use xshell::{Shell, cmd};

use super::images::{self, Service};
use super::services::{Endpoints, POOLER_PORT, Pooler, ProjectLock, Services};
use crate::context::Context;
use crate::env_file;
use crate::project::Project;
use crate::url::{is_local, redact};

/// What to start, as `cargo xtask up`'s flags say; `None` is "the one in .env, else the default".
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub postgres_image: Option<String>,
    pub redis_image: Option<String>,
    /// Host ports on 127.0.0.1; `Some(0)` picks a free one.
    pub postgres_port: Option<u16>,
    pub redis_port: Option<u16>,
    /// Run PgBouncer too (else RAILGUN_POOLER decides).
    pub pooler: bool,
    pub pooler_image: Option<String>,
    pub pooler_port: Option<u16>,
}

/// Services that run and the .env that names them. The project's lock is held until this is
/// dropped, so a second `up` waits for the migrations and seeds too. `Display` is what a script
/// reads: the URLs, passwords redacted, one `KEY=value` a line.
pub struct Started {
    pub endpoints: Endpoints,
    _lock: ProjectLock,
}

/// Starts (or finds) the services of `cx`'s checkout and writes .env; says `ready in ...` on
/// stderr.
pub fn start(cx: &Context, options: &Options) -> Result<Started> {
    let started = Instant::now();
    super::check_engine()?;
    let project = adopt_legacy_project(cx)?;
    // From here to .env: one `up` of this project at a time, so that a second one started at
    // once sees the first one's containers (and their password) instead of racing it.
    let lock = ProjectLock::take(project.name())?;
    let existing = existing_containers(&cx.sh, &[&project.postgres(), &project.redis(), &project.pgbouncer()]);
    let pooled = options.pooler || pooler_by_default(cx)?;
    // An existing container knows the password its data was initialised with: another
    // clone of the repo (or a lost .env) must not lock itself out of it.
    let password = match existing.iter().find(|c| c.name == project.postgres()).and_then(|c| c.env("POSTGRES_PASSWORD"))
    {
        Some(password) => password,
        None => match cx.setting("RAILGUN_POSTGRES_PASSWORD")? {
            Some(password) if !password.is_empty() => password,
            _ => crate::secret::random_hex(24)?,
        },
    };
    let plan = Plan { cx, options, project: &project, existing: &existing };
    let services = plan.services(password.clone())?;
    let pooler = match pooled {
        false => None,
        true => Some(plan.pooler()?),
    };
    let mut endpoints = services.up_with(pooler.as_ref())?;
    // With branch databases on, .env stays on the branch's database (the server's own is
    // the one the branches began from).
    if let Some(branching) = crate::branch::Branching::load(cx)? {
        let database = branching.database();
        use crate::branch::Branching;
        endpoints.database_url = Branching::url_for(&endpoints.database_url, &database);
        endpoints.pooled_url = endpoints.pooled_url.as_ref().map(|url| Branching::url_for(url, &database));
    }
    let app_url = write_env(cx, &endpoints, &password, project.name())?;
    eprintln!("ready in {:.2}s; wrote {}", started.elapsed().as_secs_f64(), cx.env_file().display());
    if std::env::var("DATABASE_URL").is_ok_and(|url| url != app_url) {
        eprintln!(
            "warning: DATABASE_URL in your environment wins over .env; `unset DATABASE_URL` to use these services"
        );
    }
    Ok(Started { endpoints, _lock: lock })
}

impl Started {
    /// Applies the pending migrations, then seeds the database if this `up` created it.
    pub fn migrate(&self, cx: &Context) -> Result<()> {
        let url = &self.endpoints.database_url;
        crate::migration::run_pending(cx, url).context("run pending migrations (skip with --no-migrate)")?;
        // Only the database this `up` made: one with data of its own is not seeded again.
        if self.endpoints.new_database {
            crate::seed::seed(cx, url).context("seed the new database (fix the seed, then `cargo xtask db seed`)")?;
        }
        Ok(())
    }

    /// Without migrations: a new database is not seeded, and stderr says so.
    pub fn skip_migrations(&self) {
        if self.endpoints.new_database {
            eprintln!("note: the new database is not seeded (--no-migrate); `cargo xtask db seed` once it is migrated");
        }
    }
}

impl fmt::Display for Started {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoints = &self.endpoints;
        match &endpoints.pooled_url {
            Some(pooled) => {
                writeln!(f, "DATABASE_URL={}", redact(pooled))?;
                writeln!(f, "DIRECT_URL={}", redact(&endpoints.database_url))?;
            }
            None => writeln!(f, "DATABASE_URL={}", redact(&endpoints.database_url))?,
        }
        writeln!(f, "REDIS_URL={}", endpoints.redis_url)
    }
}

/// What `start` decides before it starts anything: images and ports, given what exists.
struct Plan<'a> {
    cx: &'a Context,
    options: &'a Options,
    project: &'a Project,
    existing: &'a [Existing],
}

impl Plan<'_> {
    fn exists(&self, name: &str) -> bool {
        self.existing.iter().any(|c| c.name == name)
    }

    /// A container that exists is reused whatever image is asked for: no image to resolve.
    fn image(&self, container: &str, service: Service, asked: Option<&str>) -> Result<String> {
        match self.existing.iter().find(|c| c.name == container) {
            Some(c) => {
                if asked.is_some_and(|asked| asked != c.image) {
                    eprintln!(
                        "note: {container} exists with image {}; `cargo xtask down` first to switch images",
                        c.image
                    );
                }
                Ok(c.image.clone())
            }
            None => images::resolve(&self.cx.sh, service, asked),
        }
    }

    fn services(&self, password: String) -> Result<Services> {
        let (cx, options, project) = (self.cx, self.options, self.project);
        let (postgres, redis) = (project.postgres(), project.redis());
        Ok(Services {
            project: project.name().to_string(),
            postgres_image: self.image(&postgres, Service::Postgres, options.postgres_image.as_deref())?,
            redis_image: self.image(&redis, Service::Redis, options.redis_image.as_deref())?,
            // A container that exists keeps its port; a new one gets the last one used, else the default, if free.
            postgres_port: options.postgres_port.unwrap_or_else(|| match self.exists(&postgres) {
                true => 0,
                false => {
                    free_or_any(previous_port(cx, if was_pooled(cx) { "DIRECT_URL" } else { "DATABASE_URL" }), 5432)
                }
            }),
            redis_port: options.redis_port.unwrap_or_else(|| match self.exists(&redis) {
                true => 0,
                false => free_or_any(previous_port(cx, "REDIS_URL"), 6379),
            }),
            user: "railgun".into(),
            password,
            database: "railgun".into(),
            persistent: true,
            socket_dir: None,
        })
    }

    fn pooler(&self) -> Result<Pooler> {
        let (cx, options) = (self.cx, self.options);
        let pgbouncer = self.project.pgbouncer();
        Ok(Pooler {
            image: self.image(&pgbouncer, Service::Pgbouncer, options.pooler_image.as_deref())?,
            port: options.pooler_port.unwrap_or_else(|| match self.exists(&pgbouncer) {
                true => 0,
                false => free_or_any(previous_port(cx, "DATABASE_URL").filter(|_| was_pooled(cx)), POOLER_PORT),
            }),
        })
    }
}

/// Writes the services' URLs, password and project into .env (keeping a managed database's
/// URL as a comment); returns the app's URL.
fn write_env(cx: &Context, endpoints: &Endpoints, password: &str, project: &str) -> Result<String> {
    let previous = env_file::get(&cx.env_file(), "DATABASE_URL")?.filter(|url| !url.is_empty());
    if let Some(previous) = previous.filter(|url| crate::url::parse_database_url(url).is_ok_and(|u| !is_local(&u))) {
        // A managed database the user pointed .env at is not ours to forget.
        env_file::set(&cx.env_file(), None, &[("#DATABASE_URL", &previous)])?;
        eprintln!("note: .env's DATABASE_URL pointed at {}; kept as a comment", crate::url::redact_str(&previous));
    }
    // As managed providers hand them out: the app's URL through the pooler, the tools' direct.
    let (app_url, direct_url, pooler_mode) = match &endpoints.pooled_url {
        Some(pooled) => (pooled.as_str(), endpoints.database_url.as_str(), "transaction"),
        None => (endpoints.database_url.as_str(), "", ""),
    };
    let mut pairs = vec![
        ("DATABASE_URL", app_url),
        ("REDIS_URL", endpoints.redis_url.as_str()),
        ("RAILGUN_POSTGRES_PASSWORD", password),
        ("RAILGUN_PROJECT", project),
    ];
    for (key, value) in [("DIRECT_URL", direct_url), (crate::pooler::SETTING, pooler_mode)] {
        // Written with the pooler; emptied (not left stale) without it, if an earlier `up` wrote it.
        if !value.is_empty() || env_file::get(&cx.env_file(), key)?.is_some() {
            pairs.push((key, value));
        }
    }
    env_file::set(&cx.env_file(), Some(&cx.root.join(".env.example")), &pairs)?;
    Ok(app_url.to_string())
}

/// Before checkouts had projects of their own, every checkout's were `railgun-*`: the checkout
/// whose .env holds that Postgres's password keeps them (and says so in .env from now on).
fn adopt_legacy_project(cx: &Context) -> Result<Project> {
    let named = std::env::var("RAILGUN_PROJECT").is_ok_and(|p| !p.is_empty())
        || env_file::get(&cx.env_file(), "RAILGUN_PROJECT")?.is_some_and(|p| !p.is_empty());
    if named {
        return Ok(cx.project());
    }
    let legacy = Project::new("railgun");
    let found = existing_containers(&cx.sh, &[&legacy.postgres()]);
    let ours = env_file::get(&cx.env_file(), "RAILGUN_POSTGRES_PASSWORD")?;
    match found.first().and_then(|c| c.env("POSTGRES_PASSWORD")) {
        Some(password) if ours.as_deref() == Some(password.as_str()) => {
            eprintln!("note: this checkout's services are the `railgun-*` containers (its .env has their password)");
            Ok(legacy)
        }
        _ => Ok(cx.project()),
    }
}

/// RAILGUN_POOLER (environment, else .env): `1`/`true` makes `--pooler` the default.
fn pooler_by_default(cx: &Context) -> Result<bool> {
    Ok(match cx.setting("RAILGUN_POOLER")? {
        None => false,
        Some(value) => match value.trim().to_ascii_lowercase().as_str() {
            "" | "0" | "false" | "no" | "off" => false,
            "1" | "true" | "yes" | "on" => true,
            _ => anyhow::bail!(
                hint!("RAILGUN_POOLER `{value}` is neither on nor off"; "set RAILGUN_POOLER=1 to run PgBouncer with every `up`, or 0")
            ),
        },
    })
}

/// True when .env's DATABASE_URL is the pooler's, from an earlier `up --pooler`.
fn was_pooled(cx: &Context) -> bool {
    env_file::get(&cx.env_file(), "DIRECT_URL").ok().flatten().is_some_and(|v| !v.is_empty())
}

/// The port of `key`'s URL in .env, from an earlier `up` of this checkout.
fn previous_port(cx: &Context, key: &str) -> Option<u16> {
    let raw = env_file::get(&cx.env_file(), key).ok()??;
    Url::parse(&raw).ok()?.port()
}

/// `preferred` (the last one used), else `default`, when nothing listens there; else 0: any free port.
fn free_or_any(preferred: Option<u16>, default: u16) -> u16 {
    let free = |port: u16| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok();
    match preferred.filter(|p| *p != 0 && free(*p)) {
        Some(port) => port,
        None if free(default) => default,
        None => {
            eprintln!("note: port {default} is taken (another checkout's services?): using a free one");
            0
        }
    }
}

/// A container of ours that exists already, running or not.
struct Existing {
    name: String,
    image: String,
    env: Vec<String>,
}

impl Existing {
    fn env(&self, key: &str) -> Option<String> {
        self.env.iter().find_map(|line| line.strip_prefix(key)?.strip_prefix('=')).map(str::to_owned)
    }
}

/// The containers among `names` that exist, from one `docker inspect`.
fn existing_containers(sh: &Shell, names: &[&str]) -> Vec<Existing> {
    let Ok(out) = cmd!(sh, "docker inspect {names...}").quiet().ignore_status().ignore_stderr().read() else {
        return Vec::new();
    };
    let Ok(serde_json::Value::Array(containers)) = serde_json::from_str(&out) else { return Vec::new() };
    containers
        .iter()
        .map(|c| Existing {
            name: c["Name"].as_str().unwrap_or_default().trim_start_matches('/').to_string(),
            image: c["Config"]["Image"].as_str().unwrap_or_default().to_string(),
            env: c["Config"]["Env"]
                .as_array()
                .map(|env| env.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect())
                .unwrap_or_default(),
        })
        .collect()
}
