//! `cargo xtask bench check`: `migration check` on a real project's migrations (crates.io's 285,
//! say), in a repository of its own made in a temporary folder: main holds all of them, a branch
//! made before main's newest few adds one migration of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use xshell::{Shell, cmd};

use super::migrations::{median, ms};
use crate::context::Context;

/// Benchmark `migration check` on another repository's migrations (median of several runs)
///
/// Copies the migrations folder of SOURCE's HEAD (a git folder, bare or not; nothing in it is
/// written) into a new repository in a temporary folder: main commits all but the newest
/// --theirs of them, a branch `feature` made there adds one migration of its own (a new table,
/// dated now: no conflict), and main then adds the --theirs newest. Each run is
/// `cargo xtask migration check --against main` on the branch, as a user runs it (a process,
/// no database server: nothing overlaps, so nothing is applied; --apply applies on the server
/// of DATABASE_URL).
///
/// For example, with `fetch`'s copy of rust-lang/crates.io:
/// cargo xtask bench check --source /work/.mirror/rust-lang+crates.io/repo
#[derive(clap::Args)]
pub struct Check {
    /// The git folder of the repository whose migrations to use
    #[arg(long, value_name = "GIT_DIR")]
    source: PathBuf,
    /// The migrations folder inside it
    #[arg(long, default_value = "migrations", value_name = "PATH")]
    path: String,
    /// How many of its newest migrations main adds after the branch was made
    #[arg(long, default_value_t = 5)]
    theirs: usize,
    /// Timed runs (after one untimed warm-up); the median is reported
    #[arg(long, default_value_t = 7)]
    runs: usize,
    /// Run the check with --apply (on the server of DATABASE_URL)
    #[arg(long)]
    apply: bool,
    /// Keep the temporary repository (its path is printed)
    #[arg(long)]
    keep: bool,
}

impl Check {
    pub fn run(self, cx: &Context) -> Result<()> {
        if self.runs == 0 {
            bail!("--runs must be at least 1");
        }
        let work = std::env::temp_dir().join(format!("railgun-bench-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)?;
        let result = self.measure(cx, &work);
        if self.keep {
            eprintln!("kept {}", work.display());
        } else {
            let _ = std::fs::remove_dir_all(&work);
        }
        result
    }

    fn measure(&self, cx: &Context, work: &Path) -> Result<()> {
        let (count, added) = self.build_repository(work)?;
        let exe = std::env::current_exe().context("find the xtask binary")?;
        let mut args = vec!["--config-file".to_string(), work.join("diesel.toml").display().to_string()];
        if self.apply {
            args.extend(["--database-url".to_string(), cx.database_url()?.to_string()]);
        }
        args.extend(["migration", "check", "--against", "main"].map(String::from));
        if self.apply {
            args.push("--apply".into());
        }
        eprintln!(
            "{count} migrations of {}; main adds its newest {} after the branch, which adds {added}; {} runs of: xtask {}",
            self.source.display(),
            self.theirs,
            self.runs,
            args.iter().filter(|a| !a.starts_with("postgres")).cloned().collect::<Vec<_>>().join(" ")
        );
        let mut took = Vec::new();
        for run in 0..=self.runs {
            let started = Instant::now();
            let out = Command::new(&exe)
                .args(&args)
                .current_dir(work)
                .env("RAILGUN_ENV_FILE", work.join("no.env"))
                .env_remove("DATABASE_URL")
                .env_remove("DIRECT_URL")
                .stdin(Stdio::null())
                .output()
                .context("run migration check")?;
            let elapsed = started.elapsed();
            if !matches!(out.status.code(), Some(0 | 1)) {
                bail!("migration check failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr));
            }
            let verdict = if out.status.success() { "clean" } else { "conflicts" };
            if run == 0 {
                eprintln!(
                    "warm-up: {:.0} ms ({verdict})\n{}",
                    ms(elapsed),
                    String::from_utf8_lossy(&out.stderr).trim_end()
                );
                continue;
            }
            eprintln!("run {run}: {:.0} ms ({verdict})", ms(elapsed));
            took.push(elapsed);
        }
        let (min, max) =
            (took.iter().min().copied().unwrap_or_default(), took.iter().max().copied().unwrap_or_default());
        let median: Duration = median(took);
        println!(
            "bench check: {count} migrations, main +{}, branch +1: median {:.0} ms (min {:.0}, max {:.0}; goal <= 2000 ms)",
            self.theirs,
            ms(median),
            ms(min),
            ms(max)
        );
        Ok(())
    }

    /// The repository in `work`; how many migrations it has, and the branch's.
    fn build_repository(&self, work: &Path) -> Result<(usize, String)> {
        let sh = Shell::new()?;
        sh.change_dir(work);
        let source = std::fs::canonicalize(&self.source)
            .with_context(|| format!("find the source repository {}", self.source.display()))?;
        let path = self.path.trim_end_matches('/');
        // Read from the source's objects only: its own index and HEAD stay as they are.
        let index = work.join("source.index");
        {
            let _index = sh.push_env("GIT_INDEX_FILE", &index);
            cmd!(sh, "git --git-dir {source} --work-tree {work} checkout HEAD -- {path}")
                .quiet()
                .run()
                .context("copy the source's migrations")?;
        }
        std::fs::remove_file(&index)?;
        let dir = work.join(path);
        let mut names: Vec<String> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .filter(|e| e.path().join("up.sql").is_file())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort_by_key(|n| dbkit::migration::source::version_of(n));
        if names.len() <= self.theirs {
            bail!("{} has {} migrations: fewer than --theirs {} + 1", self.source.display(), names.len(), self.theirs);
        }
        let newest = names.split_off(names.len() - self.theirs);
        let aside = work.join("aside");
        std::fs::create_dir_all(&aside)?;
        for name in &newest {
            std::fs::rename(dir.join(name), aside.join(name))?;
        }
        std::fs::write(work.join("diesel.toml"), format!("[migrations_directory]\ndir = \"{path}\"\n"))?;
        std::fs::write(work.join(".gitignore"), "aside/\nno.env\n")?;
        let git = |args: &[&str]| -> Result<()> {
            cmd!(sh, "git -c user.name=bench -c user.email=bench@localhost -c commit.gpgsign=false {args...}")
                .quiet()
                .ignore_stdout()
                .run()
                .with_context(|| format!("git {}", args.join(" ")))?;
            Ok(())
        };
        git(&["init", "-q", "-b", "main"])?;
        git(&["add", "-A"])?;
        git(&["commit", "-q", "-m", "the older migrations"])?;
        git(&["checkout", "-q", "-b", "feature"])?;
        let added = dbkit::migration::create::create_migration(
            &dir,
            "railgun_bench_notes",
            "CREATE TABLE railgun_bench_notes (\n  id BIGSERIAL PRIMARY KEY,\n  body TEXT NOT NULL\n);\n",
            "DROP TABLE railgun_bench_notes;\n",
        )?;
        let added = added.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        git(&["add", "-A"])?;
        git(&["commit", "-q", "-m", "the branch's migration"])?;
        git(&["checkout", "-q", "main"])?;
        for name in &newest {
            std::fs::rename(aside.join(name), dir.join(name))?;
        }
        git(&["add", "-A"])?;
        git(&["commit", "-q", "-m", "main's newest migrations"])?;
        git(&["checkout", "-q", "feature"])?;
        Ok((names.len() + newest.len(), added))
    }
}
