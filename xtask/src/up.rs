//! `cargo xtask up`: local Postgres and Redis (and PgBouncer) in Docker, `.env`, migrations, seeds.

use anyhow::Result;
use dbkit::docker::up::{Options, start};

use crate::context::Context;

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
        let options = Options {
            postgres_image: self.postgres_image,
            redis_image: self.redis_image,
            postgres_port: self.postgres_port,
            redis_port: self.redis_port,
            pooler: self.pooler,
            pooler_image: self.pooler_image,
            pooler_port: self.pooler_port,
        };
        let started = start(cx, &options)?;
        print!("{started}");
        match self.no_migrate {
            false => started.migrate(cx),
            true => {
                started.skip_migrations();
                Ok(())
            }
        }
    }
}
