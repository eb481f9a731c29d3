//! Restore a backup, replacing the database's data

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::url::{database_name, redact, redact_str};
use anyhow::{Context as _, Result, anyhow, bail};
use diesel::RunQueryDsl;
use url::Url;

use super::dump::{self as backup, DumpOptions, Progress, mib};
use super::dumpfile;
use super::pgtools::{self, PgTools};
use super::scan::{Forbidden, Scanner};
use crate::context::Context;
use crate::guard::Guard;
use crate::migration::{runner, source};

/// The safety backup taken before a restore: never pruned by `db backup --keep`.
pub const SAFETY_PREFIX: &str = "railgun_pre_restore_";

/// Restores the backup at `path` into `url`: the whole file is checked first, `guard` asks,
/// a safety backup goes into `safety` (when given), then one transaction replaces the data;
/// afterwards it says which migrations the database lacks.
pub fn restore_file(
    cx: &Context,
    url: &Url,
    path: &Path,
    safety: Option<&Path>,
    guard: &Guard,
    lock_timeout: Duration,
) -> Result<()> {
    dumpfile::check_file(path)?;
    // The full check (every member's CRC) runs while the guard asks and the safety backup
    // reads the database; nothing is written to the database before it passed.
    let (verified, prepared) = std::thread::scope(|scope| {
        let verified = scope.spawn(|| dumpfile::verify_file(path));
        let what = format!("replace the data in database `{}` with {}", database_name(url), path.display());
        let prepared = guard.check(cx, url, &what).and_then(|()| {
            let (tools, saved) = prepare(cx, url, safety)?;
            // psql starts and connects now; it gets its first statement once the check passed.
            Ok((Psql::start(cx, &tools, url, lock_timeout)?, saved))
        });
        (verified.join(), prepared)
    });
    let verified = verified.map_err(|_| anyhow!("the backup check panicked")).and_then(|v| v);
    let (psql, saved) = match (verified, prepared) {
        (Err(bad), Ok((_, Some(saved)))) => {
            let _ = std::fs::remove_file(saved);
            return Err(bad);
        }
        (Err(bad), _) => return Err(bad),
        (Ok(_), Err(e)) => return Err(e),
        (Ok(summary), Ok(prepared)) => {
            eprintln!("{} is whole: {} of SQL", path.display(), mib(summary.sql));
            prepared
        }
    };
    announce_safety(saved.as_deref());
    psql.feed(path)?;
    check_migrations(cx, url)
}

/// Restores the verified backup at `path` into `url` in one transaction, after a safety backup
/// into `safety_dir` when given.
pub fn restore(cx: &Context, url: &Url, path: &Path, safety_dir: Option<&Path>) -> Result<()> {
    let (tools, saved) = prepare(cx, url, safety_dir)?;
    announce_safety(saved.as_deref());
    Psql::start(cx, &tools, url, DEFAULT_LOCK_TIMEOUT)?.feed(path)
}

/// How long a statement of the restore waits for a lock another session holds.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);

/// The lines psql gets before the backup's: `\restrict` and the transaction's settings.
const PRELUDE_LINES: usize = 2;

