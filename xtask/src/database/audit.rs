//! Check the security checklist against a live database

use anyhow::{Result, bail};

use crate::context::Context;

/// Check the security checklist against a live database
#[derive(clap::Args)]
pub struct Audit {}

impl Audit {
    pub fn run(self, _cx: &Context) -> Result<()> {
        bail!("not implemented yet")
    }
}
