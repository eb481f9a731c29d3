//! Backups: pg_dump's plain SQL, compressed on worker threads into a file that gets its name
//! only once it is on disk and read back whole.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::url::{redact, redact_str};
use anyhow::{Context as _, Result, bail};
use chrono::Timelike;
use diesel::RunQueryDsl;
use url::Url;

use super::dumpfile::{self, Pending};
use super::lockwatch::LockWatch;
use super::pgtools::{self, PgTools};
use super::progress::Progress;
use crate::context::Context;

/// The name every backup has: `railgun_backup_YYYYMMDD_HHMMSS.sql.gz`, in UTC (see [`BackupName`]).
pub const PREFIX: &str = "railgun_backup_";
const SUFFIX: &str = ".sql.gz";
use super::sealed::SUFFIX as SEALED;

/// How far ahead of this machine's clock a backup's time may be (another machine's clock)
/// before its name is taken for a mistake or a trick rather than a backup.
pub const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::days(1);

/// The most backups that get distinct names within one second (`_2` up to this).
const MAX_SEQ: u32 = 999;

/// A backup's file name, `{prefix}YYYYMMDD_HHMMSS[_N].sql.gz[.age]`: the UTC second its backup
/// started and, for the second and later backups started within that second, `_2`, `_3`, ...;
/// `.age` when it is encrypted. This type alone reads and writes that format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct BackupName {
    pub started: chrono::NaiveDateTime,
    /// 1 for the plain name, N for `_N`.
    pub seq: u32,
    /// Encrypted with age ([`super::sealed`]): the name ends in `.age`.
    pub sealed: bool,
}

impl BackupName {
    /// The name's parts. `None` when `name` does not have the pattern (not ours: never touched);
    /// `Some(Err(why))` when it has it but its digits are not a date and time.
    pub fn parse(prefix: &str, name: &str) -> Option<Result<BackupName, String>> {
        let rest = name.strip_prefix(prefix)?;
        let (rest, sealed) = rest.strip_suffix(SEALED).map_or((rest, false), |rest| (rest, true));
        let rest = rest.strip_suffix(SUFFIX)?;
        let (stamp, seq) = match rest.get(15..) {
            Some("") => (rest, 1),
            Some(tail) => {
                let digits = tail.strip_prefix('_')?;
                if digits.is_empty()
                    || digits.len() > 3
                    || digits.starts_with('0')
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                let seq: u32 = digits.parse().ok()?;
                if seq < 2 {
                    return None;
                }
                (&rest[..15], seq)
            }
            None => return None,
        };
        let bytes = stamp.as_bytes();
        if !(bytes[8] == b'_' && bytes.iter().enumerate().all(|(i, b)| i == 8 || b.is_ascii_digit())) {
            return None;
        }
        Some(
            chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%d_%H%M%S")
                .map(|started| BackupName { started, seq, sealed })
                .map_err(|_| format!("`{stamp}` is not a date and time")),
        )
    }

    pub fn render(&self, prefix: &str) -> String {
        let stamp = self.started.format("%Y%m%d_%H%M%S");
        let sealed = if self.sealed { SEALED } else { "" };
        match self.seq {
            1 => format!("{prefix}{stamp}{SUFFIX}{sealed}"),
            seq => format!("{prefix}{stamp}_{seq}{SUFFIX}{sealed}"),
        }
    }

    /// The names a backup started at `started` may take, in order: the plain one first.
    fn candidates(started: chrono::NaiveDateTime, prefix: &str, sealed: bool) -> impl Iterator<Item = String> {
        (1..=MAX_SEQ).map(move |seq| BackupName { started, seq, sealed }.render(prefix))
    }
}

