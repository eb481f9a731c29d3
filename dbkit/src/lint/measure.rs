//! `migration lint --measure`: each statement run in a throwaway clone, and what it really did.
//!
//! The clone comes from the test harness: a template migrated up to the migrations measured
//! (named by their hash, so reused while they do not change), cloned with `CREATE DATABASE ...
//! TEMPLATE`. A migration that runs in a transaction runs statement by statement in one: after
//! each, a second connection reads from `pg_locks` the locks the first holds that it did not
//! hold before (locks last until the transaction ends, so none is missed), and the first
//! compares each table's `relfilenode` (a new one means the table was rewritten). A statement of
//! a migration outside a transaction (`CREATE INDEX CONCURRENTLY`) releases its locks as it ends:
//! a third connection holds a snapshot open, which such a statement waits for before it
//! finishes, and its locks are read while it waits.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Integer, Text};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use serde::Serialize;

use super::{Finding, Linted};
use crate::migration::MigrationFiles;
use crate::testing::Harness;

/// What one statement did.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub migration: String,
    pub file: String,
    pub line: usize,
    pub statement: String,
    /// The strongest lock it took on each table, by name.
    pub locks: BTreeMap<String, String>,
    /// Tables whose relfilenode changed: rewritten.
    pub rewrote: Vec<String>,
    /// Each static finding on this statement, confirmed or contradicted by the above.
    pub verdicts: Vec<Verdict>,
    /// When the locks could not be read (a statement outside a transaction that waits for nothing).
    pub unobserved: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub rule: &'static str,
    /// `confirmed`, `contradicted` or `not measurable` (a rule about types or names).
    pub verdict: &'static str,
    pub detail: String,
}

/// pg_locks' modes, weakest first.
const MODES: &[&str] = &[
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
];

fn strength(mode: &str) -> usize {
    MODES.iter().position(|m| *m == mode).unwrap_or(0)
}

/// Measures `linted` (in version order), in a clone of a template migrated with `base` (what
/// comes before them). Returns the clone's name and one row per statement.
pub fn measure(
    base: &[MigrationFiles],
    targets: &[MigrationFiles],
    linted: &[Linted],
) -> Result<(String, Vec<Measured>)> {
    let harness = Harness::for_migrations(base).context("build the template to measure in")?;
    // A database in the template's state (a clone, or a recycled one reset to it); it ran DDL
    // when dropped, so the harness drops it rather than reusing it.
    let db = harness.test_db()?;
    let name = db.name().to_string();
    let mut conn = db.conn()?;
    let mut observer = crate::connect::establish(db.url())?;
    let pid = backend_pid(&mut conn)?;
    let mut rows = Vec::new();
    for (migration, linted) in targets.iter().zip(linted) {
        if migration.run_in_transaction {
            conn.batch_execute("BEGIN").context("begin the measured migration")?;
        }
        let mut held: BTreeSet<(String, String)> = BTreeSet::new();
        for (index, statement) in linted.statements.iter().enumerate() {
            let before = relfilenodes(&mut conn)?;
            let (locks, unobserved) = if migration.run_in_transaction {
                conn.batch_execute(&statement.text).with_context(|| {
                    format!("{}:{}: the statement failed in the clone", linted.file, statement.line)
                })?;
                let now = locks_of(&mut observer, pid)?;
                let new: BTreeSet<_> = now.difference(&held).cloned().collect();
                held = now;
                (new, false)
            } else {
                outside_transaction(db.url(), &mut conn, &mut observer, pid, &statement.text)
                    .with_context(|| format!("{}:{}: the statement failed in the clone", linted.file, statement.line))?
            };
            let after = relfilenodes(&mut conn)?;
            let rewrote: Vec<String> = before
                .iter()
                .filter(|(oid, (_, node))| after.get(oid).is_some_and(|(_, new)| new != node))
                .map(|(_, (name, _))| name.clone())
                .collect();
            let mut strongest: BTreeMap<String, String> = BTreeMap::new();
            for (relation, mode) in locks {
                let entry = strongest.entry(relation).or_insert_with(|| mode.clone());
                if strength(&mode) > strength(entry) {
                    *entry = mode;
                }
            }
            let findings: Vec<&Finding> = linted.findings.iter().filter(|f| f.statement == index).collect();
            let verdicts = findings.iter().map(|f| judge(f, &strongest, &rewrote, unobserved)).collect();
            rows.push(Measured {
                migration: linted.migration.clone(),
                file: linted.file.clone(),
                line: statement.line,
                statement: statement.text.split_whitespace().collect::<Vec<_>>().join(" "),
                locks: strongest,
                rewrote,
                verdicts,
                unobserved,
            });
        }
        if migration.run_in_transaction {
            // Kept for the next migration, as the real run would (the clone is dropped at the end).
            conn.batch_execute("COMMIT").context("commit the measured migration in the clone")?;
        }
    }
    Ok((name, rows))
}

