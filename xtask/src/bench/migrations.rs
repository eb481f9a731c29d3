//! Benchmark migration run against diesel_cli

use anyhow::{Result, bail};

use crate::context::Context;

/// Benchmark migration run against diesel_cli
#[derive(clap::Args)]
pub struct Migrations {}

impl Migrations {
    pub fn run(self, _cx: &Context) -> Result<()> {
        bail!("not implemented yet")
    }
}
