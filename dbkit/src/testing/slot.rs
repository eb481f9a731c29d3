//! Under nextest (a process per test): a database per test slot of the run. nextest numbers
//! the tests running at once (`NEXTEST_TEST_GLOBAL_SLOT`, unique among them) and names the run
//! (`NEXTEST_RUN_ID`), so `railgun_slot_<template hash>_<run>_<slot>` is this process's alone
//! with no claim: its test connects to it, resets what the slot's last test left, and at its
//! end flushes its statistics for the next one. One connection per test, none to the
//! `postgres` database; through the setup script's PgBouncer (see `pooler`) it is the server
//! process the slot's last test left, so no test process starts one. The setup script puts
//! the run's slot databases ready (clean clones, marked as finished tests'). A failed test's
//! database is renamed out of the slot and kept, and a clean clone takes its place; one that
//! ran DDL is dropped; a slot with no database yet gets one from the pool under its name.
//! The start of a test is one query (see [`start`]) and, when the last test wrote rows, one
//! batch; its end is one batch (see [`mark_finished`]).
//! Slot databases of other runs are dropped by the next cleanup, never while connected (the
//! pooler lets a finished run's server connections go after 5 s idle).

use anyhow::{Context, Result};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{Array, Integer, Nullable, Oid, Text};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};

use super::conns::Lease;
use super::pool::Claimed;
use super::recycle::{self, Baseline, Written};
use super::server::{Server, databases};
use super::{Harness, handoff, next_test_name};
use crate::connect::Failure;

/// The comment a slot database gets when its test ended cleanly, followed by the statistics
/// epoch before that test began (` since <epoch>:`) and the server processes of the
/// connections it left (idle, their statistics flushed: kept by the pooler for the next test):
/// the slot's next test may reset it, once any other client is gone, in the same epoch.
pub(crate) const FINISHED: &str = "railgun slot finished";
/// The comment of a clean clone put in a slot (by the setup script, or after a failure),
/// followed by when (seconds since the epoch): its first test resets nothing, and another
/// run's cleanup leaves it alone a while, though nobody is connected to it yet.
pub(crate) const READY: &str = "railgun slot ready ";
/// How long another run's cleanup leaves a ready slot database nobody connected to.
pub(crate) const READY_FOR: u64 = 120;

/// The comment of a clean clone put in a slot now (see [`READY`]).
pub(crate) fn ready_mark() -> String {
    format!("{READY}{}", super::server::now())
}

/// When a slot database was made ready, by its comment (see [`READY`]).
pub(crate) fn ready_since(comment: &str) -> Option<u64> {
    comment.strip_prefix(READY)?.parse().ok()
}

/// What a test learns of its slot database as it starts, in one round trip (see [`start`]).
pub(crate) struct Start {
    /// The server process of the connection asked.
    pub pid: i32,
    /// The server processes the last test left when it ended cleanly (see [`FINISHED`]).
    pub left: Option<Vec<i32>>,
    /// The statistics epoch the last test began in (a ready one's: the current one); with `left`.
    pub since: i64,
    /// Every other client of the database.
    pub others: Vec<i32>,
    /// What the last test wrote, by the statistics: complete when the last test ended cleanly
    /// and no client but those it left is there (see [`Start::settled`]).
    pub written: Written,
}

impl Start {
    /// True when the last test ended cleanly and only the connections it left (their
    /// statistics flushed) are there, this one included: [`Start::written`] is then all the
    /// last test wrote. Else its other clients must end first (their statistics are flushed
    /// as they exit), and this connection's own pending statistics be flushed.
    /// A ready slot database (see [`READY`]: nobody connected to it before) is settled while no
    /// client but this one is there.
    pub fn settled(&self) -> bool {
        self.left.as_ref().is_some_and(|left| {
            let only_left = self.others.iter().all(|p| left.contains(p));
            only_left && (left.contains(&self.pid) || left.is_empty())
        })
    }
}

/// The [`Start`] of a test in the slot database `conn` is connected to, whose template's
/// baseline is `baseline`. The clients are read before the statistics: a client gone by then
/// flushed its statistics as it exited. The caller clears the mark ([`unmark`]) before the
/// test runs.
pub(crate) fn start(conn: &mut PgConnection, baseline: &Baseline) -> Result<Start> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Integer)]
        pid: i32,
        #[diesel(sql_type = Array<Integer>)]
        others: Vec<i32>,
        #[diesel(sql_type = Nullable<Text>)]
        mark: Option<String>,
        #[diesel(embed)]
        written: Written,
    }
    // Connections the pooler let go are not others: their statistics are flushed (see
    // `pooler::RESET`), and they stay for the next `url()`.
    let row: Row = diesel::sql_query(format!(
        "SELECT pg_backend_pid() AS pid, \
           ARRAY(SELECT s.pid FROM pg_stat_get_activity(NULL) s WHERE s.datid = d.oid \
             AND s.backend_type = 'client backend' AND s.pid <> pg_backend_pid() AND NOT {}) AS others, \
           (SELECT c.description FROM pg_shdescription c WHERE c.objoid = d.oid \
             AND c.classoid = 'pg_database'::regclass) AS mark, {} \
         FROM pg_database d WHERE d.datname = current_database()",
        super::pooler::RELEASED,
        Baseline::WRITTEN
    ))
    .bind::<Array<Oid>, _>(baseline.guarded())
    .bind::<Array<Oid>, _>(baseline.emptied())
    .get_result(conn)
    .context("read the slot database's mark")?;
    let (since, left) = match row.mark.as_deref() {
        Some(mark) if ready_since(mark).is_some() => (row.written.epoch, Some(Vec::new())),
        mark => match mark.and_then(finished) {
            Some((since, left)) => (since, Some(left)),
            None => (0, None),
        },
    };
    Ok(Start { pid: row.pid, left, since, others: row.others, written: row.written })
}

