//! `migration rehearse`: the pending migrations run on a masked (and sampled) copy of a source
//! database, statement by statement, with what each really did and how long it would take there.
//!
//! The source is only read: one `REPEATABLE READ READ ONLY` transaction (checked with `SHOW
//! transaction_read_only`) gives the migrations it has applied, its tables' sizes from its
//! statistics, and the masked copy's rows (the streamed copy of [`crate::backup::stream`], the
//! same rules and refusals as `db copy --mask`). The copy goes into a throwaway database on the
//! local server, always dropped. There each pending migration runs as the runner would run it
//! (in a transaction unless its metadata says no), one statement at a time: its wall time, the
//! locks it took (read from `pg_locks` on a second connection) and the tables it rewrote (a new
//! `relfilenode`), as [`super::observe`] reads them. The time is scaled to the source by the
//! rows of the largest table it touched (the source's rows over the copy's): linear, so a sort
//! (an index build) is estimated a little low. A table kept under ACCESS EXCLUSIVE longer than
//! the threshold (until its migration's transaction commits) is named.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use diesel::connection::SimpleConnection;
use serde::Serialize;
use url::Url;

use super::observe::{self, ACCESS_EXCLUSIVE};
use super::source::{self, MigrationFiles};
use crate::backup::dump::DumpOptions;
use crate::backup::load::LoadOptions;
use crate::backup::stream::{self, Source, StreamOptions};
use crate::backup::subset::Subset;
use crate::context::Context;
use crate::scratch::Scratch;
use crate::url::{is_local, parse_database_url, redact};

/// The threshold when neither `--threshold` nor `[rehearse] max_exclusive` says.
pub const DEFAULT_MAX_EXCLUSIVE: Duration = Duration::from_secs(5);

/// What to rehearse against, and how.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The source's URL (only read).
    pub from: String,
    /// Copy a PERCENT sample (see [`Subset`]).
    pub sample: Option<f64>,
    /// The longest ACCESS EXCLUSIVE allowed (else railgun.toml's, else [`DEFAULT_MAX_EXCLUSIVE`]).
    pub threshold: Option<Duration>,
    /// Copy personal-looking columns without a rule as they are.
    pub unmasked: bool,
    pub dump: DumpOptions,
}

/// What the rehearsal found.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The source, its password redacted.
    pub source: String,
    /// The migrations the source lacks, rehearsed in this order.
    pub pending: Vec<String>,
    /// Rows copied into the throwaway database, by table.
    pub copied: BTreeMap<String, u64>,
    pub copy_seconds: f64,
    pub statements: Vec<Rehearsed>,
    pub max_exclusive_seconds: f64,
    /// Tables that would stay under ACCESS EXCLUSIVE beyond the threshold at the source.
    pub exceeded: Vec<Exceeded>,
    /// The whole rehearsal, the copy and the throwaway database's drop included.
    pub seconds: f64,
}

/// One statement, as it ran in the copy.
#[derive(Debug, Clone, Serialize)]
pub struct Rehearsed {
    pub migration: String,
    pub line: usize,
    /// Its text on one line.
    pub statement: String,
    /// Whether its migration runs in a transaction (locks then last until it commits).
    pub in_transaction: bool,
    /// The locks it took on each table (the strongest; those its transaction held before left out), as SQL names them.
    pub locks: BTreeMap<String, String>,
    /// Tables it rewrote.
    pub rewrote: Vec<String>,
    /// Wall time in the copy.
    pub seconds: f64,
    pub estimate: Option<Estimate>,
    /// Its locks were released before they could be read (outside a transaction).
    pub unobserved: bool,
}

/// A statement's time scaled to the source.
#[derive(Debug, Clone, Serialize)]
pub struct Estimate {
    /// The table the time is scaled by (the largest at the source of those it locked or rewrote).
    pub table: String,
    pub rows_here: u64,
    pub rows_at_source: f64,
    pub seconds: f64,
}

/// A table kept under ACCESS EXCLUSIVE too long.
#[derive(Debug, Clone, Serialize)]
pub struct Exceeded {
    pub table: String,
    pub migration: String,
    pub line: usize,
    pub statement: String,
    /// From the statement that took the lock until its migration commits, estimated at the source.
    pub seconds: f64,
}

