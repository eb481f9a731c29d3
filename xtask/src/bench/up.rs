//! Benchmark cold and repeated up against docker compose

use anyhow::{Result, bail};

use crate::context::Context;

/// Benchmark cold and repeated up against docker compose
#[derive(clap::Args)]
pub struct Up {}

impl Up {
    pub fn run(self, _cx: &Context) -> Result<()> {
        bail!("not implemented yet")
    }
}
