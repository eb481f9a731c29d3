//! `cargo xtask db backup`: back up the database to a verified, gzipped SQL file.

use std::path::{Path, PathBuf};

use anyhow::Result;
use dbkit::backup::bucket::Remote;
use dbkit::backup::dump::{self as backup, DumpOptions, PREFIX};
use dbkit::backup::retention::{self, Policy};

use crate::context::Context;

/// Back up the database to a verified, gzipped SQL file
///
/// Writes DIR/railgun_backup_YYYYMMDD_HHMMSS.sql.gz (UTC, mode 0600) and prints its path as the
/// last line on stdout. The file gets its name only once pg_dump finished, the data is on disk
/// and the file decompresses whole (every gzip member's CRC and length, pg_dump's completion
/// marker): an interrupted backup leaves nothing behind, and an existing file is never replaced.
/// Backups started within one second are named ..._HHMMSS_2.sql.gz, _3, and so on.
///
/// When pg_dump waits for a lock (a migration's ACCESS EXCLUSIVE), stderr says which session
/// holds it: relation, pid, application_name and state.
///
/// With --encrypt (or encrypt = true in railgun.toml's [backup]), the gzip is encrypted with age
/// as it is written, to the public keys in [backup] recipients = ["age1..."], and the file is
/// named ...sql.gz.age: the plaintext never reaches the disk. It is checked as it is written
/// (the gzip members, pg_dump's header and marker) and read back byte for byte. `db verify`
/// and `db restore` decrypt it with the identity in the file RAILGUN_BACKUP_IDENTITY names;
/// so does `age -d -i KEYFILE`.
///
/// The dump is plain SQL made with `--clean --if-exists --no-owner --no-privileges`: it restores
/// over a database that already has the objects, on any provider.
///
/// pg_dump is the host's when its major version is at least the server's; otherwise it runs in
/// the project's Postgres container or a throwaway container of a local Postgres image
/// (RAILGUN_PGTOOLS=host|container|image forces one). The password goes through PGPASSWORD.
///
/// With --mask, the rows are masked by railgun.toml's [mask] rules as `db copy --mask` masks
/// them (see `cargo xtask db copy --help`): by the server, in one read-only snapshot, before
/// they leave it, so the unmasked rows never reach this machine's disk. The file is pg_dump's
/// format still (pg_dump's schema, the masked rows as COPY blocks): `db verify` and `db restore`
/// take it as any backup. Columns that look personal and have no rule stop it before any row
/// moves (--unmasked backs them up as they are, and names them).
///
/// Examples:
///   cargo xtask db backup
///   cargo xtask db backup --mask
///   cargo xtask db backup /var/backups/railgun --keep 14
///   cargo xtask db backup --keep-daily 7 --keep-weekly 4 --keep-monthly 12
///   cargo xtask db backup --encrypt
///   cargo xtask db backup --encrypt --to s3://my-bucket/railgun
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Backup {
    /// Where to write the backup (created if missing); without it, --to or railgun.toml's
    /// [backup] to, else ./backups
    dir: Option<PathBuf>,
    /// Object storage to upload the backup to: s3://BUCKET/PREFIX, any S3-compatible store
    /// (AWS_ENDPOINT_URL), credentials from AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
    /// AWS_SESSION_TOKEN, AWS_REGION (environment or .env). Uploaded in parts while pg_dump
    /// runs (no local copy); the object appears only once the whole backup checked out, and
    /// an upload that fails or is killed leaves no object (the next run aborts a killed one's
    /// parts). Prints s3://BUCKET/PREFIX/railgun_backup_....sql.gz[.age] on stdout
    #[arg(long, value_name = "URL", conflicts_with = "dir")]
    to: Option<String>,
    #[command(flatten)]
    retention: RetentionArgs,
    /// Encrypt the backup with age to railgun.toml's [backup] recipients (on by default with
    /// [backup] encrypt = true)
    #[arg(long)]
    encrypt: bool,
    /// Mask the rows by railgun.toml's [mask] rules before they leave the server (see above);
    /// written to DIR (else ./backups), never to a bucket
    #[arg(long, conflicts_with = "to")]
    mask: bool,
    /// With --mask: back up columns that look personal and have no rule as they are (named on stderr)
    #[arg(long, requires = "mask")]
    unmasked: bool,
    #[command(flatten)]
    dump: DumpArgs,
}