/// The statistics epoch and the server processes a [`FINISHED`] mark names.
fn finished(mark: &str) -> Option<(i64, Vec<i32>)> {
    let (since, pids) = mark.strip_prefix(FINISHED)?.strip_prefix(" since ")?.split_once(':')?;
    let pids = pids.split_whitespace().map(|p| p.parse().ok()).collect::<Option<Vec<i32>>>()?;
    Some((since.parse().ok()?, pids))
}

/// The SQL that clears the slot database `name`'s mark: from then on, until the test marks its
/// end, a test killed midway leaves no mark, and the slot's next test drops the database.
pub(crate) fn unmark(name: &str) -> String {
    format!("COMMENT ON DATABASE \"{name}\" IS NULL;")
}

/// Marks the slot database `name` finished (see [`FINISHED`]) by a test that began in the
/// statistics epoch `since`, `left` (the server processes
/// of the pool's connections, the one of `conn` included) with their statistics flushed: the
/// others of `left` flushed already, `conn`'s as this ends. Any other client (a connection
/// the test opened itself) the slot's next test ends and waits for. An error when `conn` is
/// inside a transaction (the mark would never commit).
pub(crate) fn mark_finished(conn: &mut PgConnection, name: &str, since: i64, left: &[i32]) -> Result<()> {
    let left: String = left.iter().map(|pid| format!(" {pid}")).collect();
    // One transaction: now() is its start, statement_timestamp() this message's receipt. The
    // error (a cast) is of a value made at run time: a constant would fail at planning.
    conn.batch_execute(&format!(
        "SELECT CASE WHEN now() <> statement_timestamp() \
           THEN ('the test left its connection inside a transaction' || left(now()::text, 0))::int END; \
         SELECT pg_stat_force_next_flush(); \
         COMMENT ON DATABASE \"{name}\" IS '{FINISHED} since {since}:{left}';"
    ))
    .context("mark the slot database's test finished")?;
    Ok(())
}

/// The slot database of this test process for the template `hash`: `Some` under nextest, on a
/// server where databases are reset rather than dropped, in a run whose setup script prepared
/// that template, or in a run with no setup script (a crate that has not added it: its slot
/// databases are made on demand by their first tests, from the pool or cloned).
pub(crate) fn name(hash: u64, server: &Server) -> Option<String> {
    let super::runner::Runner::NextestTest { slot: Some(slot), run: Some(run) } = super::runner::runner() else {
        return None;
    };
    let handed = super::handoff::handed();
    (server.recycles && (handed.is_none() || prepared(hash))).then(|| name_of(hash, run, *slot))
}

/// The slot database of the template `hash` for the slot `slot` of the run `run`.
pub(crate) fn name_of(hash: u64, run: &str, slot: u32) -> String {
    super::names::DbName::Slot { hash, run: run.to_string(), slot }.render()
}

/// True when the setup script prepared the template `hash`.
fn prepared(hash: u64) -> bool {
    super::handoff::handed().is_some_and(|h| h.prepared(hash))
}

impl Harness {
    /// This run's slot databases (as many as the tests it runs at once), from the pool's clean
    /// clones, each marked ready (see `slot::READY`): so the slots' first tests claim nothing and
    /// find their database there. Slots the pool has no clone for get one on demand.
    pub(super) fn prepare_slots(&self, run: &str, threads: u32) -> Result<()> {
        if !self.server.recycles {
            return Ok(());
        }
        for n in 0..threads {
            if !self.put_in_slot(&name_of(self.hash, run, n), false)? {
                break;
            }
        }
        Ok(())
    }

