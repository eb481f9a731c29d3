//! `cargo xtask migration`: the guide's migration commands, in diesel_cli's format and
//! bookkeeping, so diesel_cli and these commands can take turns on one database.

mod accept;
mod baseline;
mod check;
mod create;
mod generate;
mod lint;
mod rebase;
mod redo;
mod rehearse;
mod revert;
mod run;
mod show;
mod squash;
mod test;

use anyhow::Result;

use crate::context::Context;

/// The guide's migration commands, in diesel_cli's format.
#[derive(clap::Subcommand)]
pub enum Migration {
    Create(create::Create),
    Generate(generate::Generate),
    Run(run::Run),
    Revert(revert::Revert),
    Redo(redo::Redo),
    Show(show::Show),
    Accept(accept::Accept),
    Lint(lint::Lint),
    Test(test::Test),
    Baseline(baseline::Baseline),
    Squash(squash::Squash),
    Check(check::Check),
    Rebase(rebase::Rebase),
    Rehearse(rehearse::Rehearse),
}

impl Migration {
    pub fn run(self, cx: &Context) -> Result<()> {
        match self {
            Migration::Create(cmd) => cmd.run(cx),
            Migration::Generate(cmd) => cmd.run(cx),
            Migration::Run(cmd) => cmd.run(cx),
            Migration::Revert(cmd) => cmd.run(cx),
            Migration::Redo(cmd) => cmd.run(cx),
            Migration::Show(cmd) => cmd.run(cx),
            Migration::Accept(cmd) => cmd.run(cx),
            Migration::Lint(cmd) => cmd.run(cx),
            Migration::Test(cmd) => cmd.run(cx),
            Migration::Baseline(cmd) => cmd.run(cx),
            Migration::Squash(cmd) => cmd.run(cx),
            Migration::Check(cmd) => cmd.run(cx),
            Migration::Rebase(cmd) => cmd.run(cx),
            Migration::Rehearse(cmd) => cmd.run(cx),
        }
    }
}
