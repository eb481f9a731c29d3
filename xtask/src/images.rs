//! `cargo xtask images`: the offline images, for machines that cannot pull.

use anyhow::Result;
use dbkit::docker::images::{self, Service};

use crate::context::Context;

/// Images for machines without a registry.
#[derive(clap::Subcommand)]
pub enum Images {
    /// Build the Postgres, Redis and PgBouncer images from Debian packages (root, debootstrap;
    /// about a minute each), only those missing
    ///
    /// They behave like the official images (POSTGRES_USER/PASSWORD/DB, initdb.d scripts,
    /// `-c` flags; edoburu/pgbouncer's DB_HOST, POOL_MODE, ... settings) and are tagged with
    /// their real versions. `up` and the test harness use them by themselves when the official
    /// images cannot be pulled.
    Build {
        /// Build all of them, even those present
        #[arg(long)]
        force: bool,
    },
}

impl Images {
    pub fn run(self, cx: &Context) -> Result<()> {
        match self {
            Images::Build { force } => {
                dbkit::docker::check_engine()?;
                let missing: Vec<Service> = if force {
                    Service::ALL.to_vec()
                } else {
                    Service::ALL.into_iter().filter(|s| !images::present(&cx.sh, s.offline())).collect()
                };
                for service in Service::ALL.iter().filter(|s| !missing.contains(s)) {
                    eprintln!("{} is present (--force builds it again)", service.offline());
                }
                if !missing.is_empty() {
                    images::build_offline(&cx.sh, &missing)?;
                }
                for service in Service::ALL {
                    println!("{}", service.offline());
                }
                Ok(())
            }
        }
    }
}