/// What goes into the dump. Managed Postgres (Supabase) keeps its own schemas, extensions and
/// event triggers in every database; restored elsewhere they fail, so they are left out.
#[derive(Clone, Debug)]
pub struct DumpOptions {
    /// pg_dump's --exclude-schema patterns.
    pub exclude_schema: Vec<String>,
    /// Keep a managed provider's own schemas (see [`MANAGED_SCHEMAS`]).
    pub keep_managed_schemas: bool,
    /// Keep ownership (ALTER ... OWNER TO).
    pub with_owners: bool,
    /// Keep GRANTs and REVOKEs.
    pub with_privileges: bool,
    /// gzip level, 1 to 9.
    pub compression_level: u32,
    /// Encrypt the backup to these age recipients (none: not encrypted).
    pub encrypt_to: Vec<age::x25519::Recipient>,
}

impl Default for DumpOptions {
    fn default() -> DumpOptions {
        DumpOptions {
            exclude_schema: Vec::new(),
            keep_managed_schemas: false,
            with_owners: false,
            with_privileges: false,
            compression_level: 8,
            encrypt_to: Vec::new(),
        }
    }
}

/// Supabase's own schemas: present in every Supabase database, owned by its roles.
pub const MANAGED_SCHEMAS: &[&str] = &[
    "auth",
    "storage",
    "realtime",
    "_realtime",
    "supabase_functions",
    "supabase_migrations",
    "graphql",
    "graphql_public",
    "pgsodium",
    "pgsodium_masks",
    "vault",
    "pgbouncer",
    "net",
    "cron",
    "_analytics",
];

/// A row of one text column, `name`.
#[derive(diesel::QueryableByName)]
pub(super) struct Name {
    #[diesel(sql_type = diesel::sql_types::Text)]
    pub(super) name: String,
}

impl DumpOptions {
    /// pg_dump's arguments for the database at `url` (asks it which managed schemas it has).
    pub fn pg_dump_args(&self, url: &Url) -> Result<Vec<String>> {
        let mut args = vec!["--format=plain".to_string(), "--clean".into(), "--if-exists".into()];
        if !self.with_owners {
            args.push("--no-owner".into());
        }
        if !self.with_privileges {
            args.push("--no-privileges".into());
        }
        args.extend(self.exclude_schema.iter().map(|s| format!("--exclude-schema={s}")));
        if self.keep_managed_schemas {
            return Ok(args);
        }
        let (managed, extensions) = managed_objects(url)?;
        if managed.is_empty() {
            return Ok(args);
        }
        eprintln!("leaving out the provider's schemas: {} (--keep-managed-schemas keeps them)", managed.join(", "));
        // Naming schemas makes pg_dump leave out everything outside them (event triggers,
        // publications, extensions not named with --extension): exactly the provider's parts.
        args.push("--schema=*".into());
        args.push("-b".into()); // large objects, which naming schemas leaves out
        for schema in managed.iter().map(String::as_str).chain(["pg_*", "information_schema"]) {
            args.push(format!("--exclude-schema={schema}"));
        }
        args.extend(extensions.iter().map(|e| format!("--extension={e}")));
        Ok(args)
    }
}

/// The managed schemas present, and the extensions that are the user's (not in or owning one).
fn managed_objects(url: &Url) -> Result<(Vec<String>, Vec<String>)> {
    let mut conn = crate::connect::establish(url)?;
    let list = MANAGED_SCHEMAS.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(",");
    let managed: Vec<Name> = diesel::sql_query(format!(
        "SELECT nspname::text AS name FROM pg_namespace WHERE nspname IN ({list}) ORDER BY 1"
    ))
    .load(&mut conn)
    .context("list the provider's schemas")?;
    let extensions: Vec<Name> = diesel::sql_query(format!(
        "SELECT e.extname::text AS name FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname <> 'plpgsql' AND n.nspname NOT IN ({list})
           AND NOT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_namespace s ON s.oid = d.objid
                           WHERE d.classid = 'pg_namespace'::regclass AND d.refclassid = 'pg_extension'::regclass
                             AND d.refobjid = e.oid AND d.deptype = 'e' AND s.nspname IN ({list}))
           AND e.extname NOT IN ('pg_graphql', 'pg_net', 'pgsodium', 'supabase_vault', 'pg_cron')
         ORDER BY 1"
    ))
    .load(&mut conn)
    .context("list the extensions")?;
    Ok((managed.into_iter().map(|n| n.name).collect(), extensions.into_iter().map(|n| n.name).collect()))
}

