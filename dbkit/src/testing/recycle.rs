//! Recycling a passing test's database: what a clean clone holds (learnt when the template is
//! built, and kept in its comment), and the reset that brings a used one back to it (rows
//! deleted, sequences set back) when the test changed nothing but rows. A test that ran DDL
//! wrote to the catalogs: its database is dropped. The reset runs on a connection the next test
//! gets: under `cargo test` the one the last test used, under nextest the one the next claimer
//! opens for its test anyway.
//!
//! What a test wrote, the server's statistics say: per table, rows inserted, updated and deleted
//! since the last reset (which zeroes them), DDL included (rows written to the catalogs). Reading
//! them is a few function calls, with no table or catalog scan; they are complete once the
//! test's connections have ended (a server process reports them as it exits) or flushed them
//! (`pg_stat_force_next_flush()`, on the pooled connections kept for the next test).
//!
//! Unless the server lost them: after a crash (a server process killed, a full disk failing a
//! WAL write) Postgres starts every count again from zero, and a used database would then look
//! untouched. Every reset compares the server's statistics epoch (see [`STATS_EPOCH`]) with the
//! one seen before the test that used the database began; another epoch, and it is dropped.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use diesel::connection::SimpleConnection;
use diesel::sql_types::{Array, Bool, Integer, Oid, Text};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use serde::{Deserialize, Serialize};

/// The SQL of the server's statistics epoch: when it last lost its statistics (a crash, a
/// first start, a reset of the shared counters), in microseconds since 1970. Postgres resets the
/// background writer's counters whenever it discards the others, and keeps them across a clean
/// restart; nothing else changes their reset time. A macro, for `concat!`.
macro_rules! stats_epoch {
    () => {
        "coalesce((extract(epoch FROM pg_stat_get_bgwriter_stat_reset_time()) * 1000000)::int8, 0)"
    };
}
pub(crate) const STATS_EPOCH: &str = stats_epoch!();

/// What a clean clone holds.
#[derive(Serialize, Deserialize, Clone)]
pub(crate) struct Baseline {
    /// The database's own catalogs (not the shared ones: the harness writes to those).
    catalogs: Vec<u32>,
    tables: Vec<Table>,
    sequences: Vec<Sequence>,
    /// Each catalog's rows, to tell a test's temporary objects (gone with its session) from DDL.
    #[serde(default)]
    catalog_rows: Vec<CatalogRows>,
    /// A transaction id after every row of the template was written: a newer row is a test's.
    #[serde(default)]
    xid: u64,
}

#[derive(Serialize, Deserialize, Clone)]
struct CatalogRows {
    oid: u32,
    name: String,
    rows: i64,
}

/// The catalog rows a count leaves out: the schemas of sessions' temporary objects
/// (`pg_temp_N`, `pg_toast_temp_N`), made once per server process slot and kept.
const NOT_TEMP_SCHEMAS: &str = " WHERE nspname !~ '^pg_(toast_)?temp_'";

fn catalog_filter(name: &str) -> &'static str {
    if name == "pg_catalog.pg_namespace" { NOT_TEMP_SCHEMAS } else { "" }
}

/// The rows of the catalog `name`; `None` when the role may not read it (`pg_user_mapping`
/// holds passwords: superusers only). A test that writes to such a catalog gets its database
/// dropped, as before.
fn catalog_count(conn: &mut PgConnection, name: &str) -> Result<Option<i64>> {
    #[derive(QueryableByName)]
    struct Readable {
        #[diesel(sql_type = Bool)]
        readable: bool,
    }
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        rows: i64,
    }
    // Apart: a query naming a table it may not read fails, whichever branch runs.
    let readable: Readable = diesel::sql_query("SELECT has_table_privilege($1, 'SELECT') AS readable")
        .bind::<Text, _>(name)
        .get_result(conn)?;
    if !readable.readable {
        return Ok(None);
    }
    let filter = catalog_filter(name);
    let count: Count = diesel::sql_query(format!("SELECT count(*) AS rows FROM {name}{filter}")).get_result(conn)?;
    Ok(Some(count.rows))
}

#[derive(Serialize, Deserialize, Clone)]
struct Table {
    oid: u32,
    name: String,
    /// Rows the template has: a test that changes them gets its database dropped.
    seeded: bool,
}

#[derive(Serialize, Deserialize, Clone)]
struct Sequence {
    name: String,
    /// The table whose column owns it, set back when that table was written.
    table: Option<u32>,
    last_value: i64,
    is_called: bool,
}

