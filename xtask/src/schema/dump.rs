//! `cargo xtask schema dump`: the schema as SQL (db/structure.sql), for review.

use std::path::PathBuf;

use anyhow::Result;
use dbkit::schema::{dump, write_if_changed};

use crate::context::Context;

/// Write db/structure.sql: the database's schema as SQL (pg_dump --schema-only, normalized), for review
///
/// Indexes, defaults, constraints, triggers, functions, views and grants, which schema.rs does
/// not show, in a file whose diff in a pull request is the schema change: no versions or
/// timestamps, no session settings, no owners (they are whichever role migrated), pg_dump's
/// order by kind and name, no migration bookkeeping. Two runs on one schema give the same bytes.
///
/// The file is railgun.toml's `[schema] dump = "db/structure.sql"` (from its folder), else
/// db/structure.sql. Configured there, `migration run`, `revert` and `redo` rewrite it and
/// `doctor` checks it.
///
/// Examples:
///   cargo xtask schema dump
///   cargo xtask schema dump --check
///   cargo xtask schema dump --stdout | less
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Dump {
    /// Write nothing; print the diff and fail if the file differs from the database (for CI)
    #[arg(long)]
    check: bool,
    /// Print the dump on stdout instead of writing the file
    #[arg(long, conflicts_with = "check")]
    stdout: bool,
    /// The file (default: railgun.toml's [schema] dump, else db/structure.sql)
    #[arg(short, long, value_name = "FILE", conflicts_with = "stdout")]
    output: Option<PathBuf>,
}

impl Dump {
    pub fn run(self, cx: &Context) -> Result<()> {
        let text = dump::dump(cx, &cx.database_url()?)?;
        if self.stdout {
            print!("{text}");
            return Ok(());
        }
        let file = match &self.output {
            Some(file) => cx.user_path(file),
            None => dump::path(cx)?,
        };
        if !self.check {
            return write_if_changed(&file, &text);
        }
        if let Some(diff) = dump::diff(&file, &text)? {
            print!("{diff}");
            return Err(dump::stale(&file, &diff));
        }
        eprintln!("{} is up to date", file.display());
        Ok(())
    }
}