/// Dumps the database at `url` into `dir/{prefix}YYYYMMDD_HHMMSS.sql.gz`, verified; returns its path.
pub fn create(cx: &Context, url: &Url, dir: &Path, prefix: &str, dump: &DumpOptions) -> Result<PathBuf> {
    let tools = PgTools::find(&cx.sh, &cx.project, url)?;
    create_with(cx, &tools, url, dir, prefix, dump)
}

/// [`create`] with pg_dump already found.
pub fn create_with(
    cx: &Context,
    tools: &PgTools,
    url: &Url,
    dir: &Path,
    prefix: &str,
    dump: &DumpOptions,
) -> Result<PathBuf> {
    let clock = Instant::now();
    let (path, summary) = write_file(dir, prefix, dump, |file, seal| {
        run_pg_dump(cx, tools, url, dump, |sql, shown| {
            dumpfile::compress_to(sql, file, seal, dump.compression_level, shown)
        })
    })?;
    report(&summary, dump, clock);
    Ok(path)
}

/// Writes the SQL `sql` reads (a whole pg_dump script: header, statements, completion marker)
/// into `dir/{prefix}YYYYMMDD_HHMMSS.sql.gz[.age]` as [`create`] writes pg_dump's, verified;
/// returns its path. The masked backup's way (see [`super::masked_dump`]).
pub fn create_from(dir: &Path, prefix: &str, dump: &DumpOptions, sql: impl Read) -> Result<PathBuf> {
    let clock = Instant::now();
    let (path, summary) = write_file(dir, prefix, dump, |file, seal| {
        let shown = Progress::new(super::progress::Task::Backup, super::progress::Total::default());
        let summary = dumpfile::compress_to(sql, file, seal, dump.compression_level, &shown);
        shown.done();
        summary
    })?;
    report(&summary, dump, clock);
    Ok(path)
}

/// A new backup file in `dir`, unnamed until `write` (given the file and the recipients to
/// encrypt to) has filled and verified it; then named `{prefix}YYYYMMDD_HHMMSS[_N].sql.gz[.age]`.
fn write_file(
    dir: &Path,
    prefix: &str,
    dump: &DumpOptions,
    write: impl FnOnce(&std::fs::File, Option<&[age::x25519::Recipient]>) -> Result<dumpfile::Summary>,
) -> Result<(PathBuf, dumpfile::Summary)> {
    // A file-size limit (ulimit -f) then fails a write with EFBIG instead of killing us.
    // SAFETY: setting a signal's disposition to SIG_IGN has no other effect.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    std::fs::create_dir_all(dir).with_context(
        || hint!("create backup directory {}", dir.display(); "choose a writable directory: cargo xtask db backup DIR"),
    )?;
    // Names have a one-second resolution: backups started within one second take `_2`, `_3`,
    // ... in the order they finish; the link that names a file fails on a name already taken.
    let started = chrono::Utc::now().naive_utc().with_nanosecond(0).unwrap_or_default();
    let sealed = !dump.encrypt_to.is_empty();
    let name = BackupName { started, seq: 1, sealed }.render(prefix);
    let pending = Pending::create(dir, &name)?;
    let seal = sealed.then_some(dump.encrypt_to.as_slice());
    let summary = write(&pending.file, seal)?;
    let path = pending.persist(BackupName::candidates(started, prefix, sealed))?;
    Ok((path, summary))
}

