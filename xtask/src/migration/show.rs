//! `cargo xtask migration show`: which migrations are applied, which are pending, and which the
//! database knows that the disk does not.

use std::collections::BTreeMap;

use anyhow::{Result, bail};

use dbkit::migration::runner::Applied;
use dbkit::migration::{MISSING_HINT, Options, Plan, Verdict, phantom, source};

use crate::context::Context;

/// Show every migration as `[X] name (applied at ...)` or `[ ] name`, then the counts
///
/// A version the database records but no folder has (a phantom: applied from another branch or
/// checkout) is listed as `[X] <name> (... NOT ON DISK ...)`, saying whether its down.sql was
/// recorded (`migration revert --phantom` reverts it), with how to inspect the bookkeeping. An applied migration whose up.sql
/// changed since it was applied is marked EDITED; a pending one older than the newest applied
/// one, OUT OF ORDER.
#[derive(clap::Args)]
pub struct Show {
    /// Print JSON on stdout instead (one object: migrations, applied, pending, missing_on_disk)
    #[arg(long)]
    json: bool,
    /// Fail (exit 1) when a migration is pending, edited since it was applied, or applied but
    /// missing on disk (for CI)
    #[arg(long)]
    check: bool,
}

struct Row {
    name: Option<String>,
    version: String,
    applied: Option<Applied>,
    verdict: Option<Verdict>,
    out_of_order: bool,
}

impl Show {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        let migrations = source::load(&cx.migration_dir()?)?;
        let mut conn = dbkit::connect::establish(&url)?;
        let plan = Plan::read(&mut conn, &migrations)?;
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
        let pending: Vec<&Row> = rows.values().filter(|r| r.applied.is_none()).collect();
        let missing: Vec<&Row> = rows.values().filter(|r| r.name.is_none()).collect();
        let applied_count = rows.len() - pending.len();
        let counts = Counts {
            applied: applied_count,
            pending: pending.len(),
            missing: missing.len(),
            edited: plan.edited.len(),
            out_of_order: plan.out_of_order.len(),
        };
        if self.json {
            println!("{}", serde_json::to_string_pretty(&json(&rows, &counts, &plan))?);
        } else {
            for row in rows.values() {
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
                        println!("[{mark}] {name} (applied at {} UTC{edited})", a.run_on.format("%Y-%m-%d %H:%M:%S"))
                    }
                    (Some(a), None) => println!(
                        "[{mark}] {name} (applied at {} UTC, NOT ON DISK{})",
                        a.run_on.format("%Y-%m-%d %H:%M:%S"),
                        phantom_note(&plan, &a.version)
                    ),
                    (None, _) if row.out_of_order => println!(
                        "[{mark}] {name} (OUT OF ORDER: older than the newest applied version, {})",
                        plan.newest_applied.as_deref().unwrap_or_default()
                    ),
                    (None, _) => println!("[{mark}] {name}"),
                }
            }
            let mut line = format!("{applied_count} applied, {} pending", pending.len());
            if !missing.is_empty() {
                line.push_str(&format!(", {} applied but not on disk", missing.len()));
            }
            if counts.edited > 0 {
                line.push_str(&format!(", {} edited since applied", counts.edited));
            }
            if counts.out_of_order > 0 {
                line.push_str(&format!(", {} out of order", counts.out_of_order));
            }
            println!("{line}");
        }
        if !missing.is_empty() {
            let versions: Vec<&str> = missing.iter().map(|r| r.version.as_str()).collect();
            let fix = phantom::fix(&plan.phantoms);
            let by_hand = if fix == MISSING_HINT { String::new() } else { format!("\n  By hand: {MISSING_HINT}") };
            eprintln!(
                "note: the database records {} that no migration folder has: {}\n  {fix}{by_hand}",
                if missing.len() == 1 { "a version" } else { "versions" },
                versions.join(", "),
            );
        }
        if self.check {
            // The same words (and fix) as `migration run` for an edited migration.
            plan.check(&Options { allow_out_of_order: true, ..Options::default() })?;
            if !pending.is_empty() {
                let names: Vec<&str> = pending.iter().filter_map(|r| r.name.as_deref()).collect();
                bail!(
                    hint!("{} pending migration(s): {}", pending.len(), names.join(", "); "apply them with `cargo xtask migration run`")
                );
            }
            if !missing.is_empty() {
                bail!(
                    "the database has {} applied migration(s) that are not on disk (see the note above)",
                    missing.len()
                );
            }
        }
        Ok(())
    }
}

/// What `show` says of a phantom beside NOT ON DISK: its folder's name when recorded, and
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

struct Counts {
    applied: usize,
    pending: usize,
    missing: usize,
    edited: usize,
    out_of_order: usize,
}

fn json(rows: &BTreeMap<String, Row>, counts: &Counts, plan: &Plan) -> serde_json::Value {
    let migrations: Vec<serde_json::Value> = rows
        .values()
        .map(|row| {
            let checksum = row.verdict.as_ref().map(|v| match v {
                Verdict::Unchanged => "unchanged",
                Verdict::Edited { .. } => "edited",
                Verdict::Cosmetic => "cosmetic",
                Verdict::Unrecorded => "unrecorded",
            });
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
                "phantom_name": plan.phantoms.iter().find(|p| p.version == row.version).and_then(|p| p.name.clone()),
                "phantom_revertible": plan.phantoms.iter().any(|p| p.version == row.version && p.revertible()),
            })
        })
        .collect();
    serde_json::json!({
        "migrations": migrations,
        "applied": counts.applied,
        "pending": counts.pending,
        "missing_on_disk": counts.missing,
        "edited": counts.edited,
        "out_of_order": counts.out_of_order,
    })
}
