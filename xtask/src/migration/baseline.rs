//! `cargo xtask migration baseline`: adopt a database that has no bookkeeping.

use anyhow::Result;
use dbkit::catalog::Difference;
use dbkit::migration::baseline::{self, Outcome};
use dbkit::migration::source;

use crate::context::{Context, Exit};

/// Record every migration as applied to a database made without them, once it is proven to be
/// what they make
///
/// For a database with no bookkeeping (made by hand, restored from elsewhere, migrated by another
/// tool): the migrations are applied to a throwaway database on the same server and the two
/// catalogs compared (tables, columns, constraints, indexes, sequences, views, functions,
/// triggers, enums, domains, comments, grants, policies). Equal: each migration is recorded as
/// applied, in one transaction. Different: each difference is listed, nothing is recorded, and
/// the exit code is 1.
#[derive(clap::Args)]
pub struct Baseline {}

impl Baseline {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        let migrations = source::load(&cx.migration_dir()?)?;
        match baseline::baseline(&url, &migrations)? {
            Outcome::Recorded(n) => {
                eprintln!("the database is what the {n} migration(s) make: recorded as applied");
                Ok(())
            }
            Outcome::Differs(differences) => {
                println!("the database differs from what the migrations make ({}):", differences.len());
                for difference in &differences {
                    println!("  {}", line(difference));
                }
                eprintln!(
                    "nothing recorded. Bring the database to the migrations (or the migrations to the database: `cargo xtask migration generate NAME` writes the difference with schema.rs), then run this again"
                );
                Err(Exit(1).into())
            }
        }
    }
}

fn line(difference: &Difference) -> String {
    match difference {
        Difference::Extra { object, definition } => format!("only in the database: {object} {definition}"),
        Difference::Missing { object, definition } => format!("missing from the database: {object} {definition}"),
        Difference::Changed { object, was, now } => {
            format!("{object}: the migrations make `{was}`, the database has `{now}`")
        }
    }
}
