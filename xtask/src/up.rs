//! `cargo xtask up`: local Postgres and Redis in Docker, `.env`, migrations.

use std::time::Instant;

use anyhow::{Context as _, Result};
use dbkit::docker::images::{self, Service};
use dbkit::docker::services::Services;
use dbkit::url::{is_local, redact};

use xshell::{Shell, cmd};

use crate::context::{Context, project_name};
use dbkit::env_file;

/// Start local Postgres and Redis in Docker, write .env, run pending migrations.
///
/// The containers outlive the command and keep their data on named volumes; a second `up`
/// finds them running and returns at once. Ports are published on 127.0.0.1 only.
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
    /// Host port for Postgres on 127.0.0.1; 0 picks a free one
    #[arg(long, env = "RAILGUN_POSTGRES_PORT", default_value_t = 5432, value_name = "PORT")]
    postgres_port: u16,
    /// Host port for Redis on 127.0.0.1; 0 picks a free one
    #[arg(long, env = "RAILGUN_REDIS_PORT", default_value_t = 6379, value_name = "PORT")]
    redis_port: u16,
}

impl Up {
    pub fn run(self, cx: &Context) -> Result<()> {
        let started = Instant::now();
        dbkit::docker::check_engine()?;
        let project = project_name();
        let (postgres, redis) = (format!("{project}-postgres"), format!("{project}-redis"));
        let existing = existing_containers(&cx.sh, &[&postgres, &redis]);
        // An existing container knows the password its data was initialised with: another
        // clone of the repo (or a lost .env) must not lock itself out of it.
        let password = match existing.iter().find(|c| c.name == postgres).and_then(|c| c.env("POSTGRES_PASSWORD")) {
            Some(password) => password,
            None => match cx.setting("RAILGUN_POSTGRES_PASSWORD")? {
                Some(password) if !password.is_empty() => password,
                _ => random_password()?,
            },
        };
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
            postgres_port: self.postgres_port,
            redis_port: self.redis_port,
            user: "railgun".into(),
            password: password.clone(),
            database: "railgun".into(),
            persistent: true,
        };
        let endpoints = services.up()?;
        let previous = env_file::get(&cx.env_file(), "DATABASE_URL")?.filter(|url| !url.is_empty());
        if let Some(previous) = previous.filter(|url| dbkit::url::parse_database_url(url).is_ok_and(|u| !is_local(&u)))
        {
            // A managed database the user pointed .env at is not ours to forget.
            env_file::set(&cx.env_file(), None, &[("#DATABASE_URL", &previous)])?;
            eprintln!("note: .env's DATABASE_URL pointed at {}; kept as a comment", dbkit::url::redact_str(&previous));
        }
        env_file::set(
            &cx.env_file(),
            Some(&cx.root.join(".env.example")),
            &[
                ("DATABASE_URL", endpoints.database_url.as_str()),
                ("REDIS_URL", &endpoints.redis_url),
                ("RAILGUN_POSTGRES_PASSWORD", &password),
            ],
        )?;
        eprintln!("ready in {:.2}s; wrote {}", started.elapsed().as_secs_f64(), cx.env_file().display());
        if std::env::var("DATABASE_URL").is_ok_and(|url| url != endpoints.database_url.as_str()) {
            eprintln!(
                "warning: DATABASE_URL in your environment wins over .env; `unset DATABASE_URL` to use these services"
            );
        }
        println!("DATABASE_URL={}", redact(&endpoints.database_url));
        println!("REDIS_URL={}", endpoints.redis_url);
        if !self.no_migrate {
            dbkit::migration::run_pending(cx, &endpoints.database_url)
                .context("run pending migrations (skip with --no-migrate)")?;
        }
        Ok(())
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