/// Dumps the database at `url` into object storage as `{PREFIX}YYYYMMDD_HHMMSS.sql.gz[.age]`
/// under the remote's prefix: a multipart upload while pg_dump runs (no local copy), completed
/// only once the whole backup checked out; a failed one is aborted. Returns the object's name.
pub fn create_remote(cx: &Context, url: &Url, remote: &super::bucket::Remote, dump: &DumpOptions) -> Result<String> {
    let tools = PgTools::find(&cx.sh, &cx.project, url)?;
    remote.abort_unfinished()?;
    let started = chrono::Utc::now().naive_utc().with_nanosecond(0).unwrap_or_default();
    let sealed = !dump.encrypt_to.is_empty();
    let mut name = None;
    for candidate in BackupName::candidates(started, PREFIX, sealed) {
        if !remote.exists(&candidate)? {
            name = Some(candidate);
            break;
        }
    }
    let name = name.context("no free name for the backup in the bucket")?;
    let clock = Instant::now();
    let mut upload = remote.upload(&name)?;
    let seal = sealed.then_some(dump.encrypt_to.as_slice());
    let (summary, upload, sent) = run_pg_dump(cx, &tools, url, dump, |sql, shown| {
        upload.show(shown);
        let counted = Counting { inner: upload, bytes: 0 };
        let (summary, counted) = dumpfile::compress_stream(sql, counted, seal, dump.compression_level, shown)?;
        Ok((summary, counted.inner, counted.bytes))
    })?;
    upload.finish(sent)?;
    report(&summary, dump, clock);
    Ok(name)
}

/// Counts the bytes that go through it.
struct Counting<W> {
    inner: W,
    bytes: u64,
}

impl<W: std::io::Write> std::io::Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn report(summary: &dumpfile::Summary, dump: &DumpOptions, clock: Instant) {
    let secs = clock.elapsed().as_secs_f64();
    let encrypted = match dump.encrypt_to.len() {
        0 => String::new(),
        1 => ", encrypted to 1 recipient".to_string(),
        n => format!(", encrypted to {n} recipients"),
    };
    eprintln!(
        "backup verified: {} of SQL in {} ({:.1}x smaller){encrypted}, {secs:.1}s",
        mib(summary.sql),
        mib(summary.compressed),
        summary.sql as f64 / summary.compressed.max(1) as f64
    );
}

/// Runs pg_dump on `url` and hands its output to `write` (with the progress line), watching for
/// the locks it waits for; pg_dump's failure is the error when it failed first.
fn run_pg_dump<T>(
    cx: &Context,
    tools: &PgTools,
    url: &Url,
    dump: &DumpOptions,
    write: impl FnOnce(Manifested<KeepPublicSchema<std::process::ChildStdout>>, &mut Progress) -> Result<T>,
) -> Result<T> {
    let mut args = dump.pg_dump_args(url)?;
    eprintln!("backing up {} with {}", redact(url), tools.describe());
    // Named, so that the lock watch finds pg_dump's session among the server's.
    let app = format!("railgun-backup-{}", crate::secret::random_hex(4)?);
    let manifest = Manifest::start(url, &app, super::copy::excluded_schemas(dump))?;
    args.push(format!("--snapshot={}", manifest.snapshot));
    let mut named = url.clone();
    named.query_pairs_mut().append_pair("application_name", &app);
    let mut child = tools
        .command(&cx.sh, "pg_dump", &named, &args)?
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("start pg_dump")?;
    let stdout = child.stdout.take().context("pg_dump's output")?;
    pgtools::widen_pipe(&stdout);
    let errors = pgtools::collect_errors(child.stderr.take().context("pg_dump's errors")?);
    let waits = LockWatch::start(url.clone(), app);
    let mut shown = Progress::backup(url, dump);
    let stdout = manifest.after(KeepPublicSchema::new(stdout, args.iter().any(|a| a == "--schema=*")));
    let result = write(stdout, &mut shown);
    shown.done();
    // After a failure of ours (a full disk), pg_dump may still be running: stop it. After its
    // own failure it has exited already, and its words are the ones to show.
    let mut stopped_by_us = false;
    if result.is_err() {
        let deadline = Instant::now() + Duration::from_millis(300);
        while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        stopped_by_us = child.try_wait().ok().flatten().is_none() && child.kill().is_ok();
    }
    let status = child.wait().context("wait for pg_dump")?;
    waits.stop();
    let errors = redact_str(errors.join().unwrap_or_default().trim());
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        let broken_pipe = status.signal() == Some(libc::SIGPIPE);
        match result {
            // We stopped reading (our write failed): our error says why.
            Err(ours) if broken_pipe || stopped_by_us => return Err(ours),
            _ => bail!(
                hint!("pg_dump failed ({status}); nothing was written\n{errors}"; "fix what pg_dump says above and run again")
            ),
        }
    }
    let written = result?;
    if !errors.is_empty() {
        eprintln!("{errors}");
    }
    Ok(written)
}

