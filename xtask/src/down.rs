//! `cargo xtask down`: stop and remove the local containers.

use anyhow::Result;
use dbkit::docker::down::{Options, down};

use crate::context::Context;

/// Stop and remove the local Postgres and Redis containers; their data stays on its volumes.
#[derive(clap::Args)]
pub struct Down {
    /// Also delete the data volumes (asks first)
    #[arg(long)]
    volumes: bool,
    /// Do not ask before deleting data
    #[arg(long, short)]
    yes: bool,
}

impl Down {
    pub fn run(self, cx: &Context) -> Result<()> {
        down(cx, &Options { volumes: self.volumes, yes: self.yes })
    }
}