impl Baseline {
    /// Learns it from `conn`, connected to the template being built.
    pub fn learn(conn: &mut PgConnection) -> Result<Baseline> {
        #[derive(QueryableByName)]
        struct Relation {
            #[diesel(sql_type = Oid)]
            oid: u32,
            #[diesel(sql_type = Text)]
            kind: String,
            #[diesel(sql_type = Text)]
            name: String,
            #[diesel(sql_type = diesel::sql_types::Nullable<Oid>)]
            owner: Option<u32>,
        }
        let relations: Vec<Relation> = diesel::sql_query(
            "SELECT c.oid, c.relkind::text AS kind, format('%I.%I', n.nspname, c.relname) AS name, \
             (SELECT d.refobjid FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid \
              AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1) AS owner \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'S') AND NOT c.relisshared AND (n.nspname = 'pg_catalog' OR \
              n.nspname <> 'information_schema' AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%') \
             ORDER BY c.oid",
        )
        .load(conn)?;
        let mut baseline = Baseline {
            catalogs: Vec::new(),
            tables: Vec::new(),
            sequences: Vec::new(),
            catalog_rows: Vec::new(),
            xid: 0,
        };
        for relation in relations {
            let Relation { oid, kind, name, owner } = relation;
            if oid < 16384 {
                // ANALYZE (autovacuum's too) writes statistics: not DDL.
                let statistics = ["pg_catalog.pg_statistic", "pg_catalog.pg_statistic_ext_data"];
                if !statistics.contains(&name.as_str()) && kind == "r" {
                    baseline.catalogs.push(oid);
                    if let Some(rows) = catalog_count(conn, &name)? {
                        baseline.catalog_rows.push(CatalogRows { oid, name, rows });
                    }
                }
            } else if kind == "S" {
                #[derive(QueryableByName)]
                struct Position {
                    #[diesel(sql_type = diesel::sql_types::BigInt)]
                    last_value: i64,
                    #[diesel(sql_type = Bool)]
                    is_called: bool,
                }
                let at: Position =
                    diesel::sql_query(format!("SELECT last_value, is_called FROM {name}")).get_result(conn)?;
                baseline.sequences.push(Sequence {
                    name,
                    table: owner,
                    last_value: at.last_value,
                    is_called: at.is_called,
                });
            } else {
                #[derive(QueryableByName)]
                struct Rows {
                    #[diesel(sql_type = Bool)]
                    any: bool,
                }
                let rows: Rows =
                    diesel::sql_query(format!("SELECT EXISTS (SELECT FROM ONLY {name}) AS any")).get_result(conn)?;
                baseline.tables.push(Table { oid, name, seeded: rows.any });
            }
        }
        #[derive(QueryableByName)]
        struct Xid {
            #[diesel(sql_type = diesel::sql_types::Text)]
            xid: String,
        }
        let xid: Xid = diesel::sql_query("SELECT pg_current_xact_id()::text AS xid").get_result(conn)?;
        baseline.xid = xid.xid.parse().context("the server's transaction id")?;
        Ok(baseline)
    }

    /// True when what the statistics call DDL was only temporary objects, dropped since (their
    /// sessions ended or were reset): every catalog a test wrote to (`written`, the guarded
    /// objects the statistics show written) holds the template's rows, none newer than the
    /// template, and no table the template fills was written. Only the catalogs written are
    /// read, in one query. False when the baseline predates this check.
    fn only_temporary(&self, conn: &mut PgConnection, written: &[u32]) -> Result<bool> {
        if self.xid == 0 || self.catalog_rows.is_empty() {
            return Ok(false);
        }
        // A table the template fills, or a catalog this role could not count, must not have been written.
        let counted = |oid: &u32| self.catalog_rows.iter().any(|c| c.oid == *oid);
        if written.iter().any(|oid| !counted(oid)) {
            return Ok(false);
        }
        // Wraps as xids do: age() compares within the same 2^32 circle.
        let template = self.xid % (1 << 32);
        let checks: Vec<String> = self
            .catalog_rows
            .iter()
            .filter(|c| written.contains(&c.oid))
            .map(|c| {
                let (name, rows, filter) = (&c.name, c.rows, catalog_filter(&c.name));
                format!(
                    "(SELECT count(*) = {rows} AND count(*) FILTER (WHERE age(xmin) < age('{template}'::xid)) = 0 FROM {name}{filter})"
                )
            })
            .collect();
        if checks.is_empty() {
            return Ok(true);
        }
        #[derive(QueryableByName)]
        struct Same {
            #[diesel(sql_type = Bool)]
            same: bool,
        }
        let same: Same = diesel::sql_query(format!("SELECT {} AS same", checks.join(" AND ")))
            .get_result(conn)
            .context("check whether the last test changed the schema")?;
        Ok(same.same)
    }

