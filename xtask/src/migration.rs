//! `cargo xtask migration`: the guide's migration commands, in diesel_cli's format and
//! bookkeeping, so diesel_cli and these commands can take turns on one database.

mod create;
mod generate;
mod redo;
mod revert;
mod run;
pub mod runner;
mod show;
pub mod source;
pub mod sql;

use anyhow::Result;
use url::Url;

use crate::context::Context;
use runner::Locked;

/// The guide's migration commands, in diesel_cli's format.
#[derive(clap::Subcommand)]
pub enum Migration {
    Create(create::Create),
    Generate(generate::Generate),
    Run(run::Run),
    Revert(revert::Revert),
    Redo(redo::Redo),
    Show(show::Show),
}

impl Migration {
    pub fn run(self, cx: &Context) -> Result<()> {
        match self {
            Migration::Create(cmd) => cmd.run(cx),
            Migration::Generate(cmd) => cmd.run(cx),
            Migration::Run(cmd) => cmd.run(cx),
            Migration::Revert(cmd) => cmd.run(cx),
            Migration::Redo(cmd) => cmd.run(cx),
            Migration::Show(cmd) => cmd.run(cx),
        }
    }
}

/// Applies pending migrations from disk under the migration lock; returns how many ran.
pub fn run_pending(cx: &Context, url: &Url) -> Result<usize> {
    let migrations = source::load(&source::migration_dir(cx)?)?;
    apply_pending(&mut Locked::acquire(url)?, &migrations)
}

/// Applies those of `migrations` the locked database has not applied, oldest first.
pub fn apply_pending(session: &mut Locked, migrations: &[source::MigrationFiles]) -> Result<usize> {
    let applied: std::collections::HashSet<String> = session.applied()?.into_iter().map(|a| a.version).collect();
    let pending: Vec<_> = migrations.iter().filter(|m| !applied.contains(&m.version)).collect();
    let mut unknown: Vec<&str> =
        applied.iter().filter(|v| !migrations.iter().any(|m| &m.version == *v)).map(String::as_str).collect();
    if !unknown.is_empty() {
        unknown.sort();
        eprintln!(
            "note: the database records {} that no migration folder has: {} ({})",
            if unknown.len() == 1 { "a version" } else { "versions" },
            unknown.join(", "),
            show::MISSING_HINT
        );
    }
    for migration in &pending {
        eprintln!("Running migration {}", migration.name);
        session.apply(migration)?;
    }
    Ok(pending.len())
}
