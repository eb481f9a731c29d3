//! `cargo xtask db backups [DIR]`: the backups a folder holds, and how far each checks out.

use std::path::{Path, PathBuf};

use anyhow::Result;
use dbkit::backup::bucket::Remote;
use dbkit::backup::inventory::{self, Check};
use dbkit::backup::sealed::Identities;
use dbkit::error::escaped;

use crate::context::Context;

/// List backups: name, size, age, encrypted or not, verified or not
///
/// Lists the files in DIR named as backups (railgun_backup_*.sql.gz[.age], and restores' safety
/// backups railgun_pre_restore_*), newest first, on stdout. VERIFIED says what was checked:
///   complete  a plain backup's last gzip members (CRC, length) and pg_dump's completion
///             marker: it was written to the end (cheap; a byte damaged in its middle passes)
///   header    an encrypted backup's age header (the rest cannot be read without the key)
///   whole     with --verify: read whole as `db verify` does (every gzip member, every statement,
///             pg_dump's header and marker; encrypted ones decrypted, every chunk authenticated,
///             with the identity in the file RAILGUN_BACKUP_IDENTITY names)
///   stored    (--to) an object under a backup's name: uploads complete only after the
///             backup checked out whole
///   FAILED    the check failed; why is said on stderr (and in the JSON)
/// Every backup `db backup` names was read back whole before it got its name; these checks say
/// whether the file is still what was written.
///
/// Examples:
///   cargo xtask db backups
///   cargo xtask db backups /var/backups/railgun --verify --json
///   cargo xtask db backups --to s3://my-bucket/railgun
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Backups {
    /// The folder of backups (default ./backups)
    dir: Option<PathBuf>,
    /// A bucket and prefix instead: s3://BUCKET/PREFIX (credentials as for `db backup --to`).
    /// Objects are `stored` (completed only after the backup checked out), `whole` with --verify
    /// (downloaded and checked as they stream, nothing written to disk)
    #[arg(long, value_name = "URL", conflicts_with = "dir")]
    to: Option<String>,
    /// Read every backup whole (decrypting encrypted ones), as `db verify` does
    #[arg(long)]
    verify: bool,
    /// One JSON array on stdout: name, path, kind (backup or safety), bytes, started (UTC),
    /// age_seconds, encrypted, check (complete, header, stored, whole, failed), verified, problem
    #[arg(long)]
    json: bool,
}

impl Backups {
    pub fn run(self, cx: &Context) -> Result<()> {
        let keys = || Identities::from_setting(cx);
        let keys = self.verify.then_some(&keys as _);
        let entries = match (&self.dir, &self.to) {
            (None, Some(to)) => inventory::list_remote(&Remote::open(cx, to)?, keys)?,
            (dir, _) => inventory::list(&cx.user_path(dir.as_deref().unwrap_or(Path::new("backups"))), keys)?,
        };
        if self.json {
            let rows: Vec<serde_json::Value> = entries
                .iter()
                .map(|e| {
                    serde_json::json!({
                        "name": e.name,
                        "path": e.path,
                        "kind": if e.safety { "safety" } else { "backup" },
                        "bytes": e.bytes,
                        "started": e.started.map(|s| s.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
                        "age_seconds": e.age_seconds,
                        "encrypted": e.encrypted,
                        "check": e.check.word(),
                        "verified": e.check.ok(),
                        "problem": match &e.check { Check::Failed(why) => Some(why), _ => None },
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(rows));
            return Ok(());
        }
        if entries.is_empty() {
            eprintln!("no backups there");
            return Ok(());
        }
        println!("{:<46} {:>10} {:>8} {:<9} VERIFIED", "NAME", "SIZE", "AGE", "ENCRYPTED");
        for e in &entries {
            let verified = if e.check.ok() { e.check.word() } else { "FAILED" };
            let age = e.age_seconds.map_or_else(|| "?".to_string(), inventory::age);
            let encrypted = if e.encrypted { "yes" } else { "no" };
            println!(
                "{:<46} {:>10} {age:>8} {encrypted:<9} {verified}",
                escaped(&e.name),
                dbkit::backup::dump::mib(e.bytes)
            );
            if let Check::Failed(why) = &e.check {
                eprintln!("{}: {why}", escaped(&e.name));
            }
        }
        Ok(())
    }
}
