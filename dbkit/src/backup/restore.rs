//! Restore a backup, replacing the database's data

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use crate::url::{database_name, redact, redact_str};
use anyhow::{Context as _, Result, anyhow, bail};
use diesel::RunQueryDsl;
use url::Url;

use super::dump::{self as backup, DumpOptions, Progress, mib};
use super::dumpfile;
use super::pgtools::{self, PgTools};
use crate::context::Context;
use crate::guard::Guard;
use crate::migration::{runner, source};

/// The safety backup taken before a restore: never pruned by `db backup --keep`.
pub const SAFETY_PREFIX: &str = "railgun_pre_restore_";

/// Restores the backup at `path` into `url`: the whole file is checked first, `guard` asks,
/// a safety backup goes into `safety` (when given), then one transaction replaces the data;
/// afterwards it says which migrations the database lacks.
pub fn restore_file(cx: &Context, url: &Url, path: &Path, safety: Option<&Path>, guard: &Guard) -> Result<()> {
    dumpfile::check_file(path)?;
    // The full check (every member's CRC) runs while the guard asks and the safety backup
    // reads the database; nothing is written to the database before it passed.
    let (verified, prepared) = std::thread::scope(|scope| {
        let verified = scope.spawn(|| dumpfile::verify_file(path));
        let what = format!("replace the data in database `{}` with {}", database_name(url), path.display());
        let prepared = guard.check(cx, url, &what).and_then(|()| {
            let (tools, saved) = prepare(cx, url, safety)?;
            // psql starts and connects now; it gets its first statement once the check passed.
            Ok((Psql::start(cx, &tools, url)?, saved))
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
    Psql::start(cx, &tools, url)?.feed(path)
}

/// Finds psql for `url` and takes the safety backup into `safety_dir` when given.
fn prepare(cx: &Context, url: &Url, safety_dir: Option<&Path>) -> Result<(PgTools, Option<PathBuf>)> {
    let tools = PgTools::find(&cx.sh, url)?;
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
}

impl Psql {
    fn start(cx: &Context, tools: &PgTools, url: &Url) -> Result<Psql> {
        eprintln!("restoring into {} with {}", redact(url), tools.describe());
        let started = Instant::now();
        let args: Vec<String> = ["-X", "--quiet", "-v", "ON_ERROR_STOP=1", "--file=-"].map(String::from).to_vec();
        let mut child = tools
            .command(&cx.sh, "psql", url, &args)?
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start psql")?;
        let stdin = child.stdin.take().context("psql's input")?;
        pgtools::widen_pipe(&stdin);
        let errors = pgtools::collect_errors(child.stderr.take().context("psql's errors")?);
        Ok(Psql { child, stdin, errors, started })
    }

    /// Feeds the backup's SQL in one transaction whose COMMIT is ours.
    fn feed(self, path: &Path) -> Result<()> {
        let Psql { mut child, mut stdin, errors, started } = self;
        // psql's --single-transaction would commit at end of input, and an input cut short
        // (this process killed) would then commit half a restore.
        let mut shown = Progress::new("restored");
        let fed = (|| -> std::io::Result<u64> {
            // Index builds at the end of a dump sort whole tables: give them memory (as pg_restore's
            // docs advise), for this transaction only. Same line as BEGIN: line numbers stay.
            stdin.write_all(b"BEGIN; SET LOCAL maintenance_work_mem = '256MB';\n")?;
            let mut sql = dumpfile::open_sql(path).map_err(std::io::Error::other)?;
            let mut buf = vec![0u8; 1 << 20];
            let mut total = 0u64;
            loop {
                let n = match sql.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                stdin.write_all(&buf[..n])?;
                total += n as u64;
                shown.update(total, total);
            }
            stdin.write_all(b"\nCOMMIT;\n")?;
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
        let errors = redact_str(errors.join().unwrap_or_default().trim());
        if !status.success() || errors.contains("ERROR:") {
            let statement = failing_statement(path, &errors).unwrap_or_default();
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

/// The statement at the line psql names in `psql:<stdin>:LINE: ERROR:`, from the backup.
fn failing_statement(path: &Path, errors: &str) -> Option<String> {
    let line: usize = errors.lines().find_map(|l| {
        let rest = l.strip_prefix("psql:<stdin>:")?;
        let (number, tail) = rest.split_once(':')?;
        tail.trim_start().starts_with("ERROR").then(|| number.parse().ok())?
    })?;
    // Our BEGIN is line 1 of psql's input.
    let line = line.checked_sub(1).filter(|l| *l > 0)?;
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
