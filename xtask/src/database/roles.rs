//! Create the least-privilege app role and the migrator role

use anyhow::{Result, bail};

use crate::context::Context;

/// Create the least-privilege app role and the migrator role
#[derive(clap::Args)]
pub struct Roles {}

impl Roles {
    pub fn run(self, _cx: &Context) -> Result<()> {
        bail!("not implemented yet")
    }
}
