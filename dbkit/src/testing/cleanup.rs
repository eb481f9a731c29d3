//! Dropping what crashed runs left: test databases whose process is gone, kept ones past their
//! time, ready clones of templates that were evicted, and half-built templates nobody builds.

use anyhow::Result;
use diesel::RunQueryDsl;

use super::names::{self, DbName, Pooled};
use super::server::{BUILD_LOCKS, CLEAN_LOCKS, databases, now, server};
use super::{KEEP_FOR, UNUSED, recycle, slot, template};

/// Unused clones of a gone process go back to a pool holding fewer than this (the default pool
/// size; a process that wants more makes them).
const RETURNED_UP_TO: usize = 3;

/// Drops stale test databases on the test server; returns their names. Each test process runs
/// it once in the background; nothing in use is touched.
pub fn clean_stale() -> Result<Vec<String>> {
    let server = server()?;
    // One cleanup at a time across processes: each sees what the one before it did.
    let mut session = server.connect_admin()?;
    diesel::sql_query(format!("SELECT pg_advisory_lock({CLEAN_LOCKS}, 0)")).execute(&mut session)?;
    let live = server.live_owners()?;
    let all = server.admin(|c| databases(c, names::ANY))?;
    // Read once, not per database: a run's setup script walks every slot database of the server.
    let in_use = server.admin(connected)?;
    let parsed: Vec<(&String, Option<DbName>)> = all.iter().map(|(n, _)| (n, DbName::parse(n))).collect();
    let templates: Vec<u64> = parsed
        .iter()
        .filter_map(|(_, n)| match n {
            Some(DbName::Template { hash }) => Some(*hash),
            _ => None,
        })
        .collect();
    let pooled_count = |hash: u64| {
        parsed.iter().filter(|(_, n)| matches!(n, Some(DbName::Ready { hash: h, .. }) if *h == hash)).count()
    };
    let mut returned: Vec<u64> = Vec::new();
    let mut stale = Vec::new();
    for ((name, comment), (_, parsed)) in all.iter().zip(&parsed) {
        let drop = match parsed {
            Some(DbName::Test { owner, n }) => {
                let kept_at =
                    comment.as_deref().and_then(|c| c.strip_prefix("railgun test kept ")).and_then(|t| t.parse().ok());
                let alive = live.contains(owner);
                // The template's hash, as the comment of a clone held ahead names it.
                let unused = comment
                    .as_deref()
                    .and_then(|c| c.strip_prefix(UNUSED))
                    .and_then(|h| u64::from_str_radix(h, 16).ok());
                let room =
                    |hash: &u64| pooled_count(*hash) + returned.iter().filter(|&h| h == hash).count() < RETURNED_UP_TO;
                if let Some(hash) = unused.filter(|hash| !alive && templates.contains(hash) && room(hash)) {
                    // Held ahead by a process that ended before any test got it: as good as new.
                    let pooled = DbName::Ready { hash, owner: *owner, n: n.clone(), state: Pooled::Returned }.render();
                    let back = server.admin(|c| {
                        // The pooler may keep a connection to it a few seconds (a test's `url()`
                        // used it before it was reset and held): the rename would wait for it.
                        recycle::close_clients(c, name, None)?;
                        diesel::sql_query(format!("COMMENT ON DATABASE \"{name}\" IS NULL")).execute(c)?;
                        Ok(diesel::sql_query(format!("ALTER DATABASE \"{name}\" RENAME TO \"{pooled}\"")).execute(c)?)
                    });
                    if back.is_ok() {
                        returned.push(hash);
                        continue;
                    }
                }
                !alive && kept_at.is_none_or(|at: u64| now().saturating_sub(at) > KEEP_FOR.as_secs())
            }
            Some(DbName::Slot { run, .. }) => {
                if stale_slot(server, name, run, comment.as_deref(), &in_use) {
                    stale.push(name.clone());
                }
                false
            }
            Some(DbName::Preparing { owner, .. }) => !live.contains(owner),
            Some(DbName::Ready { hash, .. }) => !templates.contains(hash),
            Some(DbName::Building { hash }) => {
                let failed_at =
                    comment.as_deref().and_then(|c| c.strip_prefix(template::FAILED)).and_then(|t| t.parse().ok());
                let kept = failed_at.is_some_and(|at: u64| now().saturating_sub(at) <= KEEP_FOR.as_secs());
                if !kept && drop_unbuilt(server, name, *hash) {
                    stale.push(name.clone());
                }
                false
            }
            Some(DbName::Template { .. }) | None => false,
        };
        if drop && server.admin(|c| recycle::drop_database(c, name)).is_ok() {
            stale.push(name.clone());
        }
    }
    Ok(stale)
}

/// Drops another run's slot database (nextest's run id), never while connected; true when it
/// went. Skipped while anyone is (the pooler keeps a finished run's server connections 5 s): a
/// DROP of a database in use waits 5 s before it fails, which made a run started right after
/// another wait that long in its setup script. A later run drops it. One made ready a moment
/// ago waits for its run's first test.
///
/// Not put in the pool, though it could be now: pooled, one was once handed out with its last
/// test's row still in it (issue 11). The cause, found later: its pooled name was 66 bytes,
/// Postgres cut it to 63, and the cut lost the `used` mark, so the claimer took it for a clean
/// clone and skipped the reset (see `names`; every name now fits). The statistics were never at
/// fault: a server process flushes them before it stops counting as connected, so the rename
/// (which needs nobody connected) came after them. Dropping costs a run one clone per slot.
fn stale_slot(server: &super::server::Server, name: &str, run: &str, comment: Option<&str>, in_use: &[String]) -> bool {
    let ready = comment.and_then(slot::ready_since);
    if Some(run) == super::runner::runner().run()
        || in_use.iter().any(|n| n == name)
        || ready.is_some_and(|at| now().saturating_sub(at) <= slot::READY_FOR)
    {
        return false;
    }
    server.admin(|c| Ok(diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\"")).execute(c)?)).is_ok()
}

/// Drops a half-built template, only when nobody is building it (its builder holds the lock);
/// true when it went.
fn drop_unbuilt(server: &super::server::Server, name: &str, hash: u64) -> bool {
    let key = hash as i32;
    server
        .admin(|c| {
            #[derive(diesel::QueryableByName)]
            struct Locked {
                #[diesel(sql_type = diesel::sql_types::Bool)]
                locked: bool,
            }
            let locked: Locked =
                diesel::sql_query(format!("SELECT pg_try_advisory_lock({BUILD_LOCKS}, {key}) AS locked"))
                    .get_result(c)?;
            if !locked.locked {
                return Ok(false);
            }
            recycle::drop_database(c, name)?;
            diesel::sql_query(format!("SELECT pg_advisory_unlock({BUILD_LOCKS}, {key})")).execute(c)?;
            Ok(true)
        })
        .unwrap_or(false)
}

/// The databases a server process is connected to.
fn connected(conn: &mut diesel::PgConnection) -> Result<Vec<String>> {
    #[derive(diesel::QueryableByName)]
    struct Connected {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let rows: Vec<Connected> = diesel::sql_query(
        "SELECT DISTINCT d.datname::text FROM pg_stat_get_activity(NULL) s JOIN pg_database d ON d.oid = s.datid",
    )
    .load(conn)?;
    Ok(rows.into_iter().map(|r| r.datname).collect())
}
