//! Benchmark backup and restore against the pg_dump | gzip pipeline

mod bucket;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use diesel::RunQueryDsl;
use url::Url;
use xshell::cmd;

use super::median;
use crate::context::Context;

/// Benchmark backup and restore against the pg_dump | gzip pipeline
///
/// Makes a scratch database on DATABASE_URL's server with `pgbench -i -s SCALE` (dropped at the
/// end), then, side by side in each run (after one untimed warm-up), the median of RUNS:
///   backup:  `cargo xtask db backup` vs `pg_dump ... | gzip -6 > f`
///   restore: `cargo xtask db restore f --yes` (safety backup and all) vs
///            `gunzip -c f | psql -X -v ON_ERROR_STOP=1 --single-transaction`, each into a fresh database
///   floor:   `pg_dump ... > /dev/null`
///   bucket:  `cargo xtask db backup --encrypt --to s3://...` vs
///            `pg_dump ... | gzip -6 | age -r RECIPIENT | aws s3 cp - s3://...`, into a moto S3
///            server the benchmark starts on a free loopback port (its own runs, after the rows above)
///   drill:   `cargo xtask db drill f` (restore into a throwaway database, then every table
///            summed and compared with the manifest) beside our restore of the same file
/// and the sizes, and our peak RSS (getrusage of the finished process).
/// Goals: backup <= 0.5x the pipeline at no larger size, restore <= 1.0x, peak RSS < 64 MiB,
/// bucket <= 1.1x.
///
/// The bucket row needs tools the tests do not (bench-only): `apt-get install age`,
/// `pip install awscli 'moto[server]'`.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Backup {
    /// pgbench scale factor (50 is about 500 MiB of SQL)
    #[arg(long, default_value_t = 50)]
    scale: u32,
    /// Timed runs of each; the median is reported
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Our backup's gzip level (the pipeline stays at gzip -6)
    #[arg(long, value_name = "1-9", default_value_t = 8)]
    compression_level: u32,
    /// Only the bucket row
    #[arg(long)]
    bucket_only: bool,
}

const DUMP_ARGS: &str = "--clean --if-exists --no-owner --no-privileges";

/// What one timed process cost.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Cost {
    pub(super) wall: Duration,
    peak_rss_kib: u64,
}

#[derive(Default)]
struct Samples {
    floor: Vec<Duration>,
    ours_backup: Vec<Cost>,
    pipe_backup: Vec<Duration>,
    ours_restore: Vec<Cost>,
    pipe_restore: Vec<Duration>,
    drill: Vec<Duration>,
    ours_size: u64,
    pipe_size: u64,
}

impl Backup {
    pub fn run(self, cx: &Context) -> Result<()> {
        if self.runs == 0 || self.scale == 0 {
            bail!("--runs and --scale must be at least 1");
        }
        check_tools()?;
        let server = cx.database_url()?;
        let exe = std::env::current_exe().context("find the xtask binary")?;
        let pid = std::process::id();
        let work = std::env::temp_dir().join(format!("railgun-bench-backup-{pid}"));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work)?;
        let scratch = Scratch::create(&server, &format!("railgun_bench_backup_{pid}"))?;
        eprintln!("pgbench -i -s {} into {} ...", self.scale, scratch.name);
        let (conninfo, env) = dbkit::url::libpq_env(&scratch.url)?;
        let scale = self.scale.to_string();
        let mut init = cmd!(cx.sh, "pgbench -i -q -s {scale} {conninfo}").quiet().ignore_stderr();
        for (k, v) in &env {
            init = init.env(k, v);
        }
        init.run().context("pgbench -i")?;
        let database = (&scratch.url, conninfo.as_str(), env.as_slice());
        if self.bucket_only {
            let figures = bucket::run(cx, database, &work, self.runs, self.compression_level)?;
            println!("pgbench scale {}, median of {} runs", self.scale, self.runs);
            bucket::report(&figures);
            let _ = std::fs::remove_dir_all(&work);
            return Ok(());
        }

