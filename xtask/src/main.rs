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
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, propagate_version = true, after_long_help = SETTINGS)]
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

/// The settings every command reads (the environment wins over `.env`); README's "Settings"
/// table says the same, with the internal handoff variables.
const SETTINGS: &str = "Settings (environment, else .env):
  DATABASE_URL, DIRECT_URL    the app's database; the tools' (DIRECT_URL past a transaction pooler)
  DATABASE_POOLER             transaction|session: what DATABASE_URL goes through
  APP_ENV                     development|test|staging|production (staging, production: destructive commands refuse)
  REDIS_URL                   the app's Redis
  RAILGUN_CHECKOUT            the checkout to work on [default: the one cargo runs in]
  RAILGUN_ENV_FILE            the settings file [default: .env]
  RAILGUN_PROJECT             what this checkout's containers and volumes are named after
  RAILGUN_BRANCHES            on: the database follows git (`branch on` writes it)
  RAILGUN_POSTGRES_IMAGE, RAILGUN_REDIS_IMAGE, RAILGUN_PGBOUNCER_IMAGE   images for `up`
  RAILGUN_POSTGRES_PORT, RAILGUN_REDIS_PORT, RAILGUN_POOLER_PORT        ports for `up` (0: any free one)
  RAILGUN_POOLER              1: `up` runs PgBouncer too
  RAILGUN_PGTOOLS             host|container|image: where pg_dump comes from
  RAILGUN_MASK_KEY            the key of `db copy --mask` (made in .env when missing; never printed)
  RAILGUN_DEBIAN_MIRROR       where `images build` fetches Debian from
  RAILGUN_TOOLS               where `test` installs diesel_cli [default: ~/.cache/railgun-tools]
  TEST_DATABASE_URL, RAILGUN_TEST_SERVER=dev, RAILGUN_TEST_POOL   the test harness's server and pool
See README.md's Settings for every variable, the internal ones included.";

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
    // An interrupted drill or rehearsal ends when its throwaway database is gone, with 130.
    dbkit::scratch::wait_if_interrupted();
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
