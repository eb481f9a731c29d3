//! A backup's manifest: what the database held when the backup was taken, from the same snapshot
//! as the dump (per table its row count and a content checksum, and the applied migrations), so
//! that a restore can be checked against it (`db drill`).
//!
//! It travels inside the backup, as the SQL's very last line, after pg_dump's completion marker
//! and closing lines: `-- railgun manifest: {json}`. A comment to psql and to the restore (never
//! sent to the server), one file under one name, compressed and encrypted with the rest. The
//! verifier ([`dumpfile::Tail`](super::dumpfile::Tail)) takes exactly that line there and
//! nothing looser; its JSON is data, read into [`Manifest`] with bounds on every field, never a
//! command, never SQL.

use anyhow::{Context as _, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

use super::session::Session;

/// The manifest line's start; the rest of the line is the JSON.
pub const LINE_PREFIX: &[u8] = b"-- railgun manifest: ";

/// The longest manifest line (about 7000 tables): the cheap completeness check reads the last
/// two gzip members (at least 1 MiB of SQL) and must see the whole line and the marker before it.
pub const LINE_MAX: usize = 512 << 10;

const VERSION: u32 = 1;

/// What a database held: its tables' sums, in (schema, name) order, and diesel's applied versions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub version: u32,
    pub tables: Vec<TableSum>,
    /// The versions in `__diesel_schema_migrations`, sorted; `None` when there is no such table.
    pub migrations: Option<Vec<String>>,
}

/// One table's row count and content checksum ([`checksum_sql`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSum {
    pub schema: String,
    pub name: String,
    pub rows: i64,
    pub checksum: String,
}

impl TableSum {
    /// `schema.name`, control characters escaped: for messages.
    pub fn shown(&self) -> String {
        crate::error::escaped(&format!("{}.{}", self.schema, self.name)).into_owned()
    }
}

/// The session settings under which rows read as the same text on any server and after a
/// restore: times in UTC, ISO dates, floats exact (shortest round-trip text), bytea as hex.
pub const SETTINGS: [&str; 7] = [
    "SET TIME ZONE 'UTC'",
    "SET datestyle = 'ISO, YMD'",
    "SET intervalstyle = 'postgres'",
    "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'",
    "SET lc_monetary = 'C'",
    "SET client_encoding = 'UTF8'",
];

/// One text, `ROWS CHECKSUM`, for the table: its row count and the sum of a 64-bit hash of each
/// row's text (`ROW(t.*)`: its columns in their order, under [`SETTINGS`]; `hashtextextended`,
/// Postgres's own 64-bit hash, over the text's bytes: `COLLATE "C"`). Independent of row order
/// and collation, and no long string is built on the server. md5 was three times as slow on
/// pgbench's rows (its hex through `bit(64)`), and this runs beside pg_dump on every backup.
/// The hash is the server's: a backup of a big-endian server drilled on a little-endian one
/// would differ. `ONLY`: a partition's rows are counted in the partition.
pub fn checksum_sql(schema: &str, name: &str) -> String {
    format!(
        "SELECT count(*)::text || ' ' || coalesce(sum(hashtextextended(ROW(t.*)::text COLLATE \"C\", 0)), 0)::text
         FROM ONLY {}.{} AS t",
        ident(schema),
        ident(name)
    )
}

/// Reads [`checksum_sql`]'s text.
pub fn parse_sum(text: &str) -> Result<(i64, String)> {
    let (rows, checksum) = text.split_once(' ').with_context(|| format!("a table's sum, `{text}`"))?;
    Ok((rows.parse().with_context(|| format!("a row count, `{rows}`"))?, checksum.to_string()))
}

