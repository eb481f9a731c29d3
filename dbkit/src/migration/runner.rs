//! Applying and reverting migrations: one connection holding a Postgres advisory lock (so two
//! runners never apply one migration twice), each migration in its own transaction unless its
//! metadata says otherwise, and bookkeeping in `__diesel_schema_migrations` exactly as
//! diesel_migrations keeps it (diesel_cli sees what we applied and the other way round).

use anyhow::{Context as _, Result, anyhow, bail};
use chrono::NaiveDateTime;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::result::Error as DieselError;
use diesel::sql_types::{Nullable, Text, Timestamp};
use diesel::{Connection, QueryableByName, RunQueryDsl};
use url::Url;

use super::source::{Limits, MigrationFiles, shown};
use super::{checksum, sql};

/// The advisory lock every migration runner of this database takes ("railgun" in ASCII).
/// Advisory locks are per database, so other databases on the server are not held up.
const LOCK_KEY: i64 = 0x0072_6169_6c67_756e;

/// diesel's own definition (diesel/src/migration/setup_migration_table.sql).
const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS __diesel_schema_migrations (
       version VARCHAR(50) PRIMARY KEY NOT NULL,
       run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);";

/// A version recorded as applied.
#[derive(QueryableByName, Debug, Clone)]
pub struct Applied {
    #[diesel(sql_type = Text)]
    pub version: String,
    #[diesel(sql_type = Timestamp)]
    pub run_on: NaiveDateTime,
}

/// A connection that holds the migration lock until it is dropped.
pub struct Locked {
    pub conn: PgConnection,
}

impl Locked {
    /// Connects and takes the migration lock, waiting (and saying so) while another runner has it.
    pub fn acquire(url: &Url) -> Result<Locked> {
        Locked::lock(crate::connect::establish(url)?)
    }

    /// Takes the migration lock on an open connection (see [`Locked::acquire`]).
    pub fn lock(mut conn: PgConnection) -> Result<Locked> {
        if !try_lock(&mut conn)? {
            let who = lock_holder(&mut conn).map(|pid| format!(" (server pid {pid})")).unwrap_or_default();
            eprintln!("waiting for another migration run on this database{who} to finish...");
            wait_for_lock(&mut conn)?;
        }
        let mut locked = Locked { conn };
        locked.ensure_table()?;
        Ok(locked)
    }

    /// Creates `__diesel_schema_migrations` if it is not there, as diesel does before each run,
    /// and the checksums' table beside it.
    pub fn ensure_table(&mut self) -> Result<()> {
        self.conn.batch_execute(CREATE_MIGRATIONS_TABLE).context("create __diesel_schema_migrations")?;
        checksum::ensure_table(&mut self.conn)
    }

    /// Applied versions, newest first (diesel's order).
    pub fn applied(&mut self) -> Result<Vec<Applied>> {
        applied(&mut self.conn)?.ok_or_else(|| anyhow!("__diesel_schema_migrations vanished during the run"))
    }

    pub fn apply(&mut self, migration: &MigrationFiles) -> Result<()> {
        apply(&mut self.conn, migration)
    }

    pub fn apply_limited(&mut self, migration: &MigrationFiles, limits: &Limits) -> Result<()> {
        apply_limited(&mut self.conn, migration, limits)
    }

    pub fn revert(&mut self, migration: &MigrationFiles) -> Result<()> {
        revert(&mut self.conn, migration)
    }
}

/// Runs `up.sql` and records the version and its checksum, in one transaction unless the
/// metadata says no (inside a transaction already, the migration's own becomes a savepoint).
pub fn apply(conn: &mut PgConnection, migration: &MigrationFiles) -> Result<()> {
    apply_limited(conn, migration, &migration.limits)
}

/// [`apply`] under `limits` (`lock_timeout`, `statement_timeout`): for the migration's
/// transaction, or for the session until it is done when it runs outside one.
pub fn apply_limited(conn: &mut PgConnection, migration: &MigrationFiles, limits: &Limits) -> Result<()> {
    let sql = read_sql(migration, "up.sql")?;
    let transactional = migration.run_in_transaction;
    let record = |conn: &mut PgConnection| -> Result<()> {
        set_limits(conn, limits, transactional, migration)?;
        conn.batch_execute(&sql).map_err(Failed)?;
        record_applied(conn, migration, &sql)
    };
    let result = if transactional {
        conn.transaction(record)
    } else {
        let result = record(conn);
        reset_limits(conn, limits);
        result
    };
    result.map_err(|e| explain(conn, e, migration, "up.sql", &sql, limits))
}

