//! `cargo xtask schema`: schema.rs generation (byte-identical to diesel print-schema), the schema
//! as SQL and as a diagram for review, sync and drop.

mod diagram;
mod drop;
mod dump;
mod generate;
mod sync;

use anyhow::Result;

use crate::context::Context;

/// schema.rs generation, the schema as SQL and as a diagram, and the destructive sync and drop.
#[derive(clap::Subcommand)]
pub enum Schema {
    Generate(generate::Generate),
    Dump(dump::Dump),
    Diagram(diagram::Draw),
    Sync(sync::Sync),
    Drop(drop::Drop),
}

impl Schema {
    pub fn run(self, cx: &Context) -> Result<()> {
        match self {
            Schema::Generate(cmd) => cmd.run(cx),
            Schema::Dump(cmd) => cmd.run(cx),
            Schema::Diagram(cmd) => cmd.run(cx),
            Schema::Sync(cmd) => cmd.run(cx),
            Schema::Drop(cmd) => cmd.run(cx),
        }
    }
}
