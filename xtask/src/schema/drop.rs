//! `cargo xtask schema drop` (DANGEROUS): drop every table of the app, and with them its views,
//! sequences, functions and types, so `migration run` can start from nothing.

use anyhow::Result;

use super::sync::Scope;
use crate::context::Context;
use dbkit::schema::sync::drop_all;

/// DANGEROUS: drop every table of the app (with its views, sequences, functions, types and the
/// migration bookkeeping)
///
/// The app's schemas are `public` and the schema of each diesel.toml print_schema section (more with --schema).
/// What goes is listed first; then it asks (`--yes` in scripts) and refuses production.
#[derive(clap::Args)]
pub struct Drop {
    #[command(flatten)]
    scope: Scope,
    #[command(flatten)]
    guard: crate::guard::GuardArgs,
}

impl Drop {
    pub fn run(self, cx: &Context) -> Result<()> {
        drop_all(cx, &self.scope.options(&self.guard))
    }
}
