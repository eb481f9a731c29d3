//! `cargo xtask migration generate NAME`: up.sql and its exact inverse down.sql from the
//! difference between schema.rs (its `table!`s are the entities) and the live database.

mod catalog;
mod columns;
mod diff;
mod parse;
mod types;

use anyhow::{Context as _, Result, bail};

use super::create::create_migration;
use super::source::{self, shown};
use crate::config::DieselConfig;
use crate::context::Context;
use crate::schema::settings::Settings;

/// Write a migration from the difference between schema.rs and the live database
///
/// Edit the `table!` declarations in schema.rs (add a table or a column, change a type or
/// nullability, remove one), then run this: it writes up.sql (the database becomes what
/// schema.rs says) and down.sql (its exact inverse). It refuses, naming the change, what it
/// cannot express: primary key changes and composite foreign keys. Run pending migrations first.
///
/// Example:
///   cargo xtask migration generate add_user_nickname
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Generate {
    /// The migration's name (snake_case)
    name: String,
}

impl Generate {
    pub fn run(self, cx: &Context) -> Result<()> {
        let config = DieselConfig::load(cx)?;
        let settings = Settings::from_config(&config)?;
        let schema_file = settings.file.clone().unwrap_or_else(|| cx.root.join("db/src/schema.rs"));
        let text = std::fs::read_to_string(&schema_file).with_context(|| {
            format!(
                "read the entities in {}\n  hint: set [print_schema] file in diesel.toml, or create it with `cargo xtask schema generate`",
                shown(&schema_file)
            )
        })?;
        let entities = parse::parse(&text).with_context(|| format!("parse {}", shown(&schema_file)))?;
        let url = cx.database_url()?;
        let dir = config.migration_dir(cx);
        let mut conn = db::connect::establish(&url)?;
        refuse_pending(&mut conn, &dir)?;

        let steps = diff::plan(&mut conn, &entities, &settings)?;
        if steps.is_empty() {
            eprintln!("no difference between {} and the database: nothing written", shown(&schema_file));
            return Ok(());
        }
        let (up, down) = diff::render(&steps, &shown(&schema_file));
        let folder = create_migration(&dir, &self.name, &up, &down)?;
        for step in &steps {
            eprintln!("  {}", step.summary);
        }
        eprintln!("created {} (up.sql, down.sql): review it, then `cargo xtask migration run`", shown(&folder));
        println!("{}", shown(&folder));
        Ok(())
    }
}

/// A diff against a database that lacks pending migrations would write them again.
fn refuse_pending(conn: &mut diesel::PgConnection, dir: &std::path::Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let applied: Vec<String> =
        super::runner::applied(conn)?.unwrap_or_default().into_iter().map(|a| a.version).collect();
    let pending: Vec<String> =
        source::load(dir)?.into_iter().filter(|m| !applied.contains(&m.version)).map(|m| m.name).collect();
    if !pending.is_empty() {
        bail!(
            "the database has {} pending migration(s) ({}): a diff now would repeat them\n  hint: run `cargo xtask migration run` first",
            pending.len(),
            pending.join(", ")
        );
    }
    Ok(())
}