/// Rehearses the migrations in `cx`'s folder that the source at `options.from` has not applied.
pub fn rehearse(cx: &Context, options: &Options) -> Result<Report> {
    let started = Instant::now();
    let local = cx.database_url()?;
    if !is_local(&local) {
        bail!(
            hint!("the rehearsal's throwaway database goes on the server DATABASE_URL names, and {} is not on this machine", redact(&local);
            "point DATABASE_URL (or --database-url) at a local server, e.g. the one `cargo xtask up` starts")
        );
    }
    let from = parse_database_url(&options.from).context("--from")?;
    crate::pooler::require_session(&from, None, "rehearse from it", "--from")?;
    let threshold = threshold(cx, options.threshold)?;
    let mut source = Source::open(&from, "railgun-rehearse-source")?;
    let pending = pending_at(&mut source, &source::load(&cx.migration_dir()?)?)?;
    let mut report = Report {
        source: redact(&from),
        pending: pending.iter().map(|m| m.name.clone()).collect(),
        copied: BTreeMap::new(),
        copy_seconds: 0.0,
        statements: Vec::new(),
        max_exclusive_seconds: threshold.as_secs_f64(),
        exceeded: Vec::new(),
        seconds: 0.0,
    };
    if pending.is_empty() {
        eprintln!("{} has applied every migration: nothing to rehearse", redact(&from));
        return Ok(report);
    }
    let sizes = source_sizes(&mut source)?;
    let subset = Subset { sample: options.sample, conditions: Vec::new() };
    let masked = StreamOptions { mask: true, unmasked: options.unmasked, subset };
    let prepared = stream::prepare(cx, &mut source, &from, &options.dump, &masked)?;
    // One a killed rehearsal left goes first; this one (and the role its load makes) goes at
    // the end, on an error, and on Ctrl-C (see `scratch`).
    for name in crate::scratch::drop_abandoned(&local, "rehearse").unwrap_or_default() {
        eprintln!("dropped {name}, the throwaway database of a rehearsal that was killed");
    }
    let throwaway = Scratch::empty(&local, "rehearse")?;
    throwaway.drop_on_signal()?;
    eprintln!("copying {} of {} into the throwaway database {}", prepared.kind, redact(&from), throwaway.name);
    let copying = Instant::now();
    crate::backup::load::check_extensions(&throwaway.url, &prepared.extensions, &[])?;
    let tables = Some(prepared.plan.tables.len() as u64);
    let shown = crate::backup::progress::Progress::new(
        crate::backup::progress::Task::Copy,
        crate::backup::progress::Total { tables, ..Default::default() },
    );
    let copied = stream::load_into(&mut source, &throwaway.url, &prepared, &LoadOptions::default(), &shown)?;
    // The source's read-only transaction ends here: nothing more is read there.
    drop(source);
    report.copy_seconds = copying.elapsed().as_secs_f64();
    report.copied = copied.into_iter().map(|(table, rows)| (shown_table(&table), rows)).collect();
    eprintln!(
        "copied {} rows in {:.1}s; rehearsing {} migration(s)",
        report.copied.values().sum::<u64>(),
        report.copy_seconds,
        pending.len()
    );
    report.statements = run_measured(&throwaway.url, &pending, &report.copied, &sizes)?;
    throwaway.drop_now()?;
    report.exceeded = exceeded(&report.statements, threshold);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// `--threshold`, else `[rehearse] max_exclusive`, else [`DEFAULT_MAX_EXCLUSIVE`].
fn threshold(cx: &Context, flag: Option<Duration>) -> Result<Duration> {
    if let Some(flag) = flag {
        return Ok(flag);
    }
    let settings = super::settings::load(cx)?;
    match &settings.rehearse.max_exclusive {
        Some(text) => crate::duration::parse(text).context("[rehearse] max_exclusive"),
        None => Ok(DEFAULT_MAX_EXCLUSIVE),
    }
}

/// Those of `migrations` the source's `__diesel_schema_migrations` lacks (all of them when it
/// has none), read in the read-only transaction.
fn pending_at(source: &mut Source, migrations: &[MigrationFiles]) -> Result<Vec<MigrationFiles>> {
    let bookkept = source
        .session
        .query_column("SELECT (to_regclass('public.__diesel_schema_migrations') IS NOT NULL)::text")
        .map_err(|e| anyhow!(e))
        .context("look for the source's __diesel_schema_migrations")?;
    if bookkept.first().map(String::as_str) != Some("true") {
        eprintln!("the source has no __diesel_schema_migrations: every migration counts as pending");
        return Ok(migrations.to_vec());
    }
    let applied: HashSet<String> = source
        .session
        .query_column("SELECT version::text FROM public.__diesel_schema_migrations")
        .map_err(|e| anyhow!(e))
        .context("read the source's __diesel_schema_migrations")?
        .into_iter()
        .collect();
    Ok(migrations.iter().filter(|m| !applied.contains(&m.version)).cloned().collect())
}

/// Each table's rows at the source, from its statistics: `pg_stat_user_tables.n_live_tup`,
/// else (statistics reset) `pg_class.reltuples`; by the name [`observe`] gives it.
fn source_sizes(source: &mut Source) -> Result<BTreeMap<String, f64>> {
    #[derive(serde::Deserialize)]
    struct Size {
        name: String,
        rows: f64,
    }
    let sizes: Vec<Size> = source.json(
        "SELECT CASE WHEN n.nspname = 'public' THEN c.relname::text ELSE n.nspname || '.' || c.relname END AS name,
                CASE WHEN coalesce(s.n_live_tup, 0) > 0 THEN s.n_live_tup::float8 ELSE greatest(c.reltuples, 0)::float8 END AS rows
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
          WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_'",
        "table sizes",
    )?;
    Ok(sizes.into_iter().map(|s| (s.name, s.rows)).collect())
}

/// `schema.table` as [`observe`] names it: `table` in public.
fn shown_table(qualified: &str) -> String {
    qualified.strip_prefix("public.").unwrap_or(qualified).to_string()
}

/// Runs `pending` in the throwaway database at `url`, statement by statement, measured.
fn run_measured(
    url: &Url,
    pending: &[MigrationFiles],
    copied: &BTreeMap<String, u64>,
    sizes: &BTreeMap<String, f64>,
) -> Result<Vec<Rehearsed>> {
    let mut conn = crate::connect::establish(url)?;
    conn.batch_execute("ANALYZE").context("analyze the copy")?;
    let mut observer = crate::connect::establish(url)?;
    let pid = observe::backend_pid(&mut conn)?;
    let mut rows = Vec::new();
    for migration in pending {
        let sql = migration.sql("up.sql")?;
        if migration.run_in_transaction {
            conn.batch_execute("BEGIN").context("begin the rehearsed migration")?;
        }
        let mut held: BTreeSet<(String, String)> = BTreeSet::new();
        for statement in super::sql::statements(&sql) {
            let failed = || format!("{}/up.sql:{}: the statement failed in the copy", migration.name, statement.line);
            let before = observe::relfilenodes(&mut conn)?;
            let clock = Instant::now();
            let (locks, unobserved) = if migration.run_in_transaction {
                conn.batch_execute(statement.text).with_context(failed)?;
                let now = observe::locks_of(&mut observer, pid)?;
                let new: BTreeSet<_> = now.difference(&held).cloned().collect();
                held = now;
                (new, false)
            } else {
                observe::outside_transaction(url, &mut conn, &mut observer, pid, statement.text).with_context(failed)?
            };
            let seconds = clock.elapsed().as_secs_f64();
            let rewrote = observe::rewritten(&before, &observe::relfilenodes(&mut conn)?);
            let locks: BTreeMap<String, String> =
                observe::strongest(locks).into_iter().map(|(table, mode)| (table, observe::sql_name(&mode))).collect();
            let estimate = estimate(seconds, locks.keys().chain(&rewrote), copied, sizes);
            rows.push(Rehearsed {
                migration: migration.name.clone(),
                line: statement.line,
                statement: statement
                    .text
                    .trim_end()
                    .trim_end_matches(';')
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
                in_transaction: migration.run_in_transaction,
                locks,
                rewrote,
                seconds,
                estimate,
                unobserved,
            });
        }
        if migration.run_in_transaction {
            conn.batch_execute("COMMIT").context("commit the rehearsed migration in the copy")?;
        }
    }
    Ok(rows)
}

/// `seconds` scaled by the largest table (at the source) among `touched` that the copy has rows
/// of and the source has statistics for: its rows at the source over its rows here, at least 1.
fn estimate<'a>(
    seconds: f64,
    touched: impl Iterator<Item = &'a String>,
    copied: &BTreeMap<String, u64>,
    sizes: &BTreeMap<String, f64>,
) -> Option<Estimate> {
    let largest = touched
        .filter_map(|table| {
            // No statistics (never analyzed, or reset) is no size: nothing to scale by.
            Some((table, *copied.get(table).filter(|rows| **rows > 0)?, *sizes.get(table).filter(|rows| **rows > 0.0)?))
        })
        .max_by(|a, b| a.2.total_cmp(&b.2))?;
    let (table, rows_here, rows_at_source) = largest;
    let scale = (rows_at_source / rows_here as f64).max(1.0);
    Some(Estimate { table: table.clone(), rows_here, rows_at_source, seconds: seconds * scale })
}

