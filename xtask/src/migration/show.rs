//! `cargo xtask migration show`: which migrations are applied, which are pending, and which the
//! database knows that the disk does not.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use dbkit::migration::MISSING_HINT;
use dbkit::migration::runner::{self, Applied};
use dbkit::migration::source;

use crate::context::Context;

/// Show every migration as `[X] name (applied at ...)` or `[ ] name`, then the counts
///
/// A version the database records but no folder has is listed as `[X] <version> (... not on
/// disk)`, with how to inspect `__diesel_schema_migrations`.
#[derive(clap::Args)]
pub struct Show {
    /// Print JSON on stdout instead (one object: migrations, applied, pending, missing_on_disk)
    #[arg(long)]
    json: bool,
    /// Fail (exit 1) when a migration is pending or an applied one is missing on disk (for CI)
    #[arg(long)]
    check: bool,
}

struct Row {
    name: Option<String>,
    version: String,
    applied: Option<Applied>,
}

impl Show {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        let migrations = source::load(&cx.migration_dir()?)?;
        let mut conn = dbkit::connect::establish(&url)?;
        let applied = runner::applied(&mut conn)?.unwrap_or_default();
        let mut rows: BTreeMap<String, Row> = migrations
            .into_iter()
            .map(|m| (m.version.clone(), Row { name: Some(m.name), version: m.version, applied: None }))
            .collect();
        for a in applied {
            let row = rows.entry(a.version.clone()).or_insert_with(|| Row {
                name: None,
                version: a.version.clone(),
                applied: None,
            });
            row.applied = Some(a);
        }
        let pending: Vec<&Row> = rows.values().filter(|r| r.applied.is_none()).collect();
        let missing: Vec<&Row> = rows.values().filter(|r| r.name.is_none()).collect();
        let applied_count = rows.len() - pending.len();
        if self.json {
            println!("{}", serde_json::to_string_pretty(&json(&rows, applied_count, pending.len(), missing.len()))?);
        } else {
            for row in rows.values() {
                let mark = if row.applied.is_some() { 'X' } else { ' ' };
                let name = row.name.as_deref().unwrap_or(&row.version);
                match (&row.applied, &row.name) {
                    (Some(a), Some(_)) => {
                        println!("[{mark}] {name} (applied at {} UTC)", a.run_on.format("%Y-%m-%d %H:%M:%S"))
                    }
                    (Some(a), None) => println!(
                        "[{mark}] {name} (applied at {} UTC, NOT ON DISK)",
                        a.run_on.format("%Y-%m-%d %H:%M:%S")
                    ),
                    (None, _) => println!("[{mark}] {name}"),
                }
            }
            let mut counts = format!("{applied_count} applied, {} pending", pending.len());
            if !missing.is_empty() {
                counts.push_str(&format!(", {} applied but not on disk", missing.len()));
            }
            println!("{counts}");
        }
        if !missing.is_empty() {
            let versions: Vec<&str> = missing.iter().map(|r| r.version.as_str()).collect();
            eprintln!(
                "note: the database records {} that no migration folder has: {}\n  {MISSING_HINT}",
                if missing.len() == 1 { "a version" } else { "versions" },
                versions.join(", ")
            );
        }
        if self.check {
            if !pending.is_empty() {
                let names: Vec<&str> = pending.iter().filter_map(|r| r.name.as_deref()).collect();
                bail!(
                    hint!("{} pending migration(s): {}", pending.len(), names.join(", "); "apply them with `cargo xtask migration run`")
                );
            }
            if !missing.is_empty() {
                bail!(
                    "the database has {} applied migration(s) that are not on disk (see the note above)",
                    missing.len()
                );
            }
        }
        Ok(())
    }
}

fn json(rows: &BTreeMap<String, Row>, applied: usize, pending: usize, missing: usize) -> serde_json::Value {
    let migrations: Vec<serde_json::Value> = rows
        .values()
        .map(|row| {
            serde_json::json!({
                "name": row.name,
                "version": row.version,
                "applied": row.applied.is_some(),
                "applied_at": row.applied.as_ref().map(|a| a.run_on.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                "on_disk": row.name.is_some(),
            })
        })
        .collect();
    serde_json::json!({
        "migrations": migrations,
        "applied": applied,
        "pending": pending,
        "missing_on_disk": missing,
    })
}