/// Confirms or contradicts a finding by what the statement did.
fn judge(finding: &Finding, locks: &BTreeMap<String, String>, rewrote: &[String], unobserved: bool) -> Verdict {
    let Some(expect) = &finding.expect else {
        return Verdict {
            rule: finding.rule,
            verdict: "not measurable",
            detail: "about types or names, not locks".into(),
        };
    };
    if unobserved {
        return Verdict {
            rule: finding.rule,
            verdict: "not measurable",
            detail: "its locks were released before they could be read".into(),
        };
    }
    let mut wrong = Vec::new();
    let mut right = Vec::new();
    for (relation, mode) in &expect.locks {
        let name = relation.rsplit('.').next().unwrap_or(relation);
        // A stronger lock than the rule says (ADD COLUMN ... REFERENCES takes ACCESS EXCLUSIVE
        // for the column, which holds the foreign key's SHARE ROW EXCLUSIVE) confirms it too.
        match locks.get(name) {
            Some(got) if got == mode => right.push(format!("{got} on {name}")),
            Some(got) if strength(got) > strength(mode) => right.push(format!("{got} on {name} (at least {mode})")),
            Some(got) => wrong.push(format!("{got} on {name}, weaker than {mode}")),
            None => wrong.push(format!("no lock on {name}, not {mode}")),
        }
    }
    if let Some(rewrite) = expect.rewrite {
        let table =
            expect.locks.first().map(|(r, _)| r.rsplit('.').next().unwrap_or(r).to_string()).unwrap_or_default();
        let did = rewrote.contains(&table);
        match (rewrite, did) {
            (true, true) => right.push(format!("rewrote {table}")),
            (false, false) => right.push(format!("no rewrite of {table}")),
            (true, false) => wrong.push(format!("did not rewrite {table}")),
            (false, true) => wrong.push(format!("rewrote {table}")),
        }
    }
    if wrong.is_empty() {
        Verdict { rule: finding.rule, verdict: "confirmed", detail: right.join(", ") }
    } else {
        Verdict { rule: finding.rule, verdict: "contradicted", detail: wrong.join(", ") }
    }
}

/// Runs a statement outside a transaction on `conn` while a third connection holds a snapshot
/// open; reads its locks while it waits for that snapshot (or until it ends).
fn outside_transaction(
    url: &url::Url,
    conn: &mut PgConnection,
    observer: &mut PgConnection,
    pid: i32,
    sql: &str,
) -> Result<(BTreeSet<(String, String)>, bool)> {
    let mut snapshot = crate::connect::establish(url)?;
    snapshot.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")?;
    let statement = sql.to_string();
    // The statement runs on the measured connection (its pid is the one observed), in a thread;
    // a fresh connection stands in for it meanwhile.
    let mut runner = std::mem::replace(conn, crate::connect::establish(url)?);
    let running = std::thread::spawn(move || {
        let result = runner.batch_execute(&statement);
        (runner, result)
    });
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        seen.extend(locks_of(observer, pid)?);
        if running.is_finished() || waits_for_snapshot(observer, pid)? || Instant::now() > deadline {
            seen.extend(locks_of(observer, pid)?);
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    snapshot.batch_execute("COMMIT")?;
    let (runner, result) = running.join().map_err(|_| anyhow::anyhow!("the measured statement's thread panicked"))?;
    result?;
    *conn = runner;
    let unobserved = seen.is_empty();
    Ok((seen, unobserved))
}

fn waits_for_snapshot(observer: &mut PgConnection, pid: i32) -> Result<bool> {
    #[derive(QueryableByName)]
    struct Waiting {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let waiting: Waiting = diesel::sql_query(
        "SELECT count(*) AS n FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock' AND wait_event = 'virtualxid'",
    )
    .bind::<Integer, _>(pid)
    .get_result(observer)?;
    Ok(waiting.n > 0)
}

fn backend_pid(conn: &mut PgConnection) -> Result<i32> {
    #[derive(QueryableByName)]
    struct Pid {
        #[diesel(sql_type = Integer)]
        pid: i32,
    }
    Ok(diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result::<Pid>(conn)?.pid)
}

/// The table locks `pid` holds (granted), by table name and mode (indexes left out: they follow
/// their table's).
fn locks_of(observer: &mut PgConnection, pid: i32) -> Result<BTreeSet<(String, String)>> {
    #[derive(QueryableByName)]
    struct Lock {
        #[diesel(sql_type = Text)]
        relation: String,
        #[diesel(sql_type = Text)]
        mode: String,
    }
    let locks: Vec<Lock> = diesel::sql_query(
        "SELECT c.relname::text AS relation, l.mode::text AS mode FROM pg_locks l
           JOIN pg_class c ON c.oid = l.relation
          WHERE l.pid = $1 AND l.locktype = 'relation' AND l.granted
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND c.relkind IN ('r', 'p', 'm')
            AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'pg_toast'::regnamespace)",
    )
    .bind::<Integer, _>(pid)
    .load(observer)
    .context("read pg_locks")?;
    Ok(locks.into_iter().map(|l| (l.relation, l.mode)).collect())
}

/// Each user table's relfilenode, by oid, as the measuring connection sees it.
fn relfilenodes(conn: &mut PgConnection) -> Result<BTreeMap<u32, (String, u32)>> {
    #[derive(QueryableByName)]
    struct Rel {
        #[diesel(sql_type = BigInt)]
        oid: i64,
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = BigInt)]
        node: i64,
    }
    let rels: Vec<Rel> = diesel::sql_query(
        "SELECT c.oid::bigint AS oid, c.relname::text AS name, c.relfilenode::bigint AS node FROM pg_class c
          WHERE c.relkind IN ('r', 'm') AND c.relnamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace, 'pg_toast'::regnamespace)",
    )
    .load(conn)
    .context("read relfilenodes")?;
    Ok(rels.into_iter().map(|r| (r.oid as u32, (r.name, r.node as u32))).collect())
}
