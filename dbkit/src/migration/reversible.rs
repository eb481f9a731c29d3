//! `migration test`: each migration proven reversible in a throwaway database. For each one
//! tested, in order: the catalog before (S0), up.sql, the catalog after (S1), down.sql, which
//! must give S0 again, up.sql again, which must give S1 again (see [`crate::catalog`]). A
//! `test.sql` beside up.sql runs after each up.sql, in a transaction always rolled back; it
//! fails the test when it raises. The migrations before and between those tested are applied as
//! they are, so each is tested on the schema it will meet.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use url::Url;

use super::source::MigrationFiles;
use super::{Locked, Plan, sql};
use crate::catalog::{Catalog, Difference};

/// Which migrations to test.
#[derive(Debug, Clone)]
pub enum Selection {
    /// Those the database at the URL has not applied.
    Pending,
    All,
    /// By version or folder name.
    These(Vec<String>),
}

/// What the test found of one migration.
#[derive(Debug, serde::Serialize)]
pub struct Tested {
    pub name: String,
    pub version: String,
    #[serde(serialize_with = "millis")]
    pub elapsed: Duration,
    pub findings: Vec<Finding>,
}

/// One thing wrong with a migration.
#[derive(Debug, serde::Serialize)]
pub struct Finding {
    /// `down`, `up_again`, `irreversible`, `test_sql`, `failed`.
    pub step: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub difference: Option<Difference>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// Tests the selected migrations of `migrations` in a database made for it on `url`'s server
/// (dropped at the end, also on failure); returns one [`Tested`] per migration tested, in order.
/// Stops at a migration whose up.sql fails (or whose down.sql fails outside a transaction): the
/// ones after it are not tested.
pub fn test(url: &Url, migrations: &[MigrationFiles], selection: &Selection) -> Result<Vec<Tested>> {
    let chosen = choose(url, migrations, selection)?;
    let Some(last) = migrations.iter().rposition(|m| chosen.contains(&m.version)) else { return Ok(Vec::new()) };
    let scratch = crate::scratch::Scratch::empty(url, "mtest")?;
    let mut session = Locked::acquire(&scratch.url)?;
    let mut report = Vec::new();
    for migration in &migrations[..=last] {
        if !chosen.contains(&migration.version) {
            session
                .apply(migration)
                .with_context(|| format!("apply {} (not tested) before the ones tested", migration.name))?;
            continue;
        }
        let started = Instant::now();
        let (findings, go_on) = one(&mut session, migration)?;
        report.push(Tested {
            name: migration.name.clone(),
            version: migration.version.clone(),
            elapsed: started.elapsed(),
            findings,
        });
        if !go_on {
            break;
        }
    }
    drop(session);
    scratch.drop_now()?;
    Ok(report)
}

/// The versions `selection` names, each checked to exist.
fn choose(url: &Url, migrations: &[MigrationFiles], selection: &Selection) -> Result<Vec<String>> {
    Ok(match selection {
        Selection::All => migrations.iter().map(|m| m.version.clone()).collect(),
        Selection::Pending => {
            let plan = Plan::read(&mut crate::connect::establish(url)?, migrations)?;
            plan.pending.iter().map(|m| m.version.clone()).collect()
        }
        Selection::These(names) => {
            let mut versions = Vec::new();
            for name in names {
                let Some(m) = migrations.iter().find(|m| &m.version == name || &m.name == name) else {
                    bail!(
                        hint!("no migration has the version or name {name}"; "`cargo xtask migration show` lists them")
                    );
                };
                versions.push(m.version.clone());
            }
            versions
        }
    })
}

/// Tests one migration; the bool says whether the database is in a state to go on.
fn one(session: &mut Locked, migration: &MigrationFiles) -> Result<(Vec<Finding>, bool)> {
    let mut findings = Vec::new();
    let failed = |step, error: anyhow::Error| Finding { step, message: format!("{:#}", error), difference: None };
    let before = Catalog::read(&mut session.conn)?;
    if let Err(error) = session.apply(migration) {
        findings.push(failed("failed", error));
        return Ok((findings, false));
    }
    findings.extend(test_sql(&mut session.conn, migration));
    let after = Catalog::read(&mut session.conn)?;
    let down = if migration.has_down() { migration.sql("down.sql")? } else { String::new() };
    if sql::statements(&down).is_empty() {
        findings.push(Finding {
            step: "irreversible",
            message: format!(
                "{} is irreversible: its down.sql is {}",
                migration.name,
                if migration.has_down() { "empty or only comments" } else { "missing" }
            ),
            difference: None,
        });
        return Ok((findings, true));
    }
    if let Err(error) = session.revert(migration) {
        findings.push(failed("failed", error));
        // Rolled back, its down.sql left the migration applied: the next ones can be tested.
        return Ok((findings, migration.run_in_transaction));
    }
    let reverted = Catalog::read(&mut session.conn)?;
    for difference in before.diff(&reverted) {
        findings.push(Finding {
            step: "down",
            message: after_down(&migration.name, &difference),
            difference: Some(difference),
        });
    }
    if let Err(error) = session.apply(migration) {
        findings.push(failed("failed", error.context("up.sql again, after its down.sql")));
        return Ok((findings, false));
    }
    findings.extend(test_sql(&mut session.conn, migration));
    let again = Catalog::read(&mut session.conn)?;
    for difference in after.diff(&again) {
        findings.push(Finding {
            step: "up_again",
            message: up_again(&migration.name, &difference),
            difference: Some(difference),
        });
    }
    Ok((findings, true))
}

fn after_down(name: &str, difference: &Difference) -> String {
    match difference {
        Difference::Extra { object, .. } => format!("down.sql of {name} leaves {object}"),
        Difference::Missing { object, .. } => {
            format!("down.sql of {name} drops {object}, which was there before its up.sql")
        }
        Difference::Changed { object, was, now } => {
            format!("down.sql of {name} leaves {object} changed: before its up.sql `{was}`, after its down.sql `{now}`")
        }
    }
}

fn up_again(name: &str, difference: &Difference) -> String {
    match difference {
        Difference::Extra { object, .. } => {
            format!("up.sql of {name}, run again after its down.sql, also makes {object}")
        }
        Difference::Missing { object, .. } => {
            format!(
                "up.sql of {name}, run again after its down.sql, does not make {object} (its down.sql left something in the way?)"
            )
        }
        Difference::Changed { object, was, now } => {
            format!(
                "up.sql of {name}, run again after its down.sql, makes {object} differently: first `{was}`, again `{now}`"
            )
        }
    }
}

/// Runs the migration's `test.sql`, when it has one, in a transaction that is rolled back.
fn test_sql(conn: &mut PgConnection, migration: &MigrationFiles) -> Option<Finding> {
    let path = migration.dir.join("test.sql");
    let text = read_test(&path)?;
    let result = conn.transaction::<(), diesel::result::Error, _>(|conn| {
        conn.batch_execute(&text)?;
        Err(diesel::result::Error::RollbackTransaction)
    });
    match result {
        Err(diesel::result::Error::RollbackTransaction) | Ok(()) => None,
        Err(error) => Some(Finding {
            step: "test_sql",
            message: format!("{} failed: {error}", super::source::shown(&path)),
            difference: None,
        }),
    }
}

fn read_test(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}
