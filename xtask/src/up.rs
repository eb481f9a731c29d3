//! `cargo xtask up`: local Postgres and Redis (and PgBouncer) in Docker, `.env`, migrations, seeds.

use std::time::Instant;

use anyhow::{Context as _, Result};
use dbkit::docker::images::{self, Service};
use dbkit::docker::services::{POOLER_PORT, Pooler, ProjectLock, Services};
use dbkit::url::{is_local, redact};

use xshell::{Shell, cmd};

use crate::context::Context;
use dbkit::env_file;

/// Start local Postgres and Redis in Docker, write .env, run pending migrations.
///
/// A database this `up` creates (a new data volume) is then seeded: db/seeds/*.sql and
/// db/seeds/<APP_ENV>/*.sql, as `cargo xtask db seed` does.
///
/// The containers outlive the command and keep their data on named volumes; a second `up`
/// finds them running and returns at once. Ports are published on 127.0.0.1 only.
///
/// Each checkout of the repository (a clone, a git worktree) has services of its own, named
/// after it: RAILGUN_PROJECT in .env (written here; `railgun-<folder>-<hash of its path>` for a
/// new checkout). When 5432 or 6379 is taken (another checkout's), a free port is chosen and
/// written to .env. Several `up` at once wait for one another and share what the first made.
///
/// With --pooler (or RAILGUN_POOLER=1 in .env), PgBouncer runs in transaction mode in front of
/// Postgres, as managed providers run it: .env's DATABASE_URL goes through it (the app's) and
/// DIRECT_URL straight to Postgres (migrations, backups and the other tools use that one).
#[derive(clap::Args)]
pub struct Up {
    /// Do not run pending migrations
    #[arg(long)]
    no_migrate: bool,
    /// Postgres image [env: RAILGUN_POSTGRES_IMAGE; default: postgres:17-alpine, else the offline build]
    #[arg(long, value_name = "IMAGE")]
    postgres_image: Option<String>,
    /// Redis image [env: RAILGUN_REDIS_IMAGE; default: redis:7-alpine, else the offline build]
    #[arg(long, value_name = "IMAGE")]
    redis_image: Option<String>,
    /// Host port for Postgres on 127.0.0.1; 0 picks a free one [default: the one in .env, else
    /// 5432, else a free one]
    #[arg(long, env = "RAILGUN_POSTGRES_PORT", value_name = "PORT")]
    postgres_port: Option<u16>,
    /// Host port for Redis on 127.0.0.1; 0 picks a free one [default: the one in .env, else
    /// 6379, else a free one]
    #[arg(long, env = "RAILGUN_REDIS_PORT", value_name = "PORT")]
    redis_port: Option<u16>,
    /// Also run PgBouncer in transaction mode in front of Postgres [default: RAILGUN_POOLER in
    /// the environment or .env]
    #[arg(long)]
    pooler: bool,
    /// PgBouncer image [env: RAILGUN_PGBOUNCER_IMAGE; default: edoburu/pgbouncer, else the offline build]
    #[arg(long, value_name = "IMAGE")]
    pooler_image: Option<String>,
    /// Host port for PgBouncer on 127.0.0.1; 0 picks a free one [default: the one in .env, else
    /// 6432, else a free one]
    #[arg(long, env = "RAILGUN_POOLER_PORT", value_name = "PORT")]
    pooler_port: Option<u16>,
}

