//! The global flags (diesel_cli's names and fallbacks) and error reporting; the rest of what
//! commands share is the library's [`Context`].

use std::path::{Path, PathBuf};

pub use dbkit::cli::Global;
pub use dbkit::context::Context;

/// The checkout this xtask works on: `RAILGUN_CHECKOUT`, else the one cargo runs it in (see
/// [`dbkit::checkout::root`]), the one it was built from only when nothing else tells.
pub fn project_root() -> PathBuf {
    let compiled_in = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace");
    dbkit::checkout::root(compiled_in)
}

/// Ends the command with this exit code, having said what there was to say (a child's).
#[derive(Debug)]
pub struct Exit(pub u8);

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Exit {}

/// Prints an error once: `error: ...`, its causes, then its hints; every URL redacted.
pub fn report(error: &anyhow::Error) {
    eprintln!("{}", dbkit::error::render(error));
}