/// Finds psql for `url` and takes the safety backup into `safety_dir` when given.
fn prepare(cx: &Context, url: &Url, safety_dir: Option<&Path>) -> Result<(PgTools, Option<PathBuf>)> {
    let tools = PgTools::find_for_restore(&cx.sh, &cx.project, url)?;
    let saved = match safety_dir {
        Some(_) if is_empty(url)? => {
            eprintln!("{} is empty: no safety backup needed", redact(url));
            None
        }
        Some(dir) => {
            eprintln!("taking a safety backup of {} first", redact(url));
            Some(backup::create_with(cx, &tools, url, dir, SAFETY_PREFIX, &DumpOptions::default())?)
        }
        None => None,
    };
    Ok((tools, saved))
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

fn announce_safety(saved: Option<&Path>) {
    if let Some(saved) = saved {
        eprintln!(
            "safety backup: {}\n  (to undo the restore: cargo xtask db restore {})",
            saved.display(),
            saved.display()
        );
    }
}

/// psql, connected and waiting for the restore. Dropped unfed, its input just closes: an empty
/// script, nothing done.
struct Psql {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    errors: std::thread::JoinHandle<String>,
    started: Instant,
    /// psql's `\restrict` key, also the transaction's mark (`railgun.restore`).
    key: String,
    lock_timeout: Duration,
    waits: LockWatch,
}

impl Psql {
    fn start(cx: &Context, tools: &PgTools, url: &Url, lock_timeout: Duration) -> Result<Psql> {
        eprintln!("restoring into {} with {}", redact(url), tools.describe());
        let started = Instant::now();
        let key = crate::secret::random_hex(16)?;
        // Named, so that the lock watch finds psql's session among the server's.
        let app = format!("railgun-restore-{}", &key[..8]);
        let mut named = url.clone();
        named.query_pairs_mut().append_pair("application_name", &app);
        let args: Vec<String> = ["-X", "--quiet", "-v", "ON_ERROR_STOP=1", "--file=-"].map(String::from).to_vec();
        let mut child = tools
            .command(&cx.sh, "psql", &named, &args)?
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start psql")?;
        let stdin = child.stdin.take().context("psql's input")?;
        pgtools::widen_pipe(&stdin);
        let errors = pgtools::collect_errors(child.stderr.take().context("psql's errors")?);
        let waits = LockWatch::start(url.clone(), app);
        Ok(Psql { child, stdin, errors, started, key, lock_timeout, waits })
    }

    /// Feeds the backup's SQL in one transaction whose COMMIT is ours, with nothing but its SQL
    /// statements: psql is restricted with our key, and the scan stops at any other line.
    fn feed(self, path: &Path) -> Result<()> {
        let Psql { mut child, mut stdin, errors, started, key, lock_timeout, waits } = self;
        // psql's --single-transaction would commit at end of input, and an input cut short
        // (this process killed) would then commit half a restore.
        let mut shown = Progress::new("restored");
        let mut scanner = Scanner::new();
        scanner.reassert_after_lock_timeout(&format!(" SET LOCAL lock_timeout = '{}ms';", lock_timeout.as_millis()));
        let mut refused = None;
        let fed = (|| -> std::io::Result<u64> {
            // Index builds at the end of a dump sort whole tables: give them memory (as pg_restore's
            // docs advise). A lock another session holds fails the restore after lock_timeout
            // instead of queueing (and blocking that table's readers) forever.
            stdin.write_all(
                format!(
                    "\\restrict {key}\nBEGIN; SET LOCAL maintenance_work_mem = '256MB'; SET LOCAL standard_conforming_strings = on; \
                     SET LOCAL lock_timeout = '{}ms'; SET LOCAL railgun.restore = '{key}';\n",
                    lock_timeout.as_millis()
                )
                .as_bytes(),
            )?;
            let mut sql = dumpfile::open_sql(path).map_err(std::io::Error::other)?;
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            let mut scanned = |scanner: &mut Scanner, chunk: Option<&[u8]>| -> std::io::Result<Result<(), Forbidden>> {
                let mut written = Ok(());
                let mut write = |part: &[u8]| {
                    if written.is_ok() {
                        written = stdin.write_all(part);
                    }
                };
                let result = match chunk {
                    Some(chunk) => scanner.feed(chunk, &mut write),
                    None => scanner.finish(&mut write),
                };
                written.map(|()| result)
            };
            loop {
                let n = match sql.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                // Scanned before psql gets a byte of it: the check does not trust the earlier one.
                if let Err(line) = scanned(&mut scanner, Some(&buf[..n]))? {
                    refused = Some(line);
                    return Err(std::io::Error::other("refused"));
                }
                total += n as u64;
                shown.update(total, total);
            }
            if let Err(line) = scanned(&mut scanner, None)? {
                refused = Some(line);
                return Err(std::io::Error::other("refused"));
            }
            // The transaction must still be ours when we commit it.
            stdin.write_all(
                format!(
                    "\nDO $railgun$ BEGIN IF current_setting('railgun.restore', true) IS DISTINCT FROM '{key}' THEN \
                     RAISE EXCEPTION 'the backup ended the restore''s transaction: what ran before that stays'; END IF; END $railgun$;\nCOMMIT;\n"
                )
                .as_bytes(),
            )?;
            stdin.flush()?;
            Ok(total)
        })();
        shown.done();
        if fed.is_err() {
            // Whatever happened, psql must not see a clean end of input: stop it, the server rolls back.
            let _ = child.kill();
        }
        drop(stdin);
        let status = child.wait().context("wait for psql")?;
        let waited = waits.stop();
        if let Some(line) = refused {
            return Err(dumpfile::forbidden(line)
                .context("the restore was stopped before that line and rolled back: the database is as it was"));
        }
        let errors = redact_str(errors.join().unwrap_or_default().trim());
        if !status.success() || errors.contains("ERROR:") {
            let statement = failing_statement(path, &errors, scanner.stripped()).unwrap_or_default();
            if errors.contains("lock timeout") {
                let holder = waited.unwrap_or_else(|| "another session (it let go before we could see it)".into());
                bail!(
                    hint!("the restore waited {}ms for a lock and was rolled back: the database is as it was\n  held by: {holder}\n{errors}{statement}", lock_timeout.as_millis();
                    "end that session's transaction (COMMIT, ROLLBACK, or SELECT pg_terminate_backend(PID)), or allow a longer wait with --lock-timeout")
                );
            }
            let hint = if errors.contains("other objects depend on it") {
                "objects that are not in the backup depend on objects it replaces: restore into an empty database, or drop them first (cargo xtask schema drop)"
            } else {
                "fix the cause above (a missing role or extension on this server?) and run again"
            };
            bail!(
                hint!("the restore failed ({status}) and was rolled back: the database is as it was\n{errors}{statement}"; "{hint}")
            );
        }
        let total = match fed {
            Ok(total) => total,
            Err(e) => bail!("the restore was stopped and rolled back: {e}"),
        };
        eprintln!("restored {} of SQL in {:.1}s", mib(total), started.elapsed().as_secs_f64());
        Ok(())
    }
}

/// Watches psql's session while it restores: when it waits for a lock, who holds it (relation,
/// pid, application_name, state), said once on stderr and kept for the error.
struct LockWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<Option<String>>>,
}

