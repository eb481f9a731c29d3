//! `cargo xtask migration test`: each migration proven reversible in a throwaway database.

use anyhow::Result;
use dbkit::migration::reversible::{self, Selection, Tested};
use dbkit::migration::source;

use crate::context::{Context, Exit};

/// Prove that down.sql undoes up.sql, in a throwaway database (default: the pending migrations)
///
/// For each migration tested, in order: the catalog before, up.sql, the catalog after, down.sql
/// (which must give the catalog before again), up.sql again (which must give the catalog after
/// again). The catalog: tables, columns (type, default, nullability, identity, generated,
/// position), constraints, indexes, sequences, views, functions, triggers, enums, domains,
/// comments, grants, row-level security policies, extensions. Each difference is named:
/// "down.sql of 2026-..._x leaves index public.users_status_idx". A down.sql that is missing,
/// empty or only comments is reported as irreversible.
///
/// A test.sql beside up.sql runs after each up.sql (in a transaction always rolled back): seed
/// rows and check them there; it fails the test when it raises.
///
/// The migrations before the ones tested are applied first, as they are. The throwaway database
/// is made on the server of DATABASE_URL and dropped at the end. Exit 1 on any finding.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Test {
    /// Versions or folder names to test (default: the pending migrations)
    #[arg(value_name = "VERSION", conflicts_with = "all")]
    migrations: Vec<String>,
    /// Test every migration
    #[arg(long)]
    all: bool,
    /// Print JSON on stdout instead (one object per migration tested, with its findings)
    #[arg(long)]
    json: bool,
}

impl Test {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        let migrations = source::load(&cx.migration_dir()?)?;
        let selection = match (self.all, self.migrations.is_empty()) {
            (true, _) => Selection::All,
            (false, true) => Selection::Pending,
            (false, false) => Selection::These(self.migrations),
        };
        let report = reversible::test(&url, &migrations, &selection)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print(&report);
        }
        match report.iter().any(|t| !t.findings.is_empty()) {
            true => Err(Exit(1).into()),
            false => Ok(()),
        }
    }
}

fn print(report: &[Tested]) {
    if report.is_empty() {
        eprintln!("no migration to test");
        return;
    }
    for tested in report {
        let ms = tested.elapsed.as_secs_f64() * 1000.0;
        match tested.findings.is_empty() {
            true => println!("ok    {} ({ms:.0} ms)", tested.name),
            false => {
                println!("FAIL  {} ({ms:.0} ms)", tested.name);
                for finding in &tested.findings {
                    println!("      {}", finding.message);
                }
            }
        }
    }
    let failed = report.iter().filter(|t| !t.findings.is_empty()).count();
    println!("{} tested, {} reversible, {failed} with findings", report.len(), report.len() - failed);
}