/// Records `migration` as applied (diesel's row) with the checksum of `up_sql` and its files
/// (ours), as the runner does once its up.sql ran.
pub fn record_applied(conn: &mut PgConnection, migration: &MigrationFiles, up_sql: &str) -> Result<()> {
    #[derive(QueryableByName)]
    struct RunOn {
        #[diesel(sql_type = Timestamp)]
        run_on: NaiveDateTime,
    }
    let recorded: RunOn =
        diesel::sql_query("INSERT INTO __diesel_schema_migrations (version) VALUES ($1) RETURNING run_on")
            .bind::<Text, _>(&migration.version)
            .get_result(conn)
            .with_context(|| format!("record {} as applied", migration.name))?;
    checksum::record(conn, migration, up_sql, recorded.run_on)
}

/// Sets the limits for the migration's transaction (`transactional`) or for the session.
fn set_limits(conn: &mut PgConnection, limits: &Limits, transactional: bool, migration: &MigrationFiles) -> Result<()> {
    for (name, value) in [("lock_timeout", &limits.lock_timeout), ("statement_timeout", &limits.statement_timeout)] {
        let Some(value) = value else { continue };
        diesel::sql_query("SELECT set_config($1, $2, $3)")
            .bind::<Text, _>(name)
            .bind::<Text, _>(value)
            .bind::<diesel::sql_types::Bool, _>(transactional)
            .execute(conn)
            .map_err(|e| {
                anyhow!(hint!("{name} = {value:?} for migration {} is not a setting Postgres takes: {e}", migration.name; "write a duration as Postgres does (\"5s\", \"500ms\", \"2min\") in {} or in railgun.toml's [migrations]", shown(&migration.dir.join("metadata.toml"))))
            })?;
    }
    Ok(())
}

/// Undoes [`set_limits`] on the session after a migration that ran outside a transaction.
fn reset_limits(conn: &mut PgConnection, limits: &Limits) {
    if limits.lock_timeout.is_some() {
        let _ = conn.batch_execute("RESET lock_timeout");
    }
    if limits.statement_timeout.is_some() {
        let _ = conn.batch_execute("RESET statement_timeout");
    }
}

/// The cause of a migration's failure when Postgres cancelled a statement because it waited
/// longer than `lock_timeout` for a lock: the runner may retry the migration.
#[derive(Debug)]
pub struct LockTimeout;

impl std::fmt::Display for LockTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("lock_timeout expired while the statement waited for a lock")
    }
}

impl std::error::Error for LockTimeout {}

/// Whether `error` is a migration that failed on its lock timeout.
pub fn is_lock_timeout(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.is::<LockTimeout>())
}

// Postgres's words (SQLSTATE 55P03 and 57014, which diesel does not expose), in English as the
// server sends them unless lc_messages says otherwise.
const LOCK_TIMEOUT_MESSAGE: &str = "canceling statement due to lock timeout";
const STATEMENT_TIMEOUT_MESSAGE: &str = "canceling statement due to statement timeout";

/// Runs `down.sql` and forgets the version, in one transaction unless the metadata says no.
pub fn revert(conn: &mut PgConnection, migration: &MigrationFiles) -> Result<()> {
    if !migration.has_down() {
        bail!(
            hint!("cannot revert {}: it has no down.sql", migration.name; "write {} to undo its up.sql", shown(&migration.down()))
        );
    }
    let sql = read_sql(migration, "down.sql")?;
    let forget = |conn: &mut PgConnection| -> Result<()> {
        conn.batch_execute(&sql).map_err(Failed)?;
        diesel::sql_query("DELETE FROM __diesel_schema_migrations WHERE version = $1")
            .bind::<Text, _>(&migration.version)
            .execute(conn)
            .with_context(|| format!("record {} as reverted", migration.name))?;
        checksum::forget(conn, &migration.version)
    };
    let result = if migration.run_in_transaction { conn.transaction(forget) } else { forget(conn) };
    result.map_err(|e| explain(conn, e, migration, "down.sql", &sql, &Limits::default()))
}

/// A migration file's SQL failed (as opposed to the bookkeeping around it).
#[derive(Debug)]
struct Failed(DieselError);

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for Failed {}

