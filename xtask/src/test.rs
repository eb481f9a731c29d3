//! `cargo xtask test`: the test suite with everything it needs, on any machine of ours.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

use anyhow::{Context as _, Result, bail};
use xshell::cmd;

use crate::context::Context;

/// Programs the tests run, and the Debian package that brings each.
const TOOLS: &[(&str, &str)] = &[
    ("psql", "postgresql-client"),
    ("pg_dump", "postgresql-client"),
    ("debootstrap", "debootstrap"),
    ("docker-compose", "docker-compose"),
    ("openssl", "openssl"),
    ("script", "bsdutils"),
];

/// Run the tests: install what is missing, build offline images, start the services, then
/// `cargo nextest run --workspace` and the doc tests (`cargo test --workspace` without nextest)
///
/// Missing programs come from apt when run as root (else the command to run is named);
/// diesel_cli 2.3.14, for the compatibility tests, is built once into $RAILGUN_TOOLS
/// (default ~/.cache/railgun-tools). nextest runs a process per test; the test harness serves
/// each from a pool kept across processes (see `cargo xtask bench test-db`).
#[derive(clap::Args)]
pub struct Test {
    /// Run `cargo test` even when cargo-nextest is installed
    #[arg(long)]
    cargo_test: bool,
    /// Only prepare the test databases and exit: the template built, its pool of clones filled,
    /// stale databases of crashed runs dropped, the run's slot databases put ready (nextest's
    /// setup script runs this once per run)
    #[arg(long)]
    prepare_db: bool,
    /// Arguments for the test runner (after `--`), e.g. `-- up::` (the tests of tests/tests/up.rs)
    #[arg(last = true)]
    args: Vec<String>,
}

impl Test {
    pub fn run(self, cx: &Context) -> Result<()> {
        if self.prepare_db {
            return prepare_for_nextest(cx);
        }
        let sh = &cx.sh;
        install_missing_packages(cx)?;
        let tools = tools_dir();
        install_diesel_cli(cx, &tools)?;
        let exe = std::env::current_exe()?;
        cmd!(sh, "{exe} images build").run()?;
        cmd!(sh, "{exe} up").run()?;
        let path = std::env::join_paths(
            std::iter::once(tools.join("bin"))
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )?;
        let nextest = !self.cargo_test && which::which("cargo-nextest").is_ok();
        let mut totals = Totals::default();
        let mut failed = Vec::new();
        for (n, run) in runs(nextest, self.args).into_iter().enumerate() {
            // The setup script runs this binary (RAILGUN_XTASK): `cargo xtask` again would cost
            // cargo's own start, a third of a second, per run. Only the setup script knows the
            // run (its id and threads) whose slot databases it puts ready.
            let xtask = (n == 0 && nextest).then_some(exe.as_path());
            let (status, counted) = run_cargo(cx, &run, &path, xtask)?;
            totals.merge(counted);
            if !status.success() {
                failed.push(format!("cargo {} ({status})", run.first().map_or("", String::as_str)));
            }
        }
        // cargo's last words are about doc-tests ("0 passed" when a crate has none): say the sum.
        println!("tests: {} passed, {} failed, {} skipped", totals.passed, totals.failed, totals.ignored);
        if !failed.is_empty() {
            bail!("{} failed", failed.join(", "));
        }
        Ok(())
    }
}

/// `--prepare-db`, as nextest's setup script: what its test processes may skip (they then open
/// one connection each, to their slot's database), the variables for them appended to the file
/// NEXTEST_ENV names.
fn prepare_for_nextest(cx: &Context) -> Result<()> {
    let env = prepare(cx)?;
    if let Some(path) = std::env::var_os("NEXTEST_ENV") {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new().append(true).create(true).open(&path)?;
        for (key, value) in env {
            writeln!(file, "{key}={value}")?;
        }
    }
    Ok(())
}

/// diesel_cli, for the compatibility tests, built into `tools` once (unless one is on PATH).
fn install_diesel_cli(cx: &Context, tools: &Path) -> Result<()> {
    let diesel = tools.join("bin/diesel");
    if !diesel.exists() && which::which("diesel").is_err() {
        eprintln!("building diesel_cli into {} (once, a few minutes)", tools.display());
        let target = tools.join("target");
        // The version the comparison tests are held to (tests::DIESEL_CLI_VERSION).
        cmd!(
            cx.sh,
            "cargo install diesel_cli@2.3.14 --no-default-features --features postgres --locked --root {tools}"
        )
        .env("CARGO_TARGET_DIR", target)
        .run()?;
    }
    Ok(())
}

/// The cargo commands to run, `args` passed to the test runner: nextest and then the doc tests
/// (nextest does not run them), else cargo test alone.
fn runs(nextest: bool, args: Vec<String>) -> Vec<Vec<String>> {
    if nextest {
        let words = |w: &str| w.split_whitespace().map(String::from).collect::<Vec<_>>();
        vec![[words("nextest run --workspace --no-fail-fast"), args].concat(), words("test --workspace --doc")]
    } else {
        vec![[vec!["test".to_string(), "--workspace".to_string()], args].concat()]
    }
}

