//! `migration generate`: up.sql and its exact inverse down.sql from the difference between the
//! schema files (their `table!`s are the entities) and the live database.

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
use crate::migration::source::shown;
use crate::schema::{SchemaFile, configured_files};
use diff::Step;

/// Writes the migration `name` that makes the database what the schema files say (every file
/// diesel.toml's print_schema sections name, each diffed with its own section's settings);
/// returns its folder, or `None` when there is no difference (nothing is written then).
pub fn generate(cx: &Context, name: &str) -> Result<Option<PathBuf>> {
    let config = DieselConfig::load(cx)?;
    let files = configured_files(cx, &config)?;
    let mut parsed = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(&file.path).with_context(|| {
            hint!("read the entities in {}", shown(&file.path); "set [print_schema] file in diesel.toml, or create it with `cargo xtask schema generate`")
        })?;
        parsed.push(parse::parse(&text).with_context(|| format!("parse {}", shown(&file.path)))?);
    }
    let url = cx.database_url()?;
    let dir = config.migration_dir(cx);
    let mut conn = crate::connect::establish(&url)?;
    refuse_pending(&mut conn, &dir)?;

    let mut plans = Vec::new();
    for (file, entities) in files.iter().zip(&parsed) {
        plans.push(diff::plan(&mut conn, entities, &file.settings)?);
    }
    let steps = merge(&files, plans)?;
    let sources: Vec<String> = files.iter().map(|f| shown(&f.path)).collect();
    let sources = sources.join(" and ");
    if steps.is_empty() {
        eprintln!("no difference between {sources} and the database: nothing written");
        return Ok(None);
    }
    let (up, down) = diff::render(&steps, &sources);
    let folder = create_migration(&dir, name, &up, &down)?;
    for step in &steps {
        eprintln!("  {}", step.summary);
    }
    eprintln!("created {} (up.sql, down.sql): review it, then `cargo xtask migration run`", shown(&folder));
    Ok(Some(folder))
}

/// One migration from each file's steps, in file order. Files whose sections overlap (one
/// table in both) agree when each changes it the same way or one leaves it alone; a table two
/// files change differently is refused, since either way one file's edit would be lost.
fn merge(files: &[SchemaFile], plans: Vec<Vec<Step>>) -> Result<Vec<Step>> {
    let mut refusals: Vec<String> = Vec::new();
    let mut merged: Vec<Step> = Vec::new();
    for (i, steps) in plans.iter().enumerate() {
        for step in steps {
            match plans[..i].iter().position(|earlier| earlier.iter().any(|s| s.table == step.table)) {
                None => merged.push(step.clone()),
                Some(j) if changes(&plans[j], &step.table) == changes(steps, &step.table) => {}
                Some(j) => {
                    let refusal = format!(
                        "{} and {} change table {} differently: make them agree (or leave it as it is in one)",
                        shown(&files[j].path),
                        shown(&files[i].path),
                        step.table
                    );
                    if !refusals.contains(&refusal) {
                        refusals.push(refusal);
                    }
                }
            }
        }
    }
    if !refusals.is_empty() {
        bail!(crate::error::Hinted::new(
            refusals.join("\n"),
            "edit the table the same way in every schema file that has it"
        ));
    }
    Ok(merged)
}

/// The steps that change `table`.
fn changes<'a>(steps: &'a [Step], table: &str) -> Vec<&'a Step> {
    steps.iter().filter(|s| s.table == table).collect()
}

/// A diff against a database that lacks pending migrations would write them again.
fn refuse_pending(conn: &mut diesel::PgConnection, dir: &std::path::Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let pending: Vec<String> = crate::migration::pending_in(conn, dir)?.into_iter().map(|m| m.name).collect();
    if !pending.is_empty() {
        bail!(
            hint!("the database has {} pending migration(s) ({}): a diff now would repeat them", pending.len(), pending.join(", "); "run `cargo xtask migration run` first")
        );
    }
    Ok(())
}
