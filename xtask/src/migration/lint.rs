//! `cargo xtask migration lint`: the flags are parsed (and `--help` answered) here; the linter's
//! binary does the work (see `crate::linter`), built on first use.

use anyhow::Result;
use dbkit::cli::LintArgs;

use crate::context::Context;

#[derive(clap::Args)]
pub struct Lint {
    #[command(flatten)]
    args: LintArgs,
}

impl Lint {
    pub fn run(self, cx: &Context) -> Result<()> {
        crate::linter::run(cx, &["migration", "lint"], &self.args.to_args())
    }
}
