//! Check a backup file: complete gzip, CRC, length, pg_dump's completion marker

use std::path::PathBuf;

use anyhow::Result;

use dbkit::backup::dump::mib;
use dbkit::backup::dumpfile;
use dbkit::backup::sealed::Identities;

use crate::context::Context;

/// Check a backup file: complete gzip, CRC, length, pg_dump's completion marker
///
/// Decompresses every gzip member (each checks its CRC and length), then checks that the SQL
/// starts with pg_dump's header and ends with its completion marker. Touches no database.
/// An encrypted backup (.age) is decrypted as it is read, in memory, with the age identity in
/// the file RAILGUN_BACKUP_IDENTITY names: a wrong key or a damaged or tampered file fails.
/// Exits non-zero, saying what is wrong, for a missing, empty, non-gzip, corrupt or truncated
/// file, and for a FIFO, socket or device (refused before it is read). Prints the file's path
/// on stdout when it is good.
#[derive(clap::Args)]
pub struct Verify {
    /// The backup to check (railgun_backup_*.sql.gz or .sql.gz.age)
    file: PathBuf,
}

impl Verify {
    pub fn run(self, cx: &Context) -> Result<()> {
        let path = cx.user_path(&self.file);
        let (file, summary) = dumpfile::open_any(&path, || Identities::from_setting(cx))?;
        let encrypted = if file.is_sealed() { ", decrypted" } else { "" };
        let manifest = match &summary.manifest {
            Some(manifest) => format!("a manifest of {} tables", manifest.tables.len()),
            None => "no manifest (made before manifests: `db drill` needs one)".into(),
        };
        eprintln!("backup is whole{encrypted}: {} of SQL in {}, {manifest}", mib(summary.sql), mib(summary.compressed));
        println!("{}", dbkit::error::escaped(&path.display().to_string()));
        Ok(())
    }
}
