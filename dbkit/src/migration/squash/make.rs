//! Making a squash: its up.sql from pg_dump, its down.sql from the catalog, the proof, the
//! files (see the parent module's doc).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use diesel::sql_types::{BigInt, Text};
use diesel::{PgConnection, QueryableByName, RunQueryDsl};
use url::Url;

use crate::catalog::{Catalog, Difference};
use crate::migration::source::{Held, Limits, MigrationFiles, shown};
use crate::migration::{Locked, checksum, runner};

/// What a squash came to.
#[derive(Debug)]
pub enum Outcome {
    /// Proven and written: the new folder, and the folders it replaced (removed).
    Written { folder: PathBuf, replaced: Vec<String>, up_bytes: usize },
    /// Proven, not written (`dry_run`).
    Proven { replaced: Vec<String>, up_bytes: usize },
    /// The proof failed: nothing written.
    Refused(Vec<String>),
}

/// Squashes the migrations up to `through` (a version or folder name) into one named `name`,
/// proving it on `url`'s server first (see the module's doc); writes nothing on a difference or
/// when `dry_run`.
pub fn squash(
    cx: &crate::context::Context,
    url: &Url,
    migrations: &[MigrationFiles],
    through: &str,
    name: &str,
    dry_run: bool,
) -> Result<Outcome> {
    let Some(last) = migrations.iter().position(|m| m.version == through || m.name == through) else {
        bail!(hint!("no migration has the version or name {through}"; "`cargo xtask migration show` lists them"));
    };
    let history = &migrations[..=last];
    if history.len() < 2 {
        bail!(
            hint!("{} is the first migration: there is nothing to squash it with", history[0].name; "name a later one with --through")
        );
    }
    check_name(name)?;
    refuse_part_way(url, history)?;
    let tools = crate::backup::pgtools::PgTools::find(&cx.sh, &cx.project, url)?;
    let dumped = crate::scratch::Scratch::empty(url, "squash")?;
    apply_all(&dumped.url, history)?;
    let up = dump(cx, &tools, &dumped.url)?;
    let down = drops(&Catalog::read(&mut crate::connect::establish(&dumped.url)?)?);
    dumped.drop_now()?;
    let squash = in_memory(history, name, &up, &down);

    let mut findings = Vec::new();
    let proof = crate::scratch::Scratch::empty(url, "squash")?;
    let made = crate::scratch::Scratch::empty(url, "squash")?;
    apply_all(&proof.url, history)?;
    let mut by_history = crate::connect::establish(&proof.url)?;
    let mut by_squash = Locked::acquire(&made.url)?;
    let empty = Catalog::read(&mut by_squash.conn)?;
    by_squash.apply(&squash).context("apply the squash in a throwaway database")?;
    let (want, got) = (Catalog::read(&mut by_history)?, Catalog::read(&mut by_squash.conn)?);
    findings.extend(want.diff(&got).iter().map(|d| describe("the squash", d)));
    findings.extend(compare_rows(&mut by_history, &mut by_squash.conn, &want)?);
    runner::revert(&mut by_squash.conn, &squash).context("revert the squash in a throwaway database")?;
    let reverted = Catalog::read(&mut by_squash.conn)?;
    findings.extend(empty.diff(&reverted).iter().map(|d| describe("the squash's down.sql", d)));
    drop((by_history, by_squash));
    proof.drop_now()?;
    made.drop_now()?;

    let replaced: Vec<String> = history.iter().map(|m| m.name.clone()).collect();
    if !findings.is_empty() {
        return Ok(Outcome::Refused(findings));
    }
    if dry_run {
        return Ok(Outcome::Proven { replaced, up_bytes: up.len() });
    }
    let folder = write(history, name, &up, &down)?;
    Ok(Outcome::Written { folder, replaced, up_bytes: up.len() })
}

/// A squash over a database that applied only some of `history` would be refused at its next
/// run: refused now, before anything is written.
fn refuse_part_way(url: &Url, history: &[MigrationFiles]) -> Result<()> {
    let mut conn = crate::connect::establish(url)?;
    let applied: Vec<String> = runner::applied(&mut conn)?.unwrap_or_default().into_iter().map(|a| a.version).collect();
    let done = history.iter().filter(|m| applied.contains(&m.version)).count();
    if done > 0 && done < history.len() {
        bail!(
            hint!("this database applied {done} of the {} migrations to squash: after the squash it could take neither the squash nor the rest", history.len();
            "`cargo xtask migration run` first, then squash")
        );
    }
    Ok(())
}