fn try_lock(conn: &mut PgConnection) -> Result<bool> {
    #[derive(QueryableByName)]
    struct Got {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    let got: Got = diesel::sql_query(format!("SELECT pg_try_advisory_lock({LOCK_KEY}) AS locked"))
        .get_result(conn)
        .context("take the migration lock")?;
    Ok(got.locked)
}

/// Waits for the migration lock in short waits, each a statement of its own. One long wait would
/// hold a snapshot all along, and the holder's `CREATE INDEX CONCURRENTLY` waits for every older
/// snapshot to go: each would wait for the other until Postgres kills one as a deadlock.
fn wait_for_lock(conn: &mut PgConnection) -> Result<()> {
    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Text)]
        value: String,
    }
    let saved: Setting = diesel::sql_query("SELECT current_setting('lock_timeout') AS value")
        .get_result(conn)
        .context("read lock_timeout")?;
    diesel::sql_query("SELECT set_config('lock_timeout', '200ms', false)").execute(conn).context("set lock_timeout")?;
    let waited = loop {
        match diesel::sql_query(format!("SELECT pg_advisory_lock({LOCK_KEY})")).execute(conn) {
            Ok(_) => break Ok(()),
            Err(DieselError::DatabaseError(_, info))
                if info.message() == LOCK_TIMEOUT_MESSAGE || info.message() == "deadlock detected" =>
            {
                continue;
            }
            Err(e) => break Err(anyhow::Error::new(e).context("wait for the migration lock")),
        }
    };
    diesel::sql_query("SELECT set_config('lock_timeout', $1, false)")
        .bind::<Text, _>(&saved.value)
        .execute(conn)
        .context("restore lock_timeout")?;
    waited
}

