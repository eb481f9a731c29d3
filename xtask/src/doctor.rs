//! Check the whole setup and say how to fix what fails

use anyhow::{Result, bail};

use crate::context::Context;

/// Check the whole setup and say how to fix what fails
#[derive(clap::Args)]
pub struct Doctor {}

impl Doctor {
    pub fn run(self, _cx: &Context) -> Result<()> {
        bail!("not implemented yet")
    }
}