/// The tables some statement locks ACCESS EXCLUSIVE for longer than `threshold` at the source:
/// in a migration run in a transaction, from that statement to the migration's end (the lock
/// lasts until it commits); outside one, the statement alone.
pub fn exceeded(statements: &[Rehearsed], threshold: Duration) -> Vec<Exceeded> {
    let cost = |s: &Rehearsed| s.estimate.as_ref().map_or(s.seconds, |e| e.seconds);
    let mut found = Vec::new();
    for (i, statement) in statements.iter().enumerate() {
        let rest = statements[i..].iter().take_while(|s| s.migration == statement.migration);
        let held = match statement.in_transaction {
            true => rest.map(cost).sum::<f64>(),
            false => cost(statement),
        };
        for (table, mode) in &statement.locks {
            if mode == &observe::sql_name(ACCESS_EXCLUSIVE) && held > threshold.as_secs_f64() {
                found.push(Exceeded {
                    table: table.clone(),
                    migration: statement.migration.clone(),
                    line: statement.line,
                    statement: statement.statement.clone(),
                    seconds: held,
                });
            }
        }
    }
    found
}

impl fmt::Display for Rehearsed {
    /// `2026-..._x/up.sql:3: ALTER TABLE orders ...: ACCESS EXCLUSIVE on orders, rewrote orders,
    /// 0.41 s here (est. 41 s at the source's 39.8 M rows of orders)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = match self.statement.chars().count() > 100 {
            true => format!("{} ...", self.statement.chars().take(96).collect::<String>()),
            false => self.statement.clone(),
        };
        write!(
            f,
            "{}/up.sql:{}: {}: ",
            crate::error::escaped(&self.migration),
            self.line,
            crate::error::escaped(&shown)
        )?;
        let mut what: Vec<String> = self.locks.iter().map(|(table, mode)| format!("{mode} on {table}")).collect();
        if self.unobserved {
            what.push("locks not observed (released before they could be read)".into());
        } else if what.is_empty() {
            what.push("no table lock".into());
        }
        what.extend(self.rewrote.iter().map(|table| format!("rewrote {table}")));
        write!(f, "{}, {} here", crate::error::escaped(&what.join(", ")), seconds(self.seconds))?;
        match &self.estimate {
            Some(e) if e.rows_at_source > e.rows_here as f64 => write!(
                f,
                " (est. {} at the source's {} rows of {}; {} here)",
                seconds(e.seconds),
                rows(e.rows_at_source),
                crate::error::escaped(&e.table),
                rows(e.rows_here as f64)
            ),
            Some(e) => write!(f, " (the same at the source: {} rows of {})", rows(e.rows_at_source), e.table),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Exceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} would be under ACCESS EXCLUSIVE for est. {} at the source, from {}/up.sql:{} until its migration commits",
            crate::error::escaped(&self.table),
            seconds(self.seconds),
            crate::error::escaped(&self.migration),
            self.line
        )
    }
}

