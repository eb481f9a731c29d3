//! `cargo xtask status`: what runs, where, and whether it answers.

use anyhow::Result;

use crate::context::Context;

/// Show the local containers (Postgres, Redis, and PgBouncer when it runs): image, state, URL
/// (password redacted), healthy or not.
#[derive(clap::Args)]
pub struct Status {
    /// Print JSON (an array, one object a service) instead of a table
    #[arg(long)]
    json: bool,
}

impl Status {
    pub fn run(self, cx: &Context) -> Result<()> {
        let services = dbkit::docker::status::services(cx)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&services)?);
        } else {
            print!("{}", dbkit::docker::status::table(&cx.project, &services));
        }
        Ok(())
    }
}
