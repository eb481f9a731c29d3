//! `cargo xtask schema`: schema.rs generation (byte-identical to diesel print-schema), sync and drop.

mod drop;
mod generate;
pub mod introspect;
pub mod names;
mod print;
mod render;
pub mod settings;
mod sync;

use anyhow::Result;
use url::Url;

use crate::config::DieselConfig;
use crate::context::Context;

/// schema.rs generation, and the destructive sync and drop.
#[derive(clap::Subcommand)]
pub enum Schema {
    Generate(generate::Generate),
    Sync(sync::Sync),
    Drop(drop::Drop),
}

impl Schema {
    pub fn run(self, cx: &Context) -> Result<()> {
        match self {
            Schema::Generate(cmd) => cmd.run(cx),
            Schema::Sync(cmd) => cmd.run(cx),
            Schema::Drop(cmd) => cmd.run(cx),
        }
    }
}

/// Rewrites the schema file from the database at `url`, as diesel_cli does after migrating:
/// only when diesel.toml names one (print_schema.file), with diesel.toml's settings alone.
pub fn regenerate(cx: &Context, url: &Url) -> Result<()> {
    let config = DieselConfig::load(cx)?;
    let settings = settings::Settings::from_config(&config)?;
    let Some(file) = settings.file.clone() else { return Ok(()) };
    let mut conn = db::connect::establish(url)?;
    let text = print::output_schema(&mut conn, &settings, &generate::rustfmt_dir(cx))?;
    generate::write_if_changed(&file, &text)
}
