//! Move a database from one provider to another, verified table by table

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result, anyhow, bail};
use db::url::{database_name, parse_database_url, redact};
use diesel::connection::SimpleConnection;
use diesel::{PgConnection, RunQueryDsl};
use url::Url;

use super::backup::{self, DumpOptions, MANAGED_SCHEMAS};
use super::restore;
use crate::context::Context;
use crate::guard::Guard;

/// Move a database from one provider to another, verified table by table
///
/// The guide's "Migration from Supabase" as one command:
///   1. back up --from (kept in --dir, verified like `db backup`),
///   2. restore it into --to in one transaction (after a safety backup of --to),
///   3. compare every table of the copy with the source: row count and a checksum of the
///      rows' content (order-independent, collation-independent); any difference fails,
///   4. apply the migrations on disk that --to still lacks.
///
/// Managed Postgres: when --from has Supabase's own schemas (auth, storage, realtime, ...; see
/// --keep-managed-schemas) they are left out, with the extensions living in or owning them,
/// event triggers and publications; ownership and grants are left out too (--no-owner
/// --no-privileges), so `supabase_admin` and friends need not exist on the new server. Your
/// extensions (e.g. uuid-ossp in the `extensions` schema) are kept: the new server must offer them.
/// Put the app in maintenance mode first: writes during the copy show up as differences.
///
/// Example:
///   cargo xtask db copy --from "$SUPABASE_URL" --to "postgres://app:pw@new-host:5432/app?sslmode=require"
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Copy {
    /// The database to copy (or RAILGUN_COPY_FROM, which keeps the password out of `ps`)
    #[arg(long, value_name = "URL", env = "RAILGUN_COPY_FROM", hide_env_values = true)]
    from: String,
    /// The database to copy into: its data is replaced (or RAILGUN_COPY_TO)
    #[arg(long, value_name = "URL", env = "RAILGUN_COPY_TO", hide_env_values = true)]
    to: String,
    /// Where the source's backup is kept (and the target's safety backup)
    #[arg(long, value_name = "DIR", default_value = "backups")]
    dir: PathBuf,
    /// Do not back up the target before replacing its data
    #[arg(long)]
    no_safety_backup: bool,
    #[command(flatten)]
    dump: DumpOptions,
    #[command(flatten)]
    guard: Guard,
}

impl Copy {
    pub fn run(self, cx: &Context) -> Result<()> {
        let from = parse_database_url(&self.from).context("--from")?;
        let to = parse_database_url(&self.to).context("--to")?;
        if from.host_str() == to.host_str() && from.port() == to.port() && database_name(&from) == database_name(&to) {
            bail!("--from and --to are the same database ({})", redact(&to));
        }
        let what = format!("replace the data in database `{}` with a copy of {}", database_name(&to), redact(&from));
        self.guard.check(cx, &to, &what)?;
        let dir = cx.user_path(&self.dir);
        let path = backup::create(cx, &from, &dir, backup::PREFIX, &self.dump)?;
        eprintln!("source backup: {}", path.display());
        restore::restore(cx, &to, &path, (!self.no_safety_backup).then_some(dir.as_path()))?;

        let excluded = self.excluded_schemas();
        let differences = compare(&from, &to, &excluded)?;
        if !differences.is_empty() {
            bail!(
                "the copy differs from the source in {} table(s):\n{}\n  hint: was the source written to during the copy? Put the app in maintenance mode and run the copy again",
                differences.len(),
                differences.join("\n")
            );
        }
        let ran = crate::migration::run_pending(cx, &to)?;
        if ran > 0 {
            eprintln!("applied {ran} pending migration(s) on the copy");
        }
        println!("{}", path.display());
        Ok(())
    }

    /// Schema patterns left out of the dump, as anchored regular expressions.
    fn excluded_schemas(&self) -> Vec<String> {
        let mut patterns: Vec<String> = self.dump.exclude_schema.iter().map(|p| pattern_regex(p)).collect();
        if !self.dump.keep_managed_schemas {
            patterns.extend(MANAGED_SCHEMAS.iter().map(|s| format!("^{s}$")));
        }
        patterns
    }
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

#[derive(diesel::QueryableByName, Debug, PartialEq)]
struct TableSum {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    rows: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
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
    let mut conn = db::connect::establish(url)?;
    // Rows are compared as text: make the text the same whatever the server's settings.
    conn.batch_execute(
        "SET TIME ZONE 'UTC'; SET datestyle = 'ISO, YMD'; SET intervalstyle = 'postgres'; \
         SET extra_float_digits = 3; SET bytea_output = 'hex'",
    )
    .context("set up the comparison session")?;
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

/// Row count and the sum of each row's md5 (first 64 bits): independent of row order and
/// collation, and no giant string is built on the server.
fn table_sum(conn: &mut PgConnection, table: &TableName) -> Result<TableSum> {
    let ident = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let sql = format!(
        "SELECT count(*) AS rows,
                coalesce(sum(('x' || left(md5(t::text), 16))::bit(64)::bigint::numeric), 0)::text AS checksum
         FROM ONLY {}.{} AS t",
        ident(&table.schema),
        ident(&table.name)
    );
    Ok(diesel::sql_query(sql).get_result(conn)?)
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
