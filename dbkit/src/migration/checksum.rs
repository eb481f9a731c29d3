//! A checksum of each applied migration's `up.sql`, and the files themselves (its folder's name,
//! up.sql, down.sql, whether it ran in a transaction), kept beside diesel's bookkeeping in
//! `__railgun_migration_checksums`: `__diesel_schema_migrations` stays exactly as diesel_cli
//! keeps it, and diesel print-schema skips tables whose name starts with `__`, as it does its own.
//! A migration applied from another branch or checkout can so be reverted where its folder is
//! missing (a phantom, see [`super::phantom`]).
//!
//! Each checksum is tied to the `run_on` of the application it was taken for: a migration that
//! diesel_cli reverted and applied again (perhaps edited in between) has a new `run_on`, so its
//! old checksum no longer counts and the next run records the file as it is now.

use std::collections::HashMap;

use anyhow::{Context as _, Result};
use chrono::NaiveDateTime;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::sql_types::{Nullable, Text, Timestamp};
use diesel::{QueryableByName, RunQueryDsl};

use super::runner::Applied;
use super::source::MigrationFiles;

pub const TABLE: &str = "__railgun_migration_checksums";

pub(crate) const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS __railgun_migration_checksums (
       version VARCHAR(50) PRIMARY KEY NOT NULL,
       checksum TEXT NOT NULL,
       applied_run_on TIMESTAMP NOT NULL,
       recorded_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
       name TEXT,
       up_sql TEXT,
       down_sql TEXT,
       run_in_transaction BOOLEAN
);";

/// The columns that keep the files, added to a table made before they were kept (an earlier
/// version of the runner). Older rows have them NULL: their migrations cannot be reverted
/// without their folder.
const ADD_FILE_COLUMNS: &str = "ALTER TABLE __railgun_migration_checksums
       ADD COLUMN IF NOT EXISTS name TEXT, ADD COLUMN IF NOT EXISTS up_sql TEXT,
       ADD COLUMN IF NOT EXISTS down_sql TEXT, ADD COLUMN IF NOT EXISTS run_in_transaction BOOLEAN";

/// The checksum of a migration's `up.sql`: FNV-1a over the text with CRLF line endings made LF
/// (a Windows checkout is not an edit). It detects edits, not forgeries: whoever can write the
/// migration can write this table too.
pub fn of(sql: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = sql.as_bytes();
    for (i, &byte) in bytes.iter().enumerate() {
        if byte == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
            continue;
        }
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("fnv1a64:{hash:016x}")
}

/// FNV-1a, 64 bits, over `parts` (each ended by a 0xff byte, which no UTF-8 text holds, so
/// `["ab", "c"]` and `["a", "bc"]` differ): stable across Rust versions and machines, unlike
/// `DefaultHasher`. The one hash of names and fingerprints (the test harness's, branch databases').
pub fn fnv(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(&[0xff]) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// The checksum of `migration`'s `up.sql` as it is now.
pub fn current(migration: &MigrationFiles) -> Result<String> {
    Ok(of(&migration.sql("up.sql")?))
}

/// A checksum as recorded.
#[derive(QueryableByName, Debug, Clone)]
pub struct Recorded {
    #[diesel(sql_type = Text)]
    pub version: String,
    #[diesel(sql_type = Text)]
    pub checksum: String,
    #[diesel(sql_type = Timestamp)]
    pub applied_run_on: NaiveDateTime,
}

/// Every recorded checksum by version; empty when the table does not exist. Reads only.
pub fn recorded(conn: &mut PgConnection) -> Result<HashMap<String, Recorded>> {
    #[derive(QueryableByName)]
    struct Table {
        #[diesel(sql_type = Nullable<Text>)]
        name: Option<String>,
    }
    let table: Table = diesel::sql_query(format!("SELECT to_regclass('{TABLE}')::text AS name"))
        .get_result(conn)
        .with_context(|| format!("look for {TABLE}"))?;
    if table.name.is_none() {
        return Ok(HashMap::new());
    }
    let rows: Vec<Recorded> = diesel::sql_query(format!("SELECT version, checksum, applied_run_on FROM {TABLE}"))
        .load(conn)
        .with_context(|| format!("read {TABLE}"))?;
    Ok(rows.into_iter().map(|r| (r.version.clone(), r)).collect())
}

/// What the recorded checksum says of an applied migration.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The file is what was applied.
    Unchanged,
    /// The file changed since it was applied.
    Edited { recorded: String, now: String },
    /// The file changed since it was applied, in comments, whitespace or keyword case only (the
    /// same tokens as recorded: see [`super::sql::normalized`]).
    Cosmetic,
    /// No checksum belongs to this application (applied by diesel_cli, or before checksums
    /// were kept): the next run records the file as it is.
    Unrecorded,
}

