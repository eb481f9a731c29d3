//! The flags of every destructive command, for the library's production guard.

use dbkit::guard::Guard;

/// Flags of every destructive command.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct GuardArgs {
    /// Do not ask for confirmation (local, non-production targets only)
    #[arg(long, short)]
    pub yes: bool,
    /// Allow a production or remote target; the database name must be typed back (or --confirm-db)
    #[arg(long)]
    pub force: bool,
    /// The target database's name, for scripts that pass --force without a terminal
    #[arg(long, value_name = "NAME")]
    pub confirm_db: Option<String>,
}

impl GuardArgs {
    pub fn guard(&self) -> Guard {
        Guard::new(self.yes, self.force, self.confirm_db.clone())
    }
}
