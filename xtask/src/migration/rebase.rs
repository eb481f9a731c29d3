//! `cargo xtask migration rebase`: this branch's new migrations renamed to follow another
//! branch's newest (see [`dbkit::migration::conflict::rebase`]).

use anyhow::Result;
use dbkit::migration::conflict::{Sides, rebase};

use crate::context::Context;

/// Rename this branch's new migrations to sort after another branch's newest, order kept
///
/// Each of the migrations this branch adds since the merge base with REF gets a new version (a
/// timestamp as `migration create` makes it, after REF's newest and after each other), with
/// `git mv` when git tracks it. Where the local database applied them, their bookkeeping
/// (__diesel_schema_migrations, and the checksums' table) moves to the new versions in one
/// transaction, then the schema files are regenerated. Refused while the migrations folder has
/// uncommitted changes besides this branch's new migrations. Prints each rename as `OLD -> NEW`.
#[derive(clap::Args)]
pub struct Rebase {
    /// The branch to follow [default: origin/HEAD's branch, else origin/main, else main]
    #[arg(long, value_name = "REF")]
    onto: Option<String>,
    /// Show the renames without doing them
    #[arg(long)]
    dry_run: bool,
    /// Rename the folders only: leave the local database (and schema files) alone
    #[arg(long)]
    files_only: bool,
}

impl Rebase {
    pub fn run(self, cx: &Context) -> Result<()> {
        let sides = Sides::read(&cx.migration_dir()?, self.onto.as_deref())?;
        let plan = rebase::plan(&sides)?;
        if plan.moves.is_empty() {
            eprintln!(
                "nothing to rename: this branch's {} new migration(s) already sort after {}'s newest{}",
                sides.ours.len(),
                plan.label,
                plan.after.map(|a| format!(" ({a})")).unwrap_or_default()
            );
            return Ok(());
        }
        for m in &plan.moves {
            println!("{} -> {}", m.from, m.to);
        }
        if self.dry_run {
            eprintln!("dry run: nothing renamed");
            return Ok(());
        }
        let url = if self.files_only { None } else { Some(cx.database_url()?) };
        let mended = rebase::apply(&sides, &plan, url.as_ref())?;
        eprintln!(
            "renamed {} migration(s) to follow {}'s newest{}",
            plan.moves.len(),
            plan.label,
            plan.after.map(|a| format!(" ({a})")).unwrap_or_default()
        );
        let Some(url) = url else {
            eprintln!(
                "the local database was left alone (--files-only): where it applied them, `migration show` lists the old versions as not on disk"
            );
            return Ok(());
        };
        if !mended.versions.is_empty() {
            let moved: Vec<String> = mended.versions.iter().map(|(from, to)| format!("{from} -> {to}")).collect();
            eprintln!(
                "moved the local bookkeeping of {} applied migration(s): {}\n  note: they ran before {}'s migrations here; once merged, `migration run` sees those as out of order: revert this branch's first (`cargo xtask migration revert -n {}`), then run",
                moved.len(),
                moved.join(", "),
                sides.label,
                mended.versions.len()
            );
        }
        dbkit::migration::phantom::regenerate_schema(cx, &url)
    }
}
