//! Check a backup file: complete gzip, CRC, length, pg_dump's completion marker

use std::path::PathBuf;

use anyhow::Result;

use dbkit::backup::dump::mib;
use dbkit::backup::dumpfile;

use crate::context::Context;

/// Check a backup file: complete gzip, CRC, length, pg_dump's completion marker
///
/// Decompresses every gzip member (each checks its CRC and length), then checks that the SQL
/// starts with pg_dump's header and ends with its completion marker. Touches no database.
/// Exits non-zero, saying what is wrong, for a missing, empty, non-gzip, corrupt or truncated
/// file, and for a FIFO, socket or device (refused before it is read). Prints the file's path
/// on stdout when it is good.
#[derive(clap::Args)]
pub struct Verify {
    /// The backup to check (railgun_backup_*.sql.gz)
    file: PathBuf,
}

impl Verify {
    pub fn run(self, cx: &Context) -> Result<()> {
        let path = cx.user_path(&self.file);
        let summary = dumpfile::verify_file(&path)?;
        eprintln!("backup is whole: {} of SQL in {}", mib(summary.sql), mib(summary.compressed));
        println!("{}", dbkit::error::escaped(&path.display().to_string()));
        Ok(())
    }
}
