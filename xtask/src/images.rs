//! `cargo xtask images`: the offline images, for machines that cannot pull.

use anyhow::Result;
use dbkit::docker::images::{self, POSTGRES_OFFLINE, REDIS_OFFLINE};

use crate::context::Context;

/// Images for machines without a registry.
#[derive(clap::Subcommand)]
pub enum Images {
    /// Build Postgres and Redis images from Debian packages (root, debootstrap; about a minute)
    ///
    /// They behave like the official images (POSTGRES_USER/PASSWORD/DB, initdb.d scripts,
    /// `-c` flags) and are tagged with their real major versions. `up` and the test harness
    /// use them by themselves when the official images cannot be pulled.
    Build {
        /// Build even when both images are present
        #[arg(long)]
        force: bool,
    },
}

impl Images {
    pub fn run(self, cx: &Context) -> Result<()> {
        match self {
            Images::Build { force } => {
                dbkit::docker::check_engine()?;
                if !force && images::present(&cx.sh, POSTGRES_OFFLINE) && images::present(&cx.sh, REDIS_OFFLINE) {
                    eprintln!("{POSTGRES_OFFLINE} and {REDIS_OFFLINE} are present (--force builds them again)");
                } else {
                    images::build_offline(&cx.sh)?;
                }
                println!("{POSTGRES_OFFLINE}");
                println!("{REDIS_OFFLINE}");
                Ok(())
            }
        }
    }
}
