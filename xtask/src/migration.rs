//! `cargo xtask migration`: the guide's migration commands, diesel_cli-compatible.

use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow};
use diesel::{Connection, PgConnection};
use diesel_migrations::{FileBasedMigrations, MigrationHarness};
use url::Url;

use crate::context::Context;

/// Applies pending migrations from disk; returns how many ran.
pub fn run_pending(cx: &Context, url: &Url) -> Result<usize> {
    let dir = migration_dir(cx);
    if !dir.exists() {
        return Ok(0);
    }
    let migrations = FileBasedMigrations::from_path(&dir).map_err(|e| anyhow!("read migrations in {}: {e}", dir.display()))?;
    let mut conn = PgConnection::establish(url.as_str()).context("connect")?;
    let ran = conn.run_pending_migrations(migrations).map_err(|e| anyhow!("{e}"))?;
    for version in &ran {
        eprintln!("applied {version}");
    }
    Ok(ran.len())
}

fn migration_dir(cx: &Context) -> PathBuf {
    match &cx.global.migration_dir {
        Some(dir) => cx.user_path(dir),
        None => cx.root.join("db/migrations"),
    }
}
