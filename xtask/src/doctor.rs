//! `cargo xtask doctor`: the whole setup checked, one line a check, each failure with its fix.

use anyhow::Result;

use crate::context::Context;

/// Check the whole setup and say how to fix what fails
///
/// Docker, the images, host pg_dump/psql against the server, .env (exists, private,
/// git-ignored), connectivity, the two URLs (DATABASE_URL, the app's, and DIRECT_URL, the
/// tools'; which goes through a pooler, in which mode), SSL, pending migrations and schema.rs
/// drift. Prints one line a
/// check on stdout; exits non-zero when any fails.
#[derive(clap::Args)]
pub struct Doctor {}

impl Doctor {
    pub fn run(self, cx: &Context) -> Result<()> {
        let checks = dbkit::doctor::doctor(cx);
        print!("{checks}");
        checks.verdict()
    }
}