    /// The slot database `name`, reset for this test, when it exists and can be reset: the one
    /// connection this test process opens.
    pub(super) fn ready_slot(&self, name: &str) -> Result<Option<Lease>> {
        let baseline = self.slot_baseline()?;
        let slot = Lease::for_nextest_slot(name.to_string(), self.server.fast_url_for(name));
        let mut conn = match slot.get() {
            Ok(conn) => conn,
            Err(e) => match crate::connect::failure_of(&e) {
                Some(Failure::NoSuchDatabase) => return Ok(None),
                // The pooler says only this when it already failed to log in to a missing
                // database (one dropped while the pooler kept no connection to it, by another
                // run's cleanup).
                Some(Failure::PoolerLoginRetry) => {
                    let exists = self.server.admin(|c| Ok(databases(c, name)?.iter().any(|(n, _)| n == name)))?;
                    return if exists { Err(e) } else { Ok(None) };
                }
                _ => return Err(e),
            },
        };
        // The slot's last test ended cleanly (it marked its end): a killed one may have left
        // writes its statistics do not show yet. Unmarked from now (with the reset, in one
        // transaction), until this test ends.
        let reset = match baseline {
            Some(baseline) => {
                let start = start(&mut conn, baseline)?;
                slot.note_pid(&mut conn, start.pid);
                match &start.left {
                    _ if start.settled() => {
                        baseline.reset_written(&mut conn, &start.written, start.since, &unmark(name))?
                    }
                    // Other clients are ended (they flush as they exit), this one's statistics flushed.
                    Some(left) => {
                        conn.batch_execute("SELECT pg_stat_force_next_flush()")?;
                        recycle::wait_alone(&mut conn, left, recycle::RELEASE_GRACE)?
                            && baseline.reset(&mut conn, start.since, &unmark(name))?
                    }
                    None => false,
                }
            }
            None => false,
        };
        if !reset {
            // Left inside a transaction, so that the pooler closes its server connection rather
            // than keep it for a database about to be dropped.
            let _ = conn.batch_execute("BEGIN");
        }
        drop(conn);
        if reset {
            return Ok(Some(slot));
        }
        drop(slot);
        self.server.admin(|c| recycle::drop_database(c, name))?;
        Ok(None)
    }

    /// The baseline of a slot's template: from the setup script (see [`Harness::nextest_env`]),
    /// else from the template (made sure of).
    pub(super) fn slot_baseline(&self) -> Result<Option<&Baseline>> {
        if let Some((baseline, _)) = self.ready.get() {
            return Ok(baseline.as_ref());
        }
        let handed = handoff::handed().filter(|h| h.prepared(self.hash)).and_then(|h| h.baseline.clone());
        match handed {
            Some(baseline) => Ok(self.ready.get_or_init(|| (Some(baseline), None)).0.as_ref()),
            None => self.baseline(),
        }
    }

    /// After a passing test in a slot: its pool's connections' statistics flushed (the pooler
    /// keeps them for the slot's next test), the slot marked finished. False when that cannot
    /// be (a connection still out, or one left inside a transaction: the slot's next test then
    /// drops the database).
    pub(super) fn finish_slot(&self, slot: &Lease) -> Result<bool> {
        if !slot.all_back() {
            return Ok(false);
        }
        // One connection marks the end: one the test used, else a new one (it used the URL only).
        let mut conn = slot.get()?;
        let others = slot.idle_flush()?;
        let mut left = vec![slot.pid_of(&mut conn)?];
        left.extend(others.iter().map(|(_, pid)| *pid));
        Ok(mark_finished(&mut conn, &slot.name, self.server.stats_epoch, &left).is_ok())
    }

    /// A failed test's slot database renamed out of the slot (to a test database's name);
    /// returns the new name.
    pub(super) fn leave_slot(&self, slot: Lease) -> Result<String> {
        let name = slot.name.clone();
        drop(slot);
        let kept = next_test_name(self.server);
        self.server.admin(|c| {
            recycle::close_clients(c, &name, None)?;
            diesel::sql_query(format!("ALTER DATABASE \"{name}\" RENAME TO \"{kept}\"")).execute(c)?;
            Ok(())
        })?;
        // Not for the kept database's sake: a failure here only costs the slot's next test a clone.
        let _ = self.replace_slot(&name);
        Ok(kept)
    }

    /// The slot's database dropped (a connection of its test still out, or left inside a
    /// transaction) and a clean clone put in its place.
    pub(super) fn renew_slot(&self, slot: Lease) -> Result<()> {
        let name = slot.name.clone();
        drop(slot);
        self.server.admin(|c| recycle::drop_database(c, &name))?;
        self.replace_slot(&name)
    }

    /// A clean clone in the slot `name` that a failed test's database left, marked ready for
    /// the slot's next test: so that the pooler never tries to log in to a missing
    /// database twice in a row (it would then turn that database's clients away for a while).
    pub(super) fn replace_slot(&self, name: &str) -> Result<()> {
        self.put_in_slot(name, true).map(|_| ())
    }

    /// A clone put in the slot `name`: from the pool, else (when `make`) made now; marked ready
    /// when clean (a used one's first test finds no mark and replaces it).
    /// False when the pool had none and none was made.
    pub(super) fn put_in_slot(&self, name: &str, make: bool) -> Result<bool> {
        let clean = match self.claim(name)? {
            Some(claimed) => matches!(claimed, Claimed::Clean),
            None if make => {
                self.clone_template(name)?;
                true
            }
            None => return Ok(false),
        };
        if clean {
            self.server.admin(|c| {
                Ok(diesel::sql_query(format!("COMMENT ON DATABASE \"{name}\" IS '{}'", ready_mark())).execute(c)?)
            })?;
        }
        Ok(true)
    }
}
