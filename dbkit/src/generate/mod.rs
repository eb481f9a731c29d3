//! `migration generate`: up.sql and its exact inverse down.sql from the difference between
//! schema.rs (its `table!`s are the entities) and the live database.

mod catalog;
mod columns;
mod diff;
mod parse;
mod types;

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};

use crate::context::Context;
use crate::diesel_config::DieselConfig;
use crate::migration::create::create_migration;
use crate::migration::source::{self, shown};
use crate::schema::settings::Settings;

/// Writes the migration `name` that makes the database what schema.rs says; returns its
/// folder, or `None` when there is no difference (nothing is written then).
pub fn generate(cx: &Context, name: &str) -> Result<Option<PathBuf>> {
    let config = DieselConfig::load(cx)?;
    let settings = Settings::from_config(&config)?;
    let schema_file = settings.file.clone().unwrap_or_else(|| cx.root.join("db/src/schema.rs"));
    let text = std::fs::read_to_string(&schema_file).with_context(|| {
        hint!("read the entities in {}", shown(&schema_file); "set [print_schema] file in diesel.toml, or create it with `cargo xtask schema generate`")
    })?;
    let entities = parse::parse(&text).with_context(|| format!("parse {}", shown(&schema_file)))?;
    let url = cx.database_url()?;
    let dir = config.migration_dir(cx);
    let mut conn = crate::connect::establish(&url)?;
    refuse_pending(&mut conn, &dir)?;

    let steps = diff::plan(&mut conn, &entities, &settings)?;
    if steps.is_empty() {
        eprintln!("no difference between {} and the database: nothing written", shown(&schema_file));
        return Ok(None);
    }
    let (up, down) = diff::render(&steps, &shown(&schema_file));
    let folder = create_migration(&dir, name, &up, &down)?;
    for step in &steps {
        eprintln!("  {}", step.summary);
    }
    eprintln!("created {} (up.sql, down.sql): review it, then `cargo xtask migration run`", shown(&folder));
    Ok(Some(folder))
}

/// A diff against a database that lacks pending migrations would write them again.
fn refuse_pending(conn: &mut diesel::PgConnection, dir: &std::path::Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let applied: Vec<String> =
        crate::migration::runner::applied(conn)?.unwrap_or_default().into_iter().map(|a| a.version).collect();
    let pending: Vec<String> =
        source::load(dir)?.into_iter().filter(|m| !applied.contains(&m.version)).map(|m| m.name).collect();
    if !pending.is_empty() {
        bail!(
            hint!("the database has {} pending migration(s) ({}): a diff now would repeat them", pending.len(), pending.join(", "); "run `cargo xtask migration run` first")
        );
    }
    Ok(())
}
