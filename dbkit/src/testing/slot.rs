//! Under nextest (a process per test): a database per test slot of the run. nextest numbers
//! the tests running at once (`NEXTEST_TEST_GLOBAL_SLOT`, unique among them) and names the run
//! (`NEXTEST_RUN_ID`), so `railgun_slot_<template hash>_<run>_<slot>` is this process's alone
//! with no claim: its test connects to it, resets what the slot's last test left, and at its
//! end flushes its statistics for the next one. One connection per test, none to the
//! `postgres` database; through the setup script's PgBouncer (see `pooler`) it is the server
//! process the slot's last test left, so no test process starts one. A failed test's database is renamed out of the slot and kept; one that
//! ran DDL is dropped; a slot with no database yet gets one from the pool under its name.
//! Slot databases of other runs are dropped by the next cleanup, never while connected (the
//! pooler lets a finished run's server connections go after 5 s idle).

use anyhow::{Context, Result};
use diesel::connection::SimpleConnection;
use diesel::{PgConnection, QueryableByName, RunQueryDsl};

use super::server::{FACTS_ENV, Server};

pub(crate) const SLOT_PREFIX: &str = "railgun_slot_";
/// The comment a slot database gets when its test ended cleanly (statistics flushed, every
/// other connection gone), followed by the server processes of the connections it left
/// (idle, flushed: kept by the pooler for the next test): the slot's next test may reset it.
pub(crate) const FINISHED: &str = "railgun slot finished";

/// The end of the slot's last test, from the slot database `conn` is connected to.
pub(crate) struct Marks {
    /// The server processes the last test left when it ended cleanly (see [`FINISHED`]).
    pub left: Option<Vec<i32>>,
    /// The comment of the template (what a clean clone holds).
    pub template: Option<String>,
    /// When it ended cleanly: whether any other client was still there (now being ended).
    pub alive: bool,
}

/// The [`Marks`] of the slot database `conn` is connected to and of the template `template`,
/// in one round trip. The caller clears the mark ([`unmark`]) before the test runs.
pub(crate) fn marks(conn: &mut PgConnection, template: &str) -> Result<Marks> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        mark: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        template: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        alive: bool,
    }
    // Every client but those the mark names is ended, in the same query.
    let others = super::recycle::terminate_clients(
        "current_database()",
        "'{}'",
        "",
        "AND pid <> pg_backend_pid() AND pid <> ALL(k.keep)",
    );
    let row: Row = diesel::sql_query(format!(
        "WITH m AS (SELECT shobj_description(oid, 'pg_database') AS mark FROM pg_database \
           WHERE datname = current_database()), \
         k AS (SELECT CASE WHEN mark ~ '^{FINISHED}( [0-9]+)*$' \
           THEN string_to_array(btrim(substr(mark, {skip})), ' ')::int4[] END AS keep FROM m) \
         SELECT m.mark, (SELECT shobj_description(t.oid, 'pg_database') FROM pg_database t \
           WHERE t.datname = $1 AND t.datistemplate) AS template, \
         coalesce((SELECT CASE WHEN k.keep IS NOT NULL THEN ({others}) END FROM k), false) AS alive FROM m",
        skip = FINISHED.len() + 1
    ))
    .bind::<diesel::sql_types::Text, _>(template)
    .get_result(conn)
    .context("read the slot database's mark")?;
    let left = row
        .mark
        .as_deref()
        .and_then(|m| m.strip_prefix(FINISHED))
        .and_then(|pids| pids.split_whitespace().map(|p| p.parse().ok()).collect::<Option<Vec<i32>>>());
    Ok(Marks { left, template: row.template, alive: row.alive })
}

/// The SQL that clears the slot database `name`'s mark: from then on, until the test marks its
/// end, a test killed midway leaves no mark, and the slot's next test drops the database.
pub(crate) fn unmark(name: &str) -> String {
    format!("COMMENT ON DATABASE \"{name}\" IS NULL;")
}

