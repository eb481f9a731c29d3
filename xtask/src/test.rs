//! `cargo xtask test`: the test suite with everything it needs, on any machine of ours.

use std::path::PathBuf;

use anyhow::{Result, bail};
use xshell::cmd;

use crate::context::Context;

/// Programs the tests run, and the Debian package that brings each.
const TOOLS: &[(&str, &str)] = &[
    ("psql", "postgresql-client"),
    ("pg_dump", "postgresql-client"),
    ("pgbench", "postgresql-contrib"),
    ("debootstrap", "debootstrap"),
    ("docker-compose", "docker-compose"),
    ("openssl", "openssl"),
    ("script", "bsdutils"),
    ("patch", "patch"),
];

/// Run the tests: install what is missing, build offline images, start the services, then
/// `cargo test --workspace`
///
/// Missing programs come from apt when run as root (else the command to run is named);
/// diesel_cli, for the compatibility tests, is built once into $RAILGUN_TOOLS
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
            cmd!(sh, "cargo install diesel_cli --no-default-features --features postgres --locked --root {tools}")
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
        cmd!(sh, "cargo test --workspace {args...}").env("PATH", path).run()?;
        Ok(())
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
        bail!("the tests need {}\n  hint: sudo apt-get install {}", packages.join(", "), packages.join(" "));
    }
    eprintln!("installing {}", packages.join(" "));
    cmd!(sh, "apt-get update -qq").run()?;
    cmd!(sh, "apt-get install -y -qq {packages...}").env("DEBIAN_FRONTEND", "noninteractive").run()?;
    Ok(())
}
