//! Restore a backup, replacing the database's data

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::url::{database_name, redact, redact_str};
use anyhow::{Context as _, Result, anyhow};
use diesel::RunQueryDsl;
use url::Url;

use super::dump::{self as backup, DumpOptions, mib};
use super::dumpfile;
use super::load::{self, Load, LoadOptions, LockTimeout};
use super::lockwatch::LockWatch;
use super::pgtools::PgTools;
use super::progress::{Progress, Task, Total};
use super::sealed::Identities;
use crate::context::Context;
use crate::guard::Guard;
use crate::migration::{runner, source};

/// The safety backup taken before a restore: never pruned by `db backup --keep`.
pub const SAFETY_PREFIX: &str = "railgun_pre_restore_";

/// Restores the backup at `path` into `url`: the whole file is checked first (nothing else
/// happens to a refused file), `guard` asks, a safety backup goes into `safety` (when given),
/// then one transaction replaces the data; afterwards it says which migrations the database lacks.
pub fn restore_file(cx: &Context, url: &Url, path: &Path, guard: &Guard, options: &RestoreOptions) -> Result<()> {
    // One open file, verified and then loaded: a file swapped under its name meanwhile is not
    // read. An encrypted one is decrypted twice as it is read (the check, then the load), with
    // the key from RAILGUN_BACKUP_IDENTITY: a wrong key or a tampered file stops here.
    let (file, summary) = dumpfile::open_any(path, || Identities::from_setting(cx))
        .with_context(|| format!("{} is not a usable backup", path.display()))?;
    let encrypted = if file.is_sealed() { ", decrypted" } else { "" };
    eprintln!("{} is whole{encrypted}: {} of SQL", path.display(), mib(summary.sql));
    load::check_extensions(url, &summary.extensions, &options.load.allowed_extensions)?;
    let what = format!("replace the data in database `{}` with {}", database_name(url), path.display());
    guard.check(cx, url, &what)?;
    let saved = prepare(cx, url, options.safety_dir.as_deref())?;
    announce_safety(saved.as_deref());
    let expected = Total { bytes: Some(summary.sql), estimated: false, tables: Some(summary.tables) };
    load(url, file.sql()?, expected, options)?;
    check_migrations(cx, url)
}

/// Restores the backup object at `target` (`s3://BUCKET/PREFIX/NAME`) as [`restore_file`] does:
/// it is downloaded as it is (still encrypted when it is) into an unnamed temporary file, gone
/// when this process ends, which is then checked whole and loaded.
pub fn restore_remote(cx: &Context, url: &Url, target: &str, guard: &Guard, options: &RestoreOptions) -> Result<()> {
    let (prefix, name) = target.rsplit_once('/').filter(|(_, name)| !name.is_empty()).with_context(
        || hint!("`{target}` names no object"; "name the backup object: s3://BUCKET/PREFIX/railgun_backup_....sql.gz[.age] (cargo xtask db backups --to s3://BUCKET/PREFIX lists them)"),
    )?;
    let remote = super::bucket::Remote::open(cx, prefix)?;
    let copy = download(&remote, name)?;
    restore_file(cx, url, &copy.path(), guard, options)
}

/// The object `name` of `remote`, downloaded as it is (still encrypted when it is) into an
/// unnamed temporary file, gone when this process ends: read it at [`Downloaded::path`].
pub(super) fn download(remote: &super::bucket::Remote, name: &str) -> Result<Downloaded> {
    let shown = format!("{}{}", remote.shown, crate::error::escaped(name));
    let mut copy = dumpfile::Pending::create(&std::env::temp_dir(), name)?;
    let (object, size) = remote.get_sized(name)?;
    let progress = Progress::new(Task::Download, Total { bytes: size, ..Total::default() });
    let bytes =
        std::io::copy(&mut progress.reader(object), &mut copy.file).with_context(|| format!("download {shown}"))?;
    progress.done();
    eprintln!("downloaded {shown} ({}) into an unnamed temporary file", mib(bytes));
    Ok(Downloaded(copy))
}

/// A downloaded backup in an unnamed temporary file.
pub(super) struct Downloaded(dumpfile::Pending);

impl Downloaded {
    /// Where this process reads it.
    pub(super) fn path(&self) -> PathBuf {
        use std::os::fd::AsRawFd;
        PathBuf::from(format!("/proc/self/fd/{}", self.0.file.as_raw_fd()))
    }
}

/// Restores the backup at `path`, just written and verified by this process, into `url` in one
/// transaction, after a safety backup when `options` asks for one. Not read twice: the load
/// checks the file as it reads it (gzip's checksums, every statement, pg_dump's header and
/// marker) and commits only when all held.
pub fn restore(cx: &Context, url: &Url, path: &Path, options: &RestoreOptions) -> Result<()> {
    let file = dumpfile::open_checked(path)?;
    let saved = prepare(cx, url, options.safety_dir.as_deref())?;
    announce_safety(saved.as_deref());
    let expected = Total { bytes: dumpfile::sql_size(&file), ..Total::default() };
    load(url, dumpfile::sql_reader(file), expected, options)
}

