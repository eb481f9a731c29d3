//! `cargo xtask`: Rail Gun's database workflow. Run `cargo xtask --help` for the commands.

#[macro_use]
extern crate dbkit;

mod bench;
mod branch;
mod context;
mod database;
mod doctor;
mod down;
mod guard;
mod images;
mod linter;
mod migration;
mod schema;
mod status;
mod test;
mod up;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::context::Global;

/// Rail Gun's database workflow: local services, migrations, schema, backups.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, propagate_version = true)]
struct Xtask {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Up(up::Up),
    Down(down::Down),
    Status(status::Status),
    #[command(subcommand)]
    Images(images::Images),
    #[command(subcommand)]
    Migration(migration::Migration),
    #[command(subcommand)]
    Schema(schema::Schema),
    #[command(subcommand)]
    Branch(branch::Branch),
    #[command(subcommand)]
    Db(database::Database),
    Doctor(doctor::Doctor),
    Test(test::Test),
    #[command(subcommand)]
    Bench(bench::Bench),
}

fn main() -> ExitCode {
    let xtask = Xtask::parse();
    let result = xtask.global.context(context::project_root()).and_then(|cx| match xtask.command {
        Command::Up(cmd) => cmd.run(&cx),
        Command::Down(cmd) => cmd.run(&cx),
        Command::Status(cmd) => cmd.run(&cx),
        Command::Images(cmd) => cmd.run(&cx),
        Command::Migration(cmd) => cmd.run(&cx),
        Command::Schema(cmd) => cmd.run(&cx),
        Command::Branch(cmd) => cmd.run(&cx),
        Command::Db(cmd) => cmd.run(&cx),
        Command::Doctor(cmd) => cmd.run(&cx),
        Command::Test(cmd) => cmd.run(&cx),
        Command::Bench(cmd) => cmd.run(&cx),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => match error.downcast_ref::<context::Exit>() {
            Some(context::Exit(code)) => ExitCode::from(*code),
            None => {
                context::report(&error);
                ExitCode::FAILURE
            }
        },
    }
}