        let setup = Setup {
            exe: &exe,
            server: &server,
            scratch: &scratch.url,
            conninfo: &conninfo,
            env: &env,
            pid,
            level: self.compression_level,
        };
        let mut samples = Samples::default();
        for run in 0..=self.runs {
            let dir = work.join(format!("run{run}"));
            std::fs::create_dir_all(&dir)?;
            let figures = setup.measure(run, &dir)?;
            let _ = std::fs::remove_dir_all(&dir);
            figures.show(if run == 0 { "warm-up".to_string() } else { format!("run {run}") });
            if run > 0 {
                samples.push(figures);
            }
        }
        let bucket = bucket::run(cx, database, &work, self.runs, self.compression_level)?;
        let _ = std::fs::remove_dir_all(&work);
        drop(scratch);
        report(&samples, self.scale, self.runs);
        bucket::report(&bucket);
        Ok(())
    }
}

/// The host's tools the pipeline rows run, and the bucket row's.
fn check_tools() -> Result<()> {
    for tool in ["pgbench", "pg_dump", "psql", "gzip", "gunzip", "sh"] {
        which::which(tool).with_context(|| {
            hint!("{tool} is not installed"; "the benchmark compares with the host's tools: apt-get install postgresql-client gzip (pgbench comes with Debian's postgresql package)")
        })?;
    }
    bucket::check_tools()
}

/// What every run needs: this binary, the server, the pgbench database and how to reach it.
struct Setup<'a> {
    exe: &'a Path,
    server: &'a Url,
    /// The pgbench database, backed up in every run.
    scratch: &'a Url,
    conninfo: &'a str,
    env: &'a [(&'static str, String)],
    /// Names this process's restore targets.
    pid: u32,
    /// Our backup's gzip level.
    level: u32,
}

/// One run's figures, ours beside the pipeline's.
struct Figures {
    ours_backup: Cost,
    pipe_backup: Duration,
    floor: Duration,
    ours_restore: Cost,
    pipe_restore: Duration,
    drill: Duration,
    ours_size: u64,
    pipe_size: u64,
}

