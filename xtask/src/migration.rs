//! `cargo xtask migration`: the guide's migration commands, diesel_cli-compatible.

mod generate;

use anyhow::{Context as _, Result, anyhow};
use diesel_migrations::{FileBasedMigrations, MigrationHarness};
use url::Url;

use crate::config::DieselConfig;
use crate::context::Context;

/// The guide's migration commands, in diesel_cli's format.
#[derive(clap::Subcommand)]
pub enum Migration {
    /// Apply pending migrations
    Run {},
    Generate(generate::Generate),
}

impl Migration {
    pub fn run(self, cx: &Context) -> Result<()> {
        match self {
            Migration::Run {} => {
                let url = cx.database_url()?;
                run_pending(cx, &url).map(drop)
            }
            Migration::Generate(cmd) => cmd.run(cx),
        }
    }
}

/// Applies pending migrations from disk; returns how many ran.
pub fn run_pending(cx: &Context, url: &Url) -> Result<usize> {
    let dir = DieselConfig::load(cx)?.migration_dir(cx);
    if !dir.exists() {
        return Ok(0);
    }
    let migrations =
        FileBasedMigrations::from_path(&dir).map_err(|e| anyhow!("read migrations in {}: {e}", dir.display()))?;
    let mut conn = db::connect::establish(url)?;
    let ran = conn.run_pending_migrations(migrations).map_err(|e| anyhow!("{e}")).context("run migrations")?;
    for version in &ran {
        eprintln!("applied {version}");
    }
    Ok(ran.len())
}
