//! Back up the database to a verified, gzipped SQL file

use anyhow::{Result, bail};

use crate::context::Context;

/// Back up the database to a verified, gzipped SQL file
#[derive(clap::Args)]
pub struct Backup {}

impl Backup {
    pub fn run(self, _cx: &Context) -> Result<()> {
        bail!("not implemented yet")
    }
}
