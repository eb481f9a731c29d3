//! Moving a database from one provider to another, verified table by table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::url::{database_name, parse_database_url, redact};
use anyhow::{Context as _, Result, anyhow, bail};
use diesel::connection::SimpleConnection;
use diesel::{PgConnection, RunQueryDsl};
use url::Url;

use super::dump::{self as backup, DumpOptions, MANAGED_SCHEMAS};
use super::restore;
use crate::context::Context;
use crate::guard::Guard;

/// Copies the database at `from` into `to` (its data replaced once `guard` agreed): a verified
/// backup of `from` in `dir`, restored in one transaction as `restore` says (a safety backup
/// of `to` first when it names a folder), every table compared, then the pending migrations
/// applied. From a source not on this machine, columns that look personal stop it first unless
/// `unmasked` (see [`super::stream::check_remote_source`]). Returns the backup.
#[allow(clippy::too_many_arguments)]
pub fn copy(
    cx: &Context,
    from: &str,
    to: &str,
    dir: &Path,
    dump: &DumpOptions,
    guard: &Guard,
    restore: &restore::RestoreOptions,
    unmasked: bool,
) -> Result<PathBuf> {
    let (from, to) = check_pair(from, to)?;
    if !crate::url::is_local(&from) {
        super::stream::check_remote_source(cx, &from, dump, unmasked)?;
    }
    let what = format!("replace the data in database `{}` with a copy of {}", database_name(&to), redact(&from));
    guard.check(cx, &to, &what)?;
    let path = backup::create(cx, &from, dir, backup::PREFIX, dump)?;
    eprintln!("source backup: {}", path.display());
    restore::restore(cx, &to, &path, restore)?;

    let excluded = excluded_schemas(dump);
    let differences = compare(&from, &to, &excluded)?;
    if !differences.is_empty() {
        bail!(
            hint!("the copy differs from the source in {} table(s):\n{}", differences.len(), differences.join("\n"); "was the source written to during the copy? Put the app in maintenance mode and run the copy again")
        );
    }
    let ran = crate::migration::run_pending(cx, &to)?;
    if ran > 0 {
        eprintln!("applied {ran} pending migration(s) on the copy");
    }
    Ok(path)
}

/// The two URLs of a copy, parsed, each through a session (never a transaction pooler), and
/// refused when they are one database however they spell it.
pub(super) fn check_pair(from: &str, to: &str) -> Result<(Url, Url)> {
    let from = parse_database_url(from).context("--from")?;
    let to = parse_database_url(to).context("--to")?;
    // pg_dump and the restore's single transaction need sessions: never through a transaction pooler.
    crate::pooler::require_session(&from, None, "copy from it", "--from")?;
    crate::pooler::require_session(&to, None, "copy into it", "--to")?;
    // However the two URLs spell it (localhost or 127.0.0.1, options, sslmode), the servers say
    // whether they are one database: never copy a database onto itself.
    let (source, target) = (identity(&from).context("--from")?, identity(&to).context("--to")?);
    if source == target {
        bail!(
            hint!("--from and --to are the same database ({}): {source}", redact(&to); "point --to at another database; a copy onto itself would replace its data with itself")
        );
    }
    Ok((from, to))
}

/// What tells one database from every other: the cluster (its system identifier, or where that
/// is not readable the postmaster's start time), its port, and the database's oid.
fn identity(url: &Url) -> Result<String> {
    #[derive(diesel::QueryableByName)]
    struct Identity {
        #[diesel(sql_type = diesel::sql_types::Text)]
        text: String,
    }
    let mut conn = crate::connect::establish(url)?;
    let cluster: Option<Identity> =
        diesel::sql_query("SELECT system_identifier::text AS text FROM pg_control_system()").get_result(&mut conn).ok();
    let rest: Identity = diesel::sql_query(
        "SELECT format('port %s, database oid %s, started %s', current_setting('port'),
                (SELECT oid FROM pg_database WHERE datname = current_database()), pg_postmaster_start_time()) AS text",
    )
    .get_result(&mut conn)
    .context("ask the server which database this is")?;
    Ok(match cluster {
        Some(cluster) => format!("system identifier {}, {}", cluster.text, rest.text),
        None => rest.text,
    })
}

/// Schema patterns left out of the dump, as anchored regular expressions.
pub(super) fn excluded_schemas(dump: &DumpOptions) -> Vec<String> {
    let mut patterns: Vec<String> = dump.exclude_schema.iter().map(|p| pattern_regex(p)).collect();
    if !dump.keep_managed_schemas {
        patterns.extend(MANAGED_SCHEMAS.iter().map(|s| format!("^{s}$")));
    }
    patterns
}

