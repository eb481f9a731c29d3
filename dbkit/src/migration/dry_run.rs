//! `migration run --dry-run`: the pending migrations applied and thrown away, to see what they
//! would change (schema.rs before and after) and how long each statement takes.
//!
//! When every pending migration runs in a transaction, they run in one transaction on the
//! database itself that is always rolled back. One that must run outside a transaction (its
//! `metadata.toml`) cannot be rolled back, so then all of them run on a scratch copy of the
//! database (`CREATE DATABASE ... TEMPLATE`, data included, so the timings are real), which is
//! dropped afterwards. Nothing is written either way: not the database, not schema.rs.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use diesel::connection::SimpleConnection;
use diesel::result::Error as DieselError;
use diesel::{Connection, PgConnection, RunQueryDsl};
use url::Url;

use super::source::{Limits, MigrationFiles, shown};
use super::{Locked, Options, Plan, sql};
use crate::backup::session::{Session, code};
use crate::context::Context;
use crate::diesel_config::DieselConfig;
use crate::schema::{configured_files, print_files};

/// How long a dry run waits for a lock before it gives up, unless a limit says otherwise: it
/// takes the real locks on the real tables, and must not queue the app behind it for long.
const DRY_RUN_LOCK_TIMEOUT: &str = "2s";

/// What a dry run saw.
pub struct Report {
    pub migrations: Vec<Ran>,
    /// schema.rs as the database has it now, and as it would be after the pending migrations.
    pub schema_before: String,
    pub schema_after: String,
    /// The scratch copy's name when one was used (it is dropped by then).
    pub scratch: Option<String>,
}

/// One migration of the dry run and its statements' timings.
pub struct Ran {
    pub name: String,
    pub file: String,
    pub statements: Vec<Timed>,
}

pub struct Timed {
    pub line: usize,
    pub text: String,
    pub elapsed: Duration,
}

/// Runs the dry run; `None` when nothing is pending.
pub fn dry_run(cx: &Context, url: &Url, migrations: &[MigrationFiles], options: &Options) -> Result<Option<Report>> {
    // Every schema file diesel.toml configures (each key's own settings), printed one after the other.
    let files = configured_files(cx, &DieselConfig::load(cx)?)?;
    let print_all = |conn: &mut diesel::PgConnection| -> Result<String> { Ok(print_files(cx, conn, &files)?.concat()) };
    let mut session = Locked::acquire(url)?;
    let plan = Plan::read(&mut session.conn, migrations)?;
    plan.check(options)?;
    super::runner::check_before_running(&plan.pending)?;
    if plan.pending.is_empty() {
        return Ok(None);
    }
    let schema_before = print_all(&mut session.conn)?;
    if plan.pending.iter().all(|m| m.run_in_transaction) {
        let mut ran = Vec::new();
        let mut schema_after = String::new();
        let outcome = session.conn.transaction::<(), anyhow::Error, _>(|conn| {
            for migration in &plan.pending {
                ran.push(run_statements(conn, migration, &limits(migration, options))?);
            }
            schema_after = print_all(conn)?;
            Err(anyhow!(DieselError::RollbackTransaction))
        });
        match outcome {
            Err(e)
                if e.downcast_ref::<DieselError>().is_some_and(|d| matches!(d, DieselError::RollbackTransaction)) => {}
            Err(e) => return Err(e),
            Ok(()) => unreachable!("the dry run's transaction always rolls back"),
        }
        return Ok(Some(Report { migrations: ran, schema_before, schema_after, scratch: None }));
    }
    // A copy needs the database to itself for a moment: our own session goes first.
    drop(session);
    let scratch = Scratch::create(url)?;
    let mut conn = crate::connect::establish(&scratch.url)?;
    let mut ran = Vec::new();
    for migration in &plan.pending {
        let limits = limits(migration, options);
        let timed = if migration.run_in_transaction {
            conn.transaction(|conn| run_statements(conn, migration, &limits))?
        } else {
            run_statements(&mut conn, migration, &limits)?
        };
        ran.push(timed);
    }
    let schema_after = print_all(&mut conn)?;
    drop(conn);
    let name = scratch.name.clone();
    scratch.drop_now()?;
    Ok(Some(Report { migrations: ran, schema_before, schema_after, scratch: Some(name) }))
}

