//! Check a backup file: complete gzip, CRC, length, pg_dump's completion marker

use anyhow::{Result, bail};

use crate::context::Context;

/// Check a backup file: complete gzip, CRC, length, pg_dump's completion marker
#[derive(clap::Args)]
pub struct Verify {}

impl Verify {
    pub fn run(self, _cx: &Context) -> Result<()> {
        bail!("not implemented yet")
    }
}
