//! Restore a backup, replacing the database's data

use anyhow::{Result, bail};

use crate::context::Context;

/// Restore a backup, replacing the database's data
#[derive(clap::Args)]
pub struct Restore {}

impl Restore {
    pub fn run(self, _cx: &Context) -> Result<()> {
        bail!("not implemented yet")
    }
}