fn limits(migration: &MigrationFiles, options: &Options) -> Limits {
    let limits = migration.limits.or(&options.limits);
    Limits { lock_timeout: limits.lock_timeout.or_else(|| Some(DRY_RUN_LOCK_TIMEOUT.into())), ..limits }
}

/// Runs `migration`'s up.sql statement by statement, timing each (the split is the lexer's
/// guess, see [`sql::statements`]; the real run sends the file as one batch).
fn run_statements(conn: &mut PgConnection, migration: &MigrationFiles, limits: &Limits) -> Result<Ran> {
    let sql = migration.sql("up.sql")?;
    let path = shown(&migration.dir.join("up.sql"));
    let local = migration.run_in_transaction;
    for (name, value) in [("lock_timeout", &limits.lock_timeout), ("statement_timeout", &limits.statement_timeout)] {
        if let Some(value) = value {
            diesel::sql_query("SELECT set_config($1, $2, $3)")
                .bind::<diesel::sql_types::Text, _>(name)
                .bind::<diesel::sql_types::Text, _>(value)
                .bind::<diesel::sql_types::Bool, _>(local)
                .execute(conn)
                .with_context(|| format!("set {name} = {value:?} for {}", migration.name))?;
        }
    }
    let mut statements = Vec::new();
    for statement in sql::statements(&sql) {
        let started = Instant::now();
        if let Err(e) = conn.batch_execute(statement.text) {
            let line = match &e {
                DieselError::DatabaseError(_, info) => info
                    .statement_position()
                    .map_or(statement.line, |p| statement.line + sql::line_of_position(statement.text, p as usize) - 1),
                _ => statement.line,
            };
            bail!(
                hint!("dry run: migration {} fails at {path}:{line}: {e}", migration.name; "fix {path}; nothing was written (the dry run rolls back, or ran on a scratch copy)")
            );
        }
        statements.push(Timed {
            line: statement.line,
            text: statement.text.split_whitespace().collect::<Vec<_>>().join(" "),
            elapsed: started.elapsed(),
        });
    }
    if !local {
        let _ = conn.batch_execute("RESET lock_timeout; RESET statement_timeout");
    }
    Ok(Ran { name: migration.name.clone(), file: path, statements })
}

/// A copy of the database that is dropped whatever happens.
struct Scratch {
    name: String,
    url: Url,
    admin: Url,
    dropped: bool,
}

impl Scratch {
    fn create(url: &Url) -> Result<Scratch> {
        let source = url.path().trim_start_matches('/').to_string();
        let name = format!("railgun_dryrun_{}_{}", std::process::id(), chrono::Utc::now().timestamp_micros());
        let mut admin = url.clone();
        admin.set_path("/postgres");
        // libpq's session, not diesel's: the server's SQLSTATE tells a template in use from any
        // other failure (diesel does not expose it).
        let mut session = Session::connect(&admin)?;
        let created =
            session.exec(format!("CREATE DATABASE \"{name}\" TEMPLATE \"{}\"", source.replace('"', "\"\"")).as_bytes());
        drop(session);
        if let Err(e) = created {
            if e.code == code::OBJECT_IN_USE {
                bail!(
                    hint!("dry run: a pending migration runs outside a transaction, so the dry run needs a scratch copy of {source}, and Postgres copies a database only while nobody else is connected to it: {e}"; "stop what is connected (the app, psql), or run the dry run against a restored backup (`cargo xtask db restore FILE` into a database of its own)")
                );
            }
            return Err(anyhow::Error::new(e).context(format!("copy {source} into the scratch database {name}")));
        }
        let mut scratch_url = url.clone();
        scratch_url.set_path(&format!("/{name}"));
        eprintln!("dry run: on a scratch copy of {source} ({name}), dropped afterwards");
        Ok(Scratch { name, url: scratch_url, admin, dropped: false })
    }

    fn drop_now(mut self) -> Result<()> {
        self.dropped = true;
        let mut conn = crate::connect::establish(&self.admin)?;
        diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name))
            .execute(&mut conn)
            .with_context(|| format!("drop the scratch database {}", self.name))?;
        Ok(())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        let dropped = crate::connect::establish(&self.admin).and_then(|mut conn| {
            diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).execute(&mut conn)?;
            Ok(())
        });
        if let Err(e) = dropped {
            eprintln!("warning: could not drop the scratch database {}: {e:#}; drop it by hand", self.name);
        }
    }
}

