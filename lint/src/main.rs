//! The migration linter's binary: `cargo xtask migration lint` and `cargo xtask bench lint` run
//! it (`cargo run -p dblint`), so Postgres's own parser (libpg_query, C, with bindgen) is
//! compiled the first time someone lints, not in every build of the xtask.

#[macro_use]
extern crate dbkit;

mod bench;
mod lint;

use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dbkit::cli::Global;

/// Rail Gun's migration linter (run through `cargo xtask migration lint`).
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Dblint {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(subcommand)]
    Migration(Migration),
    #[command(subcommand)]
    Bench(Bench),
}

/// The guide's migration commands: here, the linter.
#[derive(Subcommand)]
enum Migration {
    Lint(lint::Lint),
}

/// Benchmarks: here, the linter's.
#[derive(Subcommand)]
enum Bench {
    Lint(bench::Lint),
}

fn main() -> ExitCode {
    let dblint = Dblint::parse();
    let compiled_in = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("lint lives in the workspace");
    let root = dbkit::checkout::root(compiled_in);
    let result = dblint.global.context(root).and_then(|cx| match dblint.command {
        Command::Migration(Migration::Lint(cmd)) => cmd.run(&cx),
        Command::Bench(Bench::Lint(cmd)) => cmd.run(&cx),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{}", dbkit::error::render(&error));
            ExitCode::FAILURE
        }
    }
}
