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

use super::source::{MigrationFiles, shown};
use super::sql;

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
            // Tries, not a blocking pg_advisory_lock: a waiting statement is an open transaction,
            // and the runner holding the lock may be in a CREATE INDEX CONCURRENTLY, which waits
            // for every open transaction to end: Postgres would call that a deadlock.
            let mut pause = std::time::Duration::from_millis(20);
            while !try_lock(&mut conn).context("wait for the migration lock")? {
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(500));
            }
        }
        let mut locked = Locked { conn };
        locked.ensure_table()?;
        Ok(locked)
    }

    /// Creates `__diesel_schema_migrations` if it is not there, as diesel does before each run.
    pub fn ensure_table(&mut self) -> Result<()> {
        self.conn.batch_execute(CREATE_MIGRATIONS_TABLE).context("create __diesel_schema_migrations")
    }

    /// Applied versions, newest first (diesel's order).
    pub fn applied(&mut self) -> Result<Vec<Applied>> {
        applied(&mut self.conn)?.ok_or_else(|| anyhow!("__diesel_schema_migrations vanished during the run"))
    }

    pub fn apply(&mut self, migration: &MigrationFiles) -> Result<()> {
        apply(&mut self.conn, migration)
    }

    pub fn revert(&mut self, migration: &MigrationFiles) -> Result<()> {
        revert(&mut self.conn, migration)
    }
}

/// Runs `up.sql` and records the version, in one transaction unless the metadata says no (inside
/// a transaction already, the migration's own becomes a savepoint).
pub fn apply(conn: &mut PgConnection, migration: &MigrationFiles) -> Result<()> {
    let sql = read_sql(migration, "up.sql")?;
    let record = |conn: &mut PgConnection| -> Result<()> {
        conn.batch_execute(&sql).map_err(Failed)?;
        diesel::sql_query("INSERT INTO __diesel_schema_migrations (version) VALUES ($1)")
            .bind::<Text, _>(&migration.version)
            .execute(conn)
            .with_context(|| format!("record {} as applied", migration.name))?;
        Ok(())
    };
    let result = if migration.run_in_transaction { conn.transaction(record) } else { record(conn) };
    result.map_err(|e| explain(conn, e, migration, "up.sql", &sql))
}

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
        Ok(())
    };
    let result = if migration.run_in_transaction { conn.transaction(forget) } else { forget(conn) };
    result.map_err(|e| explain(conn, e, migration, "down.sql", &sql))
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

fn read_sql(migration: &MigrationFiles, file: &str) -> Result<String> {
    let path = migration.dir.join(file);
    let sql = migration.sql(file)?;
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
) -> anyhow::Error {
    let path = shown(&migration.dir.join(file));
    let error = match error.downcast::<Failed>() {
        Ok(Failed(error)) => error,
        Err(other) => return other.context(format!("migration {} failed ({path})", migration.name)),
    };
    let DieselError::DatabaseError(_, info) = &error else {
        return anyhow!("migration {} failed in {path}: {error}", migration.name);
    };
    let line = match info.statement_position() {
        Some(position) => Some(sql::line_of_position(sql, position as usize)),
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
    let fix = if migration.run_in_transaction {
        message.push_str(&format!("\n  its transaction was rolled back: nothing of {} stays", migration.name));
        format!("fix {path}, then run the command again")
    } else {
        message.push_str("\n  it ran outside a transaction (metadata.toml: run_in_transaction = false): what ran before the failing statement stays");
        format!("undo that by hand, fix {path}, then run the command again")
    };
    anyhow::Error::new(crate::error::Hinted::new(message, fix))
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
