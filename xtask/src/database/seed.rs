//! `cargo xtask db seed`: the seed files' rows, into the database.

use anyhow::Result;

use crate::context::Context;
use crate::guard::GuardArgs;

/// Load the seed files: db/seeds/*.sql in name order, then db/seeds/<APP_ENV>/*.sql
///
/// The seeds folder is `seeds` beside the migrations folder. APP_ENV comes from the environment,
/// else .env (default: development). A seed file is data, judged as a backup is before any
/// statement is sent: rows only (INSERT, COPY ... FROM stdin), no psql meta-command (`\!`), no
/// transaction control, no role or database statement. All files run in one transaction: an
/// error names the file and line, and nothing stays. `up` seeds the database it creates, and the
/// test template holds db/seeds/*.sql and db/seeds/test/*.sql.
///
/// A seed that may run twice (this command on a seeded database) wants
/// `INSERT ... ON CONFLICT DO NOTHING`.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Seed {
    #[command(flatten)]
    guard: GuardArgs,
}

impl Seed {
    pub fn run(self, cx: &Context) -> Result<()> {
        let url = cx.database_url()?;
        self.guard.guard().check_target(cx, &url, "seed the database")?;
        dbkit::seed::seed(cx, &url)?;
        Ok(())
    }
}
