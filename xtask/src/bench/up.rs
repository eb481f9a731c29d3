//! `cargo xtask bench up`: our `up` side by side with `docker compose up -d` on the same
//! images, both timed to the same readiness: a real query succeeds and Redis answers PING.

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use dbkit::docker::Project;
use dbkit::docker::images::{self, Service};
use dbkit::docker::services::wait_until_ready;
use url::Url;
use xshell::{Shell, cmd};

use super::{median, ms, time};
use crate::context::Context;

const PROJECT: &str = "railgun-bench-up";
const PASSWORD: &str = "bench-only-password";

/// Benchmark cold and repeated `up` against `docker compose up -d` (median of several runs)
///
/// Cold: images present, no container, no volume. Repeated: everything already running.
#[derive(clap::Args)]
pub struct Up {
    /// Runs of each; the median is reported
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

impl Up {
    pub fn run(self, cx: &Context) -> Result<()> {
        dbkit::docker::check_engine()?;
        let sh = &cx.sh;
        let postgres_image = images::resolve(sh, Service::Postgres, None)?;
        let redis_image = images::resolve(sh, Service::Redis, None)?;
        let (pg_port, redis_port) = (free_port()?, free_port()?);
        let work = std::env::temp_dir().join(PROJECT);
        std::fs::create_dir_all(&work)?;
        let _env = [
            sh.push_env("RAILGUN_PROJECT", PROJECT),
            sh.push_env("RAILGUN_ENV_FILE", work.join(".env")),
            sh.push_env("RAILGUN_POSTGRES_PASSWORD", PASSWORD),
            sh.push_env("RAILGUN_POSTGRES_IMAGE", &postgres_image),
            sh.push_env("RAILGUN_REDIS_IMAGE", &redis_image),
            sh.push_env("RAILGUN_POSTGRES_PORT", pg_port.to_string()),
            sh.push_env("RAILGUN_REDIS_PORT", redis_port.to_string()),
        ];
        let url = Url::parse(&format!("postgres://railgun:{PASSWORD}@127.0.0.1:{pg_port}/railgun"))?;
        let redis = format!("redis://127.0.0.1:{redis_port}/0");
        let exe = std::env::current_exe()?;
        let compose_file = cx.root.join("infra/docker-compose.yml");
        let compose = Compose::detect(sh);
        eprintln!("images: {postgres_image}, {redis_image}; anchor: {}; {} runs", compose.name(), self.runs);

        let mut samples = [const { Vec::new() }; 4];
        for run in 1..=self.runs {
            clean(sh)?;
            samples[0].push(time(|| {
                cmd!(sh, "{exe} up --no-migrate").quiet().ignore_stdout().ignore_stderr().run().map_err(Into::into)
            })?);
            samples[1].push(time(|| {
                cmd!(sh, "{exe} up --no-migrate").quiet().ignore_stdout().ignore_stderr().run().map_err(Into::into)
            })?);
            clean(sh)?;
            samples[2].push(time(|| compose.up(sh, &compose_file).and_then(|()| wait_until_ready(&url, &redis)))?);
            samples[3].push(time(|| compose.up(sh, &compose_file).and_then(|()| wait_until_ready(&url, &redis)))?);
            clean(sh)?;
            eprintln!(
                "run {run}: ours {:.0}/{:.0} ms, compose {:.0}/{:.0} ms",
                ms(samples[0][run - 1]),
                ms(samples[1][run - 1]),
                ms(samples[2][run - 1]),
                ms(samples[3][run - 1])
            );
        }
        let [cold, warm, compose_cold, compose_warm] = samples.map(median);
        println!("{:<10} {:>12} {:>12} {:>8}", "up", "xtask (ms)", "compose (ms)", "ratio");
        println!("{:<10} {:>12.0} {:>12.0} {:>7.2}x", "cold", ms(cold), ms(compose_cold), ratio(cold, compose_cold));
        println!(
            "{:<10} {:>12.0} {:>12.0} {:>7.2}x",
            "repeated",
            ms(warm),
            ms(compose_warm),
            ratio(warm, compose_warm)
        );
        println!(
            "bench up: cold {:.2}x compose (goal <= 1.0x), repeated {:.0} ms (goal < 1000 ms)",
            ratio(cold, compose_cold),
            ms(warm)
        );
        Ok(())
    }
}

enum Compose {
    V2,
    V1,
}

impl Compose {
    fn detect(sh: &Shell) -> Compose {
        if cmd!(sh, "docker compose version").quiet().ignore_stdout().ignore_stderr().run().is_ok() {
            Compose::V2
        } else {
            Compose::V1
        }
    }
    fn name(&self) -> &'static str {
        match self {
            Compose::V2 => "docker compose up -d --wait",
            Compose::V1 => "docker-compose up -d (v1 has no --wait: then polled like ours)",
        }
    }
    fn up(&self, sh: &Shell, file: &Path) -> Result<()> {
        match self {
            Compose::V2 => cmd!(sh, "docker compose -p {PROJECT} -f {file} up -d --wait")
                .quiet()
                .ignore_stdout()
                .ignore_stderr()
                .run()?,
            Compose::V1 => {
                cmd!(sh, "docker-compose -p {PROJECT} -f {file} up -d").quiet().ignore_stdout().ignore_stderr().run()?
            }
        }
        Ok(())
    }
}

/// Removes the bench project's containers and volumes: the next start is cold.
fn clean(sh: &Shell) -> Result<()> {
    let project = Project::new(PROJECT);
    let filter = project.label_filter();
    let ids = cmd!(sh, "docker ps -aq --filter {filter}").quiet().read()?;
    let ids: Vec<&str> = ids.lines().collect();
    if !ids.is_empty() {
        cmd!(sh, "docker rm -f -v {ids...}").quiet().ignore_stdout().run()?;
    }
    let volumes = project.volumes();
    cmd!(sh, "docker volume rm -f {volumes...}").quiet().ignore_stdout().ignore_stderr().run()?;
    Ok(())
}

fn ratio(ours: Duration, theirs: Duration) -> f64 {
    ours.as_secs_f64() / theirs.as_secs_f64()
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0").context("find a free port")?.local_addr()?.port())
}