/// A unified diff of two texts by line, with `context` lines around each change; empty when
/// they are equal.
pub fn diff(old: &str, new: &str, old_name: &str, new_name: &str, context: usize) -> String {
    let a: Vec<&str> = old.lines().collect();
    let b: Vec<&str> = new.lines().collect();
    if a == b {
        return String::new();
    }
    let ops = line_ops(&a, &b);
    // Hunks: runs of changes with their context, merged when their context touches.
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    let changed: Vec<usize> =
        ops.iter().enumerate().filter(|(_, op)| !matches!(op, Op::Same(..))).map(|(i, _)| i).collect();
    let mut i = 0;
    while i < changed.len() {
        let start = changed[i].saturating_sub(context);
        let mut end = changed[i];
        while i + 1 < changed.len() && changed[i + 1] <= end + 2 * context + 1 {
            i += 1;
            end = changed[i];
        }
        let end = (end + context + 1).min(ops.len());
        let (mut old_line, mut new_line) = (1, 1);
        for op in &ops[..start] {
            match op {
                Op::Same(..) => (old_line, new_line) = (old_line + 1, new_line + 1),
                Op::Removed(_) => old_line += 1,
                Op::Added(_) => new_line += 1,
            }
        }
        let old_count = ops[start..end].iter().filter(|op| !matches!(op, Op::Added(_))).count();
        let new_count = ops[start..end].iter().filter(|op| !matches!(op, Op::Removed(_))).count();
        out.push_str(&format!("@@ -{old_line},{old_count} +{new_line},{new_count} @@\n"));
        for op in &ops[start..end] {
            match op {
                Op::Same(line) => out.push_str(&format!(" {line}\n")),
                Op::Removed(line) => out.push_str(&format!("-{line}\n")),
                Op::Added(line) => out.push_str(&format!("+{line}\n")),
            }
        }
        i += 1;
    }
    out
}

enum Op<'a> {
    Same(&'a str),
    Removed(&'a str),
    Added(&'a str),
}

/// The edit script from `a` to `b`: the common prefix and suffix, and a longest common
/// subsequence of what is between (a large middle is shown as removed, then added).
fn line_ops<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<Op<'a>> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..].iter().rev().zip(b[prefix..].iter().rev()).take_while(|(x, y)| x == y).count();
    let (am, bm) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops: Vec<Op> = a[..prefix].iter().map(|l| Op::Same(l)).collect();
    if am.len() * bm.len() > 4_000_000 {
        ops.extend(am.iter().map(|l| Op::Removed(l)));
        ops.extend(bm.iter().map(|l| Op::Added(l)));
    } else {
        // lcs[i][j]: the LCS length of am[i..] and bm[j..].
        let width = bm.len() + 1;
        let mut lcs = vec![0u32; (am.len() + 1) * width];
        for i in (0..am.len()).rev() {
            for j in (0..bm.len()).rev() {
                lcs[i * width + j] = if am[i] == bm[j] {
                    lcs[(i + 1) * width + j + 1] + 1
                } else {
                    lcs[(i + 1) * width + j].max(lcs[i * width + j + 1])
                };
            }
        }
        let (mut i, mut j) = (0, 0);
        while i < am.len() || j < bm.len() {
            if i < am.len() && j < bm.len() && am[i] == bm[j] {
                ops.push(Op::Same(am[i]));
                (i, j) = (i + 1, j + 1);
            } else if i < am.len() && (j == bm.len() || lcs[(i + 1) * width + j] >= lcs[i * width + j + 1]) {
                ops.push(Op::Removed(am[i]));
                i += 1;
            } else {
                ops.push(Op::Added(bm[j]));
                j += 1;
            }
        }
    }
    ops.extend(a[a.len() - suffix..].iter().map(|l| Op::Same(l)));
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unified_diff_with_context() {
        let old = "a\nb\nc\nd\ne\nf\ng\nh\n";
        let new = "a\nb\nc\nD\ne\nf\ng\nh\ni\n";
        assert_eq!(
            diff(old, new, "old", "new", 1),
            "--- old\n+++ new\n@@ -3,3 +3,3 @@\n c\n-d\n+D\n e\n@@ -8,1 +8,2 @@\n h\n+i\n"
        );
        assert_eq!(diff(old, old, "old", "new", 3), "");
        assert_eq!(diff("", "x\n", "old", "new", 3), "--- old\n+++ new\n@@ -1,0 +1,1 @@\n+x\n");
    }
}
