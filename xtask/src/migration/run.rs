//! `cargo xtask migration run`: apply pending migrations, then regenerate schema.rs.

use anyhow::Result;

use crate::context::Context;

/// Apply pending migrations (each in its own transaction, under a lock), then regenerate schema.rs
///
/// Two runners at once are safe: the second waits for the first, then applies what is left.
/// A migration whose metadata.toml says `run_in_transaction = false` runs outside a transaction
/// (for `CREATE INDEX CONCURRENTLY` and the like).
#[derive(clap::Args)]
pub struct Run {}

impl Run {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        let ran = dbkit::migration::run_pending(cx, &url)?;
        match ran {
            0 => eprintln!("no pending migrations"),
            1 => eprintln!("applied 1 migration"),
            n => eprintln!("applied {n} migrations"),
        }
        dbkit::schema::regenerate(cx, &url)
    }
}
