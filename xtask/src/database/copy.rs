//! Move a database from one provider to another, verified table by table

use anyhow::{Result, bail};

use crate::context::Context;

/// Move a database from one provider to another, verified table by table
#[derive(clap::Args)]
pub struct Copy {}

impl Copy {
    pub fn run(self, _cx: &Context) -> Result<()> {
        bail!("not implemented yet")
    }
}
