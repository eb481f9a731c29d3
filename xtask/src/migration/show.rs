//! `cargo xtask migration show`: which migrations are applied, which are pending, and which the
//! database knows that the disk does not.

use anyhow::Result;

use dbkit::migration::show::Listing;
use dbkit::migration::source;

use crate::context::Context;

/// Show every migration as `[X] name (applied at ...)` or `[ ] name`, then the counts
///
/// A version the database records but no folder has (a phantom: applied from another branch or
/// checkout) is listed as `[X] <name> (... NOT ON DISK ...)`, saying whether its down.sql was
/// recorded (`migration revert --phantom` reverts it), with how to inspect the bookkeeping. An applied migration whose up.sql
/// changed since it was applied is marked EDITED; a pending one older than the newest applied
/// one, OUT OF ORDER.
#[derive(clap::Args)]
pub struct Show {
    /// Print JSON on stdout instead (one object: migrations, applied, pending, missing_on_disk)
    #[arg(long)]
    json: bool,
    /// Fail (exit 1) when a migration is pending, edited since it was applied, or applied but
    /// missing on disk (for CI)
    #[arg(long)]
    check: bool,
}

impl Show {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        let migrations = source::load(&cx.migration_dir()?)?;
        let mut conn = dbkit::connect::establish(&url)?;
        let listing = Listing::read(&mut conn, migrations)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&listing.json())?);
        } else {
            print!("{listing}");
        }
        if let Some(note) = listing.missing_note() {
            eprintln!("{note}");
        }
        if self.check {
            listing.check()?;
        }
        Ok(())
    }
}
