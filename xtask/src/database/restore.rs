//! `cargo xtask db restore FILE`: replace the database's data with a backup, in one transaction.

use std::path::{Path, PathBuf};

use anyhow::Result;
use dbkit::backup::table::TableRestore;

use crate::context::Context;
use crate::guard::GuardArgs;

/// Restore a backup, replacing the database's data
///
/// Checks the whole file first (every gzip member's CRC and length, pg_dump's header and
/// completion marker, every statement against what pg_dump writes): a corrupt, truncated,
/// foreign or crafted file is refused, with its line, before anything else happens. Then it
/// asks before replacing data (--yes for scripts; without a terminal and without --yes it
/// refuses), takes a safety backup (backups/railgun_pre_restore_*.sql.gz, unless
/// --no-safety-backup), and loads the file in one transaction over its own connection: an
/// error anywhere (reported with the failing statement), Ctrl-C, or this command being killed
/// leaves the database exactly as it was; COMMIT is sent only once every statement succeeded.
/// Afterwards it says which migrations the restored database still lacks.
///
/// The backup's SQL never runs as a superuser. With a superuser's URL it runs as
/// railgun_owner_<database> (a role without rights of its own, which then owns what the backup
/// creates), and the database is emptied first in the same transaction; with any other role's
/// URL it runs as that role. Event triggers and OWNER TO are left out; SECURITY DEFINER
/// functions are named. An extension that needs a superuser (dblink, postgis, ...) is refused
/// before anything runs unless allowed with --allow-extension.
///
/// An encrypted backup (.age) is decrypted as it is read, never to disk, with the age identity
/// in the file RAILGUN_BACKUP_IDENTITY names (environment or .env); a wrong key or a damaged or
/// tampered file is refused before anything is asked or restored.
///
/// Works against any DATABASE_URL (or --database-url), e.g. a new provider.
///
/// One table back (--table SCHEMA.TABLE [--as NEW_NAME]): only that table's definition, rows,
/// the sequences it owns (their values set), its indexes and constraints and its foreign keys to
/// itself, into the live database beside everything else, in one transaction, after the same
/// check and question; nothing else is touched and nothing emptied. Under its own name the table
/// must not exist (refused); --as NEW_NAME restores it beside the live one, in the same schema,
/// and renames what would collide: an index, constraint or sequence named TABLE_something
/// becomes NEW_NAME_something, any other name gets NEW_NAME_ in front. Left out, each named on
/// stderr: foreign keys to or from other tables (their rows may be gone), triggers, policies,
/// grants and any other statement naming the table in a shape this restore does not take. No
/// safety backup is taken: nothing existing is replaced. With a manifest in the backup, the
/// restored rows are checked against it (count and checksum).
///
/// Examples:
///   cargo xtask db restore backups/railgun_backup_20251226_143022.sql.gz
///   cargo xtask db restore s3://my-bucket/railgun/railgun_backup_20251226_143022.sql.gz.age
///   cargo xtask db restore backups/railgun_backup_20251226_143022.sql.gz --table public.users --as users_restored
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Restore {
    /// The backup to restore (railgun_backup_*.sql.gz or .sql.gz.age), or an object in a
    /// bucket, s3://BUCKET/PREFIX/NAME (credentials as for `db backup --to`), downloaded as it
    /// is into an unnamed temporary file first
    file: String,
    /// Do not back up the database before replacing its data
    #[arg(long)]
    no_safety_backup: bool,
    /// Where the safety backup goes
    #[arg(long, value_name = "DIR", default_value = "backups")]
    safety_dir: PathBuf,
    /// How long a statement may wait for a lock another session holds before the restore
    /// fails (and rolls back), naming that session: e.g. 5s, 500ms, 2m (a bare number is seconds)
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = lock_timeout)]
    lock_timeout: std::time::Duration,
    /// An extension the backup creates that needs a superuser (untrusted: dblink, postgis,
    /// postgres_fdw, ...), created by the superuser for the load (repeatable)
    #[arg(long, value_name = "NAME")]
    allow_extension: Vec<String>,
    /// Also create the backup's event triggers (left out by default: they fire for every later
    /// DDL, migrations included, with the rights of whoever runs it); needs a superuser's URL
    #[arg(long)]
    with_event_triggers: bool,
    /// Restore only this table, SCHEMA.TABLE (quote a part as in SQL: '"My Schema".users'),
    /// beside the live database's objects
    #[arg(long, value_name = "SCHEMA.TABLE")]
    table: Option<String>,
    /// With --table: the name it comes back under, in the same schema (default: its own, which
    /// must not exist); its indexes, constraints and sequences are renamed with it
    #[arg(long = "as", value_name = "NEW_NAME", requires = "table")]
    new_name: Option<String>,
    #[command(flatten)]
    guard: GuardArgs,
}

impl Restore {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        let options = dbkit::backup::restore::RestoreOptions {
            safety_dir: (!self.no_safety_backup).then(|| cx.user_path(&self.safety_dir)),
            load: dbkit::backup::load::LoadOptions {
                lock_timeout: self.lock_timeout,
                allowed_extensions: self.allow_extension,
                event_triggers: self.with_event_triggers,
            },
        };
        if let Some(table) = &self.table {
            let table = TableRestore::parse(table, self.new_name.as_deref())?;
            return dbkit::backup::table::restore_table_from(
                cx,
                &url,
                &self.file,
                &table,
                &self.guard.guard(),
                &options,
            );
        }
        if dbkit::backup::bucket::is_remote(&self.file) {
            return dbkit::backup::restore::restore_remote(cx, &url, &self.file, &self.guard.guard(), &options);
        }
        let path = cx.user_path(Path::new(&self.file));
        dbkit::backup::restore::restore_file(cx, &url, &path, &self.guard.guard(), &options)
    }
}

/// A positive duration, read as `railgun.toml`'s are (see [`dbkit::duration::parse`]).
fn lock_timeout(text: &str) -> Result<std::time::Duration, String> {
    match dbkit::duration::parse(text) {
        Ok(timeout) if timeout.is_zero() => Err("the lock timeout must be positive (0 would wait forever)".into()),
        Ok(timeout) => Ok(timeout),
        Err(e) => Err(dbkit::error::describe(&e)),
    }
}
