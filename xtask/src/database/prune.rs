//! `cargo xtask db prune DIR`: delete the backups a retention policy does not keep.

use std::path::{Path, PathBuf};

use anyhow::Result;
use dbkit::backup::bucket::Remote;
use dbkit::backup::retention;

use super::backup::RetentionArgs;
use crate::context::Context;

/// Delete the backups a retention policy does not keep
///
/// Keeps the newest N (--keep), and the newest backup of each of the last N days, ISO weeks and
/// months that have one (--keep-daily, --keep-weekly, --keep-monthly: grandfather-father-son),
/// by the UTC time in each backup's name; a backup any rule keeps is kept, the newest always.
/// Only complete files named railgun_backup_YYYYMMDD_HHMMSS[_N].sql.gz[.age] are counted or
/// deleted: anything else in DIR (or under the bucket's prefix) is left alone. Prints the paths deleted (or, with --dry-run,
/// that would be) on stdout, and on stderr which rule keeps each backup kept.
///
/// Examples:
///   cargo xtask db prune backups --keep-daily 7 --keep-weekly 4 --keep-monthly 12 --dry-run
///   cargo xtask db prune /var/backups/railgun --keep 30
///   cargo xtask db prune --to s3://my-bucket/railgun --keep-daily 7 --keep-monthly 12
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Prune {
    /// The folder of backups (default ./backups)
    dir: Option<PathBuf>,
    /// The bucket and prefix of backups instead: s3://BUCKET/PREFIX (credentials as for
    /// `db backup --to`)
    #[arg(long, value_name = "URL", conflicts_with = "dir")]
    to: Option<String>,
    #[command(flatten)]
    retention: RetentionArgs,
    /// Only say what would be deleted
    #[arg(long)]
    dry_run: bool,
}

impl Prune {
    pub fn run(self, cx: &Context) -> Result<()> {
        let policy = self.retention.policy();
        let removed = match (&self.dir, &self.to) {
            (None, Some(to)) => retention::prune_remote(&Remote::open(cx, to)?, &policy, None, self.dry_run)?,
            (dir, _) => {
                let dir = cx.user_path(dir.as_deref().unwrap_or(Path::new("backups")));
                let removed = retention::prune(&dir, &policy, None, self.dry_run)?;
                removed.iter().map(|p| p.display().to_string()).collect()
            }
        };
        for shown in removed {
            println!("{}", dbkit::error::escaped(&shown));
        }
        Ok(())
    }
}
