//! Benchmark test database acquisition against migrate-per-test

use anyhow::{Result, bail};

use crate::context::Context;

/// Benchmark test database acquisition against migrate-per-test
#[derive(clap::Args)]
pub struct TestDb {}

impl TestDb {
    pub fn run(self, _cx: &Context) -> Result<()> {
        bail!("not implemented yet")
    }
}
