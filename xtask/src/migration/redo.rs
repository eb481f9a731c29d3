//! `cargo xtask migration redo`: revert the latest migrations and apply them again.

use anyhow::Result;
use diesel::{Connection, PgConnection};

use super::revert::Latest;
use crate::context::Context;
use dbkit::migration::runner;

/// Revert the latest applied migration (or N, or all) and apply it again, then regenerate schema.rs
///
/// Checks that down.sql really undoes up.sql. All of it runs in one transaction (nothing changes
/// if any step fails) unless one of the migrations runs outside transactions. `--all` asks first
/// and refuses production.
#[derive(clap::Args)]
pub struct Redo {
    #[command(flatten)]
    latest: Latest,
}

impl Redo {
    pub fn run(self, cx: &Context) -> Result<()> {
        let (url, mut session, targets) = self.latest.select(cx, "redo")?;
        let redo = |conn: &mut PgConnection| -> Result<()> {
            for migration in &targets {
                eprintln!("Rolling back migration {}", migration.name);
                runner::revert(conn, migration)?;
            }
            for migration in targets.iter().rev() {
                eprintln!("Running migration {}", migration.name);
                runner::apply(conn, migration)?;
            }
            Ok(())
        };
        // One transaction around all of it, as diesel_cli does; each step nests as a savepoint.
        if targets.iter().all(|m| m.run_in_transaction) {
            session.conn.transaction(redo)?;
        } else {
            redo(&mut session.conn)?;
        }
        drop(session);
        dbkit::migration::phantom::regenerate_schema(cx, &url)
    }
}
