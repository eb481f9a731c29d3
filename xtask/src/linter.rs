//! The migration linter runs as a binary of its own (`lint/`, `cargo run -p dblint`): Postgres's
//! parser (libpg_query, C, with bindgen) is then compiled the first time someone lints, not in
//! every contributor's build of the xtask.

use std::ffi::OsString;

use anyhow::Result;
use xshell::cmd;

use crate::context::{Context, Exit};

/// Runs the linter's `command` (`migration lint`, `bench lint`) with `args`, in the user's
/// folder, with this invocation's flags; its exit code is ours.
pub fn run(cx: &Context, command: &[&str], args: &[String]) -> Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let manifest = cx.root.join("Cargo.toml");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| cx.root.join("target"), Into::into);
    if !target.join("debug/dblint").exists() {
        eprintln!("building the linter (once: it compiles Postgres's own parser, a few minutes)...");
    }
    let mut flags: Vec<OsString> = Vec::new();
    if let Some(dir) = &cx.global.migration_dir {
        flags.extend(["--migration-dir".into(), cx.user_path(dir).into()]);
    }
    if let Some(file) = &cx.global.config_file {
        flags.extend(["--config-file".into(), cx.user_path(file).into()]);
    }
    let sh = &cx.sh;
    let _here = sh.push_dir(std::env::current_dir()?);
    let mut linter = cmd!(
        sh,
        "{cargo} run --quiet --manifest-path {manifest} --package dblint -- {flags...} {command...} {args...}"
    );
    // A URL holds a password: the environment, never a command line.
    if let Some(url) = &cx.global.database_url {
        linter = linter.env("DATABASE_URL", url);
    }
    let status = std::process::Command::from(linter).status()?;
    match status.code() {
        Some(0) => Ok(()),
        code => Err(Exit(code.map_or(1, |c| c.clamp(1, 255) as u8)).into()),
    }
}
