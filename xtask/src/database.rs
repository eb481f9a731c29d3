//! `cargo xtask db`: backups, restores, provider moves, seeds, roles and the security audit.

mod audit;
pub(crate) mod backup;
mod backups;
pub(crate) mod copy;
mod drill;
mod prune;
mod restore;
mod roles;
mod seed;
mod verify;

use anyhow::Result;

use crate::context::Context;

/// Backups, restores, provider moves, seeds, roles and the security audit.
#[derive(clap::Subcommand)]
pub enum Database {
    Backup(backup::Backup),
    Restore(restore::Restore),
    Verify(verify::Verify),
    Backups(backups::Backups),
    Drill(drill::Drill),
    Prune(prune::Prune),
    Copy(copy::Copy),
    Seed(seed::Seed),
    Roles(roles::Roles),
    Audit(audit::Audit),
}

impl Database {
    pub fn run(self, cx: &Context) -> Result<()> {
        match self {
            Database::Backup(cmd) => cmd.run(cx),
            Database::Restore(cmd) => cmd.run(cx),
            Database::Verify(cmd) => cmd.run(cx),
            Database::Backups(cmd) => cmd.run(cx),
            Database::Drill(cmd) => cmd.run(cx),
            Database::Prune(cmd) => cmd.run(cx),
            Database::Copy(cmd) => cmd.run(cx),
            Database::Seed(cmd) => cmd.run(cx),
            Database::Roles(cmd) => cmd.run(cx),
            Database::Audit(cmd) => cmd.run(cx),
        }
    }
}
