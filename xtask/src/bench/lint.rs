//! `cargo xtask bench lint`: the linter's binary does it (see `crate::linter`).

use anyhow::Result;

use crate::context::Context;

/// Benchmark `migration lint` against squawk (median of several runs)
///
/// Runs the linter's binary (built on first use); `--help` shows its flags.
#[derive(clap::Args)]
#[command(disable_help_flag = true)]
pub struct Lint {
    /// The benchmark's flags (`cargo xtask bench lint --help`)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    args: Vec<String>,
}

impl Lint {
    pub fn run(self, cx: &Context) -> Result<()> {
        crate::linter::run(cx, &["bench", "lint"], &self.args)
    }
}
