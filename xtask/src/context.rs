//! The global flags (diesel_cli's names and fallbacks) and error reporting; the rest of what
//! commands share is the library's [`Context`].

use std::path::{Path, PathBuf};

pub use dbkit::context::{Context, confirm};

/// Flags every command takes, with diesel_cli's names and fallbacks.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct Global {
    /// The database to work on [default: $DATABASE_URL, else DATABASE_URL in .env]
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Where the migrations are [default: diesel.toml's migrations_directory, else db/migrations]
    #[arg(long, global = true, value_name = "DIR")]
    pub migration_dir: Option<PathBuf>,
    /// diesel.toml to read [default: $DIESEL_CONFIG_FILE, else diesel.toml]
    #[arg(long, global = true, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
}

impl Global {
    /// The context of every command: this workspace, with these flags.
    pub fn context(self) -> anyhow::Result<Context> {
        let Global { database_url, migration_dir, config_file } = self;
        Context::new(project_root(), dbkit::context::Overrides { database_url, migration_dir, config_file })
    }
}

/// The checkout this xtask works on: the one it was built from (where its sources are, never
/// the current directory), unless `RAILGUN_CHECKOUT` names another.
pub fn project_root() -> PathBuf {
    match std::env::var_os("RAILGUN_CHECKOUT").filter(|p| !p.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_path_buf(),
    }
}

/// Prints an error once: `error: ...`, its causes, then its hints; every URL redacted.
pub fn report(error: &anyhow::Error) {
    eprintln!("{}", dbkit::error::render(error));
}