/// The manifest ([`super::manifest`]), taken on a thread of its own in the snapshot pg_dump
/// dumps (a REPEATABLE READ READ ONLY session whose snapshot pg_dump imports with `--snapshot`).
/// The session stays open until pg_dump is done: the snapshot lives as long as its transaction.
struct Manifest {
    snapshot: String,
    taking: std::thread::JoinHandle<(Result<super::manifest::Manifest>, super::stream::Source)>,
}

impl Manifest {
    fn start(url: &Url, app: &str, excluded: Vec<String>) -> Result<Manifest> {
        let mut source = super::stream::Source::open(url, &format!("{app}-manifest"))
            .context("open the backup's snapshot for its manifest")?;
        let snapshot = source.snapshot.clone();
        let taking = std::thread::spawn(move || (super::manifest::take(&mut source.session, &excluded), source));
        Ok(Manifest { snapshot, taking })
    }

    /// pg_dump's output `sql`, then the manifest's line.
    fn after<R: Read>(self, sql: R) -> Manifested<R> {
        Manifested { sql, tail: Vec::new(), taking: Some(self.taking), line: std::io::Cursor::new(Vec::new()) }
    }
}

/// pg_dump's output, and once it ended with pg_dump's completion marker, the manifest's line.
/// Without the marker (pg_dump failed or was killed) the manifest is not waited for: it may be
/// waiting for a lock that pg_dump's failure leaves in place.
pub(super) struct Manifested<R> {
    sql: R,
    tail: Vec<u8>,
    taking: Option<std::thread::JoinHandle<(Result<super::manifest::Manifest>, super::stream::Source)>>,
    line: std::io::Cursor<Vec<u8>>,
}

impl<R: Read> Manifested<R> {
    fn line(&mut self) -> Result<Vec<u8>> {
        let Some(taking) = self.taking.take() else { return Ok(Vec::new()) };
        if !self.tail.windows(dumpfile::MARKER.len()).any(|w| w == dumpfile::MARKER) {
            return Ok(Vec::new());
        }
        let (manifest, source) = taking.join().map_err(|_| anyhow::anyhow!("the manifest's thread panicked"))?;
        drop(source);
        let manifest = manifest.context("take the backup's manifest")?;
        let line = manifest.line()?;
        if line.is_none() {
            eprintln!(
                "note: {} tables are too many for a manifest line: this backup has none (`db drill` will say so)",
                manifest.tables.len()
            );
        }
        Ok(line.unwrap_or_default())
    }
}

impl<R: Read> Read for Manifested<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.taking.is_some() {
            let n = self.sql.read(buf)?;
            if n > 0 {
                dumpfile::keep_tail(&mut self.tail, &buf[..n], 1024);
                return Ok(n);
            }
            let line = self.line().map_err(|e| std::io::Error::other(format!("{e:#}")))?;
            self.line = std::io::Cursor::new(line);
        }
        self.line.read(buf)
    }
}

/// With schemas named (`--schema=*`), pg_dump drops and recreates `public` itself, which fails
/// on a server where `public` holds anything else or belongs to another role. Until the data
/// starts, those lines become `CREATE SCHEMA IF NOT EXISTS public;`; the rest passes untouched.
struct KeepPublicSchema<R> {
    inner: BufReader<R>,
    in_schema_part: bool,
    line: Vec<u8>,
    at: usize,
}

