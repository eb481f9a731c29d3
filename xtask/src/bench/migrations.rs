//! `cargo xtask bench migrations`: our `migration run` side by side with `diesel migration run`
//! on the same generated migrations, each run on a fresh empty database, alternating.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use diesel::RunQueryDsl;
use url::Url;
use xshell::cmd;

use crate::context::Context;

/// Benchmark `migration run` against `diesel migration run` (median of several runs)
///
/// Generates COUNT small, realistic migrations (tables, columns, indexes, a view, data) in a
/// temporary folder; each run applies all of them to a fresh empty database on the server of
/// DATABASE_URL. Neither tool regenerates schema.rs here: only migrating is measured.
#[derive(clap::Args)]
pub struct Migrations {
    /// How many migrations to generate
    #[arg(long, default_value_t = 200)]
    count: usize,
    /// Timed runs of each (after one untimed warm-up); the median is reported
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

impl Migrations {
    pub fn run(self, cx: &Context) -> Result<()> {
        if self.runs == 0 || self.count == 0 {
            bail!("--runs and --count must be at least 1");
        }
        let sh = &cx.sh;
        let diesel = diesel_bin()?;
        let exe = std::env::current_exe().context("find the xtask binary")?;
        let work = std::env::temp_dir().join(format!("railgun-bench-migrations-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let dir = work.join("migrations");
        dbkit::migration::create::generate_app_like(&dir, self.count)?;
        let config = work.join("diesel.toml");
        std::fs::write(&config, "# bench: no [print_schema] file, so neither tool regenerates schema.rs\n")?;
        let server = cx.database_url()?;
        eprintln!(
            "{} migrations in {}; {} runs of each, alternating, each on a fresh database",
            self.count,
            dir.display(),
            self.runs
        );

        let migrate = |tool: Tool, url: &Url| -> Result<()> {
            let _env = sh.push_env("DATABASE_URL", url.as_str());
            let command = match tool {
                Tool::Ours => cmd!(sh, "{exe} --config-file {config} --migration-dir {dir} migration run"),
                Tool::Diesel => cmd!(sh, "{diesel} migration run --config-file {config} --migration-dir {dir}"),
            };
            command.quiet().ignore_stdout().ignore_stderr().run()?;
            Ok(())
        };
        let (mut ours_ms, mut diesel_ms) = (Vec::new(), Vec::new());
        for run in 0..=self.runs {
            // Alternate who goes first, so neither always meets a warmer server.
            let order = if run % 2 == 0 { [Tool::Ours, Tool::Diesel] } else { [Tool::Diesel, Tool::Ours] };
            let mut took = [Duration::ZERO; 2];
            for tool in order {
                took[tool as usize] = timed_on_fresh_db(&server, run, tool, |url| migrate(tool, url))?;
            }
            let [o, d] = took;
            if run == 0 {
                eprintln!("warm-up: ours {:.0} ms, diesel {:.0} ms", ms(o), ms(d));
                continue;
            }
            eprintln!("run {run}: ours {:.0} ms, diesel {:.0} ms", ms(o), ms(d));
            ours_ms.push(o);
            diesel_ms.push(d);
        }
        let _ = std::fs::remove_dir_all(&work);
        // Each round's own ratio cancels drift on a busy machine; its median is the headline.
        let mut paired: Vec<f64> =
            ours_ms.iter().zip(&diesel_ms).map(|(o, d)| o.as_secs_f64() / d.as_secs_f64()).collect();
        paired.sort_by(f64::total_cmp);
        let paired = paired[paired.len() / 2];
        let (ours, diesel) = (median(ours_ms), median(diesel_ms));
        let ratio = ours.as_secs_f64() / diesel.as_secs_f64();
        println!(
            "{:<22} {:>12} {:>14} {:>10} {:>14}",
            "migration run", "xtask (ms)", "diesel (ms)", "ratio", "paired ratio"
        );
        println!(
            "{:<22} {:>12.0} {:>14.0} {:>9.2}x {:>13.2}x",
            format!("{} migrations", self.count),
            ms(ours),
            ms(diesel),
            ratio,
            paired
        );
        println!("bench migrations: {paired:.2}x diesel_cli (median of per-run ratios; goal <= 1.1x)");
        Ok(())
    }
}

#[derive(Clone, Copy, Debug)]
enum Tool {
    Ours,
    Diesel,
}

/// Times `f` on a new empty database, dropped afterwards.
fn timed_on_fresh_db(server: &Url, run: usize, tool: Tool, f: impl Fn(&Url) -> Result<()>) -> Result<Duration> {
    let name = format!("railgun_bench_mig_{}_{run}_{tool:?}", std::process::id()).to_lowercase();
    let mut admin = server.clone();
    admin.set_path("postgres");
    let mut conn = dbkit::connect::establish(&admin)?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name}")).execute(&mut conn)?;
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).context("create a bench database")?;
    let mut url = server.clone();
    url.set_path(&name);
    let start = Instant::now();
    let result = f(&url);
    let elapsed = start.elapsed();
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn)?;
    result.with_context(|| format!("migrate the bench database {name}"))?;
    Ok(elapsed)
}

/// diesel_cli: on PATH, else where `cargo xtask test` installs it ($RAILGUN_TOOLS).
fn diesel_bin() -> Result<PathBuf> {
    if let Ok(path) = which::which("diesel") {
        return Ok(path);
    }
    let cached = crate::test::tools_dir().join("bin/diesel");
    if cached.is_file() {
        return Ok(cached);
    }
    bail!(
        hint!("diesel_cli is not installed: the benchmark compares against it"; "`cargo xtask test` installs it, or: cargo install diesel_cli --no-default-features --features postgres --locked --root ~/.cache/railgun-tools")
    )
}

pub(super) fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
