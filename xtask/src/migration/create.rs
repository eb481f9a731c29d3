//! `cargo xtask migration create NAME`: a new, empty migration in diesel_cli's layout.

use anyhow::Result;
use dbkit::migration::create::{DOWN_TEMPLATE, create_migration, up_template};
use dbkit::migration::source::shown;

use crate::context::Context;

/// Create an empty migration (commented up.sql and down.sql) and print its folder
///
/// The folder is `<migrations>/YYYY-MM-DD-HHMMSS_NAME`, as `diesel migration generate` makes it.
#[derive(clap::Args)]
pub struct Create {
    /// The migration's name, in snake_case (e.g. add_user_avatar)
    name: String,
}

impl Create {
    pub fn run(self, cx: &Context) -> Result<()> {
        let folder = create_migration(&cx.migration_dir()?, &self.name, &up_template(&self.name), DOWN_TEMPLATE)?;
        eprintln!("created {} (up.sql, down.sql)", shown(&folder));
        println!("{}", shown(&folder));
        Ok(())
    }
}
