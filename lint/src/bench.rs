//! `cargo xtask bench lint`: `migration lint` side by side with squawk on the same generated
//! migrations, and the linter's own throughput in statements per second.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use dbkit::lint::{self, Settings};
use dbkit::migration::source;
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
        let sh = &cx.sh;
        let exe = std::env::current_exe().context("find the linter's binary")?;
        let work = std::env::temp_dir().join(format!("railgun-bench-lint-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        let dir = work.join("migrations");
        generate_app_like(&dir, self.count)?;
        let config = work.join("diesel.toml");
        std::fs::write(&config, "")?;
        let migrations = source::load(&dir)?;
        let files: Vec<String> = migrations.iter().map(|m| m.dir.join("up.sql").display().to_string()).collect();
        let files = &files;
        let settings = Settings::default();
        let statements: usize =
            migrations.iter().map(|m| lint::lint(m, &settings).map(|l| l.statements.len())).sum::<Result<usize>>()?;
        let squawk = which::which("squawk").ok();
        if squawk.is_none() {
            eprintln!("squawk is not on PATH (pip install squawk-cli): only ours is timed");
        }
        eprintln!(
            "{} migrations, {statements} statements in {}; {} runs of each",
            self.count,
            dir.display(),
            self.runs
        );

        let (mut in_process, mut ours, mut theirs) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..=self.runs {
            let start = Instant::now();
            for migration in &migrations {
                lint::lint(migration, &settings)?;
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
            let other = match &squawk {
                Some(squawk) => {
                    let start = Instant::now();
                    cmd!(sh, "{squawk} {files...}").quiet().ignore_status().ignore_stdout().ignore_stderr().run()?;
                    Some(start.elapsed())
                }
                None => None,
            };
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
        let _ = std::fs::remove_dir_all(&work);
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
        Ok(())
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
