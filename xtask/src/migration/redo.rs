//! `cargo xtask migration redo`: revert the latest migrations and apply them again.

use anyhow::Result;
use diesel::{Connection, PgConnection};

use super::runner::{self, Locked};
use super::source;
use crate::context::Context;
use crate::guard::Guard;

/// Revert the latest applied migration (or N, or all) and apply it again, then regenerate schema.rs
///
/// Checks that down.sql really undoes up.sql. All of it runs in one transaction (nothing changes
/// if any step fails) unless one of the migrations runs outside transactions. `--all` asks first
/// and refuses production.
#[derive(clap::Args)]
pub struct Redo {
    /// How many migrations to redo, newest first
    #[arg(long, short = 'n', default_value_t = 1, conflicts_with = "all")]
    count: usize,
    /// Redo every applied migration (destructive: its data goes; asks first)
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    guard: Guard,
}

impl Redo {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        if self.all {
            self.guard.check(cx, &url, "revert and re-apply every migration")?;
        }
        let migrations = source::load(&source::migration_dir(cx)?)?;
        let mut session = Locked::acquire(&url)?;
        let count = if self.all { usize::MAX } else { self.count };
        let targets = super::revert::latest_applied(&mut session, &migrations, count)?;
        if targets.is_empty() {
            eprintln!("no applied migration to redo");
        }
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
        crate::schema::regenerate(cx, &url)
    }
}
