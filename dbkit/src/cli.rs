//! diesel_cli's global flags, for the binaries built on this library (`cargo xtask`, and the
//! linter it runs): the same names, help and fallbacks in each.

use std::path::PathBuf;

use crate::context::{Context, Overrides};

/// Flags every command takes, with diesel_cli's names and fallbacks.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Global {
    /// The database to work on [default: $DATABASE_URL, else DATABASE_URL in .env]
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Where the migrations are [default: diesel.toml's migrations_directory, else db/migrations]
    #[arg(long, global = true, value_name = "DIR")]
    pub migration_dir: Option<PathBuf>,
    /// diesel.toml to read [default: $DIESEL_CONFIG_FILE, else diesel.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
}

impl Global {
    /// The context of every command: the checkout at `root`, with these flags.
    pub fn context(self, root: PathBuf) -> anyhow::Result<Context> {
        let Global { database_url, migration_dir, config_file } = self;
        Context::new(root, Overrides { database_url, migration_dir, config_file })
    }
}
