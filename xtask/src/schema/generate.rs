//! Write db/src/schema.rs from the live database, as diesel print-schema would

use anyhow::{Result, bail};

use crate::context::Context;

/// Write db/src/schema.rs from the live database, as diesel print-schema would
#[derive(clap::Args)]
pub struct Generate {}

impl Generate {
    pub fn run(self, _cx: &Context) -> Result<()> {
        bail!("not implemented yet")
    }
}