impl Up {
    pub fn run(self, cx: &Context) -> Result<()> {
        let started = Instant::now();
        dbkit::docker::check_engine()?;
        let project = adopt_legacy_project(cx)?;
        // From here to .env: one `up` of this project at a time, so that a second one started at
        // once sees the first one's containers (and their password) instead of racing it.
        let _lock = ProjectLock::take(&project)?;
        let (postgres, redis, pgbouncer) =
            (format!("{project}-postgres"), format!("{project}-redis"), format!("{project}-pgbouncer"));
        let existing = existing_containers(&cx.sh, &[&postgres, &redis, &pgbouncer]);
        let pooled = self.pooler || pooler_by_default(cx)?;
        // An existing container knows the password its data was initialised with: another
        // clone of the repo (or a lost .env) must not lock itself out of it.
        let password = match existing.iter().find(|c| c.name == postgres).and_then(|c| c.env("POSTGRES_PASSWORD")) {
            Some(password) => password,
            None => match cx.setting("RAILGUN_POSTGRES_PASSWORD")? {
                Some(password) if !password.is_empty() => password,
                _ => random_password()?,
            },
        };
        let exists = |name: &str| existing.iter().any(|c| c.name == name);
        // A container that exists is reused whatever image is asked for: no image to resolve.
        let image = |container: &str, service: Service, asked: Option<&str>| match existing
            .iter()
            .find(|c| c.name == container)
        {
            Some(c) => {
                if asked.is_some_and(|asked| asked != c.image) {
                    eprintln!(
                        "note: {container} exists with image {}; `cargo xtask down` first to switch images",
                        c.image
                    );
                }
                Ok(c.image.clone())
            }
            None => images::resolve(&cx.sh, service, asked),
        };
        let services = Services {
            project,
            postgres_image: image(&postgres, Service::Postgres, self.postgres_image.as_deref())?,
            redis_image: image(&redis, Service::Redis, self.redis_image.as_deref())?,
            // A container that exists keeps its port; a new one gets the last one used, else the default, if free.
            postgres_port: self.postgres_port.unwrap_or_else(|| match exists(&postgres) {
                true => 0,
                false => {
                    free_or_any(previous_port(cx, if was_pooled(cx) { "DIRECT_URL" } else { "DATABASE_URL" }), 5432)
                }
            }),
            redis_port: self.redis_port.unwrap_or_else(|| match exists(&redis) {
                true => 0,
                false => free_or_any(previous_port(cx, "REDIS_URL"), 6379),
            }),
            user: "railgun".into(),
            password: password.clone(),
            database: "railgun".into(),
            persistent: true,
            socket_dir: None,
        };
        let pooler = match pooled {
            false => None,
            true => Some(Pooler {
                image: image(&pgbouncer, Service::Pgbouncer, self.pooler_image.as_deref())?,
                port: self.pooler_port.unwrap_or_else(|| match exists(&pgbouncer) {
                    true => 0,
                    false => free_or_any(previous_port(cx, "DATABASE_URL").filter(|_| was_pooled(cx)), POOLER_PORT),
                }),
            }),
        };
        let mut endpoints = services.up_with(pooler.as_ref())?;
        // With branch databases on, .env stays on the branch's database (the server's own is
        // the one the branches began from).
        if let Some(branching) = dbkit::branch::Branching::load(cx)? {
            let database = branching.database();
            use dbkit::branch::Branching;
            endpoints.database_url = Branching::url_for(&endpoints.database_url, &database);
            endpoints.pooled_url = endpoints.pooled_url.as_ref().map(|url| Branching::url_for(url, &database));
        }
        let previous = env_file::get(&cx.env_file(), "DATABASE_URL")?.filter(|url| !url.is_empty());
        if let Some(previous) = previous.filter(|url| dbkit::url::parse_database_url(url).is_ok_and(|u| !is_local(&u)))
        {
            // A managed database the user pointed .env at is not ours to forget.
            env_file::set(&cx.env_file(), None, &[("#DATABASE_URL", &previous)])?;
            eprintln!("note: .env's DATABASE_URL pointed at {}; kept as a comment", dbkit::url::redact_str(&previous));
        }
        // As managed providers hand them out: the app's URL through the pooler, the tools' direct.
        let (app_url, direct_url, pooler_mode) = match &endpoints.pooled_url {
            Some(pooled) => (pooled.as_str(), endpoints.database_url.as_str(), "transaction"),
            None => (endpoints.database_url.as_str(), "", ""),
        };
        let mut pairs = vec![
            ("DATABASE_URL", app_url),
            ("REDIS_URL", endpoints.redis_url.as_str()),
            ("RAILGUN_POSTGRES_PASSWORD", password.as_str()),
            ("RAILGUN_PROJECT", services.project.as_str()),
        ];
        for (key, value) in [("DIRECT_URL", direct_url), (dbkit::pooler::SETTING, pooler_mode)] {
            // Written with the pooler; emptied (not left stale) without it, if an earlier `up` wrote it.
            if !value.is_empty() || env_file::get(&cx.env_file(), key)?.is_some() {
                pairs.push((key, value));
            }
        }
        env_file::set(&cx.env_file(), Some(&cx.root.join(".env.example")), &pairs)?;
        eprintln!("ready in {:.2}s; wrote {}", started.elapsed().as_secs_f64(), cx.env_file().display());
        if std::env::var("DATABASE_URL").is_ok_and(|url| url != app_url) {
            eprintln!(
                "warning: DATABASE_URL in your environment wins over .env; `unset DATABASE_URL` to use these services"
            );
        }
        match &endpoints.pooled_url {
            Some(pooled) => {
                println!("DATABASE_URL={}", redact(pooled));
                println!("DIRECT_URL={}", redact(&endpoints.database_url));
            }
            None => println!("DATABASE_URL={}", redact(&endpoints.database_url)),
        }
        println!("REDIS_URL={}", endpoints.redis_url);
        if !self.no_migrate {
            dbkit::migration::run_pending(cx, &endpoints.database_url)
                .context("run pending migrations (skip with --no-migrate)")?;
            // Only the database this `up` made: one with data of its own is not seeded again.
            if endpoints.new_database {
                dbkit::seed::seed(cx, &endpoints.database_url)
                    .context("seed the new database (fix the seed, then `cargo xtask db seed`)")?;
            }
        } else if endpoints.new_database {
            eprintln!("note: the new database is not seeded (--no-migrate); `cargo xtask db seed` once it is migrated");
        }
        Ok(())
    }
}

/// Before checkouts had projects of their own, every checkout's were `railgun-*`: the checkout
/// whose .env holds that Postgres's password keeps them (and says so in .env from now on).
fn adopt_legacy_project(cx: &Context) -> Result<String> {
    let named = std::env::var("RAILGUN_PROJECT").is_ok_and(|p| !p.is_empty())
        || env_file::get(&cx.env_file(), "RAILGUN_PROJECT")?.is_some_and(|p| !p.is_empty());
    if named {
        return Ok(cx.project.clone());
    }
    let legacy = existing_containers(&cx.sh, &["railgun-postgres"]);
    let ours = env_file::get(&cx.env_file(), "RAILGUN_POSTGRES_PASSWORD")?;
    match legacy.first().and_then(|c| c.env("POSTGRES_PASSWORD")) {
        Some(password) if ours.as_deref() == Some(password.as_str()) => {
            eprintln!("note: this checkout's services are the `railgun-*` containers (its .env has their password)");
            Ok("railgun".into())
        }
        _ => Ok(cx.project.clone()),
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
    url::Url::parse(&raw).ok()?.port()
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

/// 24 random bytes, hex: the local database's password, kept in `.env` only.
fn random_password() -> Result<String> {
    dbkit::secret::random_hex(24)
}