pub fn verdict(applied: &Applied, recorded: Option<&Recorded>, now: &str) -> Verdict {
    match recorded {
        Some(r) if r.applied_run_on == applied.run_on => {
            if r.checksum == now {
                Verdict::Unchanged
            } else {
                Verdict::Edited { recorded: r.checksum.clone(), now: now.to_string() }
            }
        }
        _ => Verdict::Unrecorded,
    }
}

/// Records, for the application of `migration` that has `run_on`, the checksum of `up_sql`
/// (what ran) and the files (its down.sql as it is now), replacing any other record of it.
pub fn record(conn: &mut PgConnection, migration: &MigrationFiles, up_sql: &str, run_on: NaiveDateTime) -> Result<()> {
    let down = if migration.has_down() { Some(migration.sql("down.sql")?) } else { None };
    diesel::sql_query(format!(
        "INSERT INTO {TABLE} (version, checksum, applied_run_on, name, up_sql, down_sql, run_in_transaction)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum,
           applied_run_on = EXCLUDED.applied_run_on, recorded_at = CURRENT_TIMESTAMP,
           name = EXCLUDED.name, up_sql = EXCLUDED.up_sql, down_sql = EXCLUDED.down_sql,
           run_in_transaction = EXCLUDED.run_in_transaction"
    ))
    .bind::<Text, _>(&migration.version)
    .bind::<Text, _>(of(up_sql))
    .bind::<Timestamp, _>(run_on)
    .bind::<Text, _>(&migration.name)
    .bind::<Text, _>(up_sql)
    .bind::<Nullable<Text>, _>(down)
    .bind::<diesel::sql_types::Bool, _>(migration.run_in_transaction)
    .execute(conn)
    .with_context(|| format!("record the checksum and files of {}", migration.name))?;
    Ok(())
}

/// The files recorded with an application: what a phantom is reverted with.
#[derive(QueryableByName, Debug, Clone)]
pub struct KeptFiles {
    #[diesel(sql_type = Text)]
    pub version: String,
    #[diesel(sql_type = Timestamp)]
    pub applied_run_on: NaiveDateTime,
    #[diesel(sql_type = Nullable<Text>)]
    pub name: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub up_sql: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub down_sql: Option<String>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Bool>)]
    pub run_in_transaction: Option<bool>,
}

/// The recorded files of `versions`; none when the table or its file columns do not exist.
/// Reads only.
pub fn kept_files(conn: &mut PgConnection, versions: &[String]) -> Result<HashMap<String, KeptFiles>> {
    if versions.is_empty() || !has_file_columns(conn)? {
        return Ok(HashMap::new());
    }
    let rows: Vec<KeptFiles> = diesel::sql_query(format!(
        "SELECT version, applied_run_on, name, up_sql, down_sql, run_in_transaction FROM {TABLE} WHERE version = ANY($1)"
    ))
    .bind::<diesel::sql_types::Array<Text>, _>(versions)
    .load(conn)
    .with_context(|| format!("read the files recorded in {TABLE}"))?;
    Ok(rows.into_iter().map(|r| (r.version.clone(), r)).collect())
}

/// Whether the table exists with the columns that keep the files.
fn has_file_columns(conn: &mut PgConnection) -> Result<bool> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = diesel::sql_query(format!(
        "SELECT count(*) AS n FROM pg_attribute WHERE attrelid = to_regclass('{TABLE}') \
         AND attname = 'run_in_transaction' AND NOT attisdropped"
    ))
    .get_result(conn)
    .with_context(|| format!("look for {TABLE}"))?;
    Ok(count.n > 0)
}

pub fn forget(conn: &mut PgConnection, version: &str) -> Result<()> {
    diesel::sql_query(format!("DELETE FROM {TABLE} WHERE version = $1"))
        .bind::<Text, _>(version)
        .execute(conn)
        .with_context(|| format!("forget the checksum of {version}"))?;
    Ok(())
}

/// Creates the table, or adds the file columns to one made before they were kept. The ALTER
/// runs only when a column is missing: it needs the table's owner, where CREATE ... IF NOT EXISTS
/// of an existing table does not (a migrator role of `db roles` runs this too).
pub(crate) fn ensure_table(conn: &mut PgConnection) -> Result<()> {
    conn.batch_execute(CREATE_TABLE).with_context(|| format!("create {TABLE}"))?;
    if !has_file_columns(conn)? {
        conn.batch_execute(ADD_FILE_COLUMNS).with_context(|| format!("add the file columns to {TABLE}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crlf_is_not_an_edit_but_anything_else_is() {
        let lf = "CREATE TABLE t (a int);\nINSERT INTO t VALUES (1);\n";
        assert_eq!(of(lf), of(&lf.replace('\n', "\r\n")));
        assert_ne!(of(lf), of(&lf.replace("(1)", "(2)")));
        assert_ne!(of(lf), of(&lf.replace('\n', "\r")), "a lone CR is a change of its own");
        assert_ne!(of(lf), of(lf.trim_end()));
        assert!(of(lf).starts_with("fnv1a64:") && of(lf).len() == 24);
    }
}