/// Runs `cargo WORDS...` with `path` as PATH (and `xtask` for the setup script, when given),
/// passing its output on as it comes; its exit status and the tests it counted.
fn run_cargo(cx: &Context, words: &[String], path: &OsStr, xtask: Option<&Path>) -> Result<(ExitStatus, Totals)> {
    eprintln!("$ cargo {}", words.join(" "));
    let mut command: Command = cmd!(cx.sh, "cargo {words...}").env("PATH", path).into();
    if let Some(exe) = xtask {
        command.env(XTASK, exe);
    }
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().context("run the tests")?;
    // nextest reports on stderr, cargo test on stdout: both are read and passed on.
    let stderr = child.stderr.take().context("the test runner's errors")?;
    let errors = std::thread::spawn(move || -> Totals {
        let mut totals = Totals::default();
        for line in BufReader::new(stderr).lines().map_while(std::io::Result::ok) {
            eprintln!("{line}");
            totals.add(&line);
        }
        totals
    });
    let mut totals = Totals::default();
    for line in BufReader::new(child.stdout.take().context("the test runner's output")?).lines() {
        let line = line?;
        println!("{line}");
        totals.add(&line);
    }
    let status = child.wait()?;
    totals.merge(errors.join().unwrap_or_default());
    Ok((status, totals))
}

/// This binary, for nextest's setup script (`.config/nextest.toml`) to run.
const XTASK: &str = "RAILGUN_XTASK";

/// The test databases of the project's migrations prepared (see `--prepare-db`); returns the
/// variables for the test processes.
fn prepare(cx: &Context) -> Result<Vec<(String, String)>> {
    let dir = dbkit::diesel_config::DieselConfig::load(cx)?.migration_dir(cx);
    let started = std::time::Instant::now();
    let (harness, ready) = dbkit::testing::Harness::prepare(&dir)?;
    eprintln!(
        "test databases ready in {} ms: template {}, {ready} clones in its pool ({})",
        started.elapsed().as_millis(),
        harness.template(),
        harness.origin()
    );
    Ok(harness.nextest_env())
}

/// The sum of cargo test's `test result:` lines and nextest's `Summary` line.
#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    fn add(&mut self, line: &str) {
        // nextest: `     Summary [  12.3s] 120 tests run: 118 passed, 2 failed, 3 skipped`
        let summary = line.trim_start().strip_prefix("Summary ").and_then(|rest| rest.split_once(" run: "));
        let Some(counts) = line.strip_prefix("test result: ").or(summary.map(|(_, counts)| counts)) else {
            return;
        };
        for part in counts.split(['.', ';', ',']) {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next().and_then(|n| n.parse::<u64>().ok()), words.next()) else {
                continue;
            };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" | "skipped" => self.ignored += n,
                _ => {}
            }
        }
    }
}

impl Totals {
    fn merge(&mut self, other: Totals) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

/// Where tools built for the tests live.
pub fn tools_dir() -> PathBuf {
    match std::env::var_os("RAILGUN_TOOLS") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache/railgun-tools"),
    }
}

fn install_missing_packages(cx: &Context) -> Result<()> {
    let sh = &cx.sh;
    let mut packages: Vec<&str> =
        TOOLS.iter().filter(|(program, _)| which::which(program).is_err()).map(|(_, package)| *package).collect();
    packages.dedup();
    // The linter's tests build Postgres's parser (pg_query), whose bindgen needs libclang.
    if which::which("dpkg").is_ok()
        && cmd!(sh, "dpkg -s libclang-dev").quiet().ignore_stdout().ignore_stderr().run().is_err()
    {
        packages.push("libclang-dev");
    }
    if packages.is_empty() {
        return Ok(());
    }
    let root = cmd!(sh, "id -u").quiet().read()? == "0";
    if !root || which::which("apt-get").is_err() {
        bail!(hint!("the tests need {}", packages.join(", "); "sudo apt-get install {}", packages.join(" ")));
    }
    eprintln!("installing {}", packages.join(" "));
    cmd!(sh, "apt-get update -qq").run()?;
    cmd!(sh, "apt-get install -y -qq {packages...}").env("DEBIAN_FRONTEND", "noninteractive").run()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_test_results() {
        let mut totals = super::Totals::default();
        totals.add("test result: ok. 6 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 14.39s");
        totals.add("test result: FAILED. 2 passed; 3 failed; 0 ignored; 0 measured; 0 filtered out; finished in 1s");
        totals.add("running 2 tests");
        totals.add("     Summary [  12.345s] 120 tests run: 118 passed (1 slow), 2 failed, 3 skipped");
        assert_eq!((totals.passed, totals.failed, totals.ignored), (126, 5, 4));
    }
}
