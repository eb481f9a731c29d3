//! DEV ONLY, destructive: bring the local database exactly to the migrations

use anyhow::{Result, bail};

use crate::context::Context;

/// DEV ONLY, destructive: bring the local database exactly to the migrations
#[derive(clap::Args)]
pub struct Sync {}

impl Sync {
    pub fn run(self, _cx: &Context) -> Result<()> {
        bail!("not implemented yet")
    }
}
