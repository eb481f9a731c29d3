//! `migration lint --measure`: each statement run in a throwaway clone, and what it really did.
//!
//! The clone comes from the test harness: a template migrated up to the migrations measured
//! (named by their hash, so reused while they do not change), cloned with `CREATE DATABASE ...
//! TEMPLATE`. A migration that runs in a transaction runs statement by statement in one: after
//! each, a second connection reads from `pg_locks` the locks the first holds that it did not
//! hold before (locks last until the transaction ends, so none is missed), and the first
//! compares each table's `relfilenode` (a new one means the table was rewritten). A statement of
//! a migration outside a transaction (`CREATE INDEX CONCURRENTLY`) releases its locks as it ends:
//! a third connection holds a snapshot open, which such a statement waits for before it
//! finishes, and its locks are read while it waits. The reading is [`crate::migration::observe`]'s,
//! which `migration rehearse` shares.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context as _, Result};
use diesel::connection::SimpleConnection;
use serde::Serialize;

use super::{Finding, Linted};
use crate::migration::MigrationFiles;
use crate::migration::observe::{
    backend_pid, locks_of, outside_transaction, relfilenodes, rewritten, strength, strongest,
};
use crate::testing::Harness;

/// What one statement did.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    pub migration: String,
    pub file: String,
    pub line: usize,
    pub statement: String,
    /// The strongest lock it took on each table, by name.
    pub locks: BTreeMap<String, String>,
    /// Tables whose relfilenode changed: rewritten.
    pub rewrote: Vec<String>,
    /// Each static finding on this statement, confirmed or contradicted by the above.
    pub verdicts: Vec<Verdict>,
    /// When the locks could not be read (a statement outside a transaction that waits for nothing).
    pub unobserved: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    pub rule: &'static str,
    /// `confirmed`, `contradicted` or `not measurable` (a rule about types or names).
    pub verdict: &'static str,
    pub detail: String,
}

/// Measures `linted` (in version order), in a clone of a template migrated with `base` (what
/// comes before them). Returns the clone's name and one row per statement.
pub fn measure(
    base: &[MigrationFiles],
    targets: &[MigrationFiles],
    linted: &[Linted],
) -> Result<(String, Vec<Measured>)> {
    let harness = Harness::for_migrations(base).context("build the template to measure in")?;
    // A database in the template's state (a clone, or a recycled one reset to it); it ran DDL
    // when dropped, so the harness drops it rather than reusing it.
    let db = harness.test_db()?;
    let name = db.name().to_string();
    let mut conn = db.conn()?;
    let mut observer = crate::connect::establish(db.url())?;
    let pid = backend_pid(&mut conn)?;
    let mut rows = Vec::new();
    for (migration, linted) in targets.iter().zip(linted) {
        if migration.run_in_transaction {
            conn.batch_execute("BEGIN").context("begin the measured migration")?;
        }
        let mut held: BTreeSet<(String, String)> = BTreeSet::new();
        for (index, statement) in linted.statements.iter().enumerate() {
            let before = relfilenodes(&mut conn)?;
            let (locks, unobserved) = if migration.run_in_transaction {
                conn.batch_execute(&statement.text).with_context(|| {
                    format!("{}:{}: the statement failed in the clone", linted.file, statement.line)
                })?;
                let now = locks_of(&mut observer, pid)?;
                let new: BTreeSet<_> = now.difference(&held).cloned().collect();
                held = now;
                (new, false)
            } else {
                outside_transaction(db.url(), &mut conn, &mut observer, pid, &statement.text)
                    .with_context(|| format!("{}:{}: the statement failed in the clone", linted.file, statement.line))?
            };
            let after = relfilenodes(&mut conn)?;
            let rewrote = rewritten(&before, &after);
            let strongest = strongest(locks);
            let findings: Vec<&Finding> = linted.findings.iter().filter(|f| f.statement == index).collect();
            let verdicts = findings.iter().map(|f| judge(f, &strongest, &rewrote, unobserved)).collect();
            rows.push(Measured {
                migration: linted.migration.clone(),
                file: linted.file.clone(),
                line: statement.line,
                statement: statement.text.split_whitespace().collect::<Vec<_>>().join(" "),
                locks: strongest,
                rewrote,
                verdicts,
                unobserved,
            });
        }
        if migration.run_in_transaction {
            // Kept for the next migration, as the real run would (the clone is dropped at the end).
            conn.batch_execute("COMMIT").context("commit the measured migration in the clone")?;
        }
    }
    Ok((name, rows))
}

/// Confirms or contradicts a finding by what the statement did.
fn judge(finding: &Finding, locks: &BTreeMap<String, String>, rewrote: &[String], unobserved: bool) -> Verdict {
    let Some(expect) = &finding.expect else {
        return Verdict {
            rule: finding.rule,
            verdict: "not measurable",
            detail: "about types or names, not locks".into(),
        };
    };
    if unobserved {
        return Verdict {
            rule: finding.rule,
            verdict: "not measurable",
            detail: "its locks were released before they could be read".into(),
        };
    }
    let mut wrong = Vec::new();
    let mut right = Vec::new();
    for (relation, mode) in &expect.locks {
        // Named as pg_locks is read (crate::migration::observe): `table` in public, else `schema.table`.
        let name = relation.strip_prefix("public.").unwrap_or(relation);
        // A stronger lock than the rule says (ADD COLUMN ... REFERENCES takes ACCESS EXCLUSIVE
        // for the column, which holds the foreign key's SHARE ROW EXCLUSIVE) confirms it too.
        match locks.get(name) {
            Some(got) if got == mode => right.push(format!("{got} on {name}")),
            Some(got) if strength(got) > strength(mode) => right.push(format!("{got} on {name} (at least {mode})")),
            Some(got) => wrong.push(format!("{got} on {name}, weaker than {mode}")),
            None => wrong.push(format!("no lock on {name}, not {mode}")),
        }
    }
    if let Some(rewrite) = expect.rewrite {
        let table =
            expect.locks.first().map(|(r, _)| r.strip_prefix("public.").unwrap_or(r).to_string()).unwrap_or_default();
        let did = rewrote.contains(&table);
        match (rewrite, did) {
            (true, true) => right.push(format!("rewrote {table}")),
            (false, false) => right.push(format!("no rewrite of {table}")),
            (true, false) => wrong.push(format!("did not rewrite {table}")),
            (false, true) => wrong.push(format!("rewrote {table}")),
        }
    }
    if wrong.is_empty() {
        Verdict { rule: finding.rule, verdict: "confirmed", detail: right.join(", ") }
    } else {
        Verdict { rule: finding.rule, verdict: "contradicted", detail: wrong.join(", ") }
    }
}