impl<R: Read> KeepPublicSchema<R> {
    fn new(inner: R, active: bool) -> KeepPublicSchema<R> {
        KeepPublicSchema {
            inner: BufReader::with_capacity(1 << 20, inner),
            in_schema_part: active,
            line: Vec::new(),
            at: 0,
        }
    }
}

impl<R: Read> Read for KeepPublicSchema<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.line.len() && self.in_schema_part {
            self.line.clear();
            self.at = 0;
            if self.inner.read_until(b'\n', &mut self.line)? == 0 {
                return Ok(0);
            }
            match self.line.as_slice() {
                b"DROP SCHEMA IF EXISTS public;\n" => self.line.clear(),
                b"CREATE SCHEMA public;\n" => self.line = b"CREATE SCHEMA IF NOT EXISTS public;\n".to_vec(),
                line if line.starts_with(b"COMMENT ON SCHEMA public ") => self.line.clear(),
                line if line.starts_with(b"COPY ") => self.in_schema_part = false,
                _ => {}
            }
        }
        if self.at < self.line.len() {
            let n = buf.len().min(self.line.len() - self.at);
            buf[..n].copy_from_slice(&self.line[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

/// `railgun_backup_YYYYMMDD_HHMMSS[_N].sql.gz` exactly (the digits not checked as a date).
pub fn is_backup_name(name: &str) -> bool {
    BackupName::parse(PREFIX, name).is_some()
}

pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::{BackupName, PREFIX, is_backup_name};

    #[test]
    fn backup_names() {
        assert!(is_backup_name("railgun_backup_20251226_143022.sql.gz"));
        assert!(is_backup_name("railgun_backup_20251226_143022_2.sql.gz"));
        assert!(is_backup_name("railgun_backup_20251226_143022_999.sql.gz"));
        for other in [
            "railgun_backup_20251226_143022.sql.gz.bak",
            "railgun_backup_2025122_143022.sql.gz",
            "railgun_backup_20251226-143022.sql.gz",
            "my_railgun_backup_20251226_143022.sql.gz",
            ".railgun_backup_20251226_143022.sql.gz.partial-12",
            "railgun_backup_20251226_143022_.sql.gz",
            "railgun_backup_20251226_143022_1.sql.gz",
            "railgun_backup_20251226_143022_02.sql.gz",
            "railgun_backup_20251226_143022_1000.sql.gz",
            "railgun_backup_20251226_143022_x.sql.gz",
        ] {
            assert!(!is_backup_name(other), "{other}");
        }
    }

    #[test]
    fn names_round_trip_and_order_by_time_then_sequence() {
        for name in ["railgun_backup_20251226_143022.sql.gz", "railgun_backup_20251226_143022_12.sql.gz"] {
            let parsed = BackupName::parse(PREFIX, name).unwrap().unwrap();
            assert_eq!(parsed.render(PREFIX), name);
        }
        let parse = |n: &str| BackupName::parse(PREFIX, n).unwrap().unwrap();
        let mut names = [
            parse("railgun_backup_20251226_143022_10.sql.gz"),
            parse("railgun_backup_20251226_143023.sql.gz"),
            parse("railgun_backup_20251226_143022_2.sql.gz"),
            parse("railgun_backup_20251226_143022.sql.gz"),
        ];
        names.sort();
        let seqs: Vec<u32> = names.iter().map(|n| n.seq).collect();
        assert_eq!(seqs, [1, 2, 10, 1]);
        for bad in [
            "railgun_backup_20251399_000000.sql.gz",
            "railgun_backup_20250230_000000.sql.gz",
            "railgun_backup_20250101_246000.sql.gz",
        ] {
            assert!(BackupName::parse(PREFIX, bad).unwrap().is_err(), "{bad}");
        }
        assert_eq!(
            BackupName::parse("railgun_pre_restore_", "railgun_pre_restore_20251226_143022_3.sql.gz")
                .unwrap()
                .unwrap()
                .seq,
            3
        );
    }
}
