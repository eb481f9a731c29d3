//! `cargo xtask migration check`: this branch's new migrations against another branch's, before
//! merging (see [`dbkit::migration::conflict`]).

use anyhow::Result;
use dbkit::migration::conflict::{self, Options};

use crate::context::{Context, Exit};

/// Find conflicts between this branch's new migrations and another branch's, before merging
///
/// Compares the migrations this branch adds since the merge base with REF (committed, and the
/// work tree's uncommitted ones, said so) with those REF added since: a duplicate version or
/// name; one of this branch's that sorts before REF's newest (refused as out of order once
/// merged: `migration rebase` renames them); both sides touching the same table or column (or
/// index, view, type, function, trigger), read from their statements. REF is read from git: it
/// need not be checked out.
///
/// When statements overlap (or with --apply), both sides are applied in a throwaway database on
/// the server of --database-url / DATABASE_URL (railgun_check_<pid>_<n>, always dropped): the
/// merge base's migrations, REF's new ones, then this branch's. A failure there is a conflict,
/// named with its file and Postgres's words; without a server that answers it is skipped, and
/// said so. Statements it cannot read (DO blocks, SELECT, COPY; function bodies are not read)
/// are listed: --apply checks what they do.
///
/// Exit 0 when clean, 1 with each conflict named: both files with line, and the object.
/// In CI: cargo xtask migration check --against origin/$BASE_BRANCH (with the full history).
#[derive(clap::Args)]
pub struct Check {
    /// The branch to compare with [default: origin/HEAD's branch, else origin/main, else main]
    #[arg(long, value_name = "REF")]
    against: Option<String>,
    /// Apply both sides in a throwaway database even when no statements overlap
    #[arg(long)]
    apply: bool,
    /// Also list what each new migration's statements touch, as read (file:line: what)
    #[arg(long, short)]
    verbose: bool,
}

impl Check {
    pub fn run(self, cx: &Context) -> Result<()> {
        let dir = cx.migration_dir()?;
        let report = conflict::check(&dir, cx.database_url(), &Options { against: self.against, apply: self.apply })?;
        let short = &report.base[..report.base.len().min(10)];
        eprintln!(
            "this branch adds {} migration(s), {} adds {} since their merge base {short}",
            report.ours.len(),
            report.label,
            report.theirs.len()
        );
        if !report.uncommitted.is_empty() {
            eprintln!(
                "this branch's side includes uncommitted migration(s) of the work tree: {}",
                report.uncommitted.join(", ")
            );
        }
        if self.verbose {
            for (file, reading) in &report.readings {
                for touch in &reading.touches {
                    eprintln!("{file}:{}: {touch}", touch.line);
                }
                for (line, words) in &reading.unread {
                    eprintln!("{file}:{line}: not read ({words})");
                }
            }
        }
        if !report.unread.is_empty() {
            eprintln!(
                "note: {} statement(s) not read (what they touch is not compared; --apply runs them): {}",
                report.unread.len(),
                report.unread.join(", ")
            );
        }
        if let Some(applied) = &report.applied {
            eprintln!("{applied}");
        }
        print!("{}", report.render());
        if report.conflicts.is_empty() {
            eprintln!("no conflicts with {}", report.label);
            return Ok(());
        }
        let out_of_order = report.conflicts.iter().any(|c| c.kind == conflict::Kind::OutOfOrder);
        eprintln!(
            "{} conflict(s) with {}{}",
            report.conflicts.len(),
            report.label,
            if out_of_order {
                format!(
                    "; `cargo xtask migration rebase --onto {}` renames this branch's migrations to follow its newest",
                    report.label
                )
            } else {
                String::new()
            }
        );
        Err(Exit(1).into())
    }
}
