//! `cargo xtask migration generate`: up.sql and down.sql from the difference between
//! schema.rs and the live database.

use anyhow::{Result, bail};

use crate::context::Context;

/// Write a migration from the difference between schema.rs and the live database
#[derive(clap::Args)]
pub struct Generate {
    /// The migration's name (snake_case)
    name: String,
}

impl Generate {
    pub fn run(self, _cx: &Context) -> Result<()> {
        bail!("not implemented yet")
    }
}