impl Setup<'_> {
    /// One run in `dir`: both backups, the floor, both restores (each into a fresh database) and
    /// a drill of our file. Ours and the pipeline take turns going first, so neither always meets
    /// the warmer cache.
    fn measure(&self, run: usize, dir: &Path) -> Result<Figures> {
        let gz = dir.join("pipeline.sql.gz");
        let ours_first = run.is_multiple_of(2);
        let (ours_backup, pipe_backup) = self.backups(dir, &gz, ours_first)?;
        let floor =
            timed(&mut shell(&format!("pg_dump {DUMP_ARGS} --dbname=\"$1\" > /dev/null"), &[self.conninfo], self.env))?
                .wall;
        let ours_file = only_file(&dir.join("ours"))?;
        let (ours_size, pipe_size) = (std::fs::metadata(&ours_file)?.len(), std::fs::metadata(&gz)?.len());
        let (ours_restore, pipe_restore) = self.restores(run, dir, &ours_file, &gz, ours_first)?;
        let drill = timed(
            Command::new(self.exe)
                .args(["db", "drill"])
                .arg(&ours_file)
                .arg("--database-url")
                .arg(self.scratch.as_str()),
        )?
        .wall;
        Ok(Figures { ours_backup, pipe_backup, floor, ours_restore, pipe_restore, drill, ours_size, pipe_size })
    }

    /// `db backup` into `dir/ours` and the pipeline into `gz`, in the order given.
    fn backups(&self, dir: &Path, gz: &Path, ours_first: bool) -> Result<(Cost, Duration)> {
        let mut ours_backup = Cost::default();
        let mut pipe_backup = Duration::ZERO;
        for ours in [ours_first, !ours_first] {
            if ours {
                ours_backup = timed(
                    Command::new(self.exe)
                        .args(["db", "backup", "--compression-level", &self.level.to_string()])
                        .arg(dir.join("ours"))
                        .arg("--database-url")
                        .arg(self.scratch.as_str()),
                )?;
            } else {
                pipe_backup = timed(&mut shell(
                    &format!("pg_dump {DUMP_ARGS} --dbname=\"$1\" | gzip -6 > \"$2\""),
                    &[self.conninfo, path_str(gz)?],
                    self.env,
                ))?
                .wall;
            }
        }
        Ok((ours_backup, pipe_backup))
    }

    /// `db restore` of `ours_file` and the pipeline's restore of `gz`, in the order given, each
    /// into a database of its own (dropped once restored).
    fn restores(
        &self,
        run: usize,
        dir: &Path,
        ours_file: &Path,
        gz: &Path,
        ours_first: bool,
    ) -> Result<(Cost, Duration)> {
        let mut ours_restore = Cost::default();
        let mut pipe_restore = Duration::ZERO;
        for ours in [ours_first, !ours_first] {
            let target = Scratch::create(self.server, &format!("railgun_bench_restore_{}_{run}_{ours}", self.pid))?;
            if ours {
                ours_restore = timed(
                    Command::new(self.exe)
                        .args(["db", "restore", "--yes", "--safety-dir"])
                        .arg(dir.join("safety"))
                        .arg(ours_file)
                        .arg("--database-url")
                        .arg(target.url.as_str()),
                )?;
            } else {
                let (target_info, _) = dbkit::url::libpq_env(&target.url)?;
                pipe_restore = timed(&mut shell(
                    "gunzip -c \"$1\" | psql -X -q -v ON_ERROR_STOP=1 --single-transaction --dbname=\"$2\" > /dev/null",
                    &[path_str(gz)?, &target_info],
                    self.env,
                ))?
                .wall;
            }
        }
        Ok((ours_restore, pipe_restore))
    }
}

impl Figures {
    /// The run's line on stderr.
    fn show(&self, label: String) {
        eprintln!(
            "{label}: backup ours {:.2}s / pipeline {:.2}s (floor {:.2}s), restore ours {:.2}s / pipeline {:.2}s, drill {:.2}s, size {} / {}, peak RSS {} / {} MiB",
            self.ours_backup.wall.as_secs_f64(),
            self.pipe_backup.as_secs_f64(),
            self.floor.as_secs_f64(),
            self.ours_restore.wall.as_secs_f64(),
            self.pipe_restore.as_secs_f64(),
            self.drill.as_secs_f64(),
            self.ours_size,
            self.pipe_size,
            self.ours_backup.peak_rss_kib / 1024,
            self.ours_restore.peak_rss_kib / 1024,
        );
    }
}

impl Samples {
    /// Adds a timed run (the sizes are the last run's).
    fn push(&mut self, f: Figures) {
        self.floor.push(f.floor);
        self.ours_backup.push(f.ours_backup);
        self.pipe_backup.push(f.pipe_backup);
        self.ours_restore.push(f.ours_restore);
        self.pipe_restore.push(f.pipe_restore);
        self.drill.push(f.drill);
        (self.ours_size, self.pipe_size) = (f.ours_size, f.pipe_size);
    }
}

