//! Benchmark backup and restore against the pg_dump | gzip pipeline

use anyhow::{Result, bail};

use crate::context::Context;

/// Benchmark backup and restore against the pg_dump | gzip pipeline
#[derive(clap::Args)]
pub struct Backup {}

impl Backup {
    pub fn run(self, _cx: &Context) -> Result<()> {
        bail!("not implemented yet")
    }
}
