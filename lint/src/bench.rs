//! `cargo xtask bench lint`: `migration lint` side by side with squawk on the same generated
//! migrations, and the linter's own throughput in statements per second.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use dbkit::lint::{self, Settings};
use dbkit::migration::{MigrationFiles, source};
use xshell::cmd;

use dbkit::context::Context;
use dbkit::migration::create::generate_app_like;

/// Benchmark `migration lint` against squawk (median of several runs)
///
/// Generates COUNT migrations (tables, columns with defaults, indexes, seed rows, views) and
/// times, alternating: `migration lint --all` as a command, and `squawk` on the same up.sql files
/// (`pip install squawk-cli`; skipped when it is not on PATH). Also the linter alone, in this
/// process (parse and rules, no start-up), in statements per second. No database is needed.
#[derive(clap::Args)]
pub struct Lint {
    /// How many migrations to generate
    #[arg(long, default_value_t = 300)]
    count: usize,
    /// Timed runs of each (after one untimed warm-up); the median is reported
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

impl Lint {
    pub fn run(self, cx: &Context) -> Result<()> {
        if self.runs == 0 || self.count == 0 {
            bail!("--runs and --count must be at least 1");
        }
        let exe = std::env::current_exe().context("find the linter's binary")?;
        let settings = Settings::default();
        let fixture = Fixture::generate(self.count, &settings)?;
        if fixture.squawk.is_none() {
            eprintln!("squawk is not on PATH (pip install squawk-cli): only ours is timed");
        }
        eprintln!(
            "{} migrations, {} statements in {}; {} runs of each",
            self.count,
            fixture.statements,
            fixture.dir.display(),
            self.runs
        );

        let (mut in_process, mut ours, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..=self.runs {
            let (alone, command, other) = fixture.time(cx, &exe, &settings)?;
            if run == 0 {
                continue;
            }
            eprintln!(
                "run {run}: lint alone {:.1} ms, migration lint {:.0} ms{}",
                ms(alone),
                ms(command),
                other.map(|o| format!(", squawk {:.0} ms", ms(o))).unwrap_or_default()
            );
            in_process.push(alone);
            ours.push(command);
            theirs.extend(other);
        }
        let _ = std::fs::remove_dir_all(&fixture.work);
        report(fixture.statements, in_process, ours, theirs);
        Ok(())
    }
}

/// The generated migrations, in a scratch folder, and what the runs time on them.
struct Fixture {
    work: PathBuf,
    dir: PathBuf,
    /// An empty diesel.toml, so the command reads no project's settings.
    config: PathBuf,
    migrations: Vec<MigrationFiles>,
    /// Each migration's up.sql, for squawk.
    files: Vec<String>,
    statements: usize,
    squawk: Option<PathBuf>,
}

impl Fixture {
    /// `count` app-like migrations in a scratch folder, their statements counted.
    fn generate(count: usize, settings: &Settings) -> Result<Fixture> {
        let work = std::env::temp_dir().join(format!("railgun-bench-lint-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let dir = work.join("migrations");
        generate_app_like(&dir, count)?;
        let config = work.join("diesel.toml");
        std::fs::write(&config, "")?;
        let migrations = source::load(&dir)?;
        let files: Vec<String> = migrations.iter().map(|m| m.dir.join("up.sql").display().to_string()).collect();
        let statements: usize =
            migrations.iter().map(|m| lint::lint(m, settings).map(|l| l.statements.len())).sum::<Result<usize>>()?;
        let squawk = which::which("squawk").ok();
        Ok(Fixture { work, dir, config, migrations, files, statements, squawk })
    }

    /// One run: the linter in this process, `migration lint --all` as a command, and squawk when
    /// it is installed.
    fn time(&self, cx: &Context, exe: &Path, settings: &Settings) -> Result<(Duration, Duration, Option<Duration>)> {
        let sh = &cx.sh;
        let Fixture { dir, config, files, .. } = self;
        let start = Instant::now();
        for migration in &self.migrations {
            lint::lint(migration, settings)?;
        }
        let alone = start.elapsed();
        let start = Instant::now();
        cmd!(sh, "{exe} --config-file {config} --migration-dir {dir} migration lint --all")
            .quiet()
            .ignore_status()
            .ignore_stdout()
            .ignore_stderr()
            .run()?;
        let command = start.elapsed();
        let other = match &self.squawk {
            Some(squawk) => {
                let start = Instant::now();
                cmd!(sh, "{squawk} {files...}").quiet().ignore_status().ignore_stdout().ignore_stderr().run()?;
                Some(start.elapsed())
            }
            None => None,
        };
        Ok((alone, command, other))
    }
}

/// The medians, in milliseconds and statements per second, and the ratio to squawk's.
fn report(statements: usize, in_process: Vec<Duration>, ours: Vec<Duration>, theirs: Vec<Duration>) {
    let per_second = |d: Duration| statements as f64 / d.as_secs_f64();
    let alone = median(in_process);
    let command = median(ours);
    println!("{:<34} {:>10} {:>16}", "lint", "ms", "statements/s");
    println!("{:<34} {:>10.1} {:>16.0}", "parse + rules, in process", ms(alone), per_second(alone));
    println!("{:<34} {:>10.0} {:>16.0}", "cargo xtask migration lint --all", ms(command), per_second(command));
    if !theirs.is_empty() {
        let squawk = median(theirs);
        println!("{:<34} {:>10.0} {:>16.0}", "squawk", ms(squawk), per_second(squawk));
        println!(
            "bench lint: {:.2}x squawk's time as commands; {:.0} statements/s in process",
            command.as_secs_f64() / squawk.as_secs_f64(),
            per_second(alone)
        );
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
