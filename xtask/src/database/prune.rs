//! `cargo xtask db prune DIR`: delete the backups a retention policy does not keep.

use std::path::PathBuf;

use anyhow::Result;
use dbkit::backup::retention;

use super::backup::RetentionArgs;
use crate::context::Context;

/// Delete the backups a retention policy does not keep
///
/// Keeps the newest N (--keep), and the newest backup of each of the last N days, ISO weeks and
/// months that have one (--keep-daily, --keep-weekly, --keep-monthly: grandfather-father-son),
/// by the UTC time in each backup's name; a backup any rule keeps is kept, the newest always.
/// Only complete files named railgun_backup_YYYYMMDD_HHMMSS[_N].sql.gz[.age] are counted or
/// deleted: anything else in DIR is left alone. Prints the paths deleted (or, with --dry-run,
/// that would be) on stdout, and on stderr which rule keeps each backup kept.
///
/// Examples:
///   cargo xtask db prune backups --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run
///   cargo xtask db prune /var/backups/railgun --keep 30
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Prune {
    /// The folder of backups
    #[arg(default_value = "backups")]
    dir: PathBuf,
    #[command(flatten)]
    retention: RetentionArgs,
    /// Only say what would be deleted
    #[arg(long)]
    dry_run: bool,
}

impl Prune {
    pub fn run(self, cx: &Context) -> Result<()> {
        let removed = retention::prune(&cx.user_path(&self.dir), &self.retention.policy(), None, self.dry_run)?;
        for path in removed {
            println!("{}", dbkit::error::escaped(&path.display().to_string()));
        }
        Ok(())
    }
}