    /// As kept in the template's comment.
    pub fn to_text(&self) -> Result<String> {
        Ok(serde_json::to_string(self)?)
    }

    pub fn from_text(text: &str) -> Result<Baseline> {
        serde_json::from_str(text).context("the test template's baseline")
    }

    /// Brings the database `conn` is connected to back to the clean state; false when it
    /// cannot be: DDL ran, the template's rows changed, or the server's statistics epoch is not
    /// `since` (the one seen before the last test began: the statistics lost what it wrote).
    /// Every other connection that wrote to it must have ended or flushed its statistics first
    /// (see [`wait_alone`]). `then` (SQL) runs in the same transaction as the reset, or alone
    /// when nothing needs resetting; not when it cannot be.
    pub fn reset(&self, conn: &mut PgConnection, since: i64, then: &str) -> Result<bool> {
        let written: Written = diesel::sql_query(format!("SELECT {}", Baseline::WRITTEN))
            .bind::<Array<Oid>, _>(self.guarded())
            .bind::<Array<Oid>, _>(self.emptied())
            .get_result(conn)
            .context("read what the last test wrote")?;
        self.reset_written(conn, &written, since, then)
    }

    /// SQL columns saying what the last test wrote, from the statistics: `guarded` (the
    /// catalogs and template-filled tables written: DDL ran, or the template's rows changed; no
    /// reset unless only temporary objects did it), `tables` (the tables to empty) and `epoch`
    /// (the statistics' own, see [`STATS_EPOCH`]), with the oid arrays [`Baseline::guarded`]
    /// bound at `$1` and [`Baseline::emptied`] at `$2`.
    ///
    /// A table the template leaves empty holds rows after a test only if the test inserted
    /// some (updates and deletes of an empty table change nothing), so its inserts alone
    /// count: the reset's own deletes, counted after the statistics are zeroed, never make it
    /// look written again.
    pub const WRITTEN: &str = concat!(
        "ARRAY(SELECT c FROM unnest($1::oid[]) c WHERE pg_stat_get_tuples_inserted(c) + \
          pg_stat_get_tuples_updated(c) + pg_stat_get_tuples_deleted(c) > 0) AS guarded, \
         ARRAY(SELECT t FROM unnest($2::oid[]) t WHERE pg_stat_get_tuples_inserted(t) > 0) AS tables, ",
        stats_epoch!(),
        " AS epoch"
    );

    /// What a test may not write to: the database's catalogs (DDL) and the template's rows.
    pub fn guarded(&self) -> Vec<u32> {
        let seeded = self.tables.iter().filter(|t| t.seeded).map(|t| t.oid);
        self.catalogs.iter().copied().chain(seeded).collect()
    }

    /// The tables the template leaves empty: emptied again after a test that wrote to them.
    pub fn emptied(&self) -> Vec<u32> {
        self.tables.iter().filter(|t| !t.seeded).map(|t| t.oid).collect()
    }

    /// [`Baseline::reset`] with what the last test wrote already read.
    pub fn reset_written(&self, conn: &mut PgConnection, written: &Written, since: i64, then: &str) -> Result<bool> {
        if written.epoch != since {
            return Ok(false);
        }
        if !written.guarded.is_empty() {
            if !self.only_temporary(conn, &written.guarded)? {
                return Ok(false);
            }
            // The catalogs' counts start again from zero, or every later test would check again.
            let resets: String = written
                .guarded
                .iter()
                .map(|oid| format!(" SELECT pg_stat_reset_single_table_counters({oid});"))
                .collect();
            conn.batch_execute(&resets).context("reset the catalogs' statistics")?;
        }
        let mut reset: Vec<String> = self
            .tables
            .iter()
            .filter(|t| written.tables.contains(&t.oid))
            .map(|t| format!("DELETE FROM ONLY {};", t.name))
            .collect();
        // A sequence moves with its table's inserts (rolled back ones too); one of no table may
        // have moved on its own.
        for sequence in &self.sequences {
            if sequence.table.is_none_or(|t| written.tables.contains(&t)) {
                let literal = sequence.name.replace('\'', "''");
                reset.push(format!("SELECT setval('{literal}', {}, {});", sequence.last_value, sequence.is_called));
            }
        }
        if !reset.is_empty() {
            // Replica mode: no foreign key checks nor triggers while the tables are emptied.
            // The emptied tables' counts start again from zero (this connection's deletes are
            // counted after); every other count is zero already, or the reset would not be.
            // Not pg_stat_reset(): it walks every server-wide statistics entry.
            let counts: String = written
                .tables
                .iter()
                .map(|oid| format!(" SELECT pg_stat_reset_single_table_counters({oid});"))
                .collect();
            let script = format!(
                "SET session_replication_role = replica; {} RESET session_replication_role; {then}{counts}",
                reset.join(" ")
            );
            conn.batch_execute(&script).context("reset the test database")?;
        } else if !then.is_empty() {
            conn.batch_execute(then)?;
        }
        Ok(true)
    }
}