/// How a restore goes about it.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Where the safety backup goes; none when None.
    pub safety_dir: Option<PathBuf>,
    pub load: LoadOptions,
}

/// Loads the verified backup's `sql` into `url` ([`Load`]), watching for locks its session waits
/// for; its progress is shown out of `expected`.
fn load(url: &Url, sql: impl std::io::Read + Send, expected: Total, options: &RestoreOptions) -> Result<()> {
    let lock_timeout = options.load.lock_timeout;
    eprintln!("restoring into {}", redact(url));
    let key = crate::secret::random_hex(16)?;
    let waits = LockWatch::start(url.clone(), format!("railgun-restore-{}", &key[..8]));
    let loaded = Load::start(url, &key, &options.load).and_then(|load| load.feed(sql, expected));
    let holder = waits.stop();
    match loaded {
        Err(e) if e.downcast_ref::<LockTimeout>().is_some() => {
            let holder =
                holder.map_or_else(|| "another session (it let go before we could see it)".into(), |h| h.to_string());
            Err(anyhow!(
                hint!("the restore waited {}ms for a lock and was rolled back: the database is as it was\n  held by: {holder}\n{}", lock_timeout.as_millis(), redact_str(&format!("{:#}", e.root_cause()))
                    ;
                "end that session's transaction (COMMIT, ROLLBACK, or SELECT pg_terminate_backend(PID)), or allow a longer wait with --lock-timeout")
            ))
        }
        other => other,
    }
}

/// Takes the safety backup into `safety_dir` when given (and the database holds anything).
pub(super) fn prepare(cx: &Context, url: &Url, safety_dir: Option<&Path>) -> Result<Option<PathBuf>> {
    Ok(match safety_dir {
        Some(_) if is_empty(url)? => {
            eprintln!("{} is empty: no safety backup needed", redact(url));
            None
        }
        Some(dir) => {
            eprintln!("taking a safety backup of {} first", redact(url));
            let tools = PgTools::find(&cx.sh, &cx.project, url)?;
            Some(backup::create_with(cx, &tools, url, dir, SAFETY_PREFIX, &DumpOptions::default())?)
        }
        None => None,
    })
}

/// True when the database holds nothing a backup would keep: no relation, function, type,
/// schema (but `public`), extension (but plpgsql) or large object of its own.
fn is_empty(url: &Url) -> Result<bool> {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let mut conn = crate::connect::establish(url)?;
    let count: Count = diesel::sql_query(
        "WITH own AS (SELECT oid FROM pg_namespace
                      WHERE nspname NOT IN ('pg_catalog', 'information_schema') AND nspname !~ '^pg_')
         SELECT (SELECT count(*) FROM pg_class WHERE relnamespace IN (SELECT oid FROM own))
              + (SELECT count(*) FROM pg_proc WHERE pronamespace IN (SELECT oid FROM own))
              + (SELECT count(*) FROM pg_type WHERE typnamespace IN (SELECT oid FROM own))
              + (SELECT count(*) FROM pg_namespace WHERE oid IN (SELECT oid FROM own) AND nspname <> 'public')
              + (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql')
              + (SELECT count(*) FROM pg_largeobject_metadata) AS n",
    )
    .get_result(&mut conn)
    .context("look for data to keep")?;
    Ok(count.n == 0)
}

pub(super) fn announce_safety(saved: Option<&Path>) {
    if let Some(saved) = saved {
        eprintln!(
            "safety backup: {}\n  (to undo the restore: cargo xtask db restore {})",
            saved.display(),
            saved.display()
        );
    }
}

/// Says which migrations on disk the database lacks (the backup is older than the code), and
/// which it has that are not on disk (newer than this checkout).
pub fn check_migrations(cx: &Context, url: &Url) -> Result<()> {
    let dir = cx.migration_dir()?;
    if !dir.is_dir() {
        return Ok(());
    }
    let on_disk = source::load(&dir)?;
    let mut conn = crate::connect::establish(url)?;
    let applied: HashSet<String> =
        runner::applied(&mut conn)?.unwrap_or_default().into_iter().map(|a| a.version).collect();
    let pending: Vec<&str> =
        on_disk.iter().filter(|m| !applied.contains(&m.version)).map(|m| m.name.as_str()).collect();
    let known: HashSet<&str> = on_disk.iter().map(|m| m.version.as_str()).collect();
    let unknown = applied.iter().filter(|v| !known.contains(v.as_str())).count();
    if pending.is_empty() {
        eprintln!("migrations: up to date ({} applied)", applied.len());
    } else {
        eprintln!(
            "migrations: {} on disk not applied to this database (the backup is older than the code): {}\n  next: cargo xtask migration run",
            pending.len(),
            pending.join(", ")
        );
    }
    if unknown > 0 {
        eprintln!(
            "migrations: {unknown} applied in this database are not on disk (the backup is newer than this checkout)"
        );
    }
    Ok(())
}