impl LockWatch {
    fn start(url: Url, app: String) -> LockWatch {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            #[derive(diesel::QueryableByName)]
            struct Holder {
                #[diesel(sql_type = diesel::sql_types::Text)]
                text: String,
            }
            let mut conn = crate::connect::establish(&url).ok()?;
            let mut seen: Option<String> = None;
            while !stopped.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let holders: Vec<Holder> = diesel::sql_query(
                    "SELECT format('%s by pid %s (application_name %L, state %L)', coalesce(l.relation::regclass::text, l.locktype),
                                   b.pid, coalesce(b.application_name, ''), coalesce(b.state, '')) AS text
                     FROM pg_stat_activity w
                     JOIN pg_locks l ON l.pid = w.pid AND NOT l.granted
                     CROSS JOIN LATERAL unnest(pg_blocking_pids(w.pid)) AS blocking(pid)
                     JOIN pg_stat_activity b ON b.pid = blocking.pid
                     WHERE w.application_name = $1",
                )
                .bind::<diesel::sql_types::Text, _>(&app)
                .load(&mut conn)
                .unwrap_or_default();
                if let Some(first) = holders.into_iter().next()
                    && seen.as_deref() != Some(first.text.as_str())
                {
                    eprintln!("waiting for a lock on {}", first.text);
                    seen = Some(first.text);
                }
            }
            seen
        });
        LockWatch { stop, thread: Some(thread) }
    }

    /// Ends the watch; the last lock holder seen, if any.
    fn stop(mut self) -> Option<String> {
        self.end()
    }

    fn end(&mut self) -> Option<String> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take()?.join().ok().flatten()
    }
}

/// The thread is inside libpq: it must be done before the process exits (libpq's Kerberos
/// library aborts a process that exits under a thread using it).
impl Drop for LockWatch {
    fn drop(&mut self) {
        self.end();
    }
}

/// The statement at the line psql names in `psql:<stdin>:LINE: ERROR:`, from the backup.
fn failing_statement(path: &Path, errors: &str, stripped: &[u64]) -> Option<String> {
    let line: usize = errors.lines().find_map(|l| {
        let rest = l.strip_prefix("psql:<stdin>:")?;
        let (number, tail) = rest.split_once(':')?;
        tail.trim_start().starts_with("ERROR").then(|| number.parse().ok())?
    })?;
    // Our prelude comes first; the lines the scan left out (pg_dump's `\restrict`) are not psql's.
    let mut line = line.checked_sub(PRELUDE_LINES).filter(|l| *l > 0)? as u64;
    for left_out in stripped {
        if *left_out <= line {
            line += 1;
        }
    }
    let line = line as usize;
    let reader = BufReader::new(dumpfile::open_sql(path).ok()?);
    let mut statement: Vec<String> = Vec::new();
    for (number, text) in reader.split(b'\n').enumerate().take(line) {
        let text = String::from_utf8_lossy(&text.ok()?).into_owned();
        if text.is_empty() || text.starts_with("--") {
            statement.clear();
            continue;
        }
        if statement.len() == 12 {
            statement.remove(0);
        }
        let mut shown: String = text.chars().take(200).collect();
        if shown.len() < text.len() {
            shown.push_str("...");
        }
        statement.push(format!("  {:>8} | {shown}", number + 1));
    }
    Some(format!("\nthe failing statement, at line {line} of the backup's SQL:\n{}", statement.join("\n")))
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
