//! `cargo xtask test`: the test suite with everything it needs, on any machine of ours.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};

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
/// `cargo test --workspace`
///
/// Missing programs come from apt when run as root (else the command to run is named);
/// diesel_cli 2.3.14, for the compatibility tests, is built once into $RAILGUN_TOOLS
/// (default ~/.cache/railgun-tools).
#[derive(clap::Args)]
pub struct Test {
    /// Arguments for `cargo test` (after `--`), e.g. `-- --test up`
    #[arg(last = true)]
    args: Vec<String>,
}

impl Test {
    pub fn run(self, cx: &Context) -> Result<()> {
        let sh = &cx.sh;
        install_missing_packages(cx)?;
        let tools = tools_dir();
        let diesel = tools.join("bin/diesel");
        if !diesel.exists() && which::which("diesel").is_err() {
            eprintln!("building diesel_cli into {} (once, a few minutes)", tools.display());
            let target = tools.join("target");
            // The version the comparison tests are held to (tests::DIESEL_CLI_VERSION).
            cmd!(
                sh,
                "cargo install diesel_cli@2.3.14 --no-default-features --features postgres --locked --root {tools}"
            )
            .env("CARGO_TARGET_DIR", target)
            .run()?;
        }
        let exe = std::env::current_exe()?;
        cmd!(sh, "{exe} images build").run()?;
        cmd!(sh, "{exe} up").run()?;
        let path = std::env::join_paths(
            std::iter::once(tools.join("bin"))
                .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
        )?;
        let args = self.args;
        eprintln!("$ cargo test --workspace {}", args.join(" "));
        let mut cargo_test: Command = cmd!(sh, "cargo test --workspace {args...}").env("PATH", path).into();
        let mut child = cargo_test.stdout(Stdio::piped()).spawn().context("run cargo test")?;
        let mut totals = Totals::default();
        for line in BufReader::new(child.stdout.take().context("cargo test's output")?).lines() {
            let line = line?;
            println!("{line}");
            totals.add(&line);
        }
        let status = child.wait()?;
        // cargo's last words are about doc-tests ("0 passed" when a crate has none): say the sum.
        println!("tests: {} passed, {} failed, {} skipped", totals.passed, totals.failed, totals.ignored);
        if !status.success() {
            bail!("cargo test failed ({status})");
        }
        Ok(())
    }
}

/// The sum of cargo test's `test result:` lines.
#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    ignored: u64,
}

impl Totals {
    fn add(&mut self, line: &str) {
        let Some(counts) = line.strip_prefix("test result: ") else { return };
        for part in counts.split(['.', ';']) {
            let mut words = part.split_whitespace();
            let (Some(n), Some(what)) = (words.next().and_then(|n| n.parse::<u64>().ok()), words.next()) else {
                continue;
            };
            match what {
                "passed" => self.passed += n,
                "failed" => self.failed += n,
                "ignored" => self.ignored += n,
                _ => {}
            }
        }
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
        assert_eq!((totals.passed, totals.failed, totals.ignored), (8, 3, 1));
    }
}
