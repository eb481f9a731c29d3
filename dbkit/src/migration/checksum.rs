//! A checksum of each applied migration's `up.sql`, kept beside diesel's bookkeeping in
//! `__railgun_migration_checksums`: `__diesel_schema_migrations` stays exactly as diesel_cli
//! keeps it, and diesel print-schema skips tables whose name starts with `__`, as it does its own.
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
       recorded_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);";

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

/// Records `checksum` for the application of `version` that has `run_on`, replacing any other.
pub fn record(conn: &mut PgConnection, version: &str, checksum: &str, run_on: NaiveDateTime) -> Result<()> {
    diesel::sql_query(format!(
        "INSERT INTO {TABLE} (version, checksum, applied_run_on) VALUES ($1, $2, $3)
         ON CONFLICT (version) DO UPDATE SET checksum = EXCLUDED.checksum,
           applied_run_on = EXCLUDED.applied_run_on, recorded_at = CURRENT_TIMESTAMP"
    ))
    .bind::<Text, _>(version)
    .bind::<Text, _>(checksum)
    .bind::<Timestamp, _>(run_on)
    .execute(conn)
    .with_context(|| format!("record the checksum of {version}"))?;
    Ok(())
}

pub fn forget(conn: &mut PgConnection, version: &str) -> Result<()> {
    diesel::sql_query(format!("DELETE FROM {TABLE} WHERE version = $1"))
        .bind::<Text, _>(version)
        .execute(conn)
        .with_context(|| format!("forget the checksum of {version}"))?;
    Ok(())
}

pub(crate) fn ensure_table(conn: &mut PgConnection) -> Result<()> {
    conn.batch_execute(CREATE_TABLE).with_context(|| format!("create {TABLE}"))
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
