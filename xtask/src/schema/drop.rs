//! `cargo xtask schema drop` (DANGEROUS): drop every table of the app, and with them its views,
//! sequences, functions and types, so `migration run` can start from nothing.

use anyhow::Result;

use super::sync::{Scope, app_objects, drop_objects, print_objects};
use crate::context::Context;

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
        let guard = self.guard.guard();
        let url = cx.database_url()?;
        let what = "drop every table of the app";
        guard.check_target(cx, &url, what)?;
        let mut conn = dbkit::connect::establish(&url)?;
        let objects = app_objects(&mut conn, &self.scope.schemas(cx)?)?;
        eprintln!("schema drop: on {}", dbkit::url::redact(&url));
        print_objects(&objects);
        if objects.is_empty() {
            return Ok(());
        }
        guard.check(cx, &url, what)?;
        drop_objects(&mut conn, &objects)?;
        eprintln!("dropped {} objects; `cargo xtask migration run` builds the schema again", objects.len());
        Ok(())
    }
}
