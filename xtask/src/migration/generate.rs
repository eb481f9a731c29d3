//! `cargo xtask migration generate NAME`: up.sql and its exact inverse down.sql from the
//! difference between schema.rs (its `table!`s are the entities) and the live database.

use anyhow::Result;
use dbkit::migration::source::shown;

use crate::context::Context;

/// Write a migration from the difference between schema.rs and the live database
///
/// Edit the `table!` declarations in schema.rs (add a table or a column, change a type or
/// nullability, remove one), then run this: it writes up.sql (the database becomes what
/// schema.rs says) and down.sql (its exact inverse). It refuses, naming the change, what it
/// cannot express: primary key changes and composite foreign keys. Run pending migrations first.
///
/// Example:
///   cargo xtask migration generate add_user_nickname
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Generate {
    /// The migration's name (snake_case)
    name: String,
}

impl Generate {
    pub fn run(self, cx: &Context) -> Result<()> {
        if let Some(folder) = dbkit::generate::generate(cx, &self.name)? {
            println!("{}", shown(&folder));
        }
        Ok(())
    }
}