/// Marks the slot database `name` finished (see [`FINISHED`]) once every other client but
/// `left` (the pool's idle connections, flushed) has ended, the server processes `pids` (the
/// test's connections) included, with `conn`'s statistics flushed: one round trip, the server
/// waiting (as [`super::recycle::wait_alone`] does) up to a couple of seconds. An error when
/// they outlive that, or when `conn` is inside a transaction (a mark would never commit).
pub(crate) fn mark_finished(conn: &mut PgConnection, name: &str, pids: &[i32], left: &[i32]) -> Result<()> {
    let array = |pids: &[i32]| format!("'{{{}}}'", pids.iter().map(i32::to_string).collect::<Vec<_>>().join(","));
    let others = super::recycle::terminate_clients(
        "current_database()",
        &array(pids),
        "",
        &format!("AND pid <> pg_backend_pid() AND pid <> ALL({}::int4[])", array(left)),
    );
    let left: String = left.iter().map(|pid| format!(" {pid}")).collect();
    // The activity snapshot is the transaction's until cleared.
    conn.batch_execute(&format!(
        "DO $railgun$ DECLARE deadline timestamptz := clock_timestamp() + interval '2 s'; BEGIN \
           IF now() <> statement_timestamp() THEN RAISE 'left inside a transaction'; END IF; \
           WHILE ({others}) LOOP \
             IF clock_timestamp() > deadline THEN RAISE 'the test''s connections outlive it'; END IF; \
             PERFORM pg_sleep(0.0003); PERFORM pg_stat_clear_snapshot(); \
           END LOOP; \
           PERFORM pg_stat_force_next_flush(); \
           COMMENT ON DATABASE \"{name}\" IS '{FINISHED}{left}'; \
         END $railgun$"
    ))
    .context("mark the slot database's test finished")?;
    Ok(())
}

/// The slot database of this test process for the template `hash`: `Some` under nextest, in a
/// run whose setup script prepared the server (its facts are in the environment), on a server
/// where databases are reset rather than dropped.
pub(crate) fn name(hash: u64, server: &Server) -> Option<String> {
    let var = |key: &str| std::env::var(key).ok();
    if var("NEXTEST_EXECUTION_MODE").as_deref() != Some("process-per-test") || var(FACTS_ENV).is_none() {
        return None;
    }
    let slot: u32 = var("NEXTEST_TEST_GLOBAL_SLOT")?.parse().ok()?;
    let run = current_run()?;
    let prepared = var(TEMPLATES_ENV).is_some_and(|t| t.split(',').any(|t| t == format!("{hash:016x}")));
    (server.recycles && prepared && started_by_nextest()).then(|| format!("{SLOT_PREFIX}{hash:016x}_{run}_{slot}"))
}

/// The templates the setup script prepared (their hashes): only their tests skip the check.
pub(crate) const TEMPLATES_ENV: &str = "RAILGUN_TEST_TEMPLATES";

/// True in the process nextest started, not in one a test started (it inherits the slot
/// number, and would share the slot's database). `RAILGUN_TEST_SLOT_PARENT` names another
/// parent whose children may take slots (the harness's own tests play nextest that way).
fn started_by_nextest() -> bool {
    let parent = std::os::unix::process::parent_id();
    std::env::var("RAILGUN_TEST_SLOT_PARENT").is_ok_and(|p| p == parent.to_string())
        || std::fs::read_to_string(format!("/proc/{parent}/comm")).is_ok_and(|comm| comm.trim() == "cargo-nextest")
}

/// The run a slot database belongs to (`<hash>_<run>_<slot>` after the prefix).
pub(crate) fn run_of(rest: &str) -> Option<&str> {
    rest.split('_').nth(1)
}

/// This run's id as slot names carry it, when nextest runs us (its setup script included).
pub(crate) fn current_run() -> Option<String> {
    let run: String = std::env::var("NEXTEST_RUN_ID").ok()?.chars().filter(char::is_ascii_hexdigit).take(12).collect();
    (!run.is_empty()).then_some(run)
}