/// The server process holding the lock, to tell the user who they wait for.
fn lock_holder(conn: &mut PgConnection) -> Option<i32> {
    #[derive(QueryableByName)]
    struct Holder {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    let (high, low) = (LOCK_KEY >> 32, LOCK_KEY & 0xffff_ffff);
    let holder: Option<Holder> = diesel::sql_query(format!(
        "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = \
         (SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = {high} AND objid = {low} LIMIT 1"
    ))
    .get_result(conn)
    .ok();
    holder.map(|h| h.pid)
}

/// Applied versions, newest first; `None` when the bookkeeping table does not exist (nothing
/// was ever applied). Reads only: `show` uses it without the lock.
pub fn applied(conn: &mut PgConnection) -> Result<Option<Vec<Applied>>> {
    #[derive(QueryableByName)]
    struct Table {
        #[diesel(sql_type = Nullable<Text>)]
        name: Option<String>,
    }
    let table: Table = diesel::sql_query("SELECT to_regclass('__diesel_schema_migrations')::text AS name")
        .get_result(conn)
        .context("look for __diesel_schema_migrations")?;
    if table.name.is_none() {
        return Ok(None);
    }
    let rows = diesel::sql_query("SELECT version, run_on FROM __diesel_schema_migrations ORDER BY version DESC")
        .load(conn)
        .context("read __diesel_schema_migrations")?;
    Ok(Some(rows))
}

/// Reads each migration's up.sql and refuses, before any of them runs, what [`apply`] would
/// refuse of it: an empty file, or transaction control in one that runs in a transaction.
pub fn check_before_running(migrations: &[MigrationFiles]) -> Result<()> {
    for migration in migrations {
        read_sql(migration, "up.sql")?;
    }
    Ok(())
}

/// The file's SQL, refused when empty, or when it runs in the runner's transaction yet opens,
/// ends or marks transactions of its own: its COMMIT would commit the migration midway, apart
/// from its bookkeeping (recorded as failed, yet half applied and kept).
fn read_sql(migration: &MigrationFiles, file: &str) -> Result<String> {
    let path = migration.dir.join(file);
    let sql = migration.sql(file)?;
    if migration.run_in_transaction
        && let Some((line, statement)) = sql::transaction_control(&sql)
    {
        let metadata = shown(&migration.dir.join("metadata.toml"));
        bail!(
            hint!("migration {} controls its own transaction: `{statement}` at {}:{line}, but it runs in the transaction the runner opens for it; refused before anything ran", migration.name, shown(&path);
            "remove the BEGIN/COMMIT (and SAVEPOINT, ROLLBACK...) statements from {}: the runner applies the migration and records it in one transaction already; or, if it must manage transactions itself, add `run_in_transaction = false` to {metadata}", shown(&path))
        );
    }
    if sql.trim().is_empty() {
        bail!(hint!("migration {} has an empty {file}", migration.name; "write the SQL in {}", shown(&path)));
    }
    if sql::statements(&sql).is_empty() {
        bail!(
            hint!("migration {} has no SQL in {file}, only comments (Postgres calls it an empty query)", migration.name; "write the change in {}, or delete the folder if the migration is not needed", shown(&path))
        );
    }
    Ok(sql)
}

/// Turns a failed file into an error that names the migration, the file, the line and
/// Postgres's words. Runs after the migration's transaction has rolled back.
fn explain(
    conn: &mut PgConnection,
    error: anyhow::Error,
    migration: &MigrationFiles,
    file: &str,
    sql: &str,
    limits: &Limits,
) -> anyhow::Error {
    let path = shown(&migration.dir.join(file));
    let error = match error.downcast::<Failed>() {
        Ok(Failed(error)) => error,
        Err(other) => return other.context(format!("migration {} failed ({path})", migration.name)),
    };
    let DieselError::DatabaseError(_, info) = &error else {
        return anyhow!("migration {} failed in {path}: {error}", migration.name);
    };
    let timeout = match info.message() {
        LOCK_TIMEOUT_MESSAGE => Some(("lock_timeout", &limits.lock_timeout)),
        STATEMENT_TIMEOUT_MESSAGE => Some(("statement_timeout", &limits.statement_timeout)),
        _ => None,
    };
    let line = match info.statement_position() {
        Some(position) => Some(sql::line_of_position(sql, position as usize)),
        // Replaying a statement that waited or ran too long would wait or run as long again.
        None if timeout.is_some() => {
            let statements = sql::statements(sql);
            (statements.len() == 1).then(|| statements[0].line)
        }
        None => locate(conn, migration.run_in_transaction, sql, info.message()),
    };
    let at = line.map(|line| format!("{path}:{line}")).unwrap_or(path.clone());
    let mut message = format!("migration {} failed at {at}: {}", migration.name, info.message());
    if let Some((line, text)) = line.and_then(|line| Some((line, sql.lines().nth(line - 1)?))) {
        message.push_str(&format!("\n  {line} | {}", text.trim_end()));
    }
    if let Some(detail) = info.details() {
        message.push_str(&format!("\n  detail: {detail}"));
    }
    if let Some(hint) = info.hint() {
        message.push_str(&format!("\n  Postgres's hint: {hint}"));
    }
    let mut fix = if migration.run_in_transaction {
        message.push_str(&format!("\n  its transaction was rolled back: nothing of {} stays", migration.name));
        format!("fix {path}, then run the command again")
    } else {
        message.push_str("\n  it ran outside a transaction (metadata.toml: run_in_transaction = false): what ran before the failing statement stays");
        format!("undo that by hand, fix {path}, then run the command again")
    };
    let metadata = shown(&migration.dir.join("metadata.toml"));
    match timeout {
        Some(("lock_timeout", value)) => {
            let value = value.as_deref().unwrap_or("the server's");
            fix = format!(
                "it waited longer than lock_timeout ({value}) for a lock that another session holds on a table it changes (a long transaction or query): find it with psql -c \"SELECT pid, xact_start, state, query FROM pg_stat_activity WHERE state <> 'idle' ORDER BY xact_start\", then run again when it is done, or raise lock_timeout (railgun.toml's [migrations], or {metadata})"
            );
        }
        Some((_, value)) => {
            let value = value.as_deref().unwrap_or("the server's");
            fix = format!(
                "it ran longer than statement_timeout ({value}): raise statement_timeout for this migration in {metadata}, or split the work (an UPDATE in batches, an index CONCURRENTLY)"
            );
        }
        None => {}
    }
    let hinted = crate::error::Hinted::new(message, fix);
    if matches!(timeout, Some(("lock_timeout", _))) {
        return anyhow::Error::new(LockTimeout).context(hinted);
    }
    anyhow::Error::new(hinted)
}

/// The line of the failing statement when Postgres gave no position: replays the file statement
/// by statement in a transaction that is always rolled back, and trusts the answer only if the
/// replay fails with the same message. Not for non-transactional migrations: those cannot be
/// replayed safely, so only a single-statement file gets a line.
fn locate(conn: &mut PgConnection, transactional: bool, sql: &str, message: &str) -> Option<usize> {
    let statements = sql::statements(sql);
    if !transactional {
        return (statements.len() == 1).then(|| statements[0].line);
    }
    let mut found = None;
    let _ = conn.transaction::<(), DieselError, _>(|conn| {
        // The replay must not hang where the real run failed on a lock or ran long.
        conn.batch_execute("SET LOCAL lock_timeout = '2s'; SET LOCAL statement_timeout = '60s'")?;
        for statement in &statements {
            match conn.batch_execute(statement.text) {
                Ok(()) => continue,
                Err(DieselError::DatabaseError(_, info)) if info.message() == message => {
                    let within =
                        info.statement_position().map_or(1, |p| sql::line_of_position(statement.text, p as usize));
                    found = Some(statement.line + within - 1);
                }
                Err(_) => {}
            }
            break;
        }
        Err(DieselError::RollbackTransaction)
    });
    found
}
