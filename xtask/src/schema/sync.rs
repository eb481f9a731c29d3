//! `cargo xtask schema sync` (DEV ONLY): drop the app's objects, then run every migration, so
//! the database is exactly what the migrations make. Also what `schema drop` drops.

use anyhow::Result;

use crate::context::Context;
use crate::guard::GuardArgs;
use dbkit::schema::sync::{Options, sync};

/// DEV ONLY, destructive: drop the app's tables, views, sequences, functions and types (and the
/// migration bookkeeping), then run every migration
///
/// The app's schemas are `public` and the schema of each diesel.toml print_schema section (more with --schema).
/// What goes is listed first; then it asks (`--yes` in scripts) and refuses production.
#[derive(clap::Args)]
pub struct Sync {
    #[command(flatten)]
    scope: Scope,
    #[command(flatten)]
    guard: GuardArgs,
}

/// Which schemas are the app's.
#[derive(clap::Args)]
pub struct Scope {
    /// Another schema of the app (repeatable); a schema other than public is dropped whole
    #[arg(long = "schema", value_name = "NAME")]
    schemas: Vec<String>,
}

impl Sync {
    pub fn run(self, cx: &Context) -> Result<()> {
        sync(cx, &self.scope.options(&self.guard))
    }
}

impl Scope {
    /// The library's options for these flags.
    pub fn options(&self, guard: &GuardArgs) -> Options {
        Options { schemas: self.schemas.clone(), guard: guard.guard() }
    }
}
