//! `migration show`'s listing: every migration on disk or recorded as applied, with its state,
//! as rows a CLI prints (text or JSON) and a test reads.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::{Result, bail};
use diesel::PgConnection;

use super::{MISSING_HINT, MigrationFiles, Options, Plan, Verdict, phantom, runner::Applied};

/// One migration: on disk (`name`), applied (`applied`), or both.
#[derive(Debug, Clone)]
pub struct Row {
    /// The folder's name; `None` for a version the database records but no folder has.
    pub name: Option<String>,
    pub version: String,
    pub applied: Option<Applied>,
    /// The checksum's verdict on an applied migration that is on disk.
    pub verdict: Option<Verdict>,
    /// Pending and older than the newest applied version.
    pub out_of_order: bool,
}

/// How many rows are in each state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub applied: usize,
    pub pending: usize,
    pub missing: usize,
    pub edited: usize,
    pub out_of_order: usize,
}

/// The rows in version order, their counts and the plan they come from. `Display` is the text
/// listing (one line per row, then the counts).
#[derive(Debug)]
pub struct Listing {
    pub rows: Vec<Row>,
    pub counts: Counts,
    pub plan: Plan,
}

impl Listing {
    /// Reads the bookkeeping (without the lock: nothing is written) against `migrations`.
    pub fn read(conn: &mut PgConnection, migrations: Vec<MigrationFiles>) -> Result<Listing> {
        let plan = Plan::read(conn, &migrations)?;
        Ok(Listing::of(plan, migrations))
    }

    fn of(plan: Plan, migrations: Vec<MigrationFiles>) -> Listing {
        let mut rows: BTreeMap<String, Row> = migrations
            .into_iter()
            .map(|m| {
                let out_of_order = plan.out_of_order.iter().any(|o| o.version == m.version);
                let row =
                    Row { name: Some(m.name), version: m.version.clone(), applied: None, verdict: None, out_of_order };
                (m.version, row)
            })
            .collect();
        for a in &plan.applied {
            let row = rows.entry(a.version.clone()).or_insert_with(|| Row {
                name: None,
                version: a.version.clone(),
                applied: None,
                verdict: None,
                out_of_order: false,
            });
            row.applied = Some(a.clone());
            row.verdict = plan.verdicts.get(&a.version).cloned();
        }
        let rows: Vec<Row> = rows.into_values().collect();
        let pending = rows.iter().filter(|r| r.applied.is_none()).count();
        let counts = Counts {
            applied: rows.len() - pending,
            pending,
            missing: rows.iter().filter(|r| r.name.is_none()).count(),
            edited: plan.edited.len(),
            out_of_order: plan.out_of_order.len(),
        };
        Listing { rows, counts, plan }
    }

