//! Under nextest (a process per test): a database per test slot of the run. nextest numbers
//! the tests running at once (`NEXTEST_TEST_GLOBAL_SLOT`, unique among them) and names the run
//! (`NEXTEST_RUN_ID`), so `railgun_slot_<template hash>_<run>_<slot>` is this process's alone
//! with no claim: its test connects to it, resets what the slot's last test left, and at its
//! end flushes its statistics for the next one. One server connection per test, none to the
//! `postgres` database. A failed test's database is renamed out of the slot and kept; one that
//! ran DDL is dropped; a slot with no database yet gets one from the pool under its name.
//! Slot databases of other runs are dropped by the next cleanup, never while connected.

use anyhow::{Context, Result};
use diesel::connection::SimpleConnection;
use diesel::{PgConnection, QueryableByName, RunQueryDsl};

use super::server::{FACTS_ENV, Server};

pub(crate) const SLOT_PREFIX: &str = "railgun_slot_";
/// The comment a slot database gets when its test ended cleanly (statistics flushed, every
/// connection gone): the slot's next test may reset it.
pub(crate) const FINISHED: &str = "railgun slot finished";

/// Whether the slot database `name` (which `conn` is connected to) was marked finished, and
/// the comment of the template `template` (what a clean clone holds), in one round trip; the
/// mark is then cleared.
pub(crate) fn marks(conn: &mut PgConnection, name: &str, template: &str) -> Result<(bool, Option<String>)> {
    #[derive(QueryableByName)]
    struct Marks {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        mark: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        template: Option<String>,
    }
    let marks: Marks = diesel::sql_query(
        "SELECT shobj_description(d.oid, 'pg_database') AS mark, \
         (SELECT shobj_description(t.oid, 'pg_database') FROM pg_database t WHERE t.datname = $1 AND t.datistemplate) AS template \
         FROM pg_database d WHERE d.datname = current_database()",
    )
    .bind::<diesel::sql_types::Text, _>(template)
    .get_result(conn)
    .context("read the slot database's mark")?;
    diesel::sql_query(format!("COMMENT ON DATABASE \"{name}\" IS NULL")).execute(conn)?;
    Ok((marks.mark.as_deref() == Some(FINISHED), marks.template))
}

/// Flushes this connection's statistics and marks the slot database `name` finished (see
/// [`FINISHED`]), in one round trip.
pub(crate) fn mark_finished(conn: &mut PgConnection, name: &str) -> Result<()> {
    conn.batch_execute(&format!("SELECT pg_stat_force_next_flush(); COMMENT ON DATABASE \"{name}\" IS '{FINISHED}'"))?;
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
