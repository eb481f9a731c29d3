//! `cargo xtask migration accept VERSION`: take an applied migration's edited up.sql as what was
//! applied, once someone has checked that the database matches it.

use anyhow::{Result, bail};
use dbkit::migration::{Locked, Plan, Verdict, checksum, source};

use crate::context::Context;

/// Record an applied migration's current up.sql as the one applied (after reviewing an edit)
///
/// `migration run` refuses while an applied migration's up.sql differs from what was applied.
/// When the edit changes nothing the database needs (a comment, formatting, or a change you
/// made by hand as well), accept it: its checksum becomes the file's. Nothing else changes.
#[derive(clap::Args)]
pub struct Accept {
    /// The migration's version (e.g. 20240101000001) or its folder's name
    #[arg(value_name = "VERSION")]
    migration: String,
}

impl Accept {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        let migrations = source::load(&cx.migration_dir()?)?;
        let Some(migration) = migrations.iter().find(|m| m.version == self.migration || m.name == self.migration)
        else {
            bail!(
                hint!("no migration has the version or name {}", self.migration; "`cargo xtask migration show` lists them; the version is the folder's timestamp without dashes")
            );
        };
        let mut session = Locked::acquire(&url)?;
        let plan = Plan::read(&mut session.conn, &migrations)?;
        let Some(applied) = plan.applied.iter().find(|a| a.version == migration.version) else {
            bail!(
                hint!("{} is not applied: there is nothing to accept", migration.name; "`cargo xtask migration run` applies it")
            );
        };
        let now = checksum::current(migration)?;
        match plan.verdicts.get(&migration.version) {
            Some(Verdict::Unchanged) => eprintln!("{}: up.sql is what was applied; nothing to accept", migration.name),
            Some(Verdict::Cosmetic) => {
                checksum::record(&mut session.conn, migration, &migration.sql("up.sql")?, applied.run_on)?;
                eprintln!(
                    "accepted {}: it changed in comments, whitespace or keyword case only (the same tokens as applied; `migration run` would have taken it too): its checksum is now {now}",
                    migration.name
                );
            }
            Some(Verdict::Edited { recorded, .. }) => {
                eprintln!(
                    "{}: its statements changed since it was applied (not only comments, whitespace or keyword case), or no up.sql was recorded to compare with",
                    migration.name
                );
                checksum::record(&mut session.conn, migration, &migration.sql("up.sql")?, applied.run_on)?;
                eprintln!("accepted {}: its checksum is now {now} (was {recorded})", migration.name);
            }
            _ => {
                checksum::record(&mut session.conn, migration, &migration.sql("up.sql")?, applied.run_on)?;
                eprintln!("accepted {}: recorded its checksum {now} (it had none)", migration.name);
            }
        }
        Ok(())
    }
}
