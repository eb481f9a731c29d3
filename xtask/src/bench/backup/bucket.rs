//! The bucket row of `bench backup`: `db backup --encrypt --to s3://...` against
//! `pg_dump | gzip -6 | age -r RECIPIENT | aws s3 cp - s3://...`, the store's own client, on a
//! moto S3 server of the benchmark's own (a free loopback port, stopped at the end).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use url::Url;
use xshell::cmd;

use super::{Cost, DUMP_ARGS, timed};
use crate::bench::median;
use crate::context::Context;

const BUCKET: &str = "railgun-bench";

/// The medians and sizes of the bucket row.
pub(super) struct Figures {
    ours: Duration,
    pipe: Duration,
    ours_size: u64,
    pipe_size: u64,
    peak_rss_kib: u64,
}

/// What one run of each needs: the database, the key, the store.
struct Setup<'a> {
    exe: &'a Path,
    url: &'a Url,
    conninfo: &'a str,
    env: &'a [(&'static str, String)],
    store: Vec<(&'static str, String)>,
    recipient: String,
    config: std::path::PathBuf,
    level: u32,
}

/// Runs the row `runs` times (after one untimed warm-up), ours and the pipeline side by side in
/// each run, in alternating order; each run's objects are deleted once measured.
pub(super) fn run(
    cx: &Context,
    (url, conninfo, env): (&Url, &str, &[(&'static str, String)]),
    work: &Path,
    runs: usize,
    level: u32,
) -> Result<Figures> {
    let exe = std::env::current_exe().context("find the xtask binary")?;
    let recipient = age_key(cx, work)?;
    let config = project(work, &recipient)?;
    let moto = Moto::start()?;
    let setup = Setup { exe: &exe, url, conninfo, env, store: moto.env(), recipient, config, level };
    aws(cx, &setup.store, &["s3", "mb", &format!("s3://{BUCKET}")])?;
    let (mut ours, mut pipe, mut rss, mut sizes) = (Vec::new(), Vec::new(), 0, (0, 0));
    for run in 0..=runs {
        let ours_first = run % 2 == 0;
        let (mut mine, mut theirs) = (Cost::default(), Duration::ZERO);
        for turn in [ours_first, !ours_first] {
            if turn {
                mine = ours_backup(&setup)?;
            } else {
                theirs = pipeline(&setup, run)?.wall;
            }
        }
        sizes = (object_size(cx, &setup.store, "ours/")?, object_size(cx, &setup.store, "pipe/")?);
        aws(cx, &setup.store, &["s3", "rm", "--recursive", "--quiet", &format!("s3://{BUCKET}/")])?;
        let label = if run == 0 { "warm-up".to_string() } else { format!("run {run}") };
        eprintln!(
            "{label}: to the bucket, encrypted: ours {:.2}s / pipeline {:.2}s, size {} / {}",
            mine.wall.as_secs_f64(),
            theirs.as_secs_f64(),
            sizes.0,
            sizes.1
        );
        if run > 0 {
            ours.push(mine.wall);
            pipe.push(theirs);
            rss = rss.max(mine.peak_rss_kib);
        }
    }
    drop(moto);
    Ok(Figures { ours: median(ours), pipe: median(pipe), ours_size: sizes.0, pipe_size: sizes.1, peak_rss_kib: rss })
}

/// Prints the row under `bench backup`'s table.
pub(super) fn report(f: &Figures) {
    let (ours, pipe) = (f.ours.as_secs_f64(), f.pipe.as_secs_f64());
    println!(
        "{:<10} {:>10.2} {:>12.2} {:>7.2}x   <= 1.10x (db backup --encrypt --to s3:// vs pg_dump | gzip -6 | age | aws s3 cp -)",
        "bucket",
        ours,
        pipe,
        ours / pipe
    );
    println!(
        "{:<10} {:>10} {:>12} {:>7.3}x   (bytes; peak RSS {:.1} MiB)",
        "  size",
        f.ours_size,
        f.pipe_size,
        f.ours_size as f64 / f.pipe_size.max(1) as f64,
        f.peak_rss_kib as f64 / 1024.0
    );
}

/// The bucket row's tools, checked before the data is made.
pub(super) fn check_tools() -> Result<()> {
    for (tool, install) in [
        ("aws", "pip install awscli"),
        ("age", "apt-get install age"),
        ("age-keygen", "apt-get install age"),
        ("moto_server", "pip install 'moto[server]'"),
        ("bash", "apt-get install bash"),
    ] {
        which::which(tool).with_context(|| {
            hint!("{tool} is not installed (the bucket row compares with it)"; "{install} (bench-only: the tests do not need it)")
        })?;
    }
    Ok(())
}

/// A fresh age key pair in `work`: its public key.
fn age_key(cx: &Context, work: &Path) -> Result<String> {
    let file = work.join("bench.key");
    let _ = std::fs::remove_file(&file);
    cmd!(cx.sh, "age-keygen -o {file}").quiet().ignore_stderr().run().context("age-keygen")?;
    let text = std::fs::read_to_string(&file).context("read the bench's age key")?;
    text.lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .map(str::to_string)
        .context("age-keygen wrote no public key")
}

/// A project folder whose railgun.toml encrypts to `recipient`: its diesel.toml.
fn project(work: &Path, recipient: &str) -> Result<std::path::PathBuf> {
    let dir = work.join("bucket-project");
    std::fs::create_dir_all(dir.join("migrations"))?;
    std::fs::write(dir.join("railgun.toml"), format!("[backup]\nrecipients = [\"{recipient}\"]\n"))?;
    let config = dir.join("diesel.toml");
    std::fs::write(&config, "[print_schema]\nfile = \"schema.rs\"\n\n[migrations_directory]\ndir = \"migrations\"\n")?;
    Ok(config)
}

fn ours_backup(s: &Setup) -> Result<Cost> {
    let mut command = Command::new(s.exe);
    command
        .arg("--config-file")
        .arg(&s.config)
        .args(["db", "backup", "--encrypt", "--to", &format!("s3://{BUCKET}/ours")])
        .args(["--compression-level", &s.level.to_string(), "--database-url", s.url.as_str()])
        .envs(s.store.iter().map(|(k, v)| (k, v)));
    timed(&mut command)
}

fn pipeline(s: &Setup, run: usize) -> Result<Cost> {
    let script = format!(
        "set -o pipefail; pg_dump {DUMP_ARGS} --dbname=\"$1\" | gzip -6 | age -r \"$2\" | aws s3 cp --only-show-errors - \"$3\""
    );
    let key = format!("s3://{BUCKET}/pipe/run{run}.sql.gz.age");
    let mut command = Command::new("bash");
    command.arg("-c").arg(script).arg("bash").args([s.conninfo, &s.recipient, &key]);
    command.envs(s.env.iter().map(|(k, v)| (k, v))).envs(s.store.iter().map(|(k, v)| (k, v)));
    timed(&mut command)
}

/// `aws ARGS` against the bench's store.
fn aws(cx: &Context, store: &[(&'static str, String)], args: &[&str]) -> Result<String> {
    let mut command = cmd!(cx.sh, "aws {args...}").quiet();
    for (k, v) in store {
        command = command.env(k, v);
    }
    command.read().with_context(|| format!("aws {}", args.join(" ")))
}

/// The size of the one object under `prefix` in the bucket.
fn object_size(cx: &Context, store: &[(&'static str, String)], prefix: &str) -> Result<u64> {
    let listing = aws(cx, store, &["s3", "ls", &format!("s3://{BUCKET}/{prefix}")])?;
    // `2026-12-06 11:30:00   123456 name`
    listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
        .next()
        .with_context(|| format!("no object under s3://{BUCKET}/{prefix}"))
}

/// moto's S3 server on a free loopback port, stopped when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Result<Moto> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start moto_server")?;
        let moto = Moto { child, endpoint: format!("http://127.0.0.1:{port}") };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                bail!("moto_server did not listen on 127.0.0.1:{port} within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(moto)
    }

    /// The AWS_* variables both clients read.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", "bench".into()),
            ("AWS_SECRET_ACCESS_KEY", "bench-secret".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
        ]
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
