//! `cargo xtask migration lint`: the linter's binary does it (see `crate::linter`).

use anyhow::Result;

use crate::context::Context;

/// Check migrations for statements that lock or rewrite tables or break running code
///
/// Postgres's own parser and squawk's rules, with `--measure` for the locks each statement
/// really takes. Runs the linter's binary (built on first use); `--help` shows its flags.
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Lint {
    /// The linter's flags and migrations (`cargo xtask migration lint --help`)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    args: Vec<String>,
}

impl Lint {
    pub fn run(self, cx: &Context) -> Result<()> {
        crate::linter::run(cx, &["migration", "lint"], &self.args)
    }
}