fn apply_all(url: &Url, migrations: &[MigrationFiles]) -> Result<()> {
    let mut session = Locked::acquire(url)?;
    for migration in migrations {
        session.apply(migration).with_context(|| format!("apply {} in a throwaway database", migration.name))?;
    }
    Ok(())
}

/// pg_dump's schema and data of the database at `url`, in its three sections, as a migration:
/// its settings made local to the migration's transaction, its comments and psql meta-commands
/// left out, the bookkeeping tables excluded.
fn dump(cx: &crate::context::Context, tools: &crate::backup::pgtools::PgTools, url: &Url) -> Result<String> {
    let mut text = String::from("-- Made by `cargo xtask migration squash`: what the migrations it replaces made.\n");
    for section in ["pre-data", "data", "post-data"] {
        let args: Vec<String> = [
            format!("--section={section}"),
            "--no-owner".into(),
            "--no-publications".into(),
            "--no-subscriptions".into(),
            "--column-inserts".into(),
            "--rows-per-insert=100".into(),
            "--exclude-table=*.__diesel_schema_migrations".into(),
            format!("--exclude-table=*.{}", checksum::TABLE),
        ]
        .into();
        let output = tools.pg_dump_output(&cx.sh, url, &args, &format!("--section={section} of the squash"))?;
        text.push_str(&as_migration(&String::from_utf8(output).context("pg_dump's output is not UTF-8")?));
    }
    Ok(text)
}