/// What the last test wrote (see [`Baseline::WRITTEN`]).
#[derive(QueryableByName)]
pub(crate) struct Written {
    #[diesel(sql_type = Array<Oid>)]
    pub guarded: Vec<u32>,
    #[diesel(sql_type = Array<Oid>)]
    pub tables: Vec<u32>,
    /// The server's statistics epoch as they were read.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub epoch: i64,
}

/// Ends every other client of the database `conn` is connected to but `keep` (its pool's idle
/// connections, their statistics flushed) and those the pooler let go (see
/// [`super::pooler::RELEASED`]: flushed too, and kept for the next test's `url()`), and waits
/// until their processes are gone and the pooler's resets are done: only then are the
/// statistics complete, for [`Baseline::reset`] (a process flushes them as it exits, before it
/// leaves pg_stat_activity). False when they outlive a couple of seconds.
///
/// For the first `grace` (see [`RELEASE_GRACE`]: when the last test may have used the pooler)
/// it only watches: a connection the last test made from `url()` is the pooler's, which resets
/// and keeps it a moment after the test let go of it. Ended in that moment, it is dead while the
/// pooler has it idle, and the pooler handed it to the next test's `url()` before it noticed
/// ("terminating connection due to administrator command" as the next test connected: one run
/// in 30 of three 100-test suites at once).
pub(crate) fn wait_alone(conn: &mut PgConnection, keep: &[i32], grace: Duration) -> Result<bool> {
    #[derive(QueryableByName)]
    struct Alive {
        #[diesel(embed)]
        ending: Ending,
        #[diesel(sql_type = Bool)]
        releasing: bool,
    }
    let reset = super::pooler::RESET;
    let [watch, end] = [false, true].map(|signal| {
        terminate_clients(
            "current_database()",
            &format!(
                ", EXISTS (SELECT FROM s, here WHERE s.datid = here.oid AND s.query = '{reset}' AND s.state <> 'idle') AS releasing"
            ),
            &format!(
                "AND pid <> pg_backend_pid() AND pid <> ALL($2::int4[]) AND pid NOT IN (SELECT pid FROM s WHERE s.query = '{reset}')"
            ),
            signal,
        )
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(2);
    let mut ended = Vec::new();
    loop {
        let watching = started.elapsed() < grace;
        let query = if watching { &watch } else { &end };
        if watching {
            ended.clear();
        }
        let alive: Alive = diesel::sql_query(query)
            .bind::<Array<Integer>, _>(&ended)
            .bind::<Array<Integer>, _>(keep)
            .get_result(conn)
            .context("wait for the last test's connections to end")?;
        if !alive.ending.note(&mut ended) && !alive.releasing {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_micros(300));
    }
}

/// How long [`wait_alone`] waits for the pooler to let go of the last test's connections before
/// it ends them (usually a millisecond or two).
pub(crate) const RELEASE_GRACE: Duration = Duration::from_millis(200);

/// Ends every client of database `name` and waits until their processes are gone (see
/// [`terminate_clients`]): polled, rather than with `pg_terminate_backend`'s timeout, which
/// waits in steps of 100 ms. False when the clients outlive a couple of seconds, or (`room`:
/// a pool's prefix and size) when the pool of databases named `prefix...` already holds `size`.
pub(crate) fn close_clients(admin: &mut PgConnection, name: &str, room: Option<(&str, usize)>) -> Result<bool> {
    #[derive(QueryableByName)]
    struct Alive {
        #[diesel(embed)]
        ending: Ending,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        pooled: Option<i64>,
    }
    let (prefix, size) = (room.map(|(prefix, _)| prefix), room.map_or(usize::MAX, |(_, size)| size));
    // Counted only for a pool (CASE evaluates its branch only when taken).
    let pooled = ", CASE WHEN $3::text IS NOT NULL \
         THEN (SELECT count(*) FROM pg_database WHERE starts_with(datname, $3)) END AS pooled";
    let query = terminate_clients("$2", pooled, "", true);
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut ended = Vec::new();
    loop {
        let alive: Alive = diesel::sql_query(&query)
            .bind::<Array<Integer>, _>(&ended)
            .bind::<Text, _>(name)
            .bind::<diesel::sql_types::Nullable<Text>, _>(prefix)
            .get_result(admin)?;
        if alive.pooled.is_some_and(|pooled| pooled as usize >= size) {
            return Ok(false);
        }
        if !alive.ending.note(&mut ended) {
            return Ok(true);
        }
        if Instant::now() > deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_micros(300));
    }
}

/// Drops the database `name`: its clients ended and waited for first (see [`close_clients`]),
/// then `DROP ... WITH (FORCE)` for any that came since. DROP's own wait for the clients it
/// ends sleeps in steps of 100 ms: with a pooler's idle connection to each, dropping 48 stale
/// test databases took 5.2 s (3 ms each without a client). Clients that outlive a couple of
/// seconds are left to DROP.
pub(crate) fn drop_database(admin: &mut PgConnection, name: &str) -> Result<()> {
    close_clients(admin, name, None).with_context(|| format!("end the clients of {name}"))?;
    diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(admin)
        .with_context(|| format!("drop {name}"))?;
    Ok(())
}

/// What a poll of a [`terminate_clients`] query found.
#[derive(QueryableByName)]
struct Ending {
    /// A process was signalled: one is still there.
    #[diesel(sql_type = Bool)]
    alive: bool,
    /// The processes signalled.
    #[diesel(sql_type = Array<Integer>)]
    ended: Vec<i32>,
}

impl Ending {
    /// Adds the processes signalled to `ended` (the next poll's `$1`); true while one is there.
    fn note(self, ended: &mut Vec<i32>) -> bool {
        for pid in self.ended {
            if !ended.contains(&pid) {
                ended.push(pid);
            }
        }
        self.alive
    }
}

/// A query ending every client of the database named by the SQL expression `database` (a
/// poll: run again until `alive` is false); `columns` follow `alive` and `ended`, `filter`
/// narrows the processes. A process signalled once (`ended`, bound at `$1` by the next poll)
/// is signalled again until it is gone: it leaves pg_stat_activity a moment before it stops
/// counting for `ALTER DATABASE` and `DROP DATABASE`, which then sleep 100 ms. Never a process
/// not seen here first (the ids of a test's earlier connections, say): a server process id is
/// reused once the process is gone, and a starting process is invisible here until it has
/// logged in.
/// Reads pg_stat_activity's function without the view's joins: a fifth of its cost (a test
/// process plans every query afresh). Without `signal`, it only says whether one is there.
pub(crate) fn terminate_clients(database: &str, columns: &str, filter: &str, signal: bool) -> String {
    let signalled = if signal { "pg_terminate_backend(pid)" } else { "true" };
    format!(
        "WITH here AS (SELECT oid FROM pg_database WHERE datname = {database}), \
          s AS (SELECT pid, datid, backend_type, state, query FROM pg_stat_get_activity(NULL)), \
          t AS (SELECT pid, {signalled} AS signalled FROM \
           (SELECT unnest($1::int4[]) UNION SELECT pid FROM s, here WHERE datid = here.oid AND backend_type = 'client backend') p(pid) \
           WHERE EXISTS (SELECT FROM here) AND pid NOT IN (SELECT pid FROM s, here WHERE datid IS DISTINCT FROM here.oid) {filter}) \
         SELECT coalesce(bool_or(signalled), false) AS alive, \
          coalesce(array_agg(pid) FILTER (WHERE signalled), '{{}}') AS ended{columns} FROM t"
    )
}

/// Ends the server connections the pooler keeps idle on the database `name` (see
/// [`super::pooler::RELEASED`]) and waits (up to 2 s each) until they are gone: for a tool that
/// wants the database to itself.
pub(crate) fn end_released(admin: &mut PgConnection, name: &str) -> Result<()> {
    let released = super::pooler::RELEASED;
    diesel::sql_query(format!(
        "SELECT pg_terminate_backend(s.pid, 2000) FROM pg_stat_get_activity(NULL) s \
         JOIN pg_database d ON d.oid = s.datid WHERE d.datname = $1 AND {released}"
    ))
    .bind::<Text, _>(name)
    .execute(admin)
    .with_context(|| format!("end the pooler's connections to {name}"))?;
    Ok(())
}
