//! `cargo xtask db drill [SOURCE]`: prove the newest backup restores, against its manifest.

use anyhow::{Result, bail};
use dbkit::backup::drill;
use dbkit::backup::load::LoadOptions;

use crate::context::Context;

/// Restore the newest backup into a throwaway database and check it against its manifest
///
/// SOURCE is a backup file, a folder (its newest backup, by the UTC time in the name), or
/// s3://BUCKET/PREFIX (its newest object; or s3://BUCKET/PREFIX/NAME for that one); without
/// it, where `db backup` writes: railgun.toml's [backup] to, else ./backups.
///
/// The backup is checked whole first (as `db verify`; an encrypted one is decrypted with the
/// identity in the file RAILGUN_BACKUP_IDENTITY names), then restored into a throwaway database
/// on DATABASE_URL's server, railgun_drill_<pid>_<microseconds>, through the same scanner and
/// least-rights loader as `db restore`. That database is dropped at the end, also after an
/// error; one left by a drill that was killed is dropped by the next drill. The database
/// DATABASE_URL names is never written to.
///
/// Every backup carries a manifest taken from the same snapshot as its dump: each table's row
/// count and content checksum (the sum of a 64-bit hash of each row's text, computed by the
/// server) and the applied migrations. The drill computes the same in the restored database and
/// prints one line per table on stdout: rows in the manifest, rows restored, and ok, ROWS
/// DIFFER, CONTENT DIFFERS, MISSING or NOT IN MANIFEST; then the migrations. It exits 1 on
/// any difference, and on a backup without a manifest (made before manifests: take a new one).
///
/// Examples:
///   cargo xtask db drill
///   cargo xtask db drill backups/railgun_backup_20251226_143022.sql.gz
///   cargo xtask db drill s3://my-bucket/railgun
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Drill {
    /// The backup file, folder of backups or s3://BUCKET/PREFIX[/NAME] to drill
    source: Option<String>,
    /// An extension the backup creates that needs a superuser (untrusted: dblink, postgis,
    /// postgres_fdw, ...), created by the superuser for the load (repeatable)
    #[arg(long, value_name = "NAME")]
    allow_extension: Vec<String>,
}

impl Drill {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        let source = match self.source {
            Some(source) => source,
            None => dbkit::backup::settings::load(cx)?.to.unwrap_or_else(|| "backups".into()),
        };
        let options = LoadOptions { allowed_extensions: self.allow_extension, ..LoadOptions::default() };
        let report = drill::drill(cx, &url, &source, &options)?;
        print!("{report}");
        if !report.ok() {
            let differences = report.differences();
            bail!(hint!("the restore of {} differs from its manifest: {}", report.backup, differences.join(", ");
                "the backup does not restore to what was backed up: do not rely on it; take a new backup, drill it, and look into what differs"));
        }
        eprintln!("drill passed: {} tables restored as the manifest says", report.tables.len());
        Ok(())
    }
}