/// A pg_dump name pattern (`*`, `?`, case-folded unless quoted) as an anchored regex.
fn pattern_regex(pattern: &str) -> String {
    let quoted = pattern.starts_with('"') && pattern.ends_with('"') && pattern.len() >= 2;
    let text = if quoted { pattern[1..pattern.len() - 1].to_string() } else { pattern.to_lowercase() };
    let mut regex = String::from("^");
    for c in text.chars() {
        match c {
            '*' => regex.push_str(".*"),
            '?' => regex.push('.'),
            c if c.is_alphanumeric() || c == '_' => regex.push(c),
            c => {
                regex.push('\\');
                regex.push(c);
            }
        }
    }
    regex.push('$');
    regex
}

#[derive(Debug, PartialEq)]
struct TableSum {
    rows: i64,
    checksum: String,
}

#[derive(diesel::QueryableByName)]
struct TableName {
    #[diesel(sql_type = diesel::sql_types::Text)]
    schema: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    name: String,
}

/// Row counts and content checksums of every table on both sides; the differences, described.
fn compare(from: &Url, to: &Url, excluded: &[String]) -> Result<Vec<String>> {
    eprintln!("comparing every table of the copy with the source");
    let (source, target) = std::thread::scope(|scope| {
        let source = scope.spawn(|| table_sums(from, excluded));
        let target = table_sums(to, excluded);
        (source.join().map_err(|_| anyhow!("the source check panicked")), target)
    });
    let (source, target) = (source??, target?);
    let mut differences = Vec::new();
    for (table, sum) in &source {
        match target.get(table) {
            None => differences.push(format!("  {table}: missing in the copy")),
            Some(copy) if copy.rows != sum.rows => {
                differences.push(format!("  {table}: {} rows in the source, {} in the copy", sum.rows, copy.rows))
            }
            Some(copy) if copy.checksum != sum.checksum => {
                differences.push(format!("  {table}: same {} rows, different content", sum.rows))
            }
            Some(_) => {}
        }
    }
    let extra: Vec<&String> = target.keys().filter(|t| !source.contains_key(*t)).collect();
    if !extra.is_empty() {
        eprintln!(
            "note: the copy also has tables the source does not (left as they were): {}",
            extra.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    if differences.is_empty() {
        let rows: i64 = source.values().map(|s| s.rows).sum();
        eprintln!("verified {} tables, {rows} rows: counts and checksums match", source.len());
    }
    Ok(differences)
}

/// `schema.table` → (rows, checksum) for every ordinary table outside `excluded` and the system.
fn table_sums(url: &Url, excluded: &[String]) -> Result<BTreeMap<String, TableSum>> {
    let mut conn = crate::connect::establish(url)?;
    // Rows are compared as text: make the text the same whatever the server's settings.
    conn.batch_execute(&super::manifest::SETTINGS.join("; ")).context("set up the comparison session")?;
    let tables: Vec<TableName> = diesel::sql_query(
        "SELECT n.nspname::text AS schema, c.relname::text AS name
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname !~ '^pg_' AND NOT (n.nspname ~ ANY ($1))
           AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                           AND d.objid = c.oid AND d.deptype = 'e')
         ORDER BY 1, 2",
    )
    .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(excluded)
    .load(&mut conn)
    .with_context(|| format!("list the tables of {}", redact(url)))?;
    let mut sums = BTreeMap::new();
    for table in tables {
        let sum = table_sum(&mut conn, &table).with_context(|| format!("checksum {}.{}", table.schema, table.name))?;
        sums.insert(format!("{}.{}", table.schema, table.name), sum);
    }
    Ok(sums)
}

/// Row count and content checksum, as a backup's manifest has them ([`super::manifest::checksum_sql`]).
fn table_sum(conn: &mut PgConnection, table: &TableName) -> Result<TableSum> {
    #[derive(diesel::QueryableByName)]
    struct Sum {
        #[diesel(sql_type = diesel::sql_types::Text)]
        sum: String,
    }
    let sql = format!("SELECT ({}) AS sum", super::manifest::checksum_sql(&table.schema, &table.name));
    let sum: Sum = diesel::sql_query(sql).get_result(conn)?;
    let (rows, checksum) = super::manifest::parse_sum(&sum.sum)?;
    Ok(TableSum { rows, checksum })
}

#[cfg(test)]
mod tests {
    use super::pattern_regex;

    #[test]
    fn pg_dump_patterns() {
        assert_eq!(pattern_regex("Audit*"), "^audit.*$");
        assert_eq!(pattern_regex("\"Big\""), "^Big$");
        assert_eq!(pattern_regex("a.b"), "^a\\.b$");
    }
}