    /// Not applied, in version order.
    pub fn pending(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.applied.is_none())
    }

    /// Applied but on no folder (phantoms), in version order.
    pub fn missing(&self) -> impl Iterator<Item = &Row> {
        self.rows.iter().filter(|r| r.name.is_none())
    }

    /// What to say (on stderr) of versions the database records that no folder has, if any.
    pub fn missing_note(&self) -> Option<String> {
        if self.counts.missing == 0 {
            return None;
        }
        let versions: Vec<&str> = self.missing().map(|r| r.version.as_str()).collect();
        let fix = phantom::fix(&self.plan.phantoms);
        let by_hand = if fix == MISSING_HINT { String::new() } else { format!("\n  By hand: {MISSING_HINT}") };
        Some(format!(
            "note: the database records {} that no migration folder has: {}\n  {fix}{by_hand}",
            if self.counts.missing == 1 { "a version" } else { "versions" },
            versions.join(", "),
        ))
    }

    /// `--check`: fails when a migration is edited, pending, or applied but not on disk.
    pub fn check(&self) -> Result<()> {
        // The same words (and fix) as `migration run` for an edited migration.
        self.plan.check(&Options { allow_out_of_order: true, ..Options::default() })?;
        if self.counts.pending > 0 {
            let names: Vec<&str> = self.pending().filter_map(|r| r.name.as_deref()).collect();
            bail!(
                hint!("{} pending migration(s): {}", self.counts.pending, names.join(", "); "apply them with `cargo xtask migration run`")
            );
        }
        if self.counts.missing > 0 {
            bail!(
                "the database has {} applied migration(s) that are not on disk (see the note above)",
                self.counts.missing
            );
        }
        Ok(())
    }

    /// The listing as one JSON object: migrations, applied, pending, missing_on_disk, edited,
    /// out_of_order.
    pub fn json(&self) -> serde_json::Value {
        let migrations: Vec<serde_json::Value> = self.rows.iter().map(|row| self.row_json(row)).collect();
        let counts = &self.counts;
        serde_json::json!({
            "migrations": migrations,
            "applied": counts.applied,
            "pending": counts.pending,
            "missing_on_disk": counts.missing,
            "edited": counts.edited,
            "out_of_order": counts.out_of_order,
        })
    }

    fn row_json(&self, row: &Row) -> serde_json::Value {
        let checksum = row.verdict.as_ref().map(|v| match v {
            Verdict::Unchanged => "unchanged",
            Verdict::Edited { .. } => "edited",
            Verdict::Cosmetic => "cosmetic",
            Verdict::Unrecorded => "unrecorded",
        });
        let phantoms = &self.plan.phantoms;
        serde_json::json!({
            "name": row.name,
            "version": row.version,
            "applied": row.applied.is_some(),
            "applied_at": row.applied.as_ref().map(|a| a.run_on.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            "on_disk": row.name.is_some(),
            "edited": matches!(row.verdict, Some(Verdict::Edited { .. })),
            "checksum": checksum,
            "out_of_order": row.out_of_order,
            "phantom": row.name.is_none(),
            "phantom_name": phantoms.iter().find(|p| p.version == row.version).and_then(|p| p.name.clone()),
            "phantom_revertible": phantoms.iter().any(|p| p.version == row.version && p.revertible()),
        })
    }

    fn write_row(&self, f: &mut fmt::Formatter<'_>, row: &Row) -> fmt::Result {
        let mark = if row.applied.is_some() { 'X' } else { ' ' };
        let name = row.name.as_deref().unwrap_or(&row.version);
        let edited = if matches!(row.verdict, Some(Verdict::Cosmetic)) {
            ", edited since it was applied in comments, whitespace or keyword case only: the next run takes it"
        } else if matches!(row.verdict, Some(Verdict::Edited { .. })) {
            ", EDITED since it was applied"
        } else {
            ""
        };
        match (&row.applied, &row.name) {
            (Some(a), Some(_)) => {
                writeln!(f, "[{mark}] {name} (applied at {} UTC{edited})", a.run_on.format("%Y-%m-%d %H:%M:%S"))
            }
            (Some(a), None) => writeln!(
                f,
                "[{mark}] {name} (applied at {} UTC, NOT ON DISK{})",
                a.run_on.format("%Y-%m-%d %H:%M:%S"),
                phantom_note(&self.plan, &a.version)
            ),
            (None, _) if row.out_of_order => writeln!(
                f,
                "[{mark}] {name} (OUT OF ORDER: older than the newest applied version, {})",
                self.plan.newest_applied.as_deref().unwrap_or_default()
            ),
            (None, _) => writeln!(f, "[{mark}] {name}"),
        }
    }
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for row in &self.rows {
            self.write_row(f, row)?;
        }
        let counts = &self.counts;
        write!(f, "{} applied, {} pending", counts.applied, counts.pending)?;
        if counts.missing > 0 {
            write!(f, ", {} applied but not on disk", counts.missing)?;
        }
        if counts.edited > 0 {
            write!(f, ", {} edited since applied", counts.edited)?;
        }
        if counts.out_of_order > 0 {
            write!(f, ", {} out of order", counts.out_of_order)?;
        }
        writeln!(f)
    }
}

/// What the listing says of a phantom beside NOT ON DISK: its folder's name when recorded, and
/// whether it can be reverted here.
fn phantom_note(plan: &Plan, version: &str) -> String {
    match plan.phantoms.iter().find(|p| p.version == version) {
        Some(p) if p.revertible() => format!(
            ": a phantom, {} from another branch or checkout; its down.sql is recorded, `migration revert --phantom` reverts it",
            p.shown()
        ),
        Some(p) if p.name.is_some() => format!(": a phantom, {}; no down.sql recorded", p.shown()),
        _ => String::new(),
    }
}