/// pg_dump's text as a migration's: `SET x = y` made `SET LOCAL`, but for its timeouts (the
/// project's limits apply, as to any migration); its emptying of search_path
/// left out (every name it writes is schema-qualified, and the runner records the migration in
/// the same transaction, unqualified, as diesel does); comment and psql meta-command
/// (`\restrict`) lines out; runs of blank lines squeezed.
fn as_migration(dump: &str) -> String {
    let mut out = String::new();
    for line in dump.lines() {
        let timeout = ["SET statement_timeout", "SET lock_timeout", "SET idle_in_transaction_session_timeout"];
        if line.starts_with("--")
            || line.starts_with('\\')
            || line.starts_with("SELECT pg_catalog.set_config('search_path'")
            || timeout.iter().any(|t| line.starts_with(t))
        {
            continue;
        }
        let line = match line.strip_prefix("SET ") {
            Some(rest) => format!("SET LOCAL {rest}"),
            None => line.to_string(),
        };
        if line.is_empty() && (out.is_empty() || out.ends_with("\n\n")) {
            continue;
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A down.sql that drops every object of `catalog` the squash made, dependents first.
fn drops(catalog: &Catalog) -> String {
    let order = [
        ("materialized view ", "DROP MATERIALIZED VIEW IF EXISTS"),
        ("view ", "DROP VIEW IF EXISTS"),
        ("foreign table ", "DROP FOREIGN TABLE IF EXISTS"),
        ("table ", "DROP TABLE IF EXISTS"),
        ("sequence ", "DROP SEQUENCE IF EXISTS"),
        ("procedure ", "DROP PROCEDURE IF EXISTS"),
        ("aggregate ", "DROP AGGREGATE IF EXISTS"),
        ("function ", "DROP FUNCTION IF EXISTS"),
        ("type ", "DROP TYPE IF EXISTS"),
        ("enum ", "DROP TYPE IF EXISTS"),
        ("domain ", "DROP DOMAIN IF EXISTS"),
        ("extension ", "DROP EXTENSION IF EXISTS"),
        ("schema ", "DROP SCHEMA IF EXISTS"),
    ];
    let mut out = String::from("-- Made by `cargo xtask migration squash`: drops what its up.sql made.\n");
    for (prefix, drop) in order {
        for key in catalog.0.keys().filter(|k| k.starts_with(prefix)) {
            let object = &key[prefix.len()..];
            if prefix == "schema " && object == "public" {
                continue;
            }
            out.push_str(&format!("{drop} {object} CASCADE;\n"));
        }
    }
    out
}

/// The squash as a migration held in memory, for the proof.
fn in_memory(history: &[MigrationFiles], name: &str, up: &str, down: &str) -> MigrationFiles {
    let last = history.last().expect("two migrations at least");
    let folder = folder_name(last, name);
    MigrationFiles {
        dir: last.dir.with_file_name(&folder),
        name: folder,
        version: last.version.clone(),
        run_in_transaction: true,
        limits: Limits::default(),
        squashes: history.iter().map(|m| m.version.clone()).collect(),
        held: Some(Held { up: up.to_string().into(), down: Some(down.to_string().into()) }),
    }
}

/// The last replaced folder's timestamp (the squash keeps its version) and `name`.
fn folder_name(last: &MigrationFiles, name: &str) -> String {
    let stamp = last.name.split('_').next().unwrap_or_default();
    format!("{stamp}_{name}")
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        bail!(hint!("{name:?} is not a migration name"; "use snake_case: lowercase letters, digits and _"));
    }
    Ok(())
}

/// Writes the squash's folder (under a temporary name, then renamed into place), then removes
/// the folders it replaces.
fn write(history: &[MigrationFiles], name: &str, up: &str, down: &str) -> Result<PathBuf> {
    let last = history.last().expect("two migrations at least");
    let dir = last.dir.parent().context("the migrations folder")?;
    let folder = dir.join(folder_name(last, name));
    let tmp = dir.join(format!(".{}.squash-tmp", folder_name(last, name)));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).with_context(|| format!("create {}", shown(&tmp)))?;
    std::fs::write(tmp.join("up.sql"), up)?;
    std::fs::write(tmp.join("down.sql"), down)?;
    let versions: Vec<String> = history.iter().map(|m| format!("{:?}", m.version)).collect();
    std::fs::write(
        tmp.join("metadata.toml"),
        format!(
            "# Made by `cargo xtask migration squash`: it replaces these migrations; a database that\n# applied them all takes it as applied.\nrun_in_transaction = true\nsquashes = [{}]\n",
            versions.join(", ")
        ),
    )?;
    // The squash in place before any folder it replaces goes: a kill in between leaves both
    // (the next load names the shared version), never neither.
    std::fs::rename(&tmp, &folder).with_context(|| format!("move the squash to {}", shown(&folder)))?;
    for migration in history {
        remove(&migration.dir)?;
    }
    Ok(folder)
}

fn remove(dir: &Path) -> Result<()> {
    std::fs::remove_dir_all(dir).with_context(|| format!("remove {}", shown(dir)))
}

fn describe(what: &str, difference: &Difference) -> String {
    match difference {
        Difference::Extra { object, .. } => format!("{what} makes {object}, which the history does not"),
        Difference::Missing { object, .. } => format!("{what} does not make {object}, which the history does"),
        Difference::Changed { object, was, now } => {
            format!("{what} makes {object} differently: the history `{was}`, the squash `{now}`")
        }
    }
}

/// The rows of every table of `catalog` in both databases, table by table: the first that
/// differs is named, with its first differing row.
fn compare_rows(history: &mut PgConnection, squash: &mut PgConnection, catalog: &Catalog) -> Result<Vec<String>> {
    #[derive(QueryableByName)]
    struct Summary {
        #[diesel(sql_type = BigInt)]
        rows: i64,
        #[diesel(sql_type = Text)]
        digest: String,
    }
    let mut findings = Vec::new();
    for key in catalog.0.keys().filter(|k| k.starts_with("table ")) {
        let table = &key["table ".len()..];
        let query = format!(
            "SELECT count(*) AS rows, coalesce(md5(string_agg(t::text, E'\\n' ORDER BY t::text)), '') AS digest FROM ONLY {table} t"
        );
        let a: Summary = diesel::sql_query(&query).get_result(history).with_context(|| format!("read {table}"))?;
        let b: Summary = diesel::sql_query(&query).get_result(squash).with_context(|| format!("read {table}"))?;
        if a.digest == b.digest {
            continue;
        }
        let (rows_a, rows_b) = (rows_of(history, table)?, rows_of(squash, table)?);
        let first = rows_a.iter().zip(&rows_b).find(|(x, y)| x != y);
        let detail = match first {
            Some((x, y)) => format!("first difference: the history `{x}`, the squash `{y}`"),
            None => "one has rows the other lacks".to_string(),
        };
        findings.push(format!(
            "rows of {table} differ: the history makes {} row(s), the squash {}; {detail} (a migration whose rows differ from run to run, with now() or random(), cannot be squashed faithfully)",
            a.rows, b.rows
        ));
    }
    Ok(findings)
}

fn rows_of(conn: &mut PgConnection, table: &str) -> Result<Vec<String>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        row: String,
    }
    let rows: Vec<Row> =
        diesel::sql_query(format!("SELECT t::text AS row FROM ONLY {table} t ORDER BY 1 LIMIT 10000")).load(conn)?;
    Ok(rows.into_iter().map(|r| r.row).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_dump_settings_become_local() {
        let dump = "--\n-- PostgreSQL database dump\n--\n\\restrict abc\nSET statement_timeout = 0;\nSET check_function_bodies = false;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n\n\nCREATE TABLE public.t (a integer);\n\\unrestrict abc\n";
        assert_eq!(
            as_migration(dump),
            "SET LOCAL check_function_bodies = false;\n\nCREATE TABLE public.t (a integer);\n"
        );
    }
}
