//! What a statement really does to the tables, read from the server: the locks its session
//! holds (from `pg_locks`, on a second connection) and the tables it rewrote (a `relfilenode`
//! that changed). One mechanism for `migration lint --measure` and `migration rehearse`.
//!
//! Inside a transaction, locks last until it ends, so reading them after each statement misses
//! none. A statement outside a transaction (`CREATE INDEX CONCURRENTLY`) releases its locks as
//! it ends: [`outside_transaction`] holds a snapshot open on a third connection, which such a
//! statement waits for before it finishes, and reads its locks while it waits.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Integer, Text};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};

/// pg_locks' modes, weakest first.
pub const MODES: &[&str] = &[
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
];

/// The mode that blocks reads too.
pub const ACCESS_EXCLUSIVE: &str = "AccessExclusiveLock";

/// A mode's rank among [`MODES`] (0 for one it does not know).
pub fn strength(mode: &str) -> usize {
    MODES.iter().position(|m| *m == mode).unwrap_or(0)
}

/// A mode as SQL's `LOCK` names it: `AccessExclusiveLock` → `ACCESS EXCLUSIVE`.
pub fn sql_name(mode: &str) -> String {
    let words = mode.strip_suffix("Lock").unwrap_or(mode);
    let mut out = String::new();
    for c in words.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() {
            out.push(' ');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// The strongest mode of each table among `locks`.
pub fn strongest(locks: impl IntoIterator<Item = (String, String)>) -> BTreeMap<String, String> {
    let mut strongest: BTreeMap<String, String> = BTreeMap::new();
    for (relation, mode) in locks {
        let entry = strongest.entry(relation).or_insert_with(|| mode.clone());
        if strength(&mode) > strength(entry) {
            *entry = mode;
        }
    }
    strongest
}

pub fn backend_pid(conn: &mut PgConnection) -> Result<i32> {
    #[derive(QueryableByName)]
    struct Pid {
        #[diesel(sql_type = Integer)]
        pid: i32,
    }
    Ok(diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result::<Pid>(conn)?.pid)
}

/// How a table is named in what we print: `table` in schema public, else `schema.table`.
const QUALIFIED: &str = "CASE WHEN n.nspname = 'public' THEN c.relname::text ELSE n.nspname || '.' || c.relname END";

/// The table locks `pid` holds (granted), by table name and mode (indexes left out: they follow
/// their table's).
pub fn locks_of(observer: &mut PgConnection, pid: i32) -> Result<BTreeSet<(String, String)>> {
    #[derive(QueryableByName)]
    struct Lock {
        #[diesel(sql_type = Text)]
        relation: String,
        #[diesel(sql_type = Text)]
        mode: String,
    }
    let locks: Vec<Lock> = diesel::sql_query(format!(
        "SELECT {QUALIFIED} AS relation, l.mode::text AS mode FROM pg_locks l
           JOIN pg_class c ON c.oid = l.relation JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE l.pid = $1 AND l.locktype = 'relation' AND l.granted
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
            AND c.relkind IN ('r', 'p', 'm')
            AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
    ))
    .bind::<Integer, _>(pid)
    .load(observer)
    .context("read pg_locks")?;
    Ok(locks.into_iter().map(|l| (l.relation, l.mode)).collect())
}

/// Each user table's name and relfilenode, by oid, as `conn` sees it.
pub fn relfilenodes(conn: &mut PgConnection) -> Result<BTreeMap<u32, (String, u32)>> {
    #[derive(QueryableByName)]
    struct Rel {
        #[diesel(sql_type = BigInt)]
        oid: i64,
        #[diesel(sql_type = Text)]
        name: String,
        #[diesel(sql_type = BigInt)]
        node: i64,
    }
    let rels: Vec<Rel> = diesel::sql_query(format!(
        "SELECT c.oid::bigint AS oid, {QUALIFIED} AS name, c.relfilenode::bigint AS node
           FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE c.relkind IN ('r', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')"
    ))
    .load(conn)
    .context("read relfilenodes")?;
    Ok(rels.into_iter().map(|r| (r.oid as u32, (r.name, r.node as u32))).collect())
}

/// The tables of `before` whose relfilenode is another in `after`: rewritten.
pub fn rewritten(before: &BTreeMap<u32, (String, u32)>, after: &BTreeMap<u32, (String, u32)>) -> Vec<String> {
    before
        .iter()
        .filter(|(oid, (_, node))| after.get(oid).is_some_and(|(_, new)| new != node))
        .map(|(_, (name, _))| name.clone())
        .collect()
}

/// Runs a statement outside a transaction on `conn` while a third connection holds a snapshot
/// open; reads its locks while it waits for that snapshot (or until it ends). The locks seen,
/// and whether none could be seen.
pub fn outside_transaction(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_as_sql_names_them() {
        assert_eq!(sql_name("AccessExclusiveLock"), "ACCESS EXCLUSIVE");
        assert_eq!(sql_name("ShareLock"), "SHARE");
        assert_eq!(sql_name("ShareUpdateExclusiveLock"), "SHARE UPDATE EXCLUSIVE");
        let locks = [("t".to_string(), "ShareLock".to_string()), ("t".to_string(), "AccessShareLock".to_string())];
        assert_eq!(strongest(locks)["t"], "ShareLock");
    }
}
