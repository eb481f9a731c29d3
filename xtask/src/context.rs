//! The global flags (diesel_cli's names and fallbacks) and error reporting; the rest of what
//! commands share is the library's [`Context`].

use std::path::{Path, PathBuf};

pub use dbkit::cli::Global;
pub use dbkit::context::{Context, confirm};

/// The checkout this xtask works on: the one it was built from (where its sources are, never
/// the current directory), unless `RAILGUN_CHECKOUT` names another.
pub fn project_root() -> PathBuf {
    match std::env::var_os("RAILGUN_CHECKOUT").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf(),
    }
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