fn report(s: &Samples, scale: u32, runs: usize) {
    let secs = |d: Duration| d.as_secs_f64();
    let floor = median(s.floor.clone());
    let ours_b = median(s.ours_backup.iter().map(|c| c.wall).collect());
    let pipe_b = median(s.pipe_backup.clone());
    let ours_r = median(s.ours_restore.iter().map(|c| c.wall).collect());
    let pipe_r = median(s.pipe_restore.clone());
    let rss = s.ours_backup.iter().chain(&s.ours_restore).map(|c| c.peak_rss_kib).max().unwrap_or(0);
    let rss_backup = s.ours_backup.iter().map(|c| c.peak_rss_kib).max().unwrap_or(0);
    let rss_restore = s.ours_restore.iter().map(|c| c.peak_rss_kib).max().unwrap_or(0);
    let size_ratio = s.ours_size as f64 / s.pipe_size.max(1) as f64;
    println!("pgbench scale {scale}, median of {runs} runs");
    println!("{:<10} {:>10} {:>12} {:>8}   goal", "", "xtask (s)", "pipeline (s)", "ratio");
    println!(
        "{:<10} {:>10.2} {:>12.2} {:>7.2}x   <= 0.50x (floor, pg_dump > /dev/null: {:.2}s = {:.2}x)",
        "backup",
        secs(ours_b),
        secs(pipe_b),
        secs(ours_b) / secs(pipe_b),
        secs(floor),
        secs(floor) / secs(pipe_b)
    );
    println!(
        "{:<10} {:>10.2} {:>12.2} {:>7.2}x   <= 1.00x",
        "restore",
        secs(ours_r),
        secs(pipe_r),
        secs(ours_r) / secs(pipe_r)
    );
    let drill = median(s.drill.clone());
    println!(
        "{:<10} {:>10.2} {:>12} {:>7.2}x   of our restore ({:.2}s): restore + sums + compare",
        "drill",
        secs(drill),
        "",
        secs(drill) / secs(ours_r),
        secs(ours_r)
    );
    println!("{:<10} {:>10} {:>12} {:>7.3}x   <= 1.00x (bytes)", "size", s.ours_size, s.pipe_size, size_ratio);
    println!(
        "{:<10} {:>10.1} {:>12} {:>8}   < 64 MiB (backup {:.1}, restore {:.1})",
        "peak RSS",
        rss as f64 / 1024.0,
        "MiB",
        "",
        rss_backup as f64 / 1024.0,
        rss_restore as f64 / 1024.0
    );
}

/// `sh -c SCRIPT sh ARGS...`, the password in the environment.
fn shell(script: &str, args: &[&str], env: &[(&'static str, String)]) -> Command {
    let mut command = Command::new("sh");
    command.arg("-c").arg(script).arg("sh").args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    command
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().context("a non-UTF-8 temporary path")
}

/// Runs `command` to completion, quiet; its wall time and peak RSS (from wait4's rusage).
pub(super) fn timed(command: &mut Command) -> Result<Cost> {
    let started = Instant::now();
    let child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let pid = child.id() as libc::pid_t;
    let errors = dbkit::backup::pgtools::collect_errors(child.stderr.context("the child's errors")?);
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; the pointers outlive the call.
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = started.elapsed();
    if rc != pid {
        bail!("wait for {command:?}: {}", std::io::Error::last_os_error());
    }
    let errors = errors.join().unwrap_or_default();
    if !(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0) {
        bail!("{:?} failed:\n{}", command.get_program(), dbkit::url::redact_str(&errors));
    }
    Ok(Cost { wall, peak_rss_kib: usage.ru_maxrss as u64 })
}

fn only_file(dir: &Path) -> Result<PathBuf> {
    let mut files = std::fs::read_dir(dir)?.filter_map(|e| e.ok()).map(|e| e.path());
    files.next().with_context(|| format!("no backup in {}", dir.display()))
}

/// A database of the benchmark's own, dropped on drop.
pub(super) struct Scratch {
    name: String,
    pub(super) url: Url,
    admin: Url,
}

impl Scratch {
    pub(super) fn create(server: &Url, name: &str) -> Result<Scratch> {
        let mut admin = server.clone();
        admin.set_path("postgres");
        let mut conn = dbkit::connect::establish(&admin)?;
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut conn)?;
        diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut conn).context("create a bench database")?;
        let mut url = server.clone();
        url.set_path(name);
        Ok(Scratch { name: name.to_string(), url, admin })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(mut conn) = dbkit::connect::establish(&self.admin) {
            let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)).execute(&mut conn);
        }
    }
}