impl Backup {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        let settings = dbkit::backup::settings::load(cx)?;
        let mut dump = self.dump.options();
        if self.encrypt || settings.encrypt {
            dump.encrypt_to = dbkit::backup::sealed::recipients(&settings.recipients)?;
        }
        let policy = self.retention.policy();
        let to = if self.dir.is_some() || self.mask { None } else { self.to.or(settings.to) };
        if let Some(to) = to {
            let remote = Remote::open(cx, &to)?;
            let name = backup::create_remote(cx, &url, &remote, &dump)?;
            if !policy.is_empty() {
                retention::prune_remote(&remote, &policy, Some(&name), false)?;
            }
            println!("{}{}", remote.shown, dbkit::error::escaped(&name));
            return Ok(());
        }
        let dir = cx.user_path(self.dir.as_deref().unwrap_or(Path::new("backups")));
        let path = match self.mask {
            true => dbkit::backup::masked_dump::create(cx, &url, &dir, &dump, self.unmasked)?,
            false => backup::create(cx, &url, &dir, PREFIX, &dump)?,
        };
        if !policy.is_empty() {
            retention::prune(&dir, &policy, Some(&path), false)?;
        }
        println!("{}", dbkit::error::escaped(&path.display().to_string()));
        Ok(())
    }
}

/// What goes into the dump. Managed Postgres (Supabase) keeps its own schemas, extensions and
/// event triggers in every database; restored elsewhere they fail, so they are left out.
#[derive(clap::Args, Clone, Debug)]
pub struct DumpArgs {
    /// Leave out schemas matching PATTERN (pg_dump's --exclude-schema; repeatable)
    #[arg(long, value_name = "PATTERN")]
    pub exclude_schema: Vec<String>,
    /// Keep a managed provider's own schemas. By default, when the database has any of Supabase's
    /// schemas (auth, storage, realtime, _realtime, supabase_functions, supabase_migrations,
    /// graphql, graphql_public, pgsodium, pgsodium_masks, vault, pgbouncer, net, cron, _analytics),
    /// they are left out, along with the extensions that live in them or own them, event
    /// triggers and publications: the dump then holds your schemas and your extensions only
    #[arg(long)]
    pub keep_managed_schemas: bool,
    /// Keep ownership (ALTER ... OWNER TO): the roles must exist where the dump is restored
    #[arg(long)]
    pub with_owners: bool,
    /// Keep GRANTs and REVOKEs: restored where their roles exist, left out (and named) where not
    #[arg(long)]
    pub with_privileges: bool,
    /// gzip level, 1 (fastest) to 9 (smallest). 8: zlib-rs at 6 makes files ~2% larger than GNU
    /// gzip -6 on some data; at 8 they are smaller, and members compress in parallel anyway
    #[arg(long, value_name = "1-9", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=9))]
    pub compression_level: u32,
}

impl DumpArgs {
    pub fn options(&self) -> DumpOptions {
        let DumpArgs { exclude_schema, keep_managed_schemas, with_owners, with_privileges, compression_level } = self;
        DumpOptions {
            exclude_schema: exclude_schema.clone(),
            keep_managed_schemas: *keep_managed_schemas,
            with_owners: *with_owners,
            with_privileges: *with_privileges,
            compression_level: *compression_level,
            encrypt_to: Vec::new(),
        }
    }
}

/// Which backups to keep once a backup is made (`db backup`) or when asked (`db prune`). Only
/// files named exactly railgun_backup_YYYYMMDD_HHMMSS[_N].sql.gz[.age] count, by the UTC time in
/// that name, and only complete ones dated at most a day ahead; any other file is left alone
/// (said on stderr). A backup any rule keeps is kept, and the newest always is.
#[derive(clap::Args, Clone, Debug)]
pub struct RetentionArgs {
    /// Keep the newest N backups, delete the older ones that no other rule keeps
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: Option<u32>,
    /// Keep the newest backup of each of the last N days (UTC) that have one
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_daily: Option<u32>,
    /// Keep the newest backup of each of the last N ISO weeks that have one
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_weekly: Option<u32>,
    /// Keep the newest backup of each of the last N months that have one
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_monthly: Option<u32>,
}

impl RetentionArgs {
    pub fn policy(&self) -> Policy {
        Policy {
            last: self.keep.unwrap_or(0),
            daily: self.keep_daily.unwrap_or(0),
            weekly: self.keep_weekly.unwrap_or(0),
            monthly: self.keep_monthly.unwrap_or(0),
        }
    }
}
