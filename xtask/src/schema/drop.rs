//! DANGEROUS: drop every table of the app

use anyhow::{Result, bail};

use crate::context::Context;

/// DANGEROUS: drop every table of the app
#[derive(clap::Args)]
pub struct Drop {}

impl Drop {
    pub fn run(self, _cx: &Context) -> Result<()> {
        bail!("not implemented yet")
    }
}
