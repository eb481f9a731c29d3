//! `cargo xtask migration squash`: the migrations up to a version become one, proven first.

use anyhow::Result;
use dbkit::migration::source;
use dbkit::migration::squash::{self, Outcome};

use crate::context::{Context, Exit};

/// Squash the migrations up to VERSION into one, proven before any file changes
///
/// The squash's up.sql is what they make: pg_dump's schema and the rows they inserted (tables,
/// rows, then indexes, constraints and triggers); its down.sql drops what it made. Before a file
/// changes, the history and the squash are each applied to a throwaway database on the server of
/// DATABASE_URL: the same catalog and the same rows in every table, and the squash's down.sql
/// gives back an empty database, or nothing is written and each difference is shown (exit 1).
///
/// The squash keeps the version of VERSION and lists what it replaces in its metadata.toml: a
/// database that applied them all takes it as applied at its next `migration run` (its
/// bookkeeping rewritten in one transaction); a new one applies it; one part way through is
/// refused with what to do. Run `cargo xtask migration run` on each database after the squash
/// (diesel_cli would try to apply it over what exists).
#[derive(clap::Args)]
pub struct Squash {
    /// The last migration to squash (version or folder name)
    #[arg(long, value_name = "VERSION")]
    through: String,
    /// The squash's name (snake_case)
    #[arg(default_value = "squashed")]
    name: String,
    /// Prove it, write nothing
    #[arg(long)]
    dry_run: bool,
}

impl Squash {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        let migrations = source::load(&cx.migration_dir()?)?;
        match squash::squash(cx, &url, &migrations, &self.through, &self.name, self.dry_run)? {
            Outcome::Refused(findings) => {
                println!("the squash is not what the history makes ({}); nothing written:", findings.len());
                for finding in &findings {
                    println!("  {finding}");
                }
                Err(Exit(1).into())
            }
            Outcome::Proven { replaced, up_bytes } => {
                eprintln!(
                    "proven: one migration ({up_bytes} bytes of up.sql) makes what the {} up to {} make; nothing written (--dry-run)",
                    replaced.len(),
                    replaced.last().map(String::as_str).unwrap_or_default()
                );
                Ok(())
            }
            Outcome::Written { folder, replaced, up_bytes } => {
                eprintln!(
                    "proven and written: {} ({up_bytes} bytes of up.sql) replaces {} migrations, removed: {}",
                    folder.display(),
                    replaced.len(),
                    replaced.join(", ")
                );
                eprintln!("then: `cargo xtask migration run` on each database takes it as applied; commit the change");
                let ran = dbkit::migration::run_pending(cx, &url)?;
                if ran > 0 {
                    eprintln!("applied {ran} migration(s)");
                }
                Ok(())
            }
        }
    }
}