/// `0.41 s`, `4.1 s`, `41 s`, `3.2 min`.
pub fn seconds(s: f64) -> String {
    match s {
        s if s < 1.0 => format!("{s:.2} s"),
        s if s < 10.0 => format!("{s:.1} s"),
        s if s < 120.0 => format!("{s:.0} s"),
        s => format!("{:.1} min", s / 60.0),
    }
}

/// `512`, `12.3 k`, `39.8 M`.
pub fn rows(n: f64) -> String {
    match n {
        n if n < 1e3 => format!("{n:.0}"),
        n if n < 1e6 => format!("{:.1} k", n / 1e3),
        n if n < 1e9 => format!("{:.1} M", n / 1e6),
        n => format!("{:.1} G", n / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement(migration: &str, locks: &[(&str, &str)], seconds: f64, in_transaction: bool) -> Rehearsed {
        Rehearsed {
            migration: migration.into(),
            line: 1,
            statement: "ALTER TABLE orders ADD COLUMN score float8 DEFAULT random()".into(),
            in_transaction,
            locks: locks.iter().map(|(t, m)| (t.to_string(), m.to_string())).collect(),
            rewrote: vec![],
            seconds,
            estimate: None,
            unobserved: false,
        }
    }

    #[test]
    fn estimates_scale_by_the_largest_table_touched() {
        let copied = BTreeMap::from([("orders".to_string(), 100_000), ("users".to_string(), 10_000)]);
        let sizes = BTreeMap::from([("orders".to_string(), 39.8e6), ("users".to_string(), 1e6)]);
        let touched = ["users".to_string(), "orders".to_string(), "new_table".to_string()];
        let e = estimate(0.41, touched.iter(), &copied, &sizes).unwrap();
        assert_eq!(e.table, "orders");
        assert!((e.seconds - 0.41 * 398.0).abs() < 1e-6, "{e:?}");
        // Statistics behind the copy never make the source faster; a table the copy lacks gives none.
        let stale = BTreeMap::from([("orders".to_string(), 50_000.0)]);
        assert_eq!(estimate(2.0, touched.iter(), &copied, &stale).unwrap().seconds, 2.0);
        assert!(estimate(1.0, ["new_table".to_string()].iter(), &copied, &sizes).is_none());
        let unknown = BTreeMap::from([("orders".to_string(), 0.0)]);
        assert!(estimate(1.0, touched.iter(), &copied, &unknown).is_none());
    }

    #[test]
    fn access_exclusive_lasts_until_the_migration_commits() {
        let ae = "ACCESS EXCLUSIVE";
        let statements = [
            statement("a", &[("orders", ae)], 1.0, true),
            statement("a", &[("orders", "SHARE")], 5.0, true),
            statement("b", &[("users", ae)], 2.0, true),
            statement("c", &[("items", ae)], 7.0, false),
            statement("c", &[], 9.0, false),
        ];
        let found = exceeded(&statements, Duration::from_secs(3));
        let names: Vec<(&str, f64)> = found.iter().map(|e| (e.table.as_str(), e.seconds)).collect();
        assert_eq!(names, [("orders", 6.0), ("items", 7.0)]);
        assert!(found[0].to_string().contains("orders would be under ACCESS EXCLUSIVE for est. 6.0 s"), "{}", found[0]);
        assert!(exceeded(&statements, Duration::from_secs(10)).is_empty());
    }

    #[test]
    fn a_statement_reads_as_one_line() {
        let mut s = statement("2026-01-01-000000_score", &[("orders", "ACCESS EXCLUSIVE")], 0.41, true);
        s.rewrote = vec!["orders".into()];
        s.estimate =
            Some(Estimate { table: "orders".into(), rows_here: 100_000, rows_at_source: 39.8e6, seconds: 163.18 });
        assert_eq!(
            s.to_string(),
            "2026-01-01-000000_score/up.sql:1: ALTER TABLE orders ADD COLUMN score float8 DEFAULT random(): \
             ACCESS EXCLUSIVE on orders, rewrote orders, 0.41 s here (est. 2.7 min at the source's 39.8 M rows of orders; 100.0 k here)"
        );
        assert_eq!((rows(512.0), rows(1e6), seconds(41.2)), ("512".into(), "1.0 M".into(), "41 s".into()));
    }
}