/// Takes the manifest of the database `session` is in (inside its transaction, when it has one:
/// a backup's snapshot), of the ordinary tables outside the system, extensions and the schema
/// patterns in `excluded` (anchored regular expressions, as pg_dump leaves them out).
pub fn take(session: &mut Session, excluded: &[String]) -> Result<Manifest> {
    let fail = |what: &'static str| move |e: super::session::PgError| anyhow!("{e}").context(what);
    for sql in SETTINGS {
        session.exec(sql.as_bytes()).map_err(fail("prepare the manifest's session"))?;
    }
    let listed = session
        .query_column(&format!(
            "SELECT coalesce(json_agg(json_build_array(n.nspname, c.relname) ORDER BY n.nspname, c.relname), '[]')::text
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind = 'r' AND {}",
            super::stream::own_relations(excluded)
        ))
        .map_err(fail("list the tables"))?
        .pop()
        .unwrap_or_default();
    let names: Vec<(String, String)> = serde_json::from_str(&listed).context("read the list of tables")?;
    // As pg_dump does: every table locked against DDL at once, so that none is rewritten or
    // dropped before its turn (a table rewritten after the snapshot would read as empty).
    if !names.is_empty() && session.in_transaction() {
        let all: Vec<String> =
            names.iter().map(|(schema, name)| format!("{}.{}", ident(schema), ident(name))).collect();
        session
            .exec(format!("LOCK TABLE {} IN ACCESS SHARE MODE", all.join(", ")).as_bytes())
            .map_err(fail("lock the tables"))?;
    }
    let mut tables = Vec::with_capacity(names.len());
    for (schema, name) in names {
        let text = session
            .query_column(&checksum_sql(&schema, &name))
            .map_err(|e| anyhow!("{e}"))
            .with_context(|| format!("checksum {}", crate::error::escaped(&format!("{schema}.{name}"))))?
            .pop()
            .unwrap_or_default();
        let (rows, checksum) = parse_sum(&text)?;
        tables.push(TableSum { schema, name, rows, checksum });
    }
    let bookkept = session
        .query_column("SELECT (to_regclass('__diesel_schema_migrations') IS NOT NULL)::text")
        .map_err(fail("look for the migrations' bookkeeping"))?;
    let migrations = match bookkept.first().map(String::as_str) {
        Some("true") => {
            let versions = session
                .query_column(
                    "SELECT coalesce(json_agg(version::text ORDER BY version), '[]')::text FROM __diesel_schema_migrations",
                )
                .map_err(fail("read the applied migrations"))?
                .pop()
                .unwrap_or_default();
            Some(serde_json::from_str(&versions).context("read the applied migrations")?)
        }
        _ => None,
    };
    Ok(Manifest { version: VERSION, tables, migrations })
}

impl Manifest {
    /// The manifest's line, `-- railgun manifest: {json}\n`; `None` when it would be longer
    /// than [`LINE_MAX`] (the backup then goes without one).
    pub fn line(&self) -> Result<Option<Vec<u8>>> {
        let mut line = LINE_PREFIX.to_vec();
        // serde_json escapes control characters: a name with a newline stays on the line.
        serde_json::to_writer(&mut line, self).context("write the manifest")?;
        line.push(b'\n');
        Ok((line.len() <= LINE_MAX).then_some(line))
    }

    /// Reads a manifest line's JSON (what follows [`LINE_PREFIX`]), refusing anything a backup
    /// of ours would not hold: unknown fields, another version, names or values out of bounds.
    pub fn parse(json: &[u8]) -> Result<Manifest> {
        let manifest: Manifest = serde_json::from_slice(json).context("its JSON does not read as a manifest")?;
        if manifest.version != VERSION {
            bail!("manifest version {} (this tool reads {VERSION})", manifest.version);
        }
        for table in &manifest.tables {
            let name_ok = |s: &str| !s.is_empty() && s.len() <= 256;
            let digits = table.checksum.strip_prefix('-').unwrap_or(&table.checksum);
            if !name_ok(&table.schema)
                || !name_ok(&table.name)
                || table.rows < 0
                || digits.is_empty()
                || digits.len() > 48
                || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                bail!("a table entry out of bounds ({})", table.shown());
            }
        }
        let version_ok = |v: &String| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !manifest.migrations.iter().flatten().all(version_ok) {
            bail!("a migration version out of bounds");
        }
        Ok(manifest)
    }
}

fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            version: VERSION,
            tables: vec![TableSum {
                schema: "public".into(),
                name: "we\nird\"; DROP TABLE x; --".into(),
                rows: 3,
                checksum: "-1234567890123".into(),
            }],
            migrations: Some(vec!["20261126000100".into()]),
        }
    }

    #[test]
    fn a_manifest_is_one_line_and_reads_back() {
        let line = sample().line().unwrap().unwrap();
        assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1, "{}", String::from_utf8_lossy(&line));
        let json = &line[LINE_PREFIX.len()..line.len() - 1];
        assert_eq!(Manifest::parse(json).unwrap(), sample());
    }

    #[test]
    fn crafted_manifests_are_refused() {
        for json in [
            "not json",
            r#"{"version":2,"tables":[],"migrations":null}"#,
            r#"{"version":1,"tables":[],"migrations":null,"run":"rm -rf /"}"#,
            r#"{"version":1,"tables":[{"schema":"public","name":"t","rows":-1,"checksum":"1"}],"migrations":null}"#,
            r#"{"version":1,"tables":[{"schema":"public","name":"t","rows":1,"checksum":"1; DROP TABLE t"}],"migrations":null}"#,
            r#"{"version":1,"tables":[{"schema":"public","name":"t","rows":1e400,"checksum":"1"}],"migrations":null}"#,
            r#"{"version":1,"tables":[],"migrations":["1'; DROP TABLE t; --"]}"#,
        ] {
            assert!(Manifest::parse(json.as_bytes()).is_err(), "{json}");
        }
        let long = format!(
            r#"{{"version":1,"tables":[{{"schema":"{}","name":"t","rows":1,"checksum":"1"}}],"migrations":null}}"#,
            "s".repeat(300)
        );
        assert!(Manifest::parse(long.as_bytes()).is_err());
    }
}
